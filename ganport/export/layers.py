"""The layer registry: one converter per supported layer class, each a reader, a builder and DL4J's verdict.

A reader turns a Keras 2 (tf_keras) or Keras 3 layer into framework-neutral options; a builder makes the layer
again in either framework. Keras 2 is the last format Deeplearning4j imports, and Keras 3 cannot load a Keras 2
model that nests a Sequential (the lecture's way), so ganport rebuilds models in both directions through here.
What DL4J 1.0.0-M2.1 reads of each layer comes from its source (../shared/research/dl4j-conv-and-graph-import.md):
`dl4j_problem` says why a layer cannot be imported with the same numbers, `dl4j_rewrite` what ganport writes so it can.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ganport.errors import UnsupportedLayerError
from ganport.tf_ops import RAW_OPS, TF_FUNCTIONS, op_layer_class, read_tensorflow_op_layer, read_tf_op_lambda

# Activations DL4J's Keras import maps to its own (KerasActivationUtils), under their Keras names.
DL4J_ACTIVATIONS = (
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "softmax",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "swish",
)
# Keras 3 renamed swish to silu; Keras 2 and DL4J know it as swish.
_KERAS2_ACTIVATION_NAMES = {"silu": "swish"}


@dataclass(frozen=True)
class LayerSpec:
    """One layer, independent of the Keras version that made it; `inbound` names the layers (or inputs) it reads."""

    kind: str
    name: str
    options: dict[str, Any]
    weights: list[np.ndarray]
    inbound: tuple[str, ...] = ()


# (options, layer name, keras or tf_keras) -> a layer
Builder = Callable[[dict[str, Any], str, ModuleType], Any]


@dataclass(frozen=True)
class Converter:
    read: Callable[[Any], dict[str, Any]]
    build: Builder
    dl4j_problem: Callable[[dict[str, Any]], str | None] = field(default=lambda options: None)
    dl4j_rewrite: str = ""
    merges: bool = False  # takes a list of tensors (Add, Multiply, Concatenate)
    # Why the layer is not a Keras layer that a .keras file holds by itself ("" when it is one).
    not_keras: str = ""
    onnx_note: str = ""  # what the ONNX column of docs/export.md's table adds
    # How many products one output value sums (ganport.parity's tolerance follows it); 0 for layers that sum nothing.
    accumulation: Callable[[LayerSpec], int] = field(default=lambda spec: 0)


_CONVERTERS: dict[str, Converter] = {}


def register(kind: str, converter: Converter) -> None:
    """Register the converter for one layer class; a second registration for the same class is an error."""
    if kind in _CONVERTERS:
        raise ValueError(f"A converter for {kind} is already registered.")
    _CONVERTERS[kind] = converter


def converter(kind: str) -> Converter:
    return _CONVERTERS[kind]


def supported_layers() -> list[str]:
    return sorted(_CONVERTERS)


def markdown_table() -> str:
    """The registry as docs/export.md's table: each layer, and what each target gets of it (for DL4J the rewrite ganport
    writes, or why the h5 format refuses it; "some options refused" where `ganport inspect` says which)."""
    rows = ["| layer | ONNX | DL4J (`--format h5`) | Keras 3 (`--format keras`) |", "| --- | --- | --- | --- |"]
    for kind in supported_layers():
        entry = _CONVERTERS[kind]
        try:
            problem = entry.dl4j_problem({})
        except (KeyError, TypeError):  # the verdict reads options: some are refused
            problem = None
            dl4j = "yes, " + (f"{entry.dl4j_rewrite}; " if entry.dl4j_rewrite else "") + "some options refused"
        else:
            dl4j = f"no: {problem}" if problem else "yes" + (f" ({entry.dl4j_rewrite})" if entry.dl4j_rewrite else "")
        onnx = f"yes ({entry.onnx_note})" if entry.onnx_note else "yes"
        keras = f"no: {entry.not_keras}" if entry.not_keras else "yes"
        rows.append(f"| {kind} | {onnx} | {dl4j} | {keras} |")
    return "\n".join(rows) + "\n"


def is_keras2(module: ModuleType) -> bool:
    return module.__name__.startswith("tf_keras")


def refuse(layer: Any, reason: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(f"{type(layer).__name__} {layer.name!r} {reason}")


# Activation layers a Keras layer may hold as its `activation` (Conv2D(..., activation=LeakyReLU(0.2))): the graph
# reader writes each as a layer of its own after the one holding it (graph.read_graph), which then reads "linear".
ACTIVATION_LAYERS = ("LeakyReLU", "ReLU", "Activation")


def activation_layer(layer: Any) -> Any | None:
    """The Keras layer a layer holds as its activation, or None when its activation is a function."""
    import keras

    activation = getattr(layer, "activation", None)
    base = keras.layers.Layer
    if type(activation).__module__.startswith("tf_keras"):
        from ganport.keras_files.load import tf_keras

        base = tf_keras().layers.Layer
    return activation if isinstance(activation, base) else None


def _activation_option(layer: Any) -> str:
    import keras

    held = activation_layer(layer)
    if held is not None:
        if kind_of(held) not in ACTIVATION_LAYERS or held.weights:
            raise refuse(
                layer,
                f"holds a {type(held).__name__} layer as its activation; ganport reads "
                f"{', '.join(ACTIVATION_LAYERS)} there. Apply it as a layer of its own after this one.",
            )
        return "linear"  # the held layer becomes a layer of its own (graph.read_graph)
    name = getattr(layer.activation, "__name__", str(layer.activation))
    try:
        keras.activations.get(name)
    except ValueError as error:
        raise refuse(layer, f"uses activation {name!r}, which is not a built-in Keras activation.") from error
    return name


def _activation_problem(options: dict[str, Any]) -> str | None:
    name = options.get("activation", "linear")
    if _KERAS2_ACTIVATION_NAMES.get(name, name) not in DL4J_ACTIVATIONS:
        return f"activation {name!r} is not one DL4J imports ({', '.join(DL4J_ACTIVATIONS)})"
    return None


def _keras_activation(options: dict[str, Any], module: ModuleType) -> dict[str, Any]:
    if "activation" in options and is_keras2(module):
        return {**options, "activation": _KERAS2_ACTIVATION_NAMES.get(options["activation"], options["activation"])}
    return options


def _channels_last(layer: Any) -> None:
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format != "channels_last":
        raise refuse(
            layer,
            f"uses data_format={data_format!r}; ganport converts channels_last models only (DL4J's importer flips "
            "channels_first layers of TensorFlow models). Rebuild the model with channels_last.",
        )


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(side) for side in value)


def _pairs(value: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """ZeroPadding2D / Cropping2D amounts in their most explicit form: ((top, bottom), (left, right))."""
    if isinstance(value, int):
        return ((value, value), (value, value))
    first, second = value
    as_pair = (lambda side: (int(side), int(side))) if isinstance(first, int) else (lambda side: tuple(map(int, side)))
    return (as_pair(first), as_pair(second))


# --- dense and activations -----------------------------------------------------------------------------------------


def _read_dense(layer: Any) -> dict[str, Any]:
    return {
        "units": int(layer.units),
        "activation": _activation_option(layer),
        "use_bias": bool(layer.use_bias),
        # a Dense on [batch, H, W, C] or [batch, steps, features] projects each position or step; DL4J's Dense
        # reads a flattened input instead
        "input_rank": len(layer.input.shape),
        "input_steps": layer.input.shape[1] if len(layer.input.shape) == 3 else None,
    }


def _dense(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    kept = {key: value for key, value in options.items() if key not in ("input_rank", "input_steps")}
    return module.layers.Dense(name=name, **_keras_activation(kept, module))


def _dense_problem(options: dict[str, Any]) -> str | None:
    if options.get("input_rank", 2) == 3 and options.get("input_steps") != 1:  # one step: the same as flattened
        return "a Dense on [batch, steps, features] projects each step, where DL4J's Dense reads the steps flattened"
    return _activation_problem(options)


def _leaky_relu(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    # Keras 2 (and DL4J) know only `alpha`; Keras 3 renamed it `negative_slope`.
    slope = options["slope"]
    if is_keras2(module):
        return module.layers.LeakyReLU(alpha=slope, name=name)
    return module.layers.LeakyReLU(negative_slope=slope, name=name)


def _read_relu(layer: Any) -> dict[str, Any]:
    max_value = getattr(layer, "max_value", None)
    return {
        "max_value": None if max_value is None else float(max_value),
        "negative_slope": float(layer.negative_slope),
        "threshold": float(layer.threshold),
    }


def _relu_problem(options: dict[str, Any]) -> str | None:
    if options["negative_slope"] or options["threshold"]:
        return "DL4J's ReLU reads max_value only (negative_slope and threshold would be lost); use LeakyReLU"
    return None


register(
    "Dense",
    Converter(
        _read_dense,
        _dense,
        _dense_problem,
        dl4j_rewrite="on [batch, H, W, C] written as a 1x1 Conv2D",
        accumulation=lambda spec: spec.weights[0].shape[0],  # kernel [inputs, units]
    ),
)
register(
    "LeakyReLU",
    Converter(
        lambda layer: {"slope": float(getattr(layer, "negative_slope", getattr(layer, "alpha", 0.3)))},
        _leaky_relu,
        dl4j_rewrite="alpha written (DL4J ignores negative_slope)",
    ),
)
register(
    "ReLU",
    Converter(
        _read_relu,
        lambda options, name, module: module.layers.ReLU(name=name, **options),
        _relu_problem,
    ),
)
register(
    "Activation",
    Converter(
        lambda layer: {"activation": _activation_option(layer)},
        lambda options, name, module: module.layers.Activation(name=name, **_keras_activation(options, module)),
        _activation_problem,
    ),
)
register(
    "Dropout",
    Converter(
        lambda layer: {"rate": float(layer.rate)},
        lambda options, name, module: module.layers.Dropout(name=name, **options),
        dl4j_rewrite="inert",
    ),
)
register(
    "SpatialDropout2D",
    Converter(
        lambda layer: {"rate": float(layer.rate)},
        lambda options, name, module: module.layers.SpatialDropout2D(name=name, **options),
        dl4j_rewrite="inert",
    ),
)

# --- shape ---------------------------------------------------------------------------------------------------------


def _reshape_problem(options: dict[str, Any]) -> str | None:
    if len(options["target_shape"]) == 2:  # the h5 format writes a trailing one's output flat instead
        return "DL4J cannot reshape to rank 3 inside a model (DL4J issue 8846)"
    return None


register(
    "Reshape",
    Converter(
        lambda layer: {"target_shape": tuple(int(side) for side in layer.target_shape)},
        lambda options, name, module: module.layers.Reshape(name=name, **options),
        _reshape_problem,
        dl4j_rewrite="a preprocessor; a trailing one (any rank) gives flat outputs",
    ),
)
register(
    "Flatten",
    Converter(
        lambda layer: _channels_last(layer) or {},
        lambda options, name, module: module.layers.Flatten(name=name),
        dl4j_rewrite="NHWC preprocessor",
    ),
)

# --- normalisation and embedding -----------------------------------------------------------------------------------


def _read_batch_normalization(layer: Any) -> dict[str, Any]:
    axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
    rank = len(layer.input.shape)
    if [axis % rank for axis in axes] != [rank - 1]:
        raise refuse(layer, f"normalises axis {layer.axis}; only the last (feature, channels_last) axis is supported.")
    return {
        "momentum": float(layer.momentum),
        "epsilon": float(layer.epsilon),
        "center": bool(layer.center),
        "scale": bool(layer.scale),
    }


def _read_embedding(layer: Any) -> dict[str, Any]:
    shape = layer.input.shape
    length = int(shape[1]) if len(shape) == 2 and shape[1] is not None else None
    return {"input_dim": int(layer.input_dim), "output_dim": int(layer.output_dim), "input_length": length}


def _embedding(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    # DL4J needs `input_length` and zeroes row 0 unless `mask_zero` is false; a mask never changes Keras's values,
    # so false is exact. Keras 3 has no `input_length`.
    keep = {"input_dim": options["input_dim"], "output_dim": options["output_dim"], "mask_zero": False}
    if is_keras2(module):
        keep["input_length"] = options["input_length"]
    return module.layers.Embedding(name=name, **keep)


register(
    "BatchNormalization",
    Converter(
        _read_batch_normalization,
        lambda options, name, module: module.layers.BatchNormalization(name=name, **options),
        dl4j_rewrite="center=False written as True, beta 0",
    ),
)
register(
    "Embedding",
    Converter(
        _read_embedding,
        _embedding,
        lambda options: None if options["input_length"] else "DL4J needs a fixed sequence length [batch, length]",
        dl4j_rewrite="input_length, mask_zero=false written",
    ),
)

# --- convolution and pooling ---------------------------------------------------------------------------------------


def _read_convolution(layer: Any) -> dict[str, Any]:
    _channels_last(layer)
    if getattr(layer, "groups", 1) != 1:
        raise refuse(layer, f"uses groups={layer.groups}; grouped convolutions are not supported.")
    options = {
        "filters": int(layer.filters),
        "kernel_size": _pair(layer.kernel_size),
        "strides": _pair(layer.strides),
        "padding": str(layer.padding),
        "dilation_rate": _pair(layer.dilation_rate),
        "activation": _activation_option(layer),
        "use_bias": bool(layer.use_bias),
    }
    if options["padding"] not in ("same", "valid"):
        raise refuse(layer, f"uses padding={options['padding']!r}; same and valid are supported.")
    if type(layer).__name__ == "Conv2DTranspose":
        padding = getattr(layer, "output_padding", None)
        options["output_padding"] = None if padding is None else _pair(padding)
    return options


def _transpose_problem(options: dict[str, Any]) -> str | None:
    if options["output_padding"] is not None:
        return "DL4J's Deconvolution2D never reads output_padding"
    if options["dilation_rate"] != (1, 1):
        return "DL4J's Deconvolution2D import ignores dilation"
    return _activation_problem(options)


def _read_upsampling(layer: Any) -> dict[str, Any]:
    _channels_last(layer)
    return {"size": _pair(layer.size), "interpolation": str(layer.interpolation)}


def _read_pooling(layer: Any) -> dict[str, Any]:
    _channels_last(layer)
    return {"pool_size": _pair(layer.pool_size), "strides": _pair(layer.strides), "padding": str(layer.padding)}


def _read_global_pooling(layer: Any) -> dict[str, Any]:
    _channels_last(layer)
    return {"keepdims": bool(getattr(layer, "keepdims", False))}


register(
    "UpSampling2D",
    Converter(
        _read_upsampling,
        lambda options, name, module: module.layers.UpSampling2D(name=name, **options),
        lambda options: None if options["interpolation"] == "nearest" else "DL4J upsamples by nearest neighbour only",
        dl4j_rewrite="on a model input: after a 1x1 identity Conv2D",
    ),
)
register(
    "ZeroPadding2D",
    Converter(
        lambda layer: _channels_last(layer) or {"padding": _pairs(layer.padding)},
        lambda options, name, module: module.layers.ZeroPadding2D(name=name, **options),
    ),
)
register(
    "Cropping2D",
    Converter(
        lambda layer: _channels_last(layer) or {"cropping": _pairs(layer.cropping)},
        lambda options, name, module: module.layers.Cropping2D(name=name, **options),
    ),
)
for _pooling in ("MaxPooling2D", "AveragePooling2D"):
    register(
        _pooling,
        Converter(
            _read_pooling,
            lambda options, name, module, kind=_pooling: getattr(module.layers, kind)(name=name, **options),
            dl4j_rewrite="SubsamplingLayer",
            accumulation=lambda spec, kind=_pooling: math.prod(spec.options["pool_size"]) if "Average" in kind else 0,
        ),
    )
for _pooling in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
    register(
        _pooling,
        Converter(
            _read_global_pooling,
            lambda options, name, module, kind=_pooling: getattr(module.layers, kind)(name=name, **options),
            lambda options: "DL4J does not read keepdims" if options["keepdims"] else None,
            dl4j_rewrite="GlobalPoolingLayer",
        ),
    )


def _read_depthwise(layer: Any) -> dict[str, Any]:
    _channels_last(layer)
    options = {
        "kernel_size": _pair(layer.kernel_size),
        "strides": _pair(layer.strides),
        "padding": str(layer.padding),
        "depth_multiplier": int(layer.depth_multiplier),
        "dilation_rate": _pair(layer.dilation_rate),
        "activation": _activation_option(layer),
        "use_bias": bool(layer.use_bias),
    }
    if type(layer).__name__ == "SeparableConv2D":
        options["filters"] = int(layer.filters)
    return options


def _read_convolution_1d(layer: Any) -> dict[str, Any]:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise refuse(layer, "uses channels_first; ganport converts channels_last models only.")
    if str(layer.padding) not in ("same", "valid") or getattr(layer, "groups", 1) != 1:
        raise refuse(layer, f"uses padding={layer.padding!r} or groups; same and valid, ungrouped, are supported.")
    return {
        "filters": int(layer.filters),
        "kernel_size": int(layer.kernel_size[0]),
        "strides": int(layer.strides[0]),
        "padding": str(layer.padding),
        "dilation_rate": int(layer.dilation_rate[0]),
        "activation": _activation_option(layer),
        "use_bias": bool(layer.use_bias),
    }


# Convolutions with an activation: (class, reader, DL4J's verdict, DL4J's rewrite, products one output sums).
_CONVOLUTIONS: tuple[tuple[str, Callable, Callable, str, Callable[[LayerSpec], int]], ...] = (
    ("Conv2D", _read_convolution, _activation_problem, "NHWC", lambda spec: math.prod(spec.weights[0].shape[:3])),
    (
        "Conv2DTranspose",
        _read_convolution,
        _transpose_problem,
        "Deconvolution2D, NHWC",
        # kernel [kh, kw, out, in]; with strides an output sums fewer, so this is the most one can
        lambda spec: math.prod(spec.weights[0].shape[:2]) * spec.weights[0].shape[3],
    ),
    (
        "DepthwiseConv2D",
        _read_depthwise,
        # measured with DL4J 1.0.0-M2.1 (2026-12-02): its import stops with "Index 0 out of bounds for length 0"
        lambda options: "DL4J 1.0.0-M2.1's import of DepthwiseConv2D fails (an index error in its weight reader)",
        "",
        lambda spec: math.prod(spec.weights[0].shape[:2]),  # kernel [kh, kw, in, multiplier]
    ),
    (
        "SeparableConv2D",
        _read_depthwise,
        _activation_problem,
        "SeparableConvolution2D, NHWC",
        # a depthwise sum of kh*kw, then a pointwise one of in*multiplier: bounded by their product
        lambda spec: math.prod(spec.weights[0].shape),
    ),
    (
        "Conv1D",
        _read_convolution_1d,
        _activation_problem,
        "Convolution1DLayer",
        lambda spec: math.prod(spec.weights[0].shape[:2]),  # kernel [k, in, out]
    ),
)
for _kind, _read, _problem, _rewrite, _accumulation in _CONVOLUTIONS:
    register(
        _kind,
        Converter(
            _read,
            lambda options, name, module, kind=_kind: getattr(module.layers, kind)(
                name=name, **_keras_activation(options, module)
            ),
            _problem,
            dl4j_rewrite=_rewrite,
            accumulation=_accumulation,
        ),
    )

register(
    "UpSampling1D",
    Converter(
        lambda layer: {"size": int(layer.size)},
        lambda options, name, module: module.layers.UpSampling1D(name=name, **options),
        # measured with DL4J 1.0.0-M2.1: outputs off by up to 1.8 after it
        lambda options: "DL4J 1.0.0-M2.1's Upsampling1D gives other values than Keras",
    ),
)

# --- learned activations and normalisation over features ------------------------------------------------------------


def _read_prelu(layer: Any) -> dict[str, Any]:
    shared = layer.shared_axes
    rank = len(layer.input.shape)
    shared_axes = [] if shared is None else [int(axis) % rank for axis in shared]
    return {
        "shared_axes": None if shared is None else [int(axis) for axis in shared],
        # DL4J gets the rewrite (to_h5) where one slope per channel is shared over every other axis
        "per_channel": rank == 2 or (rank == 4 and sorted(shared_axes) == [1, 2]),
    }


def _prelu(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    return module.layers.PReLU(name=name, shared_axes=options["shared_axes"])


def _prelu_problem(options: dict[str, Any]) -> str | None:
    if options["per_channel"]:
        return None
    # measured with DL4J 1.0.0-M2.1: its PReLU keeps the slopes of its initializer, not the file's (W stays 0)
    return (
        "DL4J 1.0.0-M2.1 does not load PReLU's slopes (they stay at their initializer); ganport writes it with "
        "layers DL4J reads where each channel has one slope (Dense outputs, or shared_axes=[1, 2])"
    )


def _read_layer_normalization(layer: Any) -> dict[str, Any]:
    axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
    rank = len(layer.input.shape)
    if [axis % rank for axis in axes] != [rank - 1]:
        raise refuse(layer, f"normalises axis {layer.axis}; only the last (feature) axis is supported.")
    return {"axis": -1, "epsilon": float(layer.epsilon), "center": bool(layer.center), "scale": bool(layer.scale)}


register(
    "PReLU",
    Converter(
        _read_prelu,
        _prelu,
        _prelu_problem,
        dl4j_rewrite="one slope per channel: ReLU(x) + slopes x ReLU(-x), in 1x1 layers",
    ),
)
register(
    "LayerNormalization",
    Converter(
        _read_layer_normalization,
        lambda options, name, module: module.layers.LayerNormalization(name=name, **options),
        lambda options: 'DL4J 1.0.0-M2.1\'s Keras import has no LayerNormalization ("Unsupported keras layer type")',
        accumulation=lambda spec: spec.weights[0].shape[0] if spec.weights else 0,  # mean and variance over features
    ),
)

# --- merges --------------------------------------------------------------------------------------------------------


def _read_concatenate(layer: Any) -> dict[str, Any]:
    rank = len(layer.output.shape)
    if layer.axis % rank != rank - 1:
        raise refuse(layer, f"concatenates on axis {layer.axis}; only the last (feature) axis is supported.")
    return {"axis": -1}


for _merge in ("Add", "Subtract", "Multiply", "Average", "Maximum"):
    register(
        _merge,
        Converter(
            lambda layer: {},
            lambda options, name, module, kind=_merge: getattr(module.layers, kind)(name=name),
            dl4j_rewrite="ElementWiseVertex",
            merges=True,
        ),
    )
register(
    "Concatenate",
    Converter(
        _read_concatenate,
        lambda options, name, module: module.layers.Concatenate(name=name, **options),
        dl4j_rewrite="MergeVertex",
        merges=True,
    ),
)


# --- TensorFlow ops, Python code and the user's own layers: ONNX only --------------------------------------------


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


def _read_lambda(layer: Any) -> dict[str, Any]:
    if not callable(getattr(layer, "function", None)):  # Keras revived it from traced graphs, without its code
        raise refuse(layer, "was loaded without its Python function, so it cannot be rebuilt; pass --trust-code.")
    # the output shape is given, as Keras 3 cannot always infer it from a function written for tf_keras
    return {
        "function": layer.function,
        "arguments": dict(layer.arguments or {}),
        "output_shape": tuple(layer.output.shape[1:]),
    }


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


_TF_OPS_NOTE = "tf." + ", tf.".join(TF_FUNCTIONS)
_RAW_OPS_NOTE = ", ".join(RAW_OPS)


def _op_problem(options: dict[str, Any], prefix: str) -> str:
    op = f" ({prefix}{options['function'].removeprefix('raw_ops.')})" if "function" in options else ""
    return f"a TensorFlow op{op}, which DL4J's Keras import does not read"


for _kind, _read, _prefix, _note in (
    ("TFOpLambda", _read_tf_op_lambda, "tf.", _TF_OPS_NOTE),
    ("TensorFlowOpLayer", _read_tensorflow_op_layer, "", _RAW_OPS_NOTE),
):
    register(
        _kind,
        Converter(
            _read,
            _tensorflow_op,
            lambda options, prefix=_prefix: _op_problem(options, prefix),
            not_keras="a TensorFlow op that Keras 3 has no layer for",
            onnx_note=_note,
        ),
    )
register(
    "Lambda",
    Converter(
        _read_lambda,
        lambda options, name, module: module.layers.Lambda(name=name, **options),
        lambda options: "Python code, which DL4J's Keras import cannot run",
        not_keras="Python code, which a .keras file can only hold as bytecode that Keras refuses to load by default",
        onnx_note="with --trust-code: its Python code runs; the TensorFlow ops it calls are converted",
    ),
)


def _read_community_normalization(layer: Any) -> dict[str, Any]:
    return {
        "axis": layer.axis,
        "epsilon": float(layer.epsilon),
        "center": bool(layer.center),
        "scale": bool(layer.scale),
        "groups": layer.groups,
    }


def _community_normalization(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    from ganport.keras_files.community import normalization_class

    return normalization_class(module)(name=name, **options)


def _community_name(options: dict[str, Any]) -> str:
    return (
        "keras-contrib's InstanceNormalization" if options.get("groups") is None else "TensorFlow Addons' normalization"
    )


register(
    "CommunityNormalization",
    Converter(
        _read_community_normalization,
        _community_normalization,
        lambda options: f"{_community_name(options)}, which DL4J's Keras import does not have",
        not_keras="a keras-contrib or TensorFlow Addons layer, which a .keras file cannot reload without its library",
        onnx_note="keras-contrib InstanceNormalization, TensorFlow Addons InstanceNormalization and "
        "GroupNormalization, read without their libraries",
    ),
)

# Layers whose class comes from outside Keras (a --custom-objects module): rebuilt from their own config.
CUSTOM = "custom layer"
register(
    CUSTOM,
    Converter(
        _read_custom,
        _custom,
        lambda options: (
            "a custom layer"
            + (f" ({options['class'].__name__})" if "class" in options else "")
            + ", which DL4J's Keras import does not have"
        ),
        onnx_note="with --custom-objects: the class's TensorFlow ops are converted",
    ),
)


def keras_file_problems(specs: Iterable[LayerSpec]) -> list[str]:
    """`name: why` for each layer a .keras file cannot hold by itself: the one verdict export and inspect give."""
    return [f"{spec.name}: {converter(spec.kind).not_keras}" for spec in specs if converter(spec.kind).not_keras]


def kind_of(layer: Any) -> str:
    """The registry entry for a layer: its class name, the kind of a community layer ganport reads
    (keras_files/community.py), or CUSTOM for a class defined outside Keras."""
    module = type(layer).__module__
    if module.startswith(("keras.", "tf_keras.")):
        return type(layer).__name__
    return getattr(type(layer), "ganport_kind", CUSTOM)


if __name__ == "__main__":  # python -m ganport.export.layers > the table docs/export.md holds
    print(markdown_table(), end="")
