"""Keras model files in, Keras models out: Keras 3 first, tf_keras for the lecture's Keras 2 files; roles checked.

Shared by export, eval and verify, so a file is loaded, refused and named the same way everywhere.
"""

from __future__ import annotations

import contextlib
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


def load_model_file(path: Path) -> Any:
    """Load with Keras 3; a Keras 2 HDF5 file that Keras 3 cannot rebuild (a nested Sequential) loads with tf_keras."""
    if not path.is_file():
        raise ModelError(f"{path} does not exist; pass a run folder or a .keras/.h5 model file.")
    if path.suffix not in KERAS_SUFFIXES:
        raise ModelError(
            f"{path} is not a Keras model file ({', '.join(KERAS_SUFFIXES)}); pass a run folder or a saved Keras model."
        )
    container = "a zip archive" if path.suffix == ".keras" else "an HDF5 file"
    readable = zipfile.is_zipfile(path) if path.suffix == ".keras" else h5py.is_hdf5(path)
    if not readable:
        raise ModelError(f"{path} is not {container}, so not a saved Keras model; is it damaged or misnamed?")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for corrupt or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if path.suffix != ".keras" and _saved_by_keras2(path):
            with contextlib.suppress(ModelError):
                return load_keras2(path)
        raise ModelError(f"Cannot load {path} as a Keras model ({reason}).") from error


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
