"""DL4J-importable HDF5: a flat Keras 2 Sequential written with tf_keras, plus a test-vector file.

DL4J 1.0.0-M2.1 refuses Keras 3 files and nested models, and fails on TF2 optimizer configs, so the model is
rebuilt layer by layer through the registry and saved without its optimizer.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np

from ganport.errors import ModelError
from ganport.files import atomic_path

# DL4J's end-to-end test convention (KerasModelEndToEndTest): root attributes name the inputs and outputs; groups
# hold the input arrays, the predictions and, per layer, the activations.
INPUTS, OUTPUTS, PREDICTIONS, ACTIVATIONS = "inputs", "outputs", "predictions", "activations"
TEST_VECTORS_SUFFIX = "_inputs_and_outputs.h5"


def tf_keras() -> ModuleType:
    import tf_keras as module

    return module


def save_model(model_keras2: Any, path: Path) -> Path:
    tensorflow_logger = logging.getLogger("tensorflow")
    level = tensorflow_logger.level
    with atomic_path(path) as temporary, warnings.catch_warnings():
        # HDF5 is "legacy" to Keras, but it is the format DL4J reads; and an uncompiled model has no metrics to
        # build. Both warnings are expected here.
        warnings.filterwarnings("ignore", message=".*HDF5 file.*", category=UserWarning)
        tensorflow_logger.setLevel(logging.ERROR)
        try:
            model_keras2.save(temporary, save_format="h5", include_optimizer=False)
        finally:
            tensorflow_logger.setLevel(level)
    return path


def load_model(path: Path) -> Any:
    try:
        return tf_keras().models.load_model(path, compile=False)
    except Exception as error:  # tf_keras raises many types for unreadable files
        raise ModelError(f"Cannot reload {path} with tf_keras ({error}).") from None


def save_test_vectors(
    model_keras2: Any, inputs: np.ndarray, predictions: np.ndarray, path: Path, input_name: str, output_name: str
) -> Path:
    """Write inputs, the Keras reference predictions and every layer's activations in DL4J's convention."""
    probe = tf_keras().Model(model_keras2.inputs, [layer.output for layer in model_keras2.layers])
    activations = probe(inputs, training=False)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as archive:
        # Fixed-length byte strings, as Keras 2 writes model_config: DL4J's Hdf5Archive reads those.
        archive.attrs[INPUTS] = np.bytes_(json.dumps({INPUTS: [input_name]}))
        archive.attrs[OUTPUTS] = np.bytes_(json.dumps({OUTPUTS: [output_name]}))
        archive.create_dataset(f"{INPUTS}/{input_name}", data=inputs.astype(np.float32))
        archive.create_dataset(f"{PREDICTIONS}/{output_name}", data=predictions.astype(np.float32))
        for layer, activation in zip(model_keras2.layers, activations, strict=True):
            archive.create_dataset(f"{ACTIVATIONS}/{layer.name}", data=np.asarray(activation, np.float32))
    return path
