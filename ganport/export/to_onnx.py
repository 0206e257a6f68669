"""ONNX export through tf2onnx's `from_function` (its `from_keras` fails on Keras 3 Sequential models)."""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from ganport.files import atomic_path

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


def run(path: Path, inputs: np.ndarray, output: str | None = None) -> np.ndarray:
    """Run an exported file on onnxruntime's CPU provider (its first output, or `output`), for parity checks."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = None if output is None else [output]
    return session.run(names, {session.get_inputs()[0].name: inputs})[0]


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and arithmetic in float16, inputs and outputs kept float32 (for GPUs; CPUs gain nothing)."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():  # it warns for every weight below float16's range, which rounds to zero
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(proto, keep_io_types=True)


def to_int8(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's dynamic quantization: int8 weights, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        onnx.save(proto, source)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process applies to static quantization, not this
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        return onnx.load(target)


PRECISIONS: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "fp32": lambda proto: proto,
    "fp16": to_fp16,
    "int8": to_int8,
}
