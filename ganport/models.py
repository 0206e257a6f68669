"""The lecture's generator and discriminator, as flat Keras 3 Sequential models, and Keras-GAN's DCGAN and CGAN.

The lecture wraps each Sequential in a functional Model; ganport keeps them flat because DL4J cannot import a model
that nests another, and the layers, shapes and initialisers are otherwise exactly the lecture's. The DCGAN and CGAN
builders take the Keras module (keras, or tf_keras for files saved the lecture's Keras 2 way) and build the
architectures as Keras-GAN's dcgan.py and cgan.py write them, the conditional ones as functional models.
ARCHITECTURES names the three that `ganport train --model` trains. Keras is imported by the builders, not here, so
the command line reads the registry without starting TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ganport.contract import CLASSES

LATENT_DIM = 100
IMAGE_SHAPE = (28, 28, 1)
HIDDEN_UNITS_GENERATOR = (256, 512, 1024)
HIDDEN_UNITS_DISCRIMINATOR = (512, 256)
LEAKY_SLOPE = 0.2
BATCHNORM_MOMENTUM = 0.8


def _keras(module: ModuleType | None) -> ModuleType:
    if module is not None:
        return module
    import keras

    return keras


def add_generator_blocks(model: Any, layers: ModuleType, units: tuple[int, ...]) -> None:
    """The lecture's generator block, once per entry of `units`: Dense(n) -> LeakyReLU(0.2) -> BatchNorm(momentum 0.8).
    `layers` is keras.layers or tf_keras.layers (the slope is passed by position: Keras 3 names it negative_slope,
    tf_keras alpha)."""
    for width in units:
        model.add(layers.Dense(width))
        model.add(layers.LeakyReLU(LEAKY_SLOPE))
        model.add(layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM))


def build_generator(latent_dim: int = LATENT_DIM, image_shape: tuple[int, ...] = IMAGE_SHAPE) -> Any:
    """Dense 256/512/1024, each followed by LeakyReLU(0.2) and BatchNorm(momentum 0.8), then Dense tanh + Reshape."""
    keras = _keras(None)
    layers = keras.layers
    model = keras.Sequential(name="generator")
    model.add(keras.Input(shape=(latent_dim,), name="z"))
    add_generator_blocks(model, layers, HIDDEN_UNITS_GENERATOR)
    pixels = 1
    for side in image_shape:
        pixels *= side
    model.add(layers.Dense(pixels, activation="tanh"))
    model.add(layers.Reshape(image_shape))
    return model


def build_discriminator(image_shape: tuple[int, ...] = IMAGE_SHAPE) -> Any:
    """Flatten, Dense 512 and 256 with LeakyReLU(0.2), Dense 1 sigmoid."""
    keras = _keras(None)
    layers = keras.layers
    model = keras.Sequential(name="discriminator")
    model.add(keras.Input(shape=image_shape, name="image"))
    model.add(layers.Flatten())
    for units in HIDDEN_UNITS_DISCRIMINATOR:
        model.add(layers.Dense(units))
        model.add(layers.LeakyReLU(negative_slope=LEAKY_SLOPE))
    model.add(layers.Dense(1, activation="sigmoid"))
    return model


DCGAN_DROPOUT = 0.25
# The units of the lecture's dense blocks before dcgan-paper's projection (issue 33, docs/train.md: at 8000 iterations
# one block scores what none does at 20000, two more than none at 40000).
DCGAN_PAPER_STEM = (256, 256)
CGAN_DROPOUT = 0.4


def build_dcgan_generator(latent_dim: int = LATENT_DIM, module: ModuleType | None = None) -> Any:
    """Dense(128*7*7, relu) -> Reshape(7, 7, 128) -> BN -> [UpSampling2D -> Conv2D(n, 3) -> relu -> BN] for n = 128,
    64 -> Conv2D(1, 3) -> tanh; every BN with momentum 0.8."""
    module = _keras(module)
    k = module.layers
    model = module.Sequential(name="generator")
    model.add(module.Input(shape=(latent_dim,), name="z"))
    model.add(k.Dense(128 * 7 * 7, activation="relu"))
    model.add(k.Reshape((7, 7, 128)))
    model.add(k.BatchNormalization(momentum=BATCHNORM_MOMENTUM))
    for filters in (128, 64):
        model.add(k.UpSampling2D())
        model.add(k.Conv2D(filters, kernel_size=3, padding="same"))
        model.add(k.Activation("relu"))
        model.add(k.BatchNormalization(momentum=BATCHNORM_MOMENTUM))
    model.add(k.Conv2D(1, kernel_size=3, padding="same"))
    model.add(k.Activation("tanh"))
    return model


def build_dcgan_discriminator(image_shape: tuple[int, ...] = IMAGE_SHAPE, module: ModuleType | None = None) -> Any:
    """Conv2D 32/64/128 (stride 2) and 256 (stride 1), each with LeakyReLU(0.2) and Dropout(0.25), BN(0.8) after the
    second and third, ZeroPadding after the second, then Flatten -> Dense(1, sigmoid)."""
    module = _keras(module)
    k = module.layers
    model = module.Sequential(name="discriminator")
    model.add(module.Input(shape=image_shape, name="image"))
    for filters, strides in ((32, 2), (64, 2), (128, 2), (256, 1)):
        model.add(k.Conv2D(filters, kernel_size=3, strides=strides, padding="same"))
        if filters == 64:
            model.add(k.ZeroPadding2D(padding=((0, 1), (0, 1))))
        model.add(k.LeakyReLU(LEAKY_SLOPE))
        model.add(k.Dropout(DCGAN_DROPOUT))
        if filters in (64, 128):
            model.add(k.BatchNormalization(momentum=BATCHNORM_MOMENTUM))
    model.add(k.Flatten())
    model.add(k.Dense(1, activation="sigmoid"))
    return model


def build_dcgan_paper_generator(latent_dim: int = LATENT_DIM, module: ModuleType | None = None) -> Any:
    """The DCGAN paper's generator at MNIST size behind dense blocks: [Dense(n) -> LeakyReLU(0.2) -> BN] for n in
    DCGAN_PAPER_STEM -> Dense(64*7*7) -> Reshape(7, 7, 64) -> BN -> relu -> [Conv2DTranspose(n, 4, stride 2) -> BN ->
    relu] for n = 32, 16 -> Conv2DTranspose(1, 3) -> tanh.

    Channels halve as the image doubles, as in the paper; narrow, because on a CPU the samples a run sees decide its
    quality: 4.2 million multiply-adds per sample against Keras-GAN's 88 (issue 33). The dense blocks (the lecture's;
    InfoGAN's MNIST generator too has a fully connected layer before its projection) are where the noise becomes a
    digit: with the projection alone, the only nonlinearity before the local convolutions, this generator and
    Keras-GAN's both level off at 8.56 with blends of neighbouring digits. BatchNorm per channel after the Reshape (as
    Keras-GAN's), not per unit of the Dense: at the lecture's batch of 32 per-unit statistics are noisy (Fréchet
    distance 29.9 against 25.8 at 6000 iterations, measured on this variant's earlier, wider form).
    Kernel 4 at stride 2: every output pixel gets the same number of taps (no checkerboard), and the padding is
    symmetric (1 and 1), which DL4J's Deconvolution2D imports as Keras computes it."""
    module = _keras(module)
    k = module.layers
    model = module.Sequential(name="generator")
    model.add(module.Input(shape=(latent_dim,), name="z"))
    add_generator_blocks(model, k, DCGAN_PAPER_STEM)
    model.add(k.Dense(64 * 7 * 7))
    model.add(k.Reshape((7, 7, 64)))
    model.add(k.BatchNormalization(momentum=BATCHNORM_MOMENTUM))
    model.add(k.Activation("relu"))
    for filters in (32, 16):
        model.add(k.Conv2DTranspose(filters, kernel_size=4, strides=2, padding="same"))
        model.add(k.BatchNormalization(momentum=BATCHNORM_MOMENTUM))
        model.add(k.Activation("relu"))
    model.add(k.Conv2DTranspose(1, kernel_size=3, padding="same"))
    model.add(k.Activation("tanh"))
    return model


def build_dcgan_paper_discriminator(
    image_shape: tuple[int, ...] = IMAGE_SHAPE, module: ModuleType | None = None
) -> Any:
    """The DCGAN paper's critic at MNIST size: Conv2D(32, 4, stride 2) -> LeakyReLU(0.2) -> [Conv2D(n, 4, stride 2)
    -> BN -> LeakyReLU(0.2)] for n = 64, 128 -> Flatten -> Dense(1, sigmoid); no dropout, no BN on the input layer."""
    module = _keras(module)
    k = module.layers
    model = module.Sequential(name="discriminator")
    model.add(module.Input(shape=image_shape, name="image"))
    model.add(k.Conv2D(32, kernel_size=4, strides=2, padding="same"))
    model.add(k.LeakyReLU(LEAKY_SLOPE))
    for filters in (64, 128):
        model.add(k.Conv2D(filters, kernel_size=4, strides=2, padding="same"))
        model.add(k.BatchNormalization(momentum=BATCHNORM_MOMENTUM))
        model.add(k.LeakyReLU(LEAKY_SLOPE))
    model.add(k.Flatten())
    model.add(k.Dense(1, activation="sigmoid"))
    return model


def build_cgan_generator(latent_dim: int = LATENT_DIM, classes: int = CLASSES, module: ModuleType | None = None) -> Any:
    """noise * Flatten(Embedding(classes, latent)(label)) -> the lecture's MLP generator, nested as Keras-GAN does."""
    module = _keras(module)
    k = module.layers
    mlp = module.Sequential(name="mlp_generator")
    mlp.add(module.Input(shape=(latent_dim,)))
    add_generator_blocks(mlp, k, HIDDEN_UNITS_GENERATOR)
    mlp.add(k.Dense(IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2], activation="tanh"))
    mlp.add(k.Reshape(IMAGE_SHAPE))
    noise = module.Input(shape=(latent_dim,), name="z")
    label = module.Input(shape=(1,), dtype="int32", name="label")
    embedded = k.Flatten()(k.Embedding(classes, latent_dim)(label))
    return module.Model([noise, label], mlp(k.Multiply()([noise, embedded])), name="generator")


