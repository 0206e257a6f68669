"""Layers whose computation is not a Keras layer's: stored TensorFlow ops, Python code (Lambda) and the user's own
classes. ONNX takes them (their TensorFlow ops are converted); DL4J and a Keras 3 file do not."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ganport.errors import UnsupportedLayerError
from ganport.export.layers.reading import is_keras2, keras_layer
from ganport.export.layers.registry import CUSTOM, Converter, TargetRule, refuse, register
from ganport.tf_ops import RAW_OPS, TF_FUNCTIONS, op_layer_class, read_tensorflow_op_layer, read_tf_op_lambda

_TF_OPS_NOTE = "tf." + ", tf.".join(TF_FUNCTIONS)
_RAW_OPS_NOTE = ", ".join(RAW_OPS)
_TENSORFLOW_OP = "a TensorFlow op, which DL4J's Keras import does not read"


def _read_tf_op_lambda(layer: Any) -> dict[str, Any]:
    options = read_tf_op_lambda(layer)
    if options["function"] not in TF_FUNCTIONS:
        raise refuse(layer, f"calls tf.{options['function']}, which ganport does not convert ({_TF_OPS_NOTE}).")
    return options


def _read_tensorflow_op_layer(layer: Any) -> dict[str, Any]:
    op = layer.node_def.op
    options = read_tensorflow_op_layer(layer) if op in RAW_OPS else None
    if options is None:
        raise refuse(layer, f"wraps the TensorFlow op {op} with attributes ganport does not convert ({_RAW_OPS_NOTE}).")
    return options


def _tensorflow_op(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    return op_layer_class(module)(options["function"], options["arguments"], name=name)


def _op_problem(options: dict[str, Any], prefix: str) -> str:
    op = prefix + options["function"].removeprefix("raw_ops.")
    return f"a TensorFlow op ({op}), which DL4J's Keras import does not read"


for _kind, _read, _prefix, _note in (
    ("TFOpLambda", _read_tf_op_lambda, "tf.", _TF_OPS_NOTE),
    ("TensorFlowOpLayer", _read_tensorflow_op_layer, "", _RAW_OPS_NOTE),
):
    register(
        _kind,
        Converter(
            _read,
            _tensorflow_op,
            onnx=TargetRule(note=_note),
            dl4j=TargetRule(
                refused=_TENSORFLOW_OP, problem=lambda options, prefix=_prefix: _op_problem(options, prefix)
            ),
            keras=TargetRule(refused="a TensorFlow op that Keras 3 has no layer for"),
        ),
    )


def _read_lambda(layer: Any) -> dict[str, Any]:
    if not callable(getattr(layer, "function", None)):  # Keras revived it from traced graphs, without its code
        raise refuse(layer, "was loaded without its Python function, so it cannot be rebuilt; pass --trust-code.")
    # the output shape is given, as Keras 3 cannot always infer it from a function written for tf_keras
    return {
        "function": layer.function,
        "arguments": dict(layer.arguments or {}),
        "output_shape": tuple(layer.output.shape[1:]),
    }


register(
    "Lambda",
    Converter(
        _read_lambda,
        keras_layer("Lambda"),
        onnx=TargetRule(note="with --trust-code: its Python code runs; the TensorFlow ops it calls are converted"),
        dl4j=TargetRule(refused="Python code, which DL4J's Keras import cannot run"),
        keras=TargetRule(
            refused="Python code, which a .keras file can only hold as bytecode that Keras refuses to load by default"
        ),
    ),
)


def _read_custom(layer: Any) -> dict[str, Any]:
    return {"class": type(layer), "config": layer.get_config()}


def _custom(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    kind = options["class"]
    if not issubclass(kind, module.layers.Layer):
        made_for = (
            "tf_keras (Keras 2)" if kind.__module__.startswith("tf_keras") or not is_keras2(module) else "Keras 3"
        )
        raise UnsupportedLayerError(
            f"The custom layer class {kind.__name__} is not a {module.__name__} layer, and this export rebuilds the "
            f"model in {module.__name__}; pass --custom-objects with a version of it for {module.__name__} "
            f"(it was written for {made_for})."
        )
    return kind.from_config({**options["config"], "name": name})


register(
    CUSTOM,
    Converter(
        _read_custom,
        _custom,
        onnx=TargetRule(note="with --custom-objects: the class's TensorFlow ops are converted"),
        dl4j=TargetRule(
            refused="a custom layer, which DL4J's Keras import does not have",
            problem=lambda options: (
                f"a custom layer ({options['class'].__name__}), which DL4J's Keras import does not have"
            ),
        ),
    ),
)
