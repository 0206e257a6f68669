"""ONNX export through tf2onnx's `from_function` (its `from_keras` fails on Keras 3 Sequential models).

`write(job)` is the "onnx" format's writer; `convert`, `save` and `run` also serve the classifier and verify.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import onnx
import tensorflow as tf
import tf2onnx

from ganport import onnx_io
from ganport.errors import ModelError, reason_of
from ganport.export.fold import fold_batch_norm
from ganport.export.graph import build
from ganport.export.job import ExportedFile, Job
from ganport.export.precision import PRECISIONS
from ganport.export.quality import reduced_precision_gates
from ganport.export.sources import SourceModel, export_metadata
from ganport.export.vectors import (
    PARITY,
    PROVENANCE,
    TEST_VECTORS_SUFFIX,
    holds,
    parity_record,
    save_test_vectors,
    vector_arrays,
)
from ganport.files import atomic_path
from ganport.host import provenance
from ganport.keras_files.load import MAX_REASON
from ganport.keras_files.run import call, framework_versions

OPSET = 17
BATCH_AXIS = "batch"


class _OneLineOptimizerFailure(logging.Filter):
    """tf2onnx logs an optimiser that fails on a graph, and skips it, with a whole traceback (its transpose optimiser
    fails on a scalar added after a layout change); one line says the same, and the file is still checked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = (
                f"{record.getMessage()} ({type(error).__name__}: {error}): tf2onnx skipped that optimisation; the "
                "file is checked against Keras all the same"
            )
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


logging.getLogger("tf2onnx.optimizer").addFilter(_OneLineOptimizerFailure())


def convert_source(model: Any, item: SourceModel, metadata: dict[str, str]) -> onnx.ModelProto:
    """Convert a rebuilt model of `item`: its named inputs (class labels as int64, ONNX's index type), its named
    outputs, all with a dynamic `batch` axis."""
    specs = [
        tf.TensorSpec([None, *spec.keras_shape()], tf.int64 if spec.is_integer else tf.float32, name=spec.name)
        for spec in item.graph.inputs
    ]

    def serve(*inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(item.output_names, call(model, list(inputs)), strict=True))

    proto = convert_function(serve, specs, metadata)
    _order_outputs(proto, item.output_names)
    return proto


def _order_outputs(proto: onnx.ModelProto, names: Sequence[str]) -> None:
    """List the graph's outputs in the Keras model's order: tf.function returns a dict's values in sorted key order
    (`class_probabilities` before `validity`), and a caller that asks for every output gets them in file order."""
    by_name = {value.name: onnx.ValueInfoProto() for value in proto.graph.output}
    for value in proto.graph.output:
        by_name[value.name].CopyFrom(value)
    del proto.graph.output[:]
    proto.graph.output.extend(by_name[name] for name in names)


def convert_function(
    function: Callable[..., dict[str, tf.Tensor]], specs: list[tf.TensorSpec], metadata: dict[str, str]
) -> onnx.ModelProto:
    """Convert `function` (named inputs, a dict of named outputs) with tf2onnx's from_function."""
    traced = tf.function(function, input_signature=specs, autograph=False)
    proto, _ = tf2onnx.convert.from_function(traced, input_signature=specs, opset=OPSET)
    _name_batch_axis(proto)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=str(value))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ModelError(
            f"tf2onnx wrote an ONNX graph that onnx's checker rejects ({reason_of(error, MAX_REASON)}); nothing was "
            "written."
        ) from None
    return proto


def _name_batch_axis(proto: onnx.ModelProto) -> None:
    # tf2onnx names each unknown dimension unk__N; every graph input and output shares one batch axis.
    for value in [*proto.graph.input, *proto.graph.output]:
        proto_dim = value.type.tensor_type.shape.dim[0]
        proto_dim.ClearField("dim_value")
        proto_dim.dim_param = BATCH_AXIS


def save(proto: onnx.ModelProto, path: Path) -> Path:
    with atomic_path(path) as temporary:
        onnx.save(proto, temporary)
    return path


def write(job: Job) -> ExportedFile:
    """The "onnx" format: the model file and, in fp32, its test vectors beside it (the Keras predictions on the fixed
    inputs), so that a folder of ONNX exports can be verified on its own. Vectors that an h5 export wrote for the same
    inputs and predictions (with every layer's activations, for DL4J) are kept as they are."""
    exported = write_model(job)
    if PRECISIONS[job.options.precision].reduced:  # judged by sample quality, not by parity with fp32 Keras
        return exported
    item = job.item
    path = job.target.with_name(job.target.stem + TEST_VECTORS_SUFFIX)
    arrays = vector_arrays(job.inputs, item.output_names, job.reference)
    if not holds(path, arrays):
        records = {PARITY: parity_record(job), PROVENANCE: provenance(framework_versions())}
        with atomic_path(path) as temporary:
            save_test_vectors(temporary, arrays, item.input_names, list(item.output_names), records)
    return replace(exported, test_vectors=path)


def write_model(job: Job) -> ExportedFile:
    """Convert (BatchNorm folded unless asked not to), apply the precision, save, run on onnxruntime, compare."""
    item, options = job.item, job.options
    graph = fold_batch_norm(item.graph) if options.fold_batch_norm else item.graph
    model = build(graph, keras, target="onnx")
    info = {**export_metadata(item), "precision": options.precision, "batchnorm_folded": str(options.fold_batch_norm)}
    fp32 = convert_source(model, item, info)
    precision = PRECISIONS[options.precision]
    proto = precision.convert(fp32, job.calibration)
    quality = None
    with atomic_path(job.target) as temporary:
        onnx.save(proto, temporary)
        backend = f"onnxruntime {options.precision}"
        comparison = job.compare_everywhere(
            backend, lambda inputs: onnx_io.run(temporary, inputs, list(item.output_names))
        )
        if precision.reduced:
            with tempfile.TemporaryDirectory() as scratch:
                baseline = save(fp32, Path(scratch) / "fp32.onnx")
                quality = reduced_precision_gates(baseline, temporary, job)
    return ExportedFile(job.target, item.role.name, "onnx", comparison, quality=quality)
