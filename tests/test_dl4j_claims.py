"""Every "yes" the layer registry gives DL4J, proven with real DL4J 1.0.0-M2.1: one small model per layer and each
configuration the h5 format claims to write with the same numbers (ranks, strides, paddings, activations, merge
kinds), all exported into one folder and verified layer by layer in one JVM (issue 31: a verdict DL4J contradicts
is worse than a refusal)."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
import tf_keras

from conftest import require_or_skip
from ganport.export import ExportOptions, export
from ganport.export.layers import DL4J_ACTIVATIONS

pytestmark = [pytest.mark.slow, pytest.mark.maven]

layers = tf_keras.layers


def _chain(input_shape: tuple[int, ...], *stack: object) -> tf_keras.Model:
    return tf_keras.Sequential([tf_keras.Input(input_shape), *stack])


def _image(*stack: object, shape: tuple[int, ...] = (12, 12, 3)) -> tf_keras.Model:
    """Layers on an image, then a Flatten and a Dense, as a critic reads them."""
    return _chain(shape, *stack, layers.Flatten(), layers.Dense(2))


def _slopes(shape: tuple[int, ...], dtype: object = None) -> object:
    """PReLU slopes that differ by channel, as trained ones do (the default initializer gives zeros: a ReLU)."""
    return tf_keras.initializers.RandomUniform(0.05, 0.5, seed=1)(shape, dtype)


def _merge(kind: Callable[[], object]) -> tf_keras.Model:
    images = tf_keras.Input((6, 6, 4))
    left = layers.Conv2D(4, 3, padding="same")(images)
    right = layers.Conv2D(4, 1)(images)
    merged = kind()([left, right])
    return tf_keras.Model(images, layers.Dense(2)(layers.Flatten()(merged)))


def _conditional() -> tf_keras.Model:
    noise, label = tf_keras.Input((8,)), tf_keras.Input((1,), dtype="int32")
    embedded = layers.Flatten()(layers.Embedding(10, 8)(label))
    hidden = layers.Dense(16, activation="relu")(layers.Multiply()([noise, embedded]))
    return tf_keras.Model([noise, label], layers.Dense(4, activation="tanh")(hidden))


CLAIMS: dict[str, Callable[[], tf_keras.Model]] = {
    **{
        f"activation_{name}": (
            lambda name=name: _chain((6,), layers.Dense(5), layers.Activation(name), layers.Dense(2))
        )
        for name in (*DL4J_ACTIVATIONS, "leaky_relu")
    },
    **{
        f"dense_{name}": (lambda name=name: _chain((6,), layers.Dense(5, activation=name), layers.Dense(2)))
        for name in ("relu", "tanh", "sigmoid", "leaky_relu")
    },
    "dense_without_bias": lambda: _chain((6,), layers.Dense(5, use_bias=False), layers.Dense(2)),
    "dense_on_an_image": lambda: _image(layers.Conv2D(4, 3), layers.Dense(3)),
    "dense_on_one_step": lambda: _chain((1, 6), layers.Dense(5), layers.Flatten(), layers.Dense(2)),
    **{
        f"conv2d_{name}": (lambda settings=settings: _image(layers.Conv2D(4, **settings)))
        for name, settings in {
            "3_same": {"kernel_size": 3, "padding": "same"},
            "3x5_same": {"kernel_size": (3, 5), "padding": "same"},
            "3_valid": {"kernel_size": 3},
            "5_stride_2_same": {"kernel_size": 5, "strides": 2, "padding": "same"},
            "4_stride_2_valid": {"kernel_size": 4, "strides": 2},
            "1": {"kernel_size": 1},
            "dilated": {"kernel_size": 3, "dilation_rate": 2, "padding": "same"},
            "no_bias_tanh": {"kernel_size": 3, "use_bias": False, "activation": "tanh", "padding": "same"},
        }.items()
    },
    **{
        f"conv2d_transpose_{name}": (lambda settings=settings: _image(layers.Conv2DTranspose(4, **settings)))
        for name, settings in {
            "4_stride_2_same": {"kernel_size": 4, "strides": 2, "padding": "same"},
            "3_stride_2_same": {"kernel_size": 3, "strides": 2, "padding": "same"},
            "3_valid": {"kernel_size": 3},
            "5_stride_1_same_relu": {"kernel_size": 5, "padding": "same", "activation": "relu"},
            "4_stride_1_same": {"kernel_size": 4, "padding": "same"},  # cropped (1, 2), as Keras pads
            "2_stride_3_same": {"kernel_size": 2, "strides": 3, "padding": "same"},  # pads: stays "same"
        }.items()
    },
    # written "valid" + Cropping2D where a BatchNorm or the output reads it, "same" where a convolution would read
    # DL4J's cropped view (ND4J's oneDNN deconv2d misreads views)
    "conv2d_transpose_relu_batch_normalization_conv2d_transpose": lambda: _image(
        layers.Conv2DTranspose(4, 4, strides=2, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.Conv2DTranspose(2, 4, strides=2, padding="same"),
    ),
    "conv2d_transpose_leaky_relu_conv2d_transpose": lambda: _image(
        layers.Conv2DTranspose(4, 4, strides=2, padding="same"),
        layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(2, 4, strides=2, padding="same"),
    ),
    "separable_conv2d": lambda: _image(layers.SeparableConv2D(4, 3, padding="same")),
    "separable_conv2d_multiplier_2": lambda: _image(layers.SeparableConv2D(4, 3, depth_multiplier=2)),
    "conv1d_same": lambda: _chain((10, 3), layers.Conv1D(4, 3, padding="same"), layers.Flatten(), layers.Dense(2)),
    "conv1d_valid_stride_2": lambda: _chain((10, 3), layers.Conv1D(4, 3, strides=2), layers.Flatten(), layers.Dense(2)),
    **{
        f"max_pooling1d_{name}": (
            lambda settings=settings: _chain(
                (10, 3), layers.Conv1D(4, 3), layers.MaxPooling1D(**settings), layers.Flatten(), layers.Dense(2)
            )
        )
        for name, settings in {
            "2": {"pool_size": 2},
            "3_same": {"pool_size": 3, "strides": 2, "padding": "same"},
        }.items()
    },
    "max_pooling1d_on_the_input": lambda: _chain((10, 3), layers.MaxPooling1D(2), layers.Flatten(), layers.Dense(2)),
    **{
        f"{kind.__name__.lower()}": (
            lambda kind=kind: _chain(
                (10, 3), layers.Conv1D(4, 3), layers.SpatialDropout1D(0.3), kind(), layers.Dense(2)
            )
        )
        for kind in (layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D)
    },
    "cropping2d": lambda: _image(layers.Cropping2D(((1, 2), (2, 1)))),
    "zero_padding2d": lambda: _image(layers.ZeroPadding2D(((1, 0), (2, 1)))),
    "max_pooling2d": lambda: _image(layers.MaxPooling2D(2)),
    "max_pooling2d_3_same": lambda: _image(layers.MaxPooling2D(3, strides=2, padding="same")),
    "average_pooling2d": lambda: _image(layers.AveragePooling2D(2)),
    "global_average_pooling2d": lambda: _chain((8, 8, 3), layers.Conv2D(4, 3), layers.GlobalAveragePooling2D()),
    "global_max_pooling2d": lambda: _chain((8, 8, 3), layers.Conv2D(4, 3), layers.GlobalMaxPooling2D()),
    "batch_normalization": lambda: _image(layers.Conv2D(4, 3), layers.BatchNormalization(momentum=0.8)),
    "batch_normalization_not_centered": lambda: _image(layers.Conv2D(4, 3), layers.BatchNormalization(center=False)),
    "batch_normalization_dense": lambda: _chain((6,), layers.Dense(8), layers.BatchNormalization(), layers.Dense(2)),
    "upsampling2d_on_the_input": lambda: _image(layers.UpSampling2D(), shape=(4, 5, 3)),
    "upsampling2d_2_by_3": lambda: _image(layers.Conv2D(4, 1), layers.UpSampling2D((2, 3)), shape=(4, 4, 3)),
    # written as one Deconvolution2D (kernel 4, 6 and 4x5)
    **{
        f"upsampling2d_then_conv2d_{name}": (
            lambda size=size, kernel=kernel: _image(
                layers.Conv2D(4, 1),
                layers.UpSampling2D(size),
                layers.Conv2D(3, kernel, padding="same", activation="relu"),
                shape=(4, 5, 3),
            )
        )
        for name, size, kernel in (("3", 2, 3), ("5", 2, 5), ("2_by_3_then_3", (2, 3), 3))
    },
    "upsampling2d_on_the_input_then_conv2d": lambda: _image(
        layers.UpSampling2D(), layers.Conv2D(4, 3, padding="same"), shape=(4, 5, 3)
    ),
    "leaky_relu": lambda: _image(layers.Conv2D(4, 3), layers.LeakyReLU(0.3)),
    "prelu_dense": lambda: _chain((6,), layers.Dense(5), layers.PReLU(alpha_initializer=_slopes), layers.Dense(2)),
    "prelu_shared_over_height_and_width": lambda: _image(
        layers.Conv2D(4, 3), layers.PReLU(shared_axes=[1, 2], alpha_initializer=_slopes)
    ),
    "relu_max_value": lambda: _image(layers.Conv2D(4, 3), layers.ReLU(max_value=0.5)),
    "reshape_inside": lambda: _chain(
        (12,), layers.Dense(16), layers.Reshape((4, 4, 1)), layers.Conv2D(2, 3), layers.Flatten()
    ),
    "reshape_trailing": lambda: _chain((6,), layers.Dense(16), layers.Reshape((4, 4, 1))),
    "dropouts": lambda: _image(layers.Conv2D(4, 3), layers.SpatialDropout2D(0.3), layers.Dropout(0.4)),
    "noise_and_dropouts_inert_at_inference": lambda: _image(
        layers.GaussianNoise(1), layers.Conv2D(4, 3), layers.GaussianDropout(0.3), layers.AlphaDropout(0.2)
    ),
    "elu": lambda: _image(layers.Conv2D(4, 3), layers.ELU(alpha=0.6)),
    "softmax_dense": lambda: _chain((6,), layers.Dense(5), layers.Softmax()),
    "softmax_image_channels": lambda: _image(layers.Conv2D(4, 3), layers.Softmax()),
    "softmax_sequence_features": lambda: _chain(
        (8, 3), layers.Conv1D(4, 3, padding="same"), layers.Softmax(), layers.Flatten(), layers.Dense(2)
    ),
    "rescaling_the_input_image": lambda: _image(layers.Rescaling(1 / 127.5, offset=-1), layers.Conv2D(4, 3)),
    "rescaling_per_channel": lambda: _image(layers.Conv2D(3, 3), layers.Rescaling([2.0, 0.5, 1.5], offset=0.1)),
    "rescaling_features_as_the_output": lambda: _chain(
        (6,), layers.Dense(4, activation="tanh"), layers.Rescaling(127.5, offset=127.5)
    ),
    **{
        f"merge_{kind.__name__.lower()}": (lambda kind=kind: _merge(kind))
        for kind in (layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Concatenate)
    },
    "embedding_conditional": _conditional,
}


@pytest.mark.parametrize("natives", ["onednn", "plain"])
def test_every_dl4j_yes_holds_on_real_dl4j(tmp_path, monkeypatch, natives):
    """On both ND4J builds java-check carries: oneDNN's computes "valid" transposed convolutions its own way."""
    from ganport.verify import DL4J_NATIVES_ENV, verify

    monkeypatch.setenv(DL4J_NATIVES_ENV, natives)
    require_or_skip(shutil.which("mvn") is not None and shutil.which("java") is not None, "Maven and a JDK needed")
    out = tmp_path / "out"
    tf_keras.utils.set_random_seed(0)
    for name, make in CLAIMS.items():
        source = tmp_path / f"{name}.h5"
        make().save(source)
        # BatchNorm kept: the claims are about each layer as DL4J reads it (folding leaves a Dense or convolution)
        (exported,) = export(source, "h5", out, log=lambda line: None, options=ExportOptions(fold_batch_norm=False))
        assert exported.comparison.passed, exported.comparison.line()
    comparisons = verify(out, jvm=True, log=lambda line: None)
    verified = {c.model for c in comparisons if c.backend == "dl4j"}
    assert verified == set(CLAIMS), set(CLAIMS) - verified
    failed = [c.line() for c in comparisons if not c.passed]
    assert not failed, failed


def test_a_prelu_with_a_slope_per_position_is_refused_for_dl4j(tmp_path):
    """DL4J 1.0.0-M2.1 leaves PReLU's slopes at their initializer; where slopes differ by position there is no exact
    rewrite, and the h5 format says so."""
    from ganport.compatibility import inspect_model

    source = tmp_path / "prelu.h5"
    _image(layers.Conv2D(4, 3), layers.PReLU(alpha_initializer=_slopes)).save(source)
    assert any("does not load PReLU's slopes" in reason for reason in inspect_model(source).verdicts["h5"])
