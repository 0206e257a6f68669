"""DL4J-importable HDF5: a flat Keras 2 Sequential or functional model written with tf_keras, plus test vectors.

DL4J 1.0.0-M2.1 refuses Keras 3 files and nested models, and fails on TF2 optimizer configs, so the model is
rebuilt layer by layer through the registry (a chain as a Sequential, which DL4J imports as a MultiLayerNetwork; a
graph as a functional Model, a ComputationGraph) and saved without its optimizer.

HDF5 files are built in memory and written with plain file I/O: the HDF5 library defers writes to when objects
are closed, where a full disk becomes "Exception ignored" warnings, a file with zeroed datasets and a crash at exit.
Written bytes are then read back and checked before the file is renamed into place.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ganport.errors import OutputError, UnsupportedLayerError
from ganport.export.fold import fold_batch_norm
from ganport.export.graph import Graph, build
from ganport.export.job import ExportedFile, Job
from ganport.export.layers import converter, supported_layers
from ganport.export.layers.dl4j import dl4j_form, flat_outputs
from ganport.export.layers.verdicts import refusals
from ganport.export.sources import SourceModel
from ganport.export.vectors import (
    ACTIVATIONS,
    PARITY,
    PROVENANCE,
    TEST_VECTORS_SUFFIX,
    WEIGHTS,
    activation_rows,
    hdf5_bytes,
    parity_record,
    save_test_vectors,
    vector_arrays,
    weight_digests,
)
from ganport.files import atomic_path
from ganport.flat_outputs import record_flat_outputs
from ganport.host import provenance
from ganport.keras_files.config import model_layers
from ganport.keras_files.load import load_keras2, tf_keras
from ganport.keras_files.run import framework_versions, predict_all


def _inputs_first(config: dict) -> dict:
    """A functional config with its InputLayers first, in `input_layers` order: DL4J pairs the input names with the
    input types in the order the layers list holds them (tf_keras lists them by depth, so a label input can come
    first), and would give an image input the label's shape."""
    if config["class_name"] == "Sequential":
        return config
    layers = config["config"]["layers"]
    by_name = {layer["config"]["name"]: layer for layer in layers}
    inputs = [by_name[name] for name, *_ in config["config"]["input_layers"]]
    config["config"]["layers"] = inputs + [layer for layer in layers if layer not in inputs]
    return config


def save_model(model_keras2: Any, path: Path, flattened: dict[str, list[int]] | None = None) -> Path:
    """Write `model_keras2` as Keras 2 HDF5 (no optimizer) to `path` through memory; `flattened` names the outputs
    written flat for DL4J with their image shapes, so that ganport's loader restores them (ganport.flat_outputs)."""

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
        written = archive.attrs["model_config"]
        reordered = json.dumps(_inputs_first(json.loads(written)))
        archive.attrs["model_config"] = reordered if isinstance(written, str) else np.bytes_(reordered)
        record_flat_outputs(archive, flattened or {})

    path.write_bytes(hdf5_bytes(fill))
    return path


def dl4j_graph(item: SourceModel, input_sizes: tuple[int, ...] | None = None) -> Graph:
    """The graph DL4J will import with the same numbers: every layer DL4J would misread refused in one error, and
    the rewrites that keep the numbers applied (layers.dl4j). DL4J needs every input size: a model of dynamic size is
    written at `input_sizes` (--input-shape)."""
    graph = item.graph.sized(input_sizes) if input_sizes is not None and item.graph.dynamic else item.graph
    problems = refusals(graph, "dl4j")
    if problems:
        raise UnsupportedLayerError(
            f"{item.origin} cannot be written for DL4J 1.0.0-M2.1 without changing its numbers: {'; '.join(problems)}. "
            "Export it to ONNX (DL4J users can run that with ONNX Runtime for Java), or change these layers."
        )
    return dl4j_form(graph)


# What DL4J reads of a written InputLayer without a default of its own; each layer class's own fields are its rule's.
_INPUT_LAYER = "InputLayer"


