"""Convolutional and conditional GANs for the conversion tests, with random weights and BatchNorm statistics.

Keras-GAN's DCGAN and CGAN come from ganport.models; this adds a Conv2DTranspose generator, an ACGAN-style
two-output critic, a critic that uses every other registry layer, and the lecture's way of saving (a functional
Model wrapping the Sequential, compiled with an optimizer, written by tf_keras as HDF5). Also imported by
java-check's make_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np

from ganport.models import (
    build_cgan_discriminator,
    build_cgan_generator,
    build_dcgan_discriminator,
    build_dcgan_generator,
)


def transpose_generator(module: ModuleType = keras) -> Any:
    """Dense -> Reshape -> BN -> ReLU -> Conv2DTranspose(s2) -> BN -> ReLU -> Conv2DTranspose(s2, tanh)."""
    k = module.layers
    return module.Sequential(
        [
            module.Input(shape=(32,), name="z"),
            k.Dense(7 * 7 * 16),
            k.Reshape((7, 7, 16)),
            k.BatchNormalization(),
            k.ReLU(),
            k.Conv2DTranspose(8, 4, strides=2, padding="same", use_bias=False),
            k.BatchNormalization(center=False),
            k.ReLU(max_value=6.0),
            k.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh"),
        ],
        name="transpose_generator",
    )


def acgan_discriminator(module: ModuleType = keras, classes: int = 10) -> Any:
    """Keras-GAN's ACGAN critic, narrower: strided convolutions -> validity (sigmoid) and class (softmax)."""
    k = module.layers
    image = module.Input(shape=(28, 28, 1), name="image")
    x = image
    for filters, strides in ((8, 2), (16, 2), (32, 1)):
        x = k.Conv2D(filters, 3, strides=strides, padding="same")(x)
        if filters == 16:
            x = k.ZeroPadding2D(((0, 1), (0, 1)))(x)
        x = k.LeakyReLU(0.2)(x)
        x = k.Dropout(0.25)(x)
        if filters != 8:
            x = k.BatchNormalization(momentum=0.8)(x)
    features = k.Flatten()(x)
    validity = k.Dense(1, activation="sigmoid")(features)
    label = k.Dense(classes, activation="softmax")(features)
    return module.Model(image, [validity, label], name="acgan_discriminator")


def layer_tour_discriminator(module: ModuleType = keras) -> Any:
    """A conditional critic DAG through the remaining registry layers: two pooling branches added, cropping,
    dilation, spatial dropout, global pooling, concatenated with an embedded label."""
    k = module.layers
    image = module.Input(shape=(28, 28, 1), name="image")
    label = module.Input(shape=(1,), dtype="int32", name="label")
    x = k.Conv2D(8, 3, padding="valid", dilation_rate=2, activation="elu")(image)
    x = k.ReLU()(x)
    branches = [k.MaxPooling2D(2)(x), k.AveragePooling2D(2, padding="same")(x)]
    x = k.Add()(branches)
    x = k.Cropping2D(((1, 0), (0, 1)))(x)
    x = k.Conv2D(16, 3, strides=2, padding="same", activation="selu")(x)
    x = k.SpatialDropout2D(0.2)(x)
    pooled = k.GlobalAveragePooling2D()(x)
    embedded = k.Flatten()(k.Embedding(10, 16)(label))
    joined = k.Concatenate()([pooled, k.Multiply()([pooled, embedded])])
    hidden = k.Dense(16, activation="softplus")(joined)
    return module.Model([image, label], k.Dense(1, activation="sigmoid")(hidden), name="layer_tour")


def rgb_generator(module: ModuleType = keras) -> Any:
    """A DCGAN-style colour generator: noise -> 16x16x3 (faces and CIFAR-style GANs make RGB images)."""
    k = module.layers
    return module.Sequential(
        [
            module.Input(shape=(24,), name="noise"),
            k.Dense(4 * 4 * 16),
            k.Reshape((4, 4, 16)),
            k.UpSampling2D(),
            k.Conv2D(16, 3, padding="same"),
            k.BatchNormalization(momentum=0.8),
            k.LeakyReLU(0.2),
            k.UpSampling2D(),
            k.Conv2D(3, 3, padding="same", activation="tanh"),
        ],
        name="rgb_generator",
    )


