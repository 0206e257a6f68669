"""The lecture's training loop (`predict` + three `train_on_batch` calls), as faithfully as Keras 3 allows, for each
architecture `ganport train` trains (Keras-GAN's dcgan.py and cgan.py use the same loop).

It is the yardstick for ganport's compiled step, in speed (bench/train_speed.py) and in quality
(bench/quality_vs_seed.py). One change is needed for it to learn at all on Keras 3: Keras 3 reads `trainable` when
a model's train function is first traced, so the lecture's single `discriminator.trainable = False` would freeze the
discriminator for its own updates too. The flag is set before each model's first call instead.
"""

from __future__ import annotations

import keras
import numpy as np

from ganport.contract import CLASSES
from ganport.images import from_uint8
from ganport.models import ARCHITECTURES, DEFAULT_ARCHITECTURE, network_input


class SeedStyleGan:
    """Generator, discriminator and combined model compiled the lecture's way, with the lecture's iteration.

    A conditional architecture feeds the real half batch's labels to D and to the fakes made for D, and uniformly
    drawn labels to the generator's step, as cgan.py does.
    """

    def __init__(
        self,
        train_images: np.ndarray,
        train_labels: np.ndarray | None = None,
        model: str = DEFAULT_ARCHITECTURE,
        latent_dim: int = 100,
        batch_size: int = 32,
        seed: int = 0,
        learning_rate: float = 2e-4,
        beta_1: float = 0.5,
    ) -> None:
        architecture = ARCHITECTURES[model]
        if architecture.conditional and train_labels is None:
            raise ValueError(f"{model} is conditional: pass the training labels")
        keras.utils.set_random_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.images = from_uint8(train_images)
        self.labels = train_labels.astype(np.int32)[:, None] if architecture.conditional else None
        self.latent_dim, self.batch_size = latent_dim, batch_size
        self.generator = architecture.build_generator(latent_dim)
        self.discriminator = architecture.build_discriminator()
        self.discriminator.compile(
            loss="binary_crossentropy",
            metrics=["accuracy"],
            optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta_1),
        )
        noise = keras.Input(shape=(latent_dim,))
        if architecture.conditional:
            label = keras.Input(shape=(1,), dtype="int32")
            self.combined = keras.Model([noise, label], self.discriminator([self.generator([noise, label]), label]))
        else:
            self.combined = keras.Model(noise, self.discriminator(self.generator(noise)))
        self.combined.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta_1))

    def train_discriminator(
        self, images: np.ndarray, label: float, classes: np.ndarray | None = None
    ) -> tuple[float, float]:
        self.discriminator.trainable = True
        targets = np.full((len(images), 1), label, np.float32)
        loss, accuracy = self.discriminator.train_on_batch(network_input(images, classes), targets)
        return float(loss), float(accuracy)

    def train_generator(self, noise: np.ndarray, classes: np.ndarray | None = None) -> float:
        self.discriminator.trainable = False
        targets = np.ones((len(noise), 1), np.float32)
        return float(self.combined.train_on_batch(network_input(noise, classes), targets))

    def iteration(self) -> tuple[float, float, float]:
        """One lecture iteration; returns D loss, D accuracy and G loss."""
        half = self.batch_size // 2
        index = self.rng.integers(0, len(self.images), half)
        real = self.images[index]
        classes = None if self.labels is None else self.labels[index]
        noise = self.rng.standard_normal((half, self.latent_dim))
        fakes = self.generator.predict(network_input(noise, classes), verbose=0)
        loss_real, accuracy_real = self.train_discriminator(real, 1.0, classes)
        loss_fake, accuracy_fake = self.train_discriminator(fakes, 0.0, classes)
        noise = self.rng.standard_normal((self.batch_size, self.latent_dim))
        sampled = None if self.labels is None else self.rng.integers(0, CLASSES, (self.batch_size, 1), dtype=np.int32)
        generator_loss = self.train_generator(noise, sampled)
        return (loss_real + loss_fake) / 2, (accuracy_real + accuracy_fake) / 2, generator_loss
