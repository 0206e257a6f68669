"""Keras layers the ONNX export builds in place of a registry layer, because tf2onnx converts them to fewer, faster
ONNX operators with the same numbers. Only traced for conversion, never saved. Imports TensorFlow."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


class NearestResize(keras.layers.Layer):
    """UpSampling2D(nearest) as an image resize: Keras 3 repeats rows and columns (Tile + Reshape in ONNX, in NHWC,
    with a layout Transpose before each convolution that follows); a resize becomes one ONNX Resize that the
    converter's Transpose optimiser moves the layout change through."""

    def __init__(self, size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = size

    def call(self, images: Any) -> Any:
        if images.shape[1] is None or images.shape[2] is None:  # a model of dynamic size: the sizes come at run time
            height_width = tf.shape(images)[1:3] * tf.constant(self.size, tf.int32)
        else:
            height_width = [images.shape[1] * self.size[0], images.shape[2] * self.size[1]]
        # Asymmetric coordinates (source row = floor(row / factor)) repeat rows exactly as UpSampling2D does, and
        # convert to a plain ONNX Resize (TF's half-pixel default needs a mode onnxruntime deprecates).
        return tf.raw_ops.ResizeNearestNeighbor(
            images=images, size=height_width, align_corners=False, half_pixel_centers=False
        )


class ValidTransposeThenPad(keras.layers.Layer):
    """Conv2DTranspose(padding="valid", output_padding=p) as the transposed convolution without p, then p rows and
    columns of zeros at the bottom and right, then the bias and activation: Keras's numbers, since no kernel product
    reaches those rows (they hold the bias alone)."""

    def __init__(
        self,
        filters: int,
        kernel_size: tuple[int, int],
        strides: tuple[int, int],
        dilation_rate: tuple[int, int],
        activation: str,
        use_bias: bool,
        output_padding: tuple[int, int],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.dilation_rate, self.use_bias, self.output_padding = dilation_rate, use_bias, output_padding
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: Any) -> None:
        # the variables of Keras's Conv2DTranspose, in its order: kernel [kh, kw, filters, inputs], then bias
        self.kernel = self.add_weight(shape=(*self.kernel_size, self.filters, input_shape[-1]), name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), name="bias") if self.use_bias else None

    def call(self, images: Any) -> Any:
        full = keras.ops.conv_transpose(
            images, self.kernel, self.strides, padding="valid", dilation_rate=self.dilation_rate
        )
        (bottom, right) = self.output_padding
        padded = keras.ops.pad(full, [[0, 0], [0, bottom], [0, right], [0, 0]])
        return self.activation(padded if self.bias is None else padded + self.bias)