def build_cgan_discriminator(
    image_shape: tuple[int, ...] = IMAGE_SHAPE, classes: int = CLASSES, module: ModuleType | None = None
) -> Any:
    """Flatten(image) * Flatten(Embedding(classes, pixels)(label)) -> Dense 512 x 3 with LeakyReLU(0.2), Dropout(0.4)
    after the second and third -> Dense(1, sigmoid)."""
    module = _keras(module)
    k = module.layers
    pixels = image_shape[0] * image_shape[1] * image_shape[2]
    mlp = module.Sequential(name="mlp_discriminator")
    mlp.add(module.Input(shape=(pixels,)))
    for index in range(3):
        mlp.add(k.Dense(512))
        mlp.add(k.LeakyReLU(LEAKY_SLOPE))
        if index:
            mlp.add(k.Dropout(CGAN_DROPOUT))
    mlp.add(k.Dense(1, activation="sigmoid"))
    image = module.Input(shape=image_shape, name="image")
    label = module.Input(shape=(1,), dtype="int32", name="label")
    embedded = k.Flatten()(k.Embedding(classes, pixels)(label))
    validity = mlp(k.Multiply()([k.Flatten()(image), embedded]))
    return module.Model([image, label], validity, name="discriminator")


def network_input(tensor: Any, labels: Any | None) -> Any:
    """What a network of a GAN takes: the noise or image alone, or [it, labels] when the GAN is conditional."""
    return tensor if labels is None else [tensor, labels]


