"""ONNX export through tf2onnx's `from_function` (its `from_keras` fails on Keras 3 Sequential models).

`write(job)` is the "onnx" format's writer; `convert`, `save` and `run` also serve the classifier and verify.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from ganport.export.fold import fold_batch_norm
from ganport.export.job import ExportedFile, Job
from ganport.export.layers import build_sequential
from ganport.export.precision import PRECISIONS
from ganport.export.quality import quality_gate
from ganport.export.sources import export_metadata
from ganport.files import atomic_path
from ganport.parity import compare, require_all

OPSET = 17
BATCH_AXIS = "batch"


def convert(model: Any, input_name: str, output_name: str, metadata: dict[str, str]) -> onnx.ModelProto:
    """Convert a single-input Keras model to ONNX with named input/output and a dynamic `batch` axis."""
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name=input_name)

    def serve(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {output_name: model(inputs, training=False)}

    return convert_function(serve, spec, metadata)


def convert_function(
    function: Callable[[tf.Tensor], dict[str, tf.Tensor]], spec: tf.TensorSpec, metadata: dict[str, str]
) -> onnx.ModelProto:
    """Convert `function` (one input, a dict of named outputs) with tf2onnx's from_function."""
    traced = tf.function(function, input_signature=[spec], autograph=False)
    proto, _ = tf2onnx.convert.from_function(traced, input_signature=[spec], opset=OPSET)
    _name_batch_axis(proto)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(proto, full_check=True)
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


def shapes(path: Path) -> tuple[list, list]:
    """The first input's and first output's shapes of an ONNX file, batch axis included (as its name)."""
    graph = onnx.load(path, load_external_data=False).graph

    def dims(value: onnx.ValueInfoProto) -> list:
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    return dims(graph.input[0]), dims(graph.output[0])


def run(path: Path, inputs: np.ndarray, output: str | None = None) -> np.ndarray:
    """Run an exported file on onnxruntime's CPU provider (its first output, or `output`), for parity checks."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = None if output is None else [output]
    return session.run(names, {session.get_inputs()[0].name: inputs})[0]


def write(job: Job) -> ExportedFile:
    """Convert (BatchNorm folded unless asked not to), apply the precision, save, run on onnxruntime, compare."""
    import keras

    item, options = job.item, job.options
    specs = fold_batch_norm(item.specs) if options.fold_batch_norm else item.specs
    model = build_sequential(specs, item.input_shape, item.keras_model.name, keras)
    info = {**export_metadata(item), "precision": options.precision, "batchnorm_folded": str(options.fold_batch_norm)}
    fp32 = convert(model, item.role.input_name, item.role.output_name, info)
    precision = PRECISIONS[options.precision]
    proto = precision.convert(fp32)
    quality = None
    with atomic_path(job.target) as temporary:
        onnx.save(proto, temporary)
        backend = f"onnxruntime {options.precision}"
        comparison = compare(item.stem, backend, job.reference, run(temporary, job.inputs), job.atol)
        require_all([comparison])
        if precision.reduced:
            quality = quality_gate(fp32, temporary, job)
    return ExportedFile(job.target, item.role.name, "onnx", comparison, quality=quality)
