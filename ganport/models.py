"""The lecture's generator and discriminator, as flat Keras 3 Sequential models.

The lecture wraps each Sequential in a functional Model; ganport keeps them flat because DL4J cannot import a model
that nests another, and the layers, shapes and initialisers are otherwise exactly the lecture's.
"""

from __future__ import annotations

import keras
from keras import layers

LATENT_DIM = 100
IMAGE_SHAPE = (28, 28, 1)
HIDDEN_UNITS_GENERATOR = (256, 512, 1024)
HIDDEN_UNITS_DISCRIMINATOR = (512, 256)
LEAKY_SLOPE = 0.2
BATCHNORM_MOMENTUM = 0.8


def build_generator(latent_dim: int = LATENT_DIM, image_shape: tuple[int, ...] = IMAGE_SHAPE) -> keras.Sequential:
    """Dense 256/512/1024, each followed by LeakyReLU(0.2) and BatchNorm(momentum 0.8), then Dense tanh + Reshape."""
    model = keras.Sequential(name="generator")
    model.add(keras.Input(shape=(latent_dim,), name="z"))
    for units in HIDDEN_UNITS_GENERATOR:
        model.add(layers.Dense(units))
        model.add(layers.LeakyReLU(negative_slope=LEAKY_SLOPE))
        model.add(layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM))
    pixels = 1
    for side in image_shape:
        pixels *= side
    model.add(layers.Dense(pixels, activation="tanh"))
    model.add(layers.Reshape(image_shape))
    return model


def build_discriminator(image_shape: tuple[int, ...] = IMAGE_SHAPE) -> keras.Sequential:
    """Flatten, Dense 512 and 256 with LeakyReLU(0.2), Dense 1 sigmoid."""
    model = keras.Sequential(name="discriminator")
    model.add(keras.Input(shape=image_shape, name="image"))
    model.add(layers.Flatten())
    for units in HIDDEN_UNITS_DISCRIMINATOR:
        model.add(layers.Dense(units))
        model.add(layers.LeakyReLU(negative_slope=LEAKY_SLOPE))
    model.add(layers.Dense(1, activation="sigmoid"))
    return model


def latent_dim_of(generator: keras.Model) -> int:
    return int(generator.inputs[0].shape[-1])