def check_dl4j_config(path: Path) -> None:
    """Read the written model's config as DL4J will, and refuse it if a field DL4J needs is missing or wrong."""
    with h5py.File(path, "r") as archive:
        version = archive.attrs.get("keras_version")
        config = json.loads(archive.attrs["model_config"])
    problems = [] if str(version).startswith("2") else [f"keras_version {version!r} (DL4J needs 2.x)"]
    layers = model_layers(config)
    if layers is None:  # fail closed: a config this check cannot read is not one DL4J can
        problems.append(f"a {config.get('class_name')!r} config without a layer list")
    for layer in layers or []:
        kind, fields = layer["class_name"], layer["config"]
        if kind in ("Sequential", "Functional", "Model"):
            problems.append(f"{fields.get('name')}: a nested model")
        elif fields.get("data_format", "channels_last") != "channels_last":
            problems.append(f"{fields['name']}: data_format {fields['data_format']}")
        elif not _has_required_fields(kind, fields):
            problems.append(f"{fields['name']}: {kind} config {json.dumps(fields)[:200]}")
    if problems:
        raise OutputError(f"cannot write {path} for DL4J: {'; '.join(problems)} (a ganport bug: please report it).")


def _has_required_fields(kind: str, fields: dict) -> bool:
    if kind == _INPUT_LAYER:
        return "batch_input_shape" in fields
    required = converter(kind).dl4j.required if kind in supported_layers() else None
    return required is None or required(fields)


def test_vector_arrays(
    model_keras2: Any, item: SourceModel, inputs: dict[str, np.ndarray], predictions: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """Dataset path -> array: the inputs, the Keras predictions and every layer's activations for the first inputs
    (activation_rows: measured on one sample, then computed for as many as the stored bytes allow)."""
    layers = [layer for layer in model_keras2.layers if type(layer).__name__ != "InputLayer"]
    probe = tf_keras().Model(model_keras2.inputs, [layer.output for layer in layers])
    fixed_inputs = list(inputs.values())
    activations = predict_all(probe, [array[:1] for array in fixed_inputs])
    sample_bytes = sum(activation.size * np.float32().nbytes for activation in activations)
    rows = activation_rows(sample_bytes, len(fixed_inputs[0]))
    if rows > 1:
        activations = predict_all(probe, [array[:rows] for array in fixed_inputs])
    arrays = vector_arrays(inputs, item.output_names, predictions)
    for layer, activation in zip(layers, activations, strict=True):
        arrays[f"{ACTIVATIONS}/{layer.name}"] = np.asarray(activation, np.float32)
    return arrays


def write(job: Job) -> ExportedFile:
    """The "h5" format: the model file (BatchNorm folded unless asked not to), checked for DL4J's fields, reloaded
    and compared, and its test vectors, read back and checked."""
    target = job.target
    # BatchNorm folded (unless asked not to) as for ONNX: DL4J computes each BatchNormalization layer in six
    # operations of its own, and the lecture's MLP generator runs 2x faster at batch 1 without its three
    # (docs/java-check.md); --no-fold keeps them for training further in DL4J.
    item = replace(job.item, graph=fold_batch_norm(job.item.graph)) if job.options.fold_batch_norm else job.item
    rebuilt = build(dl4j_graph(item, job.options.input_sizes), tf_keras())
    vectors = target.with_name(target.stem + TEST_VECTORS_SUFFIX)
    with atomic_path(target) as model_file, atomic_path(vectors) as vectors_file:
        save_model(rebuilt, model_file, flat_outputs(item.graph))
        check_dl4j_config(model_file)
        reloaded = load_keras2(model_file)
        comparison = job.compare("tf_keras h5", predict_all(reloaded, job.input_list))
        arrays = test_vector_arrays(reloaded, item, job.inputs, job.reference)
        records = {
            PARITY: parity_record(job),
            PROVENANCE: provenance(framework_versions()),
            WEIGHTS: weight_digests(model_file),
        }
        save_test_vectors(vectors_file, arrays, item.input_names, list(item.output_names), records)
    return ExportedFile(target, item.role.name, "h5", comparison, vectors)