@dataclass(frozen=True)
class Architecture:
    """A GAN `ganport train --model` trains: its two builders and its authors' schedule."""

    name: str
    summary: str
    build_generator: Callable[[int], Any]  # latent size -> generator
    build_discriminator: Callable[[], Any]
    # the schedule of the code it comes from (the lecture's, Keras-GAN's dcgan.py / cgan.py), or ganport's for its own
    iterations: int
    conditional: bool = False  # both networks also take the class label
    # The precisions (ganport.run.TRAIN_PRECISIONS) in which XLA trains it faster than TensorFlow's own kernels
    # (bench/train_speed.py): XLA fuses the element-wise work around the products. DCGAN in float32: XLA ties oneDNN
    # on AVX-512 (130.0 vs 129.5 ms/it) and wins with both capped at AVX2 (136 vs 161); in bfloat16 oneDNN's native
    # convolutions win (109 vs 123). DCGAN-paper in float32 (AMD EPYC, AVX-512): XLA 21.3 vs 36.5 ms/it
    # (22.8 vs 38.0 in a second run).
    xla_precisions: tuple[str, ...] = ("fp32", "bf16")


ARCHITECTURES = {
    item.name: item
    for item in (
        Architecture("gan", "the lecture's MLP GAN", build_generator, build_discriminator, 30000),
        Architecture(
            "dcgan",
            "Keras-GAN's DCGAN: UpSampling + Conv2D generator, strided-conv critic",
            build_dcgan_generator,
            build_dcgan_discriminator,
            4000,
            xla_precisions=("fp32",),
        ),
        Architecture(
            "dcgan-paper",
            "the DCGAN paper's design at MNIST size: dense blocks + Conv2DTranspose generator, LeakyReLU + BN critic",
            build_dcgan_paper_generator,
            build_dcgan_paper_discriminator,
            10000,
        ),
        Architecture(
            "cgan",
            "Keras-GAN's conditional GAN: the MLP GAN with label embeddings in both networks",
            build_cgan_generator,
            build_cgan_discriminator,
            10000,
            conditional=True,
        ),
    )
}
DEFAULT_ARCHITECTURE = "gan"
