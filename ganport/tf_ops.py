"""TensorFlow ops stored in Keras files: which ganport runs, how they are read, and the layer that runs them again.

tf.keras writes a raw TensorFlow op called on a Keras tensor as a `TFOpLambda` (TF 2.4 and later: a `tf.*` symbol
and the call's other arguments) or a `TensorFlowOpLayer` (TF 2.0-2.3: a NodeDef and its constant inputs). Whatever a
file names runs when the model runs, so ganport reads only ops on its list (tf2onnx converts each), and refuses a
file naming another op, or holding a Lambda's Python code, before any of it is loaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Any

# tf.* symbols a TFOpLambda may call: shape moves, resizes, joins, arithmetic and activations.
TF_FUNCTIONS = (
    "nn.depth_to_space",
    "nn.space_to_depth",
    "image.resize",
    "compat.v1.image.resize",
    "compat.v1.image.resize_bilinear",
    "compat.v1.image.resize_nearest_neighbor",
    "compat.v1.image.resize_bicubic",
    "concat",
    "__operators__.add",
    "math.add",
    "math.subtract",
    "math.multiply",
    "math.truediv",
    "math.divide",
    "math.maximum",
    "math.minimum",
    "math.negative",
    "math.tanh",
    "math.sigmoid",
    "nn.relu",
    "nn.leaky_relu",
    "clip_by_value",
)
# The TensorFlow ops a TensorFlowOpLayer may wrap: the same family, by their op names.
RAW_OPS = (
    "DepthToSpace",
    "SpaceToDepth",
    "ResizeBilinear",
    "ResizeNearestNeighbor",
    "ResizeBicubic",
    "ConcatV2",
    "AddV2",
    "Add",
    "Sub",
    "Mul",
    "RealDiv",
    "Maximum",
    "Minimum",
    "Neg",
    "Tanh",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
)
ALLOWED = frozenset(TF_FUNCTIONS) | {f"raw_ops.{op}" for op in RAW_OPS}


@dataclass(frozen=True)
class TensorArgument:
    """Where the call put the layer's n-th input tensor, in an op's stored arguments."""

    index: int


def stored_op(layer_config: dict) -> tuple[str, str] | None:
    """(what the file calls it, ganport's symbol under tf) for a TFOpLambda or TensorFlowOpLayer config, else None."""
    kind, config = layer_config.get("class_name"), layer_config.get("config") or {}
    if kind == "TFOpLambda":
        function = str(config.get("function", ""))
        return f"tf.{function}", function
    if kind == "TensorFlowOpLayer":
        op = str((config.get("node_def") or {}).get("op", ""))
        return f"the TensorFlow op {op}", f"raw_ops.{op}"
    return None


def is_python_lambda(layer_config: dict) -> bool:
    """A Lambda layer whose function or output shape is stored as Python bytecode, which loading it would run (a
    named function is looked up instead, never read from the file)."""
    config = layer_config.get("config") or {}
    if layer_config.get("class_name") != "Lambda":
        return False
    function = config.get("function")
    stored_tuple = isinstance(function, list | tuple) or (isinstance(function, dict) and _is_tuple(function))
    bytecode_by_default = "lambda" if stored_tuple else "function"
    return _is_bytecode(function, config.get("function_type", bytecode_by_default)) or _is_bytecode(
        config.get("output_shape"), config.get("output_shape_type", "raw")
    )


def _is_bytecode(value: Any, stored_as: str) -> bool:
    # Keras 3 marks stored code {"class_name": "__lambda__", ...}; Keras 2 says "lambda" in a *_type field beside it
    # (its SavedModel metadata writes the code tuple as {"class_name": "__tuple__", "items": [...]}).
    if isinstance(value, dict) and not _is_tuple(value):
        return value.get("class_name") == "__lambda__"
    return value is not None and stored_as == "lambda"


def _is_tuple(value: dict) -> bool:
    return value.get("class_name") == "__tuple__"


def resolve(symbol: str) -> Any:
    """The TensorFlow function for an allowed symbol ("nn.depth_to_space", "raw_ops.DepthToSpace")."""
    import tensorflow as tf

    if symbol not in ALLOWED:
        raise ValueError(f"tf.{symbol} is not one of the TensorFlow ops ganport runs.")
    return functools.reduce(getattr, symbol.split("."), tf)


def _placeholders(structure: Any, tensors: Any) -> Any:
    """`structure` with each tensor in `tensors` (by identity) replaced by its TensorArgument."""
    import tensorflow as tf

    ids = {id(tensor): index for index, tensor in enumerate(tensors)}
    return tf.nest.map_structure(
        lambda item: TensorArgument(ids[id(item)]) if id(item) in ids else _plain(item), structure
    )


def _plain(value: Any) -> Any:
    """A stored argument as plain Python (numpy scalars and arrays from a file's constants become numbers and lists)."""
    return value.tolist() if hasattr(value, "tolist") else value


def substitute(structure: Any, tensors: list[Any]) -> Any:
    import tensorflow as tf

    return tf.nest.map_structure(
        lambda item: tensors[item.index] if isinstance(item, TensorArgument) else item, structure
    )


def read_tf_op_lambda(layer: Any) -> dict[str, Any]:
    """A tf_keras TFOpLambda as {"function": symbol, "arguments": (args, kwargs)}, its input tensors as
    TensorArguments in the order the layer's node lists them."""
    node = layer.inbound_nodes[0]
    kwargs = {key: value for key, value in node.call_kwargs.items() if key != "name"}
    return {"function": layer.symbol, "arguments": _placeholders((tuple(node.call_args), kwargs), node.keras_inputs)}


def read_tensorflow_op_layer(layer: Any) -> dict[str, Any] | None:
    """A TensorFlowOpLayer as a tf.raw_ops call with keyword arguments, or None when an attribute of its op has a
    kind ganport does not read back (a shape or tensor attribute)."""
    from tensorflow.python.framework import op_def_registry

    node_def = layer.node_def
    op_def = op_def_registry.get(node_def.op)
    inferred = {name for arg in op_def.input_arg for name in (arg.type_attr, arg.number_attr, arg.type_list_attr)}
    constants = {int(index): _plain(value) for index, value in layer.constants.items()}
    positions = iter(range(len(node_def.input)))

    def next_input() -> Any:
        # the op's inputs are the layer's input tensors in order, with its constants at their own positions
        position = next(positions)
        if position in constants:
            return constants[position]
        return TensorArgument(position - sum(1 for index in constants if index < position))

    kwargs: dict[str, Any] = {}
    for arg in op_def.input_arg:
        count = node_def.attr[arg.number_attr].i if arg.number_attr else 1
        values = [next_input() for _ in range(count)]
        kwargs[arg.name] = values if arg.number_attr else values[0]
    for attr in op_def.attr:
        if attr.name in inferred or attr.name not in node_def.attr:
            continue
        value = _attr_value(node_def.attr[attr.name])
        if value is None:
            return None
        kwargs[attr.name] = value
    return {"function": f"raw_ops.{node_def.op}", "arguments": ((), kwargs)}


def _attr_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "s":
        return value.s.decode()
    if kind in ("i", "f", "b"):
        return getattr(value, kind)
    if kind == "list" and not (value.list.shape or value.list.tensor or value.list.type):
        return list(value.list.i) or list(value.list.f) or [item.decode() for item in value.list.s]
    return None


@functools.cache
def op_layer_class(module: ModuleType) -> type:
    """A layer class of `module` (keras or tf_keras) that calls one allowed TensorFlow op on its inputs. Only built
    for conversion (tf2onnx traces it), never saved."""

    class TensorFlowOp(module.layers.Layer):
        def __init__(self, function: str, arguments: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.function = resolve(function)
            self.arguments = arguments

        def call(self, inputs: Any) -> Any:
            tensors = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
            args, kwargs = substitute(self.arguments, tensors)
            return self.function(*args, **kwargs)

    return TensorFlowOp
