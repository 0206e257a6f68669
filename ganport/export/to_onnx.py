"""ONNX export through tf2onnx's `from_function` (its `from_keras` fails on Keras 3 Sequential models)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from ganport.files import atomic_path

OPSET = 17
BATCH_AXIS = "batch"


def convert(model: keras.Model, input_name: str, output_name: str, metadata: dict[str, str]) -> onnx.ModelProto:
    """Convert a single-input Keras model to ONNX with named input/output and a dynamic `batch` axis."""
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name=input_name)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {output_name: model(inputs, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=OPSET)
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


def run(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Run an exported file on onnxruntime's CPU provider, for the export's own parity check."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]
