"""The training step's faster layer computations (ganport.train_kernels) compute what Keras's layers compute: the
same outputs and gradients up to float32 rounding, the same dropout probability, on the layers' own weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ganport.host import native_bfloat16
from ganport.models import build_dcgan_discriminator, build_dcgan_generator
from ganport.train import dtype_policy
from ganport.train_kernels import (
    _decision_bits,
    forward,
    narrow_convolution,
    packed_dropout,
    upsampled_convolution,
)

# Relative to the largest value: float32 sums of ~10^3 products in another order differ from Keras's by ~1e-6.
RTOL = 2e-5


def relative_error(actual: tf.Tensor, expected: tf.Tensor) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


@pytest.mark.parametrize(("height", "width", "channels_in", "channels_out"), [(7, 7, 128, 128), (5, 3, 4, 2)])
def test_upsampling_then_3x3_convolution_is_one_2x2_convolution_of_the_small_image(
    height, width, channels_in, channels_out
):
    images = tf.random.stateless_normal([3, height, width, channels_in], seed=[0, 1])
    kernel = tf.random.stateless_normal([3, 3, channels_in, channels_out], seed=[0, 2])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([images, kernel])
        expected = tf.nn.conv2d(keras.layers.UpSampling2D()(images), kernel, 1, "SAME")
        actual = upsampled_convolution(images, kernel)
        weights = tf.random.stateless_normal(expected.shape, seed=[0, 3])  # a loss that weighs each pixel differently
        expected_loss, actual_loss = tf.reduce_sum(expected * weights), tf.reduce_sum(actual * weights)
    assert actual.shape == expected.shape == (3, 2 * height, 2 * width, channels_out)
    assert relative_error(actual, expected) < RTOL
    for source in (images, kernel):
        assert relative_error(tape.gradient(actual_loss, source), tape.gradient(expected_loss, source)) < RTOL


@pytest.mark.parametrize(("kernel_size", "channels_out", "padding"), [(3, 1, "SAME"), (3, 3, "VALID"), (5, 2, "SAME")])
def test_a_narrow_convolution_computed_tap_by_tap_equals_the_convolution(kernel_size, channels_out, padding):
    images = tf.random.stateless_normal([2, 9, 8, 16], seed=[1, 1])
    kernel = tf.random.stateless_normal([kernel_size, kernel_size, 16, channels_out], seed=[1, 2])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([images, kernel])
        expected = tf.nn.conv2d(images, kernel, 1, padding)
        actual = narrow_convolution(images, kernel, padding)
        expected_loss, actual_loss = tf.reduce_sum(tf.sin(expected)), tf.reduce_sum(tf.sin(actual))
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) < RTOL
    for source in (images, kernel):
        assert relative_error(tape.gradient(actual_loss, source), tape.gradient(expected_loss, source)) < RTOL


@pytest.mark.parametrize("training", [False, True])
def test_the_dcgan_generator_computes_as_keras_does_in_both_modes(training):
    """Both upsampling pairs and the one-channel output convolution are rewritten; BatchNorm runs as Keras's and
    updates its moving statistics alike."""
    keras.utils.set_random_seed(0)
    generator, twin = build_dcgan_generator(), build_dcgan_generator()
    twin.set_weights(generator.get_weights())
    noise = tf.random.stateless_normal([8, 100], seed=[2, 1])
    with tf.GradientTape(persistent=True) as tape:
        expected = generator(noise, training=training)
        actual = forward(twin, noise, training=training)
        expected_loss, actual_loss = tf.reduce_sum(tf.sin(3 * expected)), tf.reduce_sum(tf.sin(3 * actual))
    assert relative_error(actual, expected) < RTOL
    for got, want in zip(twin.non_trainable_weights, generator.non_trainable_weights, strict=True):
        assert relative_error(got, want) < RTOL, got.path
    expected_gradients = tape.gradient(expected_loss, generator.trainable_variables)
    actual_gradients = tape.gradient(actual_loss, twin.trainable_variables)
    output_bias = generator.layers[-2].bias  # the last Conv2D's: no BatchNorm after it
    for variable, got, want in zip(generator.trainable_variables, actual_gradients, expected_gradients, strict=True):
        # Under a BatchNorm in training mode a bias's gradient cancels to nearly zero (BatchNorm removes the mean):
        # only rounding would be compared. (Matched by identity: Keras numbers layer names per process.)
        if not (training and variable.path.endswith("bias") and variable is not output_bias):
            assert relative_error(got, want) < 1e-4, variable.path


def test_the_dcgan_training_step_makes_no_upsampled_tensor():
    """The rewrites are in the traced step: no Tile (nearest upsampling), the pairs as DepthToSpace, and the one
    convolution with one output channel is the tap selection (9 input channels), not the 64-channel product."""
    generator = build_dcgan_generator()
    step = tf.function(lambda noise: forward(generator, noise, training=True))
    graph = step.get_concrete_function(tf.TensorSpec([32, 100])).graph
    ops = [op for op in graph.get_operations()]
    assert [op.type for op in ops].count("DepthToSpace") == 2
    assert not [op for op in ops if op.type == "Tile"]
    narrow = [op for op in ops if op.type == "Conv2D" and op.outputs[0].shape[-1] == 1]
    assert [op.inputs[0].shape[-1] for op in narrow] == [9]


def test_layers_without_a_faster_computation_run_as_keras_runs_them():
    """Strided, wide, 5x5-after-upsampling and bilinear-upsampling convolutions, and the discriminator in inference."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.UpSampling2D(interpolation="bilinear"),
            keras.layers.Conv2D(8, 3, padding="same"),
            keras.layers.UpSampling2D(),
            keras.layers.Conv2D(4, 5, padding="same", strides=2, activation="relu"),
        ]
    )
    images = tf.random.stateless_normal([2, 6, 6, 3], seed=[3, 1])
    assert relative_error(forward(model, images, training=True), model(images, training=True)) < RTOL
    discriminator = build_dcgan_discriminator()
    images = tf.random.stateless_uniform([4, 28, 28, 1], seed=[3, 2], minval=-1, maxval=1)
    assert relative_error(forward(discriminator, images, False), discriminator(images, training=False)) < RTOL


