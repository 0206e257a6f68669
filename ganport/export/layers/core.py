"""Dense, activations, layers inert at inference, rescaling, shapes and merges."""

from __future__ import annotations

import reprlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ganport.export.layers.reading import (
    activation_option,
    activation_problem,
    channels_last,
    is_keras2,
    keras_activation,
    keras_layer,
)
from ganport.export.layers.registry import Converter, LayerSpec, TargetRule, pointwise, refuse, register

if TYPE_CHECKING:
    from ganport.export.graph import Graph


def _read_dense(layer: Any) -> dict[str, Any]:
    return {
        "units": int(layer.units),
        "activation": activation_option(layer),
        "use_bias": bool(layer.use_bias),
        # a Dense on [batch, H, W, C] or [batch, steps, features] projects each position or step; DL4J's Dense
        # reads a flattened input instead
        "input_rank": len(layer.input.shape),
        "input_steps": layer.input.shape[1] if len(layer.input.shape) == 3 else None,
    }


def _dense(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    kept = {key: value for key, value in options.items() if key not in ("input_rank", "input_steps")}
    return module.layers.Dense(name=name, **keras_activation(kept, module))


def _dense_problem(options: dict[str, Any]) -> str | None:
    if options.get("input_rank", 2) == 3 and options.get("input_steps") != 1:  # one step: the same as flattened
        return "a Dense on [batch, steps, features] projects each step, where DL4J's Dense reads the steps flattened"
    return activation_problem(options)


def _dense_as_convolution(graph: Graph) -> Graph:
    """Each Dense on [batch, H, W, C] (DL4J's Dense reads a flattened input) as the Conv2D(units, 1x1) that does the
    same products: its kernel [C, units] as [1, 1, C, units]."""

    def rewritten(spec: LayerSpec) -> LayerSpec:
        if spec.kind != "Dense" or spec.options.get("input_rank") != 4:
            return spec
        kernel, *bias = spec.weights
        return pointwise(spec.name, spec.inbound[0], kernel, True, spec.options["activation"], *bias)

    return graph.with_layers([rewritten(spec) for spec in graph.layers])


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
        dl4j=TargetRule(
            problem=_dense_problem, rewrite=_dense_as_convolution, note="on [batch, H, W, C] written as a 1x1 Conv2D"
        ),
        accumulation=lambda spec: spec.weights[0].shape[0],  # kernel [inputs, units]
    ),
)
register(
    "LeakyReLU",
    Converter(
        lambda layer: {"slope": float(getattr(layer, "negative_slope", getattr(layer, "alpha", 0.3)))},
        _leaky_relu,
        dl4j=TargetRule(
            required=lambda config: isinstance(config.get("alpha"), float),
            note="alpha written (DL4J ignores negative_slope)",
        ),
    ),
)
register(
    "ReLU",
    Converter(
        _read_relu,
        keras_layer("ReLU"),
        dl4j=TargetRule(problem=_relu_problem),
    ),
)
register(
    "Activation",
    Converter(
        lambda layer: {"activation": activation_option(layer)},
        keras_layer("Activation"),
        dl4j=TargetRule(problem=activation_problem),
    ),
)
register(
    "ELU",
    Converter(
        lambda layer: {"alpha": float(layer.alpha)},
        keras_layer("ELU"),
        # DL4J casts `alpha` to a double: an integer there stops its import
        dl4j=TargetRule(required=lambda config: isinstance(config.get("alpha"), float)),
    ),
)


def _read_softmax(layer: Any) -> dict[str, Any]:
    rank = len(layer.input.shape)
    axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
    if not all(isinstance(axis, int) and -rank <= axis < rank for axis in axes):
        raise refuse(layer, f"normalises axis {layer.axis}, which a rank-{rank} input does not have.")
    return {"axis": layer.axis, "last_axis": [axis % rank for axis in axes] == [rank - 1]}


