"""Layers of keras-contrib and TensorFlow Addons that GAN tutorials used (Keras-GAN's CycleGAN and pix2pix, SN-GANs),
read without those libraries, which no longer install beside TensorFlow 2.21.

Each is recognised by the class name its file gives it and rebuilt from its config with the math of the library
that wrote it, read from each library's source:
- keras-contrib `InstanceNormalization`: (x - mean) / (std + epsilon) over every axis but the batch and `axis`
  (`axis=None`, its default, normalises each sample whole, with one gamma and one beta);
- TensorFlow Addons `InstanceNormalization` and `GroupNormalization` (`Addons>...`): (x - mean) / sqrt(variance +
  epsilon) within each group of channels (a group per channel for instance normalization);
- TensorFlow Addons `SpectralNormalization` (and Keras 3's own): a wrapper that rescales its layer's kernel while
  training and leaves the rescaled kernel in place, so that inference is the wrapped layer itself
  (graph.trace unwraps it).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

# The class names files give these layers, and the math each stands for.
CONTRIB_INSTANCE = "InstanceNormalization"
ADDONS_INSTANCE, ADDONS_GROUP = "Addons>InstanceNormalization", "Addons>GroupNormalization"
ADDONS_SPECTRAL = "Addons>SpectralNormalization"
COMMUNITY_CLASSES = (CONTRIB_INSTANCE, ADDONS_INSTANCE, ADDONS_GROUP, ADDONS_SPECTRAL)
# What these layers' configs hold that acts only while training.
_TRAINING_ONLY = tuple(
    f"{weight}_{kind}" for weight in ("beta", "gamma") for kind in ("initializer", "regularizer", "constraint")
)


@functools.cache
def normalization_class(module: ModuleType) -> type:
    """The normalization layer of keras-contrib and TensorFlow Addons for `module` (keras or tf_keras): `groups`
    None is keras-contrib's math, a number (or -1, one per channel) TensorFlow Addons'."""

    class CommunityNormalization(module.layers.Layer):
        ganport_kind = "CommunityNormalization"

        def __init__(
            self,
            axis: int | None = -1,
            epsilon: float = 1e-3,
            center: bool = True,
            scale: bool = True,
            groups: int | None = None,
            **kwargs: Any,
        ) -> None:
            for key in _TRAINING_ONLY:
                kwargs.pop(key, None)
            super().__init__(**kwargs)
            self.axis, self.epsilon, self.center, self.scale, self.groups = axis, epsilon, center, scale, groups

        def build(self, input_shape: Any) -> None:
            channels = 1 if self.axis is None else int(input_shape[self.axis])
            if self.groups is not None and self.groups <= 0:
                self.groups = channels  # Addons' InstanceNormalization: one group per channel
            if self.scale:
                self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
            if self.center:
                self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
            self.built = True

        def call(self, inputs: Any) -> Any:
            normed = _normalized(inputs, self.axis, self.epsilon, self.groups)
            if self.scale:
                normed = normed * self.gamma
            if self.center:
                normed = normed + self.beta
            return normed

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict:
            return {
                **super().get_config(),
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "groups": self.groups,
            }

    return CommunityNormalization


def _normalized(inputs: Any, axis: int | None, epsilon: float, groups: int | None) -> Any:
    """`inputs` normalised as keras-contrib (`groups` None: over every axis but `axis`, epsilon added to the standard
    deviation) or TensorFlow Addons (channels last, over each group of channels, epsilon added to the variance) do."""
    import tensorflow as tf

    rank = len(inputs.shape)
    if groups is None:
        axes = [index for index in range(1, rank) if axis is None or index != axis % rank]
        mean, variance = tf.nn.moments(inputs, axes, keepdims=True)
        return (inputs - mean) / (tf.sqrt(variance) + epsilon)
    shape = tf.shape(inputs)
    channels = int(inputs.shape[-1])
    grouped = tf.reshape(inputs, tf.concat([shape[:-1], [groups, channels // groups]], 0))
    mean, variance = tf.nn.moments(grouped, [*range(1, rank - 1), rank], keepdims=True)
    return tf.reshape((grouped - mean) * tf.math.rsqrt(variance + epsilon), shape)


@functools.cache
def spectral_class(module: ModuleType) -> type:
    """TensorFlow Addons' SpectralNormalization wrapper for `module`, holding the weights it saved (the layer's,
    then the power iteration's vector `sn_u`) and computing what it computes at inference: its layer."""

    class SpectralNormalization(module.layers.Wrapper):
        ganport_kind = "SpectralNormalization"

        def __init__(self, layer: Any, power_iterations: int = 1, **kwargs: Any) -> None:
            super().__init__(layer, **kwargs)
            self.power_iterations = power_iterations

        def build(self, input_shape: Any) -> None:
            if not self.layer.built:
                self.layer.build(input_shape)
            units = int(self.layer.kernel.shape[-1])
            self.sn_u = self.add_weight(name="sn_u", shape=(1, units), initializer="zeros", trainable=False)
            self.built = True

        def call(self, inputs: Any, training: Any = None) -> Any:
            return self.layer(inputs)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return self.layer.compute_output_shape(input_shape)

        def get_config(self) -> dict:
            return {**super().get_config(), "power_iterations": self.power_iterations}

    return SpectralNormalization


def community_objects(module: ModuleType, names: set[str]) -> dict[str, type]:
    """The stand-in classes for the community layers among `names` (class names a config gives), for `module`."""
    normalization = functools.partial(_named, normalization_class(module))
    objects = {
        CONTRIB_INSTANCE: normalization(groups=None),
        ADDONS_INSTANCE: normalization(groups=-1),
        ADDONS_GROUP: normalization(),
        ADDONS_SPECTRAL: spectral_class(module),
    }
    return {name: made for name, made in objects.items() if name in names}


def _named(cls: type, **defaults: Any) -> Any:
    """`cls` rebuilt from a config with `defaults` for what the config does not say (keras-contrib's has no groups)."""

    class Configured(cls):  # type: ignore[misc, valid-type]
        @classmethod
        def from_config(cls_, config: dict) -> Any:
            return cls.from_config({**defaults, **config})

    Configured.__name__ = cls.__name__
    return Configured


def unwrapped(layer: Any) -> Any:
    """A spectral-normalization wrapper's layer, as inference computes it, rebuilt on the wrapper's input so that
    its own input is known (the wrapper calls it out of the graph's sight); any other layer as it is."""
    if getattr(type(layer), "ganport_kind", type(layer).__name__) != "SpectralNormalization":
        return layer
    inner = layer.layer
    module = _module_of(layer)
    rebuilt = type(inner).from_config(inner.get_config())
    rebuilt(module.Input(shape=tuple(layer.input.shape[1:]), dtype=layer.input.dtype))
    rebuilt.set_weights(inner.get_weights())
    return rebuilt


def _module_of(layer: Any) -> ModuleType:
    if type(layer).__module__.startswith("tf_keras") or isinstance(layer, _tf_keras_layer()):
        import tf_keras

        return tf_keras
    import keras

    return keras


def _tf_keras_layer() -> type:
    import tf_keras

    return tf_keras.layers.Layer
