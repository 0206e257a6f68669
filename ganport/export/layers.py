"""The layer registry: one converter per supported layer type, each a reader and a builder.

A reader turns a Keras 2 (tf_keras) or Keras 3 layer into framework-neutral options; a builder makes the layer
again in either framework. Keras 2 is the last format Deeplearning4j imports, and Keras 3 cannot load a Keras 2
model that nests a Sequential (the lecture's way), so ganport rebuilds models in both directions through here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ganport.errors import ModelError, UnsupportedLayerError

# Activations DL4J's Keras import maps to its own (KerasActivationUtils).
DL4J_ACTIVATIONS = (
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "hard_sigmoid",
)


@dataclass(frozen=True)
class LayerSpec:
    """One layer, independent of the Keras version that made it."""

    kind: str
    name: str
    options: dict[str, Any]
    weights: list[np.ndarray]


@dataclass(frozen=True)
class Converter:
    read: Callable[[Any], dict[str, Any]]
    build: Callable[[dict[str, Any], str, ModuleType], Any]


_CONVERTERS: dict[str, Converter] = {}


def register(
    kind: str, read: Callable[[Any], dict[str, Any]], build: Callable[[dict[str, Any], str, ModuleType], Any]
) -> None:
    """Register the converter for one layer class; a second registration for the same class is an error."""
    if kind in _CONVERTERS:
        raise ValueError(f"A converter for {kind} is already registered.")
    _CONVERTERS[kind] = Converter(read, build)


def supported_layers() -> list[str]:
    return sorted(_CONVERTERS)


def _activation(layer: Any) -> str:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name not in DL4J_ACTIVATIONS:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} uses activation {name!r}, which DL4J cannot import; "
            f"supported activations: {', '.join(DL4J_ACTIVATIONS)}."
        )
    return name


def _is_keras2(module: ModuleType) -> bool:
    return module.__name__.startswith("tf_keras")


def _read_batch_normalization(layer: Any) -> dict[str, Any]:
    axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
    rank = len(layer.input.shape)
    if [axis % rank for axis in axes] != [rank - 1]:
        raise UnsupportedLayerError(
            f"BatchNormalization {layer.name!r} normalises axis {layer.axis}; "
            "only the last (feature) axis is supported."
        )
    return {
        "momentum": float(layer.momentum),
        "epsilon": float(layer.epsilon),
        "center": bool(layer.center),
        "scale": bool(layer.scale),
    }


def _leaky_relu(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    # Keras 2 (and DL4J) know only `alpha`; Keras 3 renamed it `negative_slope`.
    slope = options["slope"]
    if _is_keras2(module):
        return module.layers.LeakyReLU(alpha=slope, name=name)
    return module.layers.LeakyReLU(negative_slope=slope, name=name)


register(
    "Dense",
    read=lambda layer: {"units": int(layer.units), "activation": _activation(layer), "use_bias": layer.use_bias},
    build=lambda options, name, module: module.layers.Dense(name=name, **options),
)
register(
    "LeakyReLU",
    read=lambda layer: {"slope": float(getattr(layer, "negative_slope", getattr(layer, "alpha", 0.3)))},
    build=_leaky_relu,
)
register(
    "BatchNormalization",
    read=_read_batch_normalization,
    build=lambda options, name, module: module.layers.BatchNormalization(name=name, **options),
)
register(
    "Reshape",
    read=lambda layer: {"target_shape": tuple(int(side) for side in layer.target_shape)},
    build=lambda options, name, module: module.layers.Reshape(name=name, **options),
)
register("Flatten", read=lambda layer: {}, build=lambda options, name, module: module.layers.Flatten(name=name))
register(
    "Activation",
    read=lambda layer: {"activation": _activation(layer)},
    build=lambda options, name, module: module.layers.Activation(name=name, **options),
)
register(
    "Dropout",
    read=lambda layer: {"rate": float(layer.rate)},
    build=lambda options, name, module: module.layers.Dropout(name=name, **options),
)


def _walk(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested Sequential or functional model, in either Keras
            yield from _walk(layer)
        elif type(layer).__name__ != "InputLayer":
            yield layer


def read_layers(model: Any) -> list[LayerSpec]:
    """The model's layers in order, nested models opened up; every unsupported layer is named in one error."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"Model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "ganport exports single-input, single-output chains."
        )
    layers = list(_walk(model))
    unsupported = sorted(
        {f"{type(layer).__name__} ({layer.name})" for layer in layers if type(layer).__name__ not in _CONVERTERS}
    )
    if unsupported:
        raise UnsupportedLayerError(
            f"Unsupported layer{'s' if len(unsupported) > 1 else ''} {', '.join(unsupported)}; "
            f"supported: {', '.join(supported_layers())}."
        )
    return [
        LayerSpec(
            type(layer).__name__,
            layer.name,
            _CONVERTERS[type(layer).__name__].read(layer),
            [np.asarray(weight) for weight in layer.get_weights()],
        )
        for layer in layers
    ]


def build_sequential(specs: list[LayerSpec], input_shape: tuple[int, ...], name: str, module: ModuleType) -> Any:
    """A flat Sequential in `module` (keras or tf_keras) with the specs' layers and weights."""
    model = module.Sequential(name=name)
    model.add(module.Input(shape=input_shape))
    for spec in specs:
        model.add(_CONVERTERS[spec.kind].build(spec.options, spec.name, module))
    for spec, layer in zip(specs, model.layers, strict=True):
        layer.set_weights(spec.weights)
    return model
