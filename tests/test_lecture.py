"""The seed-style reference must really train each network only in its own step (Keras 3's trainable trap)."""

from __future__ import annotations

import numpy as np

from ganport.lecture import SeedStyleGan


def snapshot(model) -> list[np.ndarray]:
    return [variable.numpy().copy() for variable in model.weights]  # trainable or not: a frozen model lists none


def moved(before, after) -> list[bool]:
    return [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]


def test_each_network_moves_only_in_its_own_step_from_the_first_call_on():
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    gan = SeedStyleGan(images, seed=0)
    for _ in range(2):  # the first calls trace the train functions: the trap springs there
        g, d = snapshot(gan.generator), snapshot(gan.discriminator)
        gan.train_discriminator(gan.images[:16], 1.0)
        assert all(moved(d, snapshot(gan.discriminator))) and not any(moved(g, snapshot(gan.generator)))

        g, d = snapshot(gan.generator), snapshot(gan.discriminator)
        gan.train_generator(np.random.default_rng(1).standard_normal((32, 100)))
        assert all(moved(g, snapshot(gan.generator))) and not any(moved(d, snapshot(gan.discriminator)))
    loss, accuracy, generator_loss = gan.iteration()
    assert np.isfinite([loss, accuracy, generator_loss]).all()
