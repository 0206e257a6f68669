"""The training step's forward pass: a Sequential model's layers run one by one, the ones TensorFlow computes slowly
on a CPU replaced by the same arithmetic in ops it computes fast. No library offers these: each is a rewrite of one
layer's maths for TensorFlow's CPU kernels, found with bench/train_profile.py; the times below are forward and
gradients of one layer alone, batch 32, on a 2-core AVX-512 EPYC.

- UpSampling2D(2, nearest) then Conv2D 3x3: every output pixel's 3x3 window covers only 2x2 distinct input pixels,
  so the pair is one 2x2 convolution of the small image into the four output phases (their taps summed), interleaved
  by depth_to_space: 4/9 of the products, no upsampled tensor (DCGAN's 14x14x128 -> 28x28x64 pair: 60 -> 41 ms).
- Conv2D with at most 4 output channels: oneDNN computes it at ~10 GFLOP/s; a 1x1 convolution into one channel per
  tap, then a constant tap-selecting convolution, does the same products at its full rate (7.7 -> 2.9 ms).
- Dropout: Keras draws a float32 uniform per element; one random byte decides as exactly when the rate is a multiple
  of 1/256 (DCGAN's 0.25), so a quarter of the random words suffice (7.9 -> 4.4 ms at 32x28x28x64).

Each rewrite computes what the layer computes (equal up to float32 rounding, tests/test_train_kernels.py), on the
layer's own weights and random state, so checkpoints, exports and inference never see it. Any other layer, and
models that are not Sequential, run as Keras runs them.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

# Output channels up to which a convolution is computed tap by tap (a 1x1 convolution, then a selection).
NARROW_CHANNELS = 4
# The rewrites, as `plan` names them.
UPSAMPLED_CONVOLUTION = "upsampled convolution"
NARROW_CONVOLUTION = "narrow convolution"
PACKED_DROPOUT = "packed dropout"


def plan(model: keras.Model) -> list[tuple[str | None, tuple[Any, ...]]]:
    """A Sequential model's layers in order, grouped as `forward` computes them: (rewrite, its layers), or (None,
    (layer,)) for a layer Keras computes. Models that are not Sequential are one Keras step."""
    if not isinstance(model, keras.Sequential):
        return [(None, (model,))]
    layers = model.layers
    steps: list[tuple[str | None, tuple[Any, ...]]] = []
    index = 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if _upsampling_pair(layer, following):
            steps.append((UPSAMPLED_CONVOLUTION, (layer, following)))
            index += 1
        elif _narrow(layer):
            steps.append((NARROW_CONVOLUTION, (layer,)))
        elif _packable_dropout(layer):
            steps.append((PACKED_DROPOUT, (layer,)))
        else:
            steps.append((None, (layer,)))
        index += 1
    return steps


def forward(model: keras.Model, inputs: Any, training: bool) -> tf.Tensor:
    """`model(inputs, training=training)`, computed faster where a rewrite above applies."""
    outputs = inputs
    for rewrite, layers in plan(model):
        layer = layers[-1]
        if rewrite == UPSAMPLED_CONVOLUTION:  # the kernel's taps are summed in its own float32, then cast
            outputs = _conv_output(layer, upsampled_convolution(_cast(outputs, layer), layer.kernel))
        elif rewrite == NARROW_CONVOLUTION:
            outputs = _conv_output(layer, narrow_convolution(_cast(outputs, layer), _kernel(layer), layer.padding))
        elif rewrite == PACKED_DROPOUT and training:
            outputs = packed_dropout(_cast(outputs, layer), layer.rate, layer.seed_generator.next())
        else:
            outputs = layer(outputs, training=training)
    return outputs


def _plain_convolution(layer: Any) -> bool:
    """A Conv2D without strides, dilation or groups, channels last."""
    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
    )


def _upsampling_pair(layer: Any, following: Any) -> bool:
    return (
        type(layer) is keras.layers.UpSampling2D
        and tuple(layer.size) == (2, 2)
        and layer.interpolation == "nearest"
        and layer.data_format == "channels_last"
        and _plain_convolution(following)
        and tuple(following.kernel_size) == (3, 3)
        and following.padding == "same"
    )


def _narrow(layer: Any) -> bool:
    return _plain_convolution(layer) and layer.filters <= NARROW_CHANNELS


def _packable_dropout(layer: Any) -> bool:
    return type(layer) is keras.layers.Dropout and 0 < layer.rate < 1 and layer.noise_shape is None


def _cast(inputs: Any, layer: Any) -> tf.Tensor:
    """The input as the layer computes it (bfloat16 under mixed precision), as Keras casts it on a layer call."""
    return tf.cast(inputs, layer.compute_dtype)


def _kernel(layer: Any) -> tf.Tensor:
    return tf.cast(layer.kernel, layer.compute_dtype)


def _conv_output(layer: Any, convolved: tf.Tensor) -> tf.Tensor:
    """What Conv2D.call does after its convolution: the bias, then the activation."""
    if layer.use_bias:
        convolved = convolved + tf.cast(layer.bias, convolved.dtype)
    return layer.activation(convolved) if layer.activation is not None else convolved


def _fold(kernel: tf.Tensor, phase: int, axis: int) -> tf.Tensor:
    """A 3-tap kernel axis as the 2 taps that an output row of phase 0 (even) or 1 (odd) applies to the input rows
    it sees through a 2x nearest upsampling ('same' padding): taps 1 and 2 fall on input row i (phase 0; tap 0 on
    i - 1), taps 0 and 1 on row i (phase 1; tap 2 on i + 1)."""
    first, middle, last = tf.unstack(kernel, axis=axis)
    taps = (first, middle + last) if phase == 0 else (first + middle, last)
    return tf.stack(taps, axis=axis)


def upsampled_convolution(images: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """conv2d(UpSampling2D(2, nearest)(images), kernel 3x3, 'same') as one 2x2 convolution of `images`.

    Output row 2i + a (phase a) sees input rows i - 1, i (a = 0) or i, i + 1 (a = 1): a 2x2 kernel per phase pair,
    its taps summed from the 3x3 kernel. A 'valid' 2x2 convolution of the input padded by one computes, at row p,
    rows p - 1 and p: phase 0 of output row i at p = i, phase 1 at p = i + 1. depth_to_space puts channel block b
    of position p at row 2p + b; holding phase 1 - b in block b places both phases one row late, so one slice
    aligns them.
    """
    phase_kernels = [_fold(_fold(kernel, row, 0), column, 1) for row in (1, 0) for column in (1, 0)]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    phases = tf.nn.conv2d(padded, tf.cast(tf.concat(phase_kernels, axis=3), images.dtype), 1, "VALID")
    interleaved = tf.nn.depth_to_space(phases, 2)
    height, width = images.shape[1], images.shape[2]
    # tf.slice, not [1:-1]: StridedSlice's gradient costs 12 ms here, Slice's (a Pad) under 1 ms.
    return tf.slice(interleaved, [0, 1, 1, 0], [-1, 2 * height, 2 * width, -1])


def narrow_convolution(images: tf.Tensor, kernel: tf.Tensor, padding: str) -> tf.Tensor:
    """conv2d(images, kernel, padding) for a kernel with few output channels: a 1x1 convolution gives every tap's
    product (kh * kw * out channels), and a constant kernel picks, per output position, the taps of its window."""
    height, width, channels_in, channels_out = kernel.shape
    taps = height * width * channels_out
    spread = tf.reshape(tf.transpose(kernel, [2, 0, 1, 3]), [1, 1, channels_in, taps])  # channel (i, j, o)
    products = tf.nn.conv2d(images, spread, 1, "SAME")
    select = tf.reshape(tf.eye(taps, dtype=kernel.dtype), [height, width, channels_out, taps])
    return tf.nn.conv2d(products, tf.transpose(select, [0, 1, 3, 2]), 1, padding.upper())


def _decision_bits(rate: float) -> int:
    """Random bits per keep/drop decision: the fewest (8 or 16) that express the rate exactly, else 32."""
    return next((bits for bits in (8, 16) if float(rate * 2**bits).is_integer()), 32)


def packed_dropout(inputs: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """Keras Dropout in training: each element dropped with probability `rate`, the rest scaled by 1 / (1 - rate);
    decided by comparing 8, 16 or 32 random bits with rate * 2**bits (exact for DCGAN's 0.25, within 2**-33 for
    any rate, where Keras's float32 uniforms are within 2**-24)."""
    bits = _decision_bits(rate)
    size = tf.size(inputs)
    per_word = 32 // bits
    words = tf.random.stateless_uniform(
        [(size + per_word - 1) // per_word], seed=seed, minval=None, maxval=None, dtype=tf.uint32
    )
    dtype = {8: tf.uint8, 16: tf.uint16, 32: tf.uint32}[bits]
    draws = tf.reshape(tf.bitcast(words, dtype), [-1])[:size] if bits < 32 else words
    threshold = min(round(rate * 2**bits), 2**bits - 1)
    keep = tf.reshape(draws >= tf.constant(threshold, dtype), tf.shape(inputs))
    scale = tf.where(keep, tf.constant(1.0 / (1.0 - rate), inputs.dtype), tf.constant(0.0, inputs.dtype))
    return inputs * scale
