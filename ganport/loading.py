"""Keras model files in, Keras models out: Keras 3 first, tf_keras for the lecture's Keras 2 files; roles checked.

Shared by export, eval and verify, so a file is loaded, refused and named the same way everywhere.
"""

from __future__ import annotations

import contextlib
import json
import warnings
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf

from ganport.contract import KERAS_SUFFIXES, Role, require_role, role_from_shapes
from ganport.errors import ModelError
from ganport.files import file_problem, size_text

# The HDF5 root attribute (JSON, output layer -> image shape) naming outputs that ganport wrote flat for DL4J; the
# loader puts their Reshape back, so ganport reads its own files as the models they came from.
FLATTENED_OUTPUTS = "ganport_flattened_outputs"
# A Keras config is kilobytes; an archive entry that would inflate beyond this is damaged or hostile (a zip bomb).
MAX_CONFIG_BYTES = 64 * 2**20


def _require_small_configs(path: Path) -> None:
    """Refuse a .keras archive whose JSON entries would inflate past MAX_CONFIG_BYTES, before Keras reads them whole.
    The sizes are the archive's own; zipfile never inflates an entry beyond the size it declares."""
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            if entry.filename.endswith(".json") and entry.file_size > MAX_CONFIG_BYTES:
                raise ModelError(
                    f"{path}: its {entry.filename} would inflate to {size_text(entry.file_size)} (a Keras config is "
                    "kilobytes), so the archive is damaged or hostile; it was not read."
                )


def load_model_file(path: Path) -> Any:
    """Load with Keras 3; a Keras 2 HDF5 file that Keras 3 cannot rebuild (a nested Sequential) loads with tf_keras."""
    problem = file_problem(path)
    if problem:
        raise ModelError(f"{path} {problem}; pass a run folder or a .keras/.h5 model file.")
    if path.suffix not in KERAS_SUFFIXES:
        raise ModelError(
            f"{path} is not a Keras model file ({', '.join(KERAS_SUFFIXES)}); pass a run folder or a saved Keras model."
        )
    container = "a zip archive" if path.suffix == ".keras" else "an HDF5 file"
    readable = zipfile.is_zipfile(path) if path.suffix == ".keras" else h5py.is_hdf5(path)
    if not readable:
        raise ModelError(f"{path} is not {container}, so not a saved Keras model; is it damaged or misnamed?")
    if path.suffix == ".keras":
        _require_small_configs(path)
    try:
        with warnings.catch_warnings():
            # Keras 3 warns about each Keras 2 argument it reads from an old file (alpha, input_length): the file is
            # what it is, and the user can do nothing about it.
            warnings.filterwarnings("ignore", category=UserWarning, module="keras")
            model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for corrupt or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        model = None
        if path.suffix != ".keras" and _saved_by_keras2(path):
            with contextlib.suppress(ModelError):
                model = load_keras2(path)
        if model is None:
            raise ModelError(f"Cannot load {path} as a Keras model ({reason}).") from error
    return model if path.suffix == ".keras" else _with_flattened_outputs_reshaped(path, model)


def _with_flattened_outputs_reshaped(path: Path, model: Any) -> Any:
    """`model` with a Reshape after each output that ganport's HDF5 writer flattened for DL4J (FLATTENED_OUTPUTS)."""
    with h5py.File(path, "r") as archive:
        recorded = archive.attrs.get(FLATTENED_OUTPUTS)
    if recorded is None:
        return model
    shapes = json.loads(recorded)
    module = keras if isinstance(model, keras.Model) else tf_keras()
    outputs = [
        module.layers.Reshape(shapes[name], name=f"{name}_image")(output) if name in shapes else output
        for name, output in zip(model.output_names, model.outputs, strict=True)
    ]
    return module.Model(model.inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)


def tf_keras() -> ModuleType:
    """Keras 2 (tf_keras): the last Keras whose HDF5 files DL4J imports."""
    import tf_keras as module

    return module


def load_keras2(path: Path) -> Any:
    try:
        return tf_keras().models.load_model(path, compile=False)
    except Exception as error:  # tf_keras raises many types for unreadable files
        raise ModelError(f"Cannot load {path} with tf_keras ({error}).") from error


def _saved_by_keras2(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as archive:
            version = archive.attrs.get("keras_version", b"")
    except OSError:
        return False
    return (version.decode() if isinstance(version, bytes) else str(version)).startswith("2.")


def shapes(model: Any) -> tuple[list[list], list[list]]:
    """Every input's and every output's shape, batch axis included (as None)."""
    return [list(tensor.shape) for tensor in model.inputs], [list(tensor.shape) for tensor in model.outputs]


def role_of(model: Any) -> Role:
    input_shape, output_shape = (found[0] for found in shapes(model))
    role = role_from_shapes(input_shape, output_shape)
    if role is None:
        raise ModelError(
            f"Model {model.name!r} maps {input_shape} to {output_shape}; "
            "expected a generator [batch, latent] -> image or a discriminator image -> [batch, 1]."
        )
    return role


def load_as(path: Path, role: Role) -> Any:
    """Load `path` and refuse it unless it plays `role` (a discriminator saved as generator.keras, say)."""
    model = load_model_file(path)
    require_role(str(path), role, *(found[0] for found in shapes(model)))
    return model


def call(model: Any, tensors: list[Any]) -> list[Any]:
    """A Keras 2 or 3 model in inference mode on tensors in its input order, each cast to its input's dtype (test
    vectors store class labels as floats, as DL4J reads them; ONNX feeds them as int64); every output, as a list."""
    cast = [tf.cast(tensor, keras_input.dtype) for tensor, keras_input in zip(tensors, model.inputs, strict=True)]
    outputs = model(cast if len(cast) > 1 else cast[0], training=False)
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def predict(model: Any, inputs: np.ndarray) -> np.ndarray:
    """Inference-mode output of a single-input, single-output Keras 2 or Keras 3 model."""
    return predict_all(model, [inputs])[0]


def predict_all(model: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Inference-mode outputs of a Keras 2 or 3 model with inputs in its own order."""
    return [np.asarray(output) for output in call(model, [tf.constant(array) for array in inputs])]


def framework_versions() -> dict[str, str]:
    """The versions whose kernels compute a Keras reference, for the provenance stored with test vectors."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__}
