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
