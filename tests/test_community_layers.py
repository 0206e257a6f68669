"""keras-contrib and TensorFlow Addons layers read without their libraries (issue 31): each fixture is saved by a
class written as the library's own source has it (same class name, config and weights, same math), then read by
ganport in a model where that class is unknown: the outputs must be the library's, and ONNX converts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from typer.testing import CliRunner

from conftest import assert_one_line_error
from ganport.cli import app
from ganport.export import export
from ganport.keras_files.load import load_model_file
from ganport.keras_files.run import predict

pytestmark = pytest.mark.slow

K = tf_keras.backend
_NO_TRAINING_OBJECTS = {
    f"{weight}_{kind}": None for weight in ("beta", "gamma") for kind in ("regularizer", "constraint")
}


class ContribInstanceNormalization(tf_keras.layers.Layer):
    """keras_contrib.layers.InstanceNormalization, as keras-contrib's source computes and saves it."""

    def __init__(self, axis=None, epsilon=1e-3, center=True, scale=True, **kwargs):
        for key in ("beta_initializer", "gamma_initializer", *_NO_TRAINING_OBJECTS):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        self.axis, self.epsilon, self.center, self.scale = axis, epsilon, center, scale

    def build(self, input_shape):
        shape = (1,) if self.axis is None else (input_shape[self.axis],)
        self.gamma = self.add_weight(shape=shape, name="gamma", initializer="random_normal")
        self.beta = self.add_weight(shape=shape, name="beta", initializer="random_normal")

    def call(self, inputs):
        input_shape = K.int_shape(inputs)
        reduction_axes = list(range(len(input_shape)))
        if self.axis is not None:
            del reduction_axes[self.axis]
        del reduction_axes[0]
        mean = K.mean(inputs, reduction_axes, keepdims=True)
        stddev = K.std(inputs, reduction_axes, keepdims=True) + self.epsilon
        broadcast = [1] * len(input_shape)
        if self.axis is not None:
            broadcast[self.axis] = input_shape[self.axis]
        return (inputs - mean) / stddev * K.reshape(self.gamma, broadcast) + K.reshape(self.beta, broadcast)

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": "zeros",
            "gamma_initializer": "ones",
            **_NO_TRAINING_OBJECTS,
        }


