"""Test vectors: fixed inputs, the Keras model's predictions on them, and ganport's records, in DL4J's end-to-end
test convention (KerasModelEndToEndTest). The "h5" format writes them with every layer's activations for the first
inputs (DL4J compares layer by layer), the "onnx" format without, so that any export folder can be verified.

HDF5 files are built in memory and written with plain file I/O: the HDF5 library defers writes to when objects
are closed, where a full disk becomes "Exception ignored" warnings, a file with zeroed datasets and a crash at exit.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ganport.errors import OutputError
from ganport.export.job import Job
from ganport.parity import ATOL

# DL4J's end-to-end test convention (KerasModelEndToEndTest): root attributes name the inputs and outputs; groups
# hold the input arrays, the predictions and, per layer, the activations.
INPUTS, OUTPUTS, PREDICTIONS, ACTIVATIONS = "inputs", "outputs", "predictions", "activations"
TEST_VECTORS_SUFFIX = "_inputs_and_outputs.h5"
# Every layer's activations are stored for the first of the fixed inputs only, as many as fit in this many bytes (at
# least one): one sample places a mismatch in its layer, and the outputs are compared on all of them. For all 16, a
# 256x256 image-to-image generator of 0.3 MB wrote 166 MB of test vectors, and Keras-GAN's DCGAN generator 15.7 MB.
ACTIVATION_BYTES = 4 * 2**20
# ganport's own root attributes, JSON: the parity rule's inputs (java-check reads its tolerance), where the
# predictions were computed, and a digest of every weight of the model file as written.
PARITY, PROVENANCE, WEIGHTS = "parity", "provenance", "weights_sha256"


def hdf5_bytes(fill: Callable[[h5py.File], None]) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as archive:
        fill(archive)
    return buffer.getvalue()


def vector_arrays(
    inputs: dict[str, np.ndarray], output_names: Sequence[str], predictions: Sequence[np.ndarray]
) -> dict[str, np.ndarray]:
    """Dataset path -> array: the inputs and the Keras predictions, as float32 (DL4J reads class labels so)."""
    arrays = {f"{INPUTS}/{name}": array for name, array in inputs.items()}
    arrays.update({f"{PREDICTIONS}/{name}": array for name, array in zip(output_names, predictions, strict=True)})
    return {name: np.asarray(array, np.float32) for name, array in arrays.items()}


def activation_rows(sample_bytes: int, batch: int) -> int:
    """How many of `batch` fixed inputs get their per-layer activations stored, each sample's taking `sample_bytes`."""
    return max(1, min(batch, ACTIVATION_BYTES // max(1, sample_bytes)))


def holds(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Whether the test-vector file at `path` holds these arrays exactly (perhaps with more: activations)."""
    try:
        with h5py.File(path, "r") as archive:
            return all(name in archive and np.array_equal(archive[name][()], array) for name, array in arrays.items())
    except OSError:  # missing or not HDF5
        return False


def weight_digests(model_file: Path) -> dict[str, str]:
    """SHA-256 of every weight array in a Keras HDF5 file, by its path under model_weights: a weight changed by as
    little as one ulp changes its digest, where it would move the outputs by far less than rounding does."""
    digests: dict[str, str] = {}
    with h5py.File(model_file, "r") as archive:
        archive["model_weights"].visititems(
            lambda name, item: (
                digests.__setitem__(name, hashlib.sha256(item[()].tobytes()).hexdigest())
                if isinstance(item, h5py.Dataset)
                else None
            )
        )
    return digests


def parity_record(job: Job) -> dict[str, Any]:
    """The parity rule's inputs for this model, and the bound per unit of output scale they give."""
    accumulation = job.item.graph.accumulation()
    errors = job.float64_errors
    return {
        "atol": ATOL,
        "summing_layers": accumulation.layers,
        "longest_sum": accumulation.longest,
        "tolerance": job.tolerance,
        # Keras float32's own error against the float64 truth per output, for the deep-model rule where no Keras
        # model is at hand to recompute it (an ONNX-only folder); verify caps what it may widen (ganport.parity)
        "keras_float32_error": list(errors.keras),
        "float64_scale": list(errors.scales),
    }


def save_test_vectors(
    path: Path,
    arrays: dict[str, np.ndarray],
    input_names: list[str],
    output_names: list[str],
    records: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write the arrays in DL4J's convention, and ganport's `records` as JSON attributes, then read them back: a file
    that differs is never kept."""

    def fill(archive: h5py.File) -> None:
        # Fixed-length byte strings, as Keras 2 writes model_config: DL4J's Hdf5Archive reads those.
        archive.attrs[INPUTS] = np.bytes_(json.dumps({INPUTS: input_names}))
        archive.attrs[OUTPUTS] = np.bytes_(json.dumps({OUTPUTS: output_names}))
        for name, record in (records or {}).items():
            archive.attrs[name] = np.bytes_(json.dumps(record))
        for name, array in arrays.items():
            # Per-layer activations of a convolutional model run to tens of MB; shuffle + deflate (HDF5's built-in
            # filters, which DL4J's HDF5 library reads) halve them.
            archive.create_dataset(name, data=array, compression="gzip", shuffle=True)

    path.write_bytes(hdf5_bytes(fill))
    with h5py.File(path, "r") as archive:
        damaged = [name for name, array in arrays.items() if not np.array_equal(archive[name][()], array)]
    if damaged:
        raise OutputError(f"cannot write {path}: {', '.join(damaged)} did not read back as written.")
    return path
