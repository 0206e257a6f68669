"""The lecture's training loop (`predict` + three `train_on_batch` calls), as faithfully as Keras 3 allows.

It is the yardstick for ganport's compiled step, in speed (bench/train_speed.py) and in quality
(bench/quality_vs_seed.py). One change is needed for it to learn at all on Keras 3: Keras 3 reads `trainable` when
a model's train function is first traced, so the lecture's single `discriminator.trainable = False` would freeze the
discriminator for its own updates too. The flag is set before each model's first call instead.
"""

from __future__ import annotations

import keras
import numpy as np

from ganport.images import from_uint8
from ganport.models import build_discriminator, build_generator


class SeedStyleGan:
    """Generator, discriminator and combined model compiled the lecture's way, with the lecture's iteration."""

    def __init__(
        self,
        train_images: np.ndarray,
        latent_dim: int = 100,
        batch_size: int = 32,
        seed: int = 0,
        learning_rate: float = 2e-4,
        beta_1: float = 0.5,
    ) -> None:
        keras.utils.set_random_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.images = from_uint8(train_images)
        self.latent_dim, self.batch_size = latent_dim, batch_size
        self.generator = build_generator(latent_dim)
        self.discriminator = build_discriminator()
        self.discriminator.compile(
            loss="binary_crossentropy",
            metrics=["accuracy"],
            optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta_1),
        )
        noise = keras.Input(shape=(latent_dim,))
        self.combined = keras.Model(noise, self.discriminator(self.generator(noise)))
        self.combined.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta_1))

    def train_discriminator(self, images: np.ndarray, label: float) -> tuple[float, float]:
        self.discriminator.trainable = True
        loss, accuracy = self.discriminator.train_on_batch(images, np.full((len(images), 1), label, np.float32))
        return float(loss), float(accuracy)

    def train_generator(self, noise: np.ndarray) -> float:
        self.discriminator.trainable = False
        return float(self.combined.train_on_batch(noise, np.ones((len(noise), 1), np.float32)))

    def iteration(self) -> tuple[float, float, float]:
        """One lecture iteration; returns D loss, D accuracy and G loss."""
        half = self.batch_size // 2
        real = self.images[self.rng.integers(0, len(self.images), half)]
        fakes = self.generator.predict(self.rng.standard_normal((half, self.latent_dim)), verbose=0)
        loss_real, accuracy_real = self.train_discriminator(real, 1.0)
        loss_fake, accuracy_fake = self.train_discriminator(fakes, 0.0)
        generator_loss = self.train_generator(self.rng.standard_normal((self.batch_size, self.latent_dim)))
        return (loss_real + loss_fake) / 2, (accuracy_real + accuracy_fake) / 2, generator_loss