def image_to_image(module: ModuleType = keras) -> Any:
    """A super-resolution-style generator: 16x16x3 images -> 32x32x3 (an encoder, then upsampling)."""
    k = module.layers
    low = module.Input(shape=(16, 16, 3), name="low_resolution")
    x = k.LeakyReLU(0.2)(k.Conv2D(8, 3, padding="same")(low))
    x = k.Conv2D(16, 3, strides=2, padding="same")(x)
    x = k.BatchNormalization()(x)
    x = k.UpSampling2D(4)(k.ReLU()(x))
    high = k.Conv2D(3, 3, padding="same", activation="tanh", name="high_resolution")(x)
    return module.Model(low, high, name="image_to_image")


def tabular_generator(module: ModuleType = keras) -> Any:
    """A conditional tabular GAN's generator: latent + an embedded class label -> 33 feature values."""
    k = module.layers
    latent = module.Input(shape=(16,), name="latent")
    label = module.Input(shape=(1,), dtype="int32", name="condition")
    joined = k.Concatenate()([latent, k.Flatten()(k.Embedding(4, 8)(label))])
    hidden = k.LeakyReLU(0.2)(k.Dense(32)(joined))
    return module.Model([latent, label], k.Dense(33, activation="tanh", name="features")(hidden), name="tabular_gen")


def multiclass_critic(module: ModuleType = keras) -> Any:
    """A critic with a linear 10-way output (logits), no validity: images -> [batch, 10]."""
    k = module.layers
    image = module.Input(shape=(28, 28, 1), name="image")
    features = k.Flatten()(k.LeakyReLU(0.2)(k.Conv2D(8, 3, strides=2, padding="same")(image)))
    return module.Model(image, k.Dense(10)(features), name="multiclass_critic")


def separable_critic(module: ModuleType = keras) -> Any:
    """A colour critic through SeparableConv2D: 16x16x3 images -> validity."""
    k = module.layers
    image = module.Input(shape=(16, 16, 3), name="image")
    x = k.SeparableConv2D(8, 3, strides=2, padding="same", depth_multiplier=2, activation="relu")(image)
    return module.Model(image, k.Dense(1)(k.Flatten()(x)), name="separable_critic")


def sequence_critic(module: ModuleType = keras) -> Any:
    """A critic of sequences [batch, steps, features] through Conv1D (same, then strided valid), spatial dropout,
    max pooling, and the steps flattened beside their global average and maximum."""
    k = module.layers
    series = module.Input(shape=(32, 4), name="series")
    x = k.Conv1D(8, 3, padding="same", activation="relu")(series)
    x = k.MaxPooling1D(2)(k.SpatialDropout1D(0.2)(x))
    x = k.Conv1D(4, 3, strides=2, padding="valid", dilation_rate=1)(x)
    features = k.Concatenate()([k.Flatten()(x), k.GlobalAveragePooling1D()(x), k.GlobalMaxPooling1D()(x)])
    return module.Model(series, k.Dense(1)(features), name="sequence_critic")


def inference_identities_critic(module: ModuleType = keras) -> Any:
    """A critic with what GAN code adds around its layers: Rescaling of pixel values (by one number and per channel),
    noise and dropouts that act only while training, ELU, and a softmax over classes."""
    k = module.layers
    image = module.Input(shape=(12, 12, 3), name="image")
    x = k.GaussianNoise(0.1)(k.Rescaling(1 / 127.5, offset=-1.0)(image))
    x = k.ELU(alpha=0.5)(k.Conv2D(6, 3, strides=2, padding="same")(x))
    x = k.Rescaling([2.0, 1.0, 0.5, 1.0, 1.5, 3.0], offset=0.25)(k.GaussianDropout(0.2)(x))
    x = k.AlphaDropout(0.1)(k.Flatten()(x))
    return module.Model(image, k.Softmax(name="classes")(k.Dense(5)(x)), name="inference_identities_critic")


