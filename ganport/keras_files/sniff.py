"""What a model file is and how much memory it declares, read before any Keras touches it.

A Keras file declares sizes it may not hold: an HDF5 dataset of 60000x60000 floats takes a few kilobytes when its
chunks are never written (HDF5 reads them as the fill value), a zip entry inflates to what its header says, and a
config's Dense(60000) on 60000 inputs builds a 14.4 GB kernel before any weight is read. Each is measured here and
held to the memory budget (ganport.budget) before it is allocated.
"""

from __future__ import annotations

import contextlib
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ganport.budget import require_within_budget
from ganport.errors import ModelError, UsageError

# What a user can do about a file that declares more than the budget.
_ADVICE = (
    "the file is damaged or hostile, or the model is too large for this machine (a larger GANPORT_MEMORY_BUDGET "
    "lets ganport try)."
)


def require_readable_container(path: Path) -> None:
    """Refuse a .keras that is not a zip, an HDF5 model file that is not HDF5 or holds weights only, and any whose
    stored arrays declare more than the memory budget."""
    container = "a zip archive" if path.suffix == ".keras" else "an HDF5 file"
    readable = zipfile.is_zipfile(path) if path.suffix == ".keras" else h5py.is_hdf5(path)
    if not readable:
        raise ModelError(f"{path} is not {container}, so not a saved Keras model; is it damaged or misnamed?")
    if path.suffix != ".keras" and holds_weights_only(path):
        raise UsageError(
            f"{path} holds weights only, no architecture: pass the architecture's .json (model.to_json(); Keras-GAN "
            f"writes it as saved_model/NAME.json) with --weights {path}."
        )
    require_stored_within_budget(path)


def holds_weights_only(path: Path) -> bool:
    """An HDF5 file written by save_weights(): layer weights without the model_config attribute."""
    with contextlib.suppress(OSError), h5py.File(path, "r") as archive:
        return "model_config" not in archive.attrs and ("layer_names" in archive.attrs or "layers" in archive)
    return False


def require_stored_within_budget(path: Path) -> None:
    """Refuse a model file whose stored arrays would take more than the memory budget once read: an HDF5 file's
    datasets (as declared, whatever the file holds), a .keras archive's entries as inflated and the datasets of the
    weights file inside it, a SavedModel's variables."""
    if path.is_dir():
        declared = sum(item.stat().st_size for item in (path / "variables").glob("*") if item.is_file())
    elif path.suffix == ".keras":
        declared = _archive_bytes(path)
    else:
        declared = hdf5_dataset_bytes(path)
    require_within_budget(f"{path}: the arrays it stores", declared, _ADVICE)


def hdf5_dataset_bytes(source: Any) -> int:
    """The bytes every dataset of an HDF5 file (a path or an open binary stream) declares, as read into memory."""
    total = 0

    def add(name: str, item: Any) -> None:
        nonlocal total
        if isinstance(item, h5py.Dataset) and item.shape is not None:
            total += math.prod(item.shape) * max(item.dtype.itemsize, 1)

    try:
        with h5py.File(source, "r") as archive:
            archive.visititems(add)
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelError(f"{_name(source)} is not a readable HDF5 file ({error}); is it damaged?") from None
    return total


def _archive_bytes(path: Path) -> int:
    """A .keras archive's entries as inflated, and the datasets its weights file declares beyond that."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            total = sum(entry.file_size for entry in entries)
            require_within_budget(f"{path}: its entries once inflated", total, _ADVICE)
            for entry in entries:
                if entry.filename.endswith(".h5"):
                    with archive.open(entry) as stream:
                        total += max(0, hdf5_dataset_bytes(stream) - entry.file_size)
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise ModelError(f"{path} is not a readable zip archive ({error}); is it damaged?") from None
    return total


def _name(source: Any) -> str:
    return str(getattr(source, "name", source))


@contextlib.contextmanager
def variables_within_budget(source: Path) -> Iterator[None]:
    """Hold every TensorFlow variable that Keras (tf_keras or Keras 3) creates in this block to the memory budget,
    checked before its initial value is computed: a config declaring a 14.4 GB kernel is refused, not allocated.

    tf_keras passes the variable's shape; Keras 3 passes a closure over its own Variable, whose `_shape` and
    `_dtype` it set just before (keras/src/backend/tensorflow/core.py, Variable._initialize_with_initializer)."""
    import tensorflow as tf

    total = 0

    def creator(next_creator: Any, **kwargs: Any) -> Any:
        nonlocal total
        total += _declared_bytes(kwargs)
        require_within_budget(f"{source}: the weights its config declares", total, _ADVICE)
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        yield


def _declared_bytes(kwargs: dict) -> int:
    import tensorflow as tf

    initial = kwargs.get("initial_value")
    shape, dtype = kwargs.get("shape"), kwargs.get("dtype")
    if not callable(initial):  # a value already computed, small or not, is what it is
        return 0
    for cell in getattr(initial, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            owner = cell.cell_contents
            if shape is None and hasattr(owner, "_shape") and hasattr(owner, "_dtype"):
                shape, dtype = owner._shape, owner._dtype
    if shape is None or not tf.TensorShape(shape).is_fully_defined():
        return 0
    itemsize = tf.as_dtype(dtype).size if dtype is not None else np.dtype(np.float32).itemsize
    return math.prod(tf.TensorShape(shape).as_list()) * itemsize
