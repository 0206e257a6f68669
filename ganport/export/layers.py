"""The layer registry: one converter per supported Keras layer type, Keras 3 in, Keras 2 (tf_keras) out.

Keras 2 is the last format Deeplearning4j imports, so each converter writes the Keras 2 config that DL4J reads
(LeakyReLU `alpha`, never Keras 3's `negative_slope`, which DL4J would silently replace by 0.01).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import keras

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

Converter = Callable[[Any, Any], Any]
_CONVERTERS: dict[str, Converter] = {}


def register(keras_class: str) -> Callable[[Converter], Converter]:
    """Register the converter for one Keras layer class; a second registration for the same class is an error."""

    def decorate(converter: Converter) -> Converter:
        if keras_class in _CONVERTERS:
            raise ValueError(f"A converter for {keras_class} is already registered.")
        _CONVERTERS[keras_class] = converter
        return converter

    return decorate


def supported_layers() -> list[str]:
    return sorted(_CONVERTERS)


def _activation_name(layer: keras.layers.Layer, activation: Any) -> str:
    name = keras.activations.serialize(activation)
    name = name if isinstance(name, str) else name.get("config", {}).get("name", str(name))
    if name not in DL4J_ACTIVATIONS:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} uses activation {name!r}, which DL4J cannot import; "
            f"supported activations: {', '.join(DL4J_ACTIVATIONS)}."
        )
    return name


@register("Dense")
def convert_dense(layer: keras.layers.Dense, tf_keras: Any) -> Any:
    return tf_keras.layers.Dense(
        layer.units, activation=_activation_name(layer, layer.activation), use_bias=layer.use_bias, name=layer.name
    )


@register("LeakyReLU")
def convert_leaky_relu(layer: keras.layers.LeakyReLU, tf_keras: Any) -> Any:
    return tf_keras.layers.LeakyReLU(alpha=float(layer.negative_slope), name=layer.name)


@register("BatchNormalization")
def convert_batch_normalization(layer: keras.layers.BatchNormalization, tf_keras: Any) -> Any:
    if layer.axis not in (-1, len(layer.input.shape) - 1):
        raise UnsupportedLayerError(
            f"BatchNormalization {layer.name!r} normalises axis {layer.axis}; "
            "only the last (channel) axis is supported."
        )
    return tf_keras.layers.BatchNormalization(
        momentum=layer.momentum, epsilon=layer.epsilon, center=layer.center, scale=layer.scale, name=layer.name
    )


@register("Reshape")
def convert_reshape(layer: keras.layers.Reshape, tf_keras: Any) -> Any:
    return tf_keras.layers.Reshape(tuple(layer.target_shape), name=layer.name)


@register("Flatten")
def convert_flatten(layer: keras.layers.Flatten, tf_keras: Any) -> Any:
    return tf_keras.layers.Flatten(name=layer.name)


@register("Activation")
def convert_activation(layer: keras.layers.Activation, tf_keras: Any) -> Any:
    return tf_keras.layers.Activation(_activation_name(layer, layer.activation), name=layer.name)


@register("Dropout")
def convert_dropout(layer: keras.layers.Dropout, tf_keras: Any) -> Any:
    return tf_keras.layers.Dropout(layer.rate, name=layer.name)


def converter_for(layer: keras.layers.Layer) -> Converter:
    return _CONVERTERS[type(layer).__name__]


def _walk(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order, with nested models (the lecture's Model-around-Sequential) opened up.

    Raises UnsupportedLayerError naming every layer no converter handles.
    """
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
    return layers