def _softmax(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    return module.layers.Softmax(axis=options["axis"], name=name)


def _softmax_problem(options: dict[str, Any]) -> str | None:
    if not options["last_axis"]:  # DL4J's ActivationLayer applies it over the last (NHWC: channels) axis
        return f"a softmax over axis {options['axis']}, where DL4J's normalises the last (feature) axis only"
    return None


register(
    "Softmax",
    Converter(_read_softmax, _softmax, dl4j=TargetRule(problem=_softmax_problem)),
)

# Layers that act only while training: at inference each hands on its input as it is. Each field DL4J reads is
# cast to a double there, so it must be written as a float.
_INERT = {
    "Dropout": "rate",
    "SpatialDropout1D": "rate",
    "SpatialDropout2D": "rate",
    "GaussianDropout": "rate",
    "AlphaDropout": "rate",
    "GaussianNoise": "stddev",
}
for _kind, _field in _INERT.items():
    register(
        _kind,
        Converter(
            lambda layer, field=_field: {field: float(getattr(layer, field))},
            keras_layer(_kind),
            dl4j=TargetRule(note="inert", required=lambda config, field=_field: isinstance(config.get(field), float)),
        ),
    )


def _read_rescaling(layer: Any) -> dict[str, Any]:
    shape = layer.input.shape

    def as_option(field: str) -> float | list[float]:
        """One number, or one per channel (Keras broadcasts a vector over the last axis)."""
        value = getattr(layer, field)
        array = np.asarray(value, np.float64)  # a value that is no number: graph.read_layer refuses it
        if array.ndim == 0:
            return float(array)
        if array.ndim != 1 or array.size not in (1, shape[-1]):
            raise refuse(layer, f"has {field} {reprlib.repr(value)}; ganport reads one number or one per channel.")
        return [float(item) for item in array]

    return {
        "scale": as_option("scale"),
        "offset": as_option("offset"),
        "input_rank": len(shape),
        "channels": shape[-1],
    }


def _rescaling(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    return module.layers.Rescaling(options["scale"], options["offset"], name=name)


def _rescaling_problem(options: dict[str, Any]) -> str | None:
    if options["input_rank"] not in (2, 4) or options["channels"] is None:
        return "DL4J has no Rescaling; ganport writes one on [batch, features] or images only (as a 1x1 layer)"
    return None


def _rescaling_as_pointwise(graph: Graph) -> Graph:
    """Each Rescaling (DL4J's import has none) as the Dense or 1x1 Conv2D with a diagonal kernel that computes
    x * scale + offset: the products by zero add nothing, so the numbers are Keras's."""

    def rewritten(spec: LayerSpec) -> LayerSpec:
        if spec.kind != "Rescaling":
            return spec
        channels = spec.options["channels"]
        scale, offset = (
            np.broadcast_to(np.asarray(spec.options[key], np.float32).reshape(-1), (channels,))
            for key in ("scale", "offset")
        )
        image = spec.options["input_rank"] == 4
        return pointwise(spec.name, spec.inbound[0], np.diag(scale), image, "linear", offset.copy())

    return graph.with_layers([rewritten(spec) for spec in graph.layers])


register(
    "Rescaling",
    Converter(
        _read_rescaling,
        _rescaling,
        dl4j=TargetRule(
            problem=_rescaling_problem,
            rewrite=_rescaling_as_pointwise,
            note="written as a Dense or 1x1 Conv2D with a diagonal kernel",
        ),
    ),
)

# --- shape ---------------------------------------------------------------------------------------------------------


def _reshape_problem(options: dict[str, Any]) -> str | None:
    if len(options["target_shape"]) == 2:  # the h5 format writes a trailing one's output flat instead (dl4j.py)
        return "DL4J cannot reshape to rank 3 inside a model (DL4J issue 8846)"
    return None


register(
    "Reshape",
    Converter(
        lambda layer: {"target_shape": tuple(int(side) for side in layer.target_shape)},
        keras_layer("Reshape"),
        dl4j=TargetRule(problem=_reshape_problem, note="a preprocessor; a trailing one (any rank) gives flat outputs"),
    ),
)
register(
    "Flatten",
    Converter(
        lambda layer: channels_last(layer) or {},
        keras_layer("Flatten"),
        dl4j=TargetRule(note="NHWC preprocessor"),
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
            keras_layer(_merge),
            dl4j=TargetRule(note="ElementWiseVertex"),
            merges=True,
        ),
    )
register(
    "Concatenate",
    Converter(
        _read_concatenate,
        keras_layer("Concatenate"),
        dl4j=TargetRule(note="MergeVertex"),
        merges=True,
    ),
)