def onnx_only_layers(module: ModuleType = keras) -> Any:
    """The layers ganport converts for ONNX but DL4J 1.0.0-M2.1 does not import with the same numbers:
    DepthwiseConv2D, PReLU with a slope per position, GroupNormalization, UpSampling1D, ZeroPadding1D,
    Cropping1D, AveragePooling1D, LayerNormalization (export --format h5 refuses it, naming them)."""
    k = module.layers
    image = module.Input(shape=(8, 8, 3), name="image")
    x = k.PReLU()(k.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(image))
    x = k.GroupNormalization(groups=3)(x)
    x = k.Cropping1D((2, 0))(k.ZeroPadding1D(1)(k.UpSampling1D(2)(k.Reshape((64, 6))(x))))
    x = k.LayerNormalization()(k.AveragePooling1D(2)(x))
    return module.Model(image, k.Dense(1)(k.Flatten()(x)), name="onnx_only_layers")


# name -> builder(module): every model the conversion tests export, Keras 3 and the lecture's tf_keras way.
MODELS = {
    "dcgan_generator": lambda module: build_dcgan_generator(module=module),
    "dcgan_discriminator": lambda module: build_dcgan_discriminator(module=module),
    "cgan_generator": lambda module: build_cgan_generator(module=module),
    "cgan_discriminator": lambda module: build_cgan_discriminator(module=module),
    "transpose_generator": transpose_generator,
    "acgan_discriminator": acgan_discriminator,
    "layer_tour": layer_tour_discriminator,
    "rgb_generator": rgb_generator,
    "image_to_image": image_to_image,
    "tabular_generator": tabular_generator,
    "multiclass_critic": multiclass_critic,
    "separable_critic": separable_critic,
    "sequence_critic": sequence_critic,
    "inference_identities_critic": inference_identities_critic,
}


def randomized(model: Any, seed: int = 0) -> Any:
    """Random weights everywhere, BatchNorm moving statistics and affine parameters included (not 0/1)."""
    rng = np.random.default_rng(seed)
    for layer in _leaves(model):
        weights = layer.get_weights()
        if not weights:
            continue
        if type(layer).__name__ == "BatchNormalization":
            new = [rng.uniform(0.5, 1.5, w.shape) for w in weights]
            variables = [v.name.split("/")[-1].split(":")[0] for v in layer.weights]
            new = [
                rng.normal(0, 0.3, w.shape) if name in ("beta", "moving_mean") else value
                for name, w, value in zip(variables, weights, new, strict=True)
            ]
        else:
            new = [
                rng.normal(0, 0.8 / np.sqrt(max(w.shape[0] if w.ndim < 4 else np.prod(w.shape[:3]), 1)), w.shape)
                for w in weights
            ]
        layer.set_weights([value.astype(np.float32) for value in new])
    return model


def _leaves(model: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        found.extend(_leaves(layer) if hasattr(layer, "layers") else [layer])
    return found


def save_keras3(name: str, folder: Path, suffix: str = ".keras") -> Path:
    path = folder / f"{name}{suffix}"
    randomized(MODELS[name](keras)).save(path)
    return path


def save_lecture_way(name: str, folder: Path) -> Path:
    """tf_keras, the model wrapped in a functional Model, compiled with Adam(2e-4, 0.5), saved as HDF5."""
    import tf_keras

    inner = randomized(MODELS[name](tf_keras))
    inputs = [tf_keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=tensor.name) for tensor in inner.inputs]
    outer = tf_keras.Model(inputs, inner(inputs if len(inputs) > 1 else inputs[0]), name=name)
    outer.compile(optimizer=tf_keras.optimizers.Adam(2e-4, 0.5), loss="binary_crossentropy")
    path = folder / f"{name}.h5"
    outer.save(path)
    return path


# How a model file is saved: natively by Keras 3, or the lecture's way with tf_keras.
WAYS = {"keras3": save_keras3, "lecture": save_lecture_way}