class AddonsGroupNormalization(tf_keras.layers.Layer):
    """tensorflow_addons.layers.GroupNormalization (registered as Addons>GroupNormalization), as its source computes
    it: moments within each group of channels, then tf.nn.batch_normalization; groups=-1 is InstanceNormalization."""

    def __init__(self, groups=2, axis=-1, epsilon=1e-3, center=True, scale=True, **kwargs):
        for key in ("beta_initializer", "gamma_initializer", *_NO_TRAINING_OBJECTS):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        self.groups, self.axis, self.epsilon, self.center, self.scale = groups, axis, epsilon, center, scale

    def build(self, input_shape):
        if self.groups == -1:
            self.groups = input_shape[-1]
        self.gamma = self.add_weight(shape=(input_shape[-1],), name="gamma", initializer="random_normal")
        self.beta = self.add_weight(shape=(input_shape[-1],), name="beta", initializer="random_normal")

    def call(self, inputs):
        shape, channels = tf.shape(inputs), inputs.shape[-1]
        grouped = tf.reshape(inputs, tf.concat([shape[:-1], [self.groups, channels // self.groups]], 0))
        axes = [axis for axis in range(1, len(grouped.shape)) if axis != len(grouped.shape) - 2]
        mean, variance = tf.nn.moments(grouped, axes, keepdims=True)
        gamma = tf.reshape(self.gamma, [self.groups, channels // self.groups])
        beta = tf.reshape(self.beta, [self.groups, channels // self.groups])
        normed = tf.nn.batch_normalization(grouped, mean, variance, beta, gamma, self.epsilon)
        return tf.reshape(normed, shape)

    def get_config(self):
        return {
            **super().get_config(),
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **_NO_TRAINING_OBJECTS,
        }


class AddonsSpectralNormalization(tf_keras.layers.Wrapper):
    """tensorflow_addons.layers.SpectralNormalization: the layer's weights, then its power-iteration vector sn_u;
    training rescales the kernel in place, so inference is the wrapped layer with the kernel as saved."""

    def __init__(self, layer, power_iterations=1, **kwargs):
        super().__init__(layer, **kwargs)
        self.power_iterations = power_iterations

    def build(self, input_shape):
        self.layer.build(input_shape)
        self.sn_u = self.add_weight(
            shape=(1, self.layer.kernel.shape[-1]), name="sn_u", initializer="random_normal", trainable=False
        )
        self.built = True

    def call(self, inputs, training=None):
        return self.layer(inputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "power_iterations": self.power_iterations}


LIBRARY_CLASSES = {
    "InstanceNormalization": ContribInstanceNormalization,
    "Addons>GroupNormalization": AddonsGroupNormalization,
    "Addons>InstanceNormalization": AddonsGroupNormalization,
    "Addons>SpectralNormalization": AddonsSpectralNormalization,
}


def _cyclegan_like(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Keras-GAN's CycleGAN generator in small (keras-contrib InstanceNormalization, axis None and -1), TensorFlow
    Addons Group and Instance normalization, and spectrally normalized convolution and Dense: saved as HDF5 by
    tf_keras with each class under the name its library registers."""
    layers = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    with tf_keras.utils.custom_object_scope(LIBRARY_CLASSES):
        images = tf_keras.Input((16, 16, 3))
        hidden = AddonsSpectralNormalization(layers.Conv2D(8, 3, padding="same"))(images)
        hidden = layers.LeakyReLU(0.2)(ContribInstanceNormalization()(hidden))
        hidden = ContribInstanceNormalization(axis=-1)(layers.Conv2D(8, 3, padding="same")(hidden))
        hidden = AddonsGroupNormalization(groups=4)(hidden)
        hidden = AddonsGroupNormalization(groups=-1)(layers.Conv2D(8, 3, padding="same")(hidden))
        image = layers.Conv2D(3, 3, padding="same", activation="tanh")(hidden)
        score = AddonsSpectralNormalization(layers.Dense(1))(layers.Flatten()(hidden))
        model = tf_keras.Model(images, [image, score])
        names = {
            ContribInstanceNormalization: "InstanceNormalization",
            AddonsGroupNormalization: "Addons>GroupNormalization",
            AddonsSpectralNormalization: "Addons>SpectralNormalization",
        }
        for cls, name in names.items():  # the class names the libraries register, as their files hold them
            cls.__name__ = name
        model.save(path)
    sample = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    image, score = model(sample)
    return path, sample, np.asarray(image)


def test_community_layers_read_without_their_libraries_compute_theirs(tmp_path):
    source, sample, expected = _cyclegan_like(tmp_path / "cyclegan.h5")
    lines: list[str] = []
    model = load_model_file(source, log=lines.append)
    assert any("read without its library" in line for line in lines)
    got = model(sample, training=False)[0]
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)
    (exported,) = export(source, "onnx", tmp_path / "out", log=lambda line: None)
    assert exported.comparison.passed
    result = CliRunner().invoke(app, ["export", str(source), "--format", "h5", "--out", str(tmp_path / "h5")])
    assert_one_line_error(result, "keras-contrib's InstanceNormalization, which DL4J's Keras import does not have")


def test_keras_3s_own_spectral_normalization_converts(tmp_path):
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3))
    hidden = layers.Flatten()(layers.SpectralNormalization(layers.Conv2D(4, 3, padding="same"))(images))
    model = keras.Model(images, layers.SpectralNormalization(layers.Dense(1))(hidden))
    source = tmp_path / "sn.keras"
    model.save(source)
    sample = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(predict(load_model_file(source), sample), np.asarray(model(sample)), atol=1e-6)
    for fmt in ("onnx", "h5"):
        (exported,) = export(source, fmt, tmp_path / "out", log=lambda line: None)
        assert exported.comparison.passed