@pytest.mark.parametrize(("rate", "bits"), [(0.25, 8), (0.5, 8), (3 / 65536, 16), (0.4, 32)])
def test_packed_dropout_drops_at_the_rate_and_scales_the_rest(rate, bits):
    assert _decision_bits(rate) == bits
    size = 400_000
    dropped = packed_dropout(tf.ones([size // 400, 20, 20]), rate, tf.constant([5, 6], tf.int64)).numpy()
    values = np.unique(dropped)
    assert set(values.tolist()) <= {0.0, np.float32(1 / (1 - rate))}
    kept = np.count_nonzero(dropped) / size
    assert abs(kept - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / size) + 1e-6
    again = packed_dropout(tf.ones([size // 400, 20, 20]), rate, tf.constant([5, 6], tf.int64)).numpy()
    other = packed_dropout(tf.ones([size // 400, 20, 20]), rate, tf.constant([5, 7], tf.int64)).numpy()
    assert np.array_equal(dropped, again)
    assert rate < 1e-3 or not np.array_equal(dropped, other)


def test_training_dropout_draws_from_the_layers_own_seed_state():
    """Each call advances the layer's SeedGenerator (kept in checkpoints), so every call gets a new mask."""
    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dropout(0.25, seed=3)])
    ones = tf.ones([4, 1000])
    state = model.layers[0].seed_generator.state.numpy().copy()
    first, second = forward(model, ones, training=True), forward(model, ones, training=True)
    assert not np.array_equal(first, second)
    assert not np.array_equal(model.layers[0].seed_generator.state.numpy(), state)
    assert np.array_equal(forward(model, ones, training=False), ones)


@pytest.mark.skipif(not native_bfloat16(), reason="oneDNN has no bfloat16 kernels here (a bfloat16 product aborts)")
def test_mixed_precision_layers_compute_in_their_own_dtype():
    keras.utils.set_random_seed(2)
    with dtype_policy("mixed_bfloat16"):
        generator = build_dcgan_generator()
    noise = tf.random.stateless_normal([4, 100], seed=[4, 1])
    expected, actual = generator(noise, training=False), forward(generator, noise, training=False)
    assert actual.dtype == expected.dtype == tf.bfloat16
    assert relative_error(actual, expected) < 0.05  # bfloat16 keeps 8 bits: different sums differ by ~1%
