"""DL4J-importable HDF5: a flat Keras 2 Sequential written with tf_keras, plus a test-vector file.

DL4J 1.0.0-M2.1 refuses Keras 3 files and nested models, and fails on TF2 optimizer configs, so the model is
rebuilt layer by layer through the registry and saved without its optimizer.

HDF5 files are built in memory and written with plain file I/O: the HDF5 library defers writes to when objects
are closed, where a full disk becomes "Exception ignored" warnings, a file with zeroed datasets and a crash at exit.
Written bytes are then read back and checked before the file is renamed into place.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ganport.errors import OutputError
from ganport.export.job import ExportedFile, Job
from ganport.files import atomic_path
from ganport.loading import load_keras2, predict, tf_keras
from ganport.parity import compare, require_all

# DL4J's end-to-end test convention (KerasModelEndToEndTest): root attributes name the inputs and outputs; groups
# hold the input arrays, the predictions and, per layer, the activations.
INPUTS, OUTPUTS, PREDICTIONS, ACTIVATIONS = "inputs", "outputs", "predictions", "activations"
TEST_VECTORS_SUFFIX = "_inputs_and_outputs.h5"


def _hdf5_bytes(fill: Callable[[h5py.File], None]) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as archive:
        fill(archive)
    return buffer.getvalue()


def save_model(model_keras2: Any, path: Path) -> Path:
    """Write `model_keras2` as Keras 2 HDF5 (no optimizer) to `path` through memory."""

    def fill(archive: h5py.File) -> None:
        tensorflow_logger = logging.getLogger("tensorflow")
        level = tensorflow_logger.level
        with warnings.catch_warnings():
            # HDF5 is "legacy" to Keras, but it is the format DL4J reads; and an uncompiled model has no metrics to
            # build. Both warnings are expected here.
            warnings.filterwarnings("ignore", message=".*HDF5 file.*", category=UserWarning)
            tensorflow_logger.setLevel(logging.ERROR)
            try:
                model_keras2.save(archive, save_format="h5", include_optimizer=False)
            finally:
                tensorflow_logger.setLevel(level)

    path.write_bytes(_hdf5_bytes(fill))
    return path


def test_vector_arrays(
    model_keras2: Any, inputs: np.ndarray, predictions: np.ndarray, input_name: str, output_name: str
) -> dict[str, np.ndarray]:
    """Dataset path -> array: the inputs, the Keras predictions and every layer's activations."""
    probe = tf_keras().Model(model_keras2.inputs, [layer.output for layer in model_keras2.layers])
    activations = probe(inputs, training=False)
    arrays = {f"{INPUTS}/{input_name}": inputs, f"{PREDICTIONS}/{output_name}": predictions}
    for layer, activation in zip(model_keras2.layers, activations, strict=True):
        arrays[f"{ACTIVATIONS}/{layer.name}"] = np.asarray(activation)
    return {name: np.asarray(array, np.float32) for name, array in arrays.items()}


def save_test_vectors(path: Path, arrays: dict[str, np.ndarray], input_name: str, output_name: str) -> Path:
    """Write the arrays in DL4J's convention, then read them back: a file that differs is never kept."""

    def fill(archive: h5py.File) -> None:
        # Fixed-length byte strings, as Keras 2 writes model_config: DL4J's Hdf5Archive reads those.
        archive.attrs[INPUTS] = np.bytes_(json.dumps({INPUTS: [input_name]}))
        archive.attrs[OUTPUTS] = np.bytes_(json.dumps({OUTPUTS: [output_name]}))
        for name, array in arrays.items():
            archive.create_dataset(name, data=array)

    path.write_bytes(_hdf5_bytes(fill))
    with h5py.File(path, "r") as archive:
        damaged = [name for name, array in arrays.items() if not np.array_equal(archive[name][()], array)]
    if damaged:
        raise OutputError(f"cannot write {path}: {', '.join(damaged)} did not read back as written.")
    return path


def write(job: Job) -> ExportedFile:
    """The "h5" format: the model file, reloaded and compared, and its test vectors, read back and checked."""
    item, target, inputs, reference = job.item, job.target, job.inputs, job.reference
    rebuilt = item.build(tf_keras())
    vectors = target.with_name(target.stem + TEST_VECTORS_SUFFIX)
    with atomic_path(target) as model_file, atomic_path(vectors) as vectors_file:
        save_model(rebuilt, model_file)
        reloaded = load_keras2(model_file)
        comparison = compare(item.stem, "tf_keras h5", reference, predict(reloaded, inputs), job.atol)
        require_all([comparison])
        arrays = test_vector_arrays(reloaded, inputs, reference, item.role.input_name, item.role.output_name)
        save_test_vectors(vectors_file, arrays, item.role.input_name, item.role.output_name)
    return ExportedFile(target, item.role.name, "h5", comparison, vectors)
