"""Export: ONNX, DL4J-ready HDF5 and .keras, each validated against Keras; lecture-style inputs; error paths."""

from __future__ import annotations

import dataclasses
import functools
import json

import h5py
import keras
import numpy as np
import onnx
import pytest

from ganport.errors import ModelError, ParityError, UnsupportedLayerError, UsageError
from ganport.export import PRECISIONS, export


def lecture_generator_keras3() -> keras.Model:
    """The lecture's code, verbatim in structure: a functional Model wrapping a Sequential."""
    model = keras.Sequential()
    model.add(keras.layers.Dense(256, input_dim=100))
    for units in (512, 1024, None):
        model.add(keras.layers.LeakyReLU(alpha=0.2))
        model.add(keras.layers.BatchNormalization(momentum=0.8))
        if units:
            model.add(keras.layers.Dense(units))
    model.add(keras.layers.Dense(784, activation="tanh"))
    model.add(keras.layers.Reshape((28, 28, 1)))
    noise = keras.Input(shape=(100,))
    return keras.Model(noise, model(noise))


def lecture_discriminator_tf_keras():
    import tf_keras

    model = tf_keras.Sequential()
    model.add(tf_keras.layers.Flatten(input_shape=(28, 28, 1)))
    model.add(tf_keras.layers.Dense(512))
    model.add(tf_keras.layers.LeakyReLU(alpha=0.2))
    model.add(tf_keras.layers.Dense(256))
    model.add(tf_keras.layers.LeakyReLU(alpha=0.2))
    model.add(tf_keras.layers.Dense(1, activation="sigmoid"))
    image = tf_keras.Input(shape=(28, 28, 1))
    return tf_keras.Model(image, model(image))


def test_every_export_of_a_run_passes_its_own_parity_check(exported):
    lines = {(item.role, item.format): item.comparison for items in exported.values() for item in items}
    assert set(lines) == {
        ("generator", "onnx"),
        ("generator", "h5"),
        ("discriminator", "h5"),
        ("generator", "keras"),
        ("discriminator", "keras"),
    }
    for comparison in lines.values():
        assert comparison.passed and comparison.bound < 1e-4, comparison.line()


def test_onnx_has_named_dynamic_batch_and_metadata(exported):
    (item,) = exported["onnx"]
    model = onnx.load(item.path)
    onnx.checker.check_model(model, full_check=True)
    (z,), (image,) = model.graph.input, model.graph.output
    assert z.name == "z" and image.name == "image"
    assert [d.dim_param or d.dim_value for d in z.type.tensor_type.shape.dim] == ["batch", 100]
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["batch", 28, 28, 1]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["latent_dim"] == "100" and props["iterations"] == "40"
    assert props["ganport_version"] and props["keras_version"].startswith("3.")


def test_h5_is_flat_keras2_without_optimizer_and_with_leaky_relu_alpha(exported):
    for item in exported["h5"]:
        with h5py.File(item.path) as archive:
            assert archive.attrs["keras_version"].startswith("2.")
            assert "training_config" not in archive.attrs and "optimizer_weights" not in archive
            config = json.loads(archive.attrs["model_config"])
        assert config["class_name"] == "Sequential"
        classes = [layer["class_name"] for layer in config["config"]["layers"]]
        assert "Sequential" not in classes[1:] and "Functional" not in classes and "Model" not in classes
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "LeakyReLU":
                assert layer["config"]["alpha"] == pytest.approx(0.2)
                assert "negative_slope" not in layer["config"]


def test_h5_test_vectors_follow_dl4j_end_to_end_convention(exported):
    generator = next(item for item in exported["h5"] if item.role == "generator")
    # Keras numbers layer names per process (dense, dense_1, ...): read the first Dense's name from the file.
    with h5py.File(generator.path) as archive:
        layers = json.loads(archive.attrs["model_config"])["config"]["layers"]
    first_dense = next(layer["config"]["name"] for layer in layers if layer["class_name"] == "Dense")
    with h5py.File(generator.test_vectors) as archive:
        assert json.loads(archive.attrs["inputs"]) == {"inputs": ["z"]}
        assert json.loads(archive.attrs["outputs"]) == {"outputs": ["image"]}
        assert archive["inputs/z"].shape == (16, 100)
        assert archive["predictions/image"].shape == (16, 28, 28, 1)
        assert first_dense in archive["activations"] and archive[f"activations/{first_dense}"].shape == (16, 256)
        assert archive[f"activations/{first_dense}"].compression == "gzip"  # deflate: DL4J reads it
        predictions = archive["predictions/image"][()]
    assert np.abs(predictions).max() <= 1.0 and predictions.std() > 0


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lecture_style_nested_generator_exports_flat(tmp_path, suffix):
    source = tmp_path / f"lecture_generator{suffix}"
    lecture_generator_keras3().save(source)
    for fmt in ("onnx", "h5"):
        (item,) = export(source, fmt, tmp_path / "out", log=lambda line: None)
        assert item.role == "generator" and item.comparison.passed


def test_keras2_lecture_discriminator_h5_exports(tmp_path):
    source = tmp_path / "lecture_discriminator.h5"
    lecture_discriminator_tf_keras().save(source)
    (item,) = export(source, "h5", tmp_path / "out", log=lambda line: None)
    assert item.role == "discriminator" and item.comparison.passed and item.test_vectors.is_file()


def test_out_may_name_the_file_when_one_model_is_exported(tmp_path, short_run):
    (item,) = export(short_run / "generator.keras", "onnx", tmp_path / "my-gen.onnx", log=lambda line: None)
    assert item.path == tmp_path / "my-gen.onnx" and item.path.is_file()


def test_unsupported_layers_are_listed(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.DepthwiseConv2D(3),
            keras.layers.Flatten(),
            keras.layers.LayerNormalization(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.save(tmp_path / "conv.keras")
    with pytest.raises(UnsupportedLayerError) as error:
        export(tmp_path / "conv.keras", "h5", tmp_path, log=lambda line: None)
    message = str(error.value)
    assert "DepthwiseConv2D (depthwise_conv2d)" in message and "LayerNormalization" in message
    assert "supported: Activation" in message


def test_activation_dl4j_cannot_import_is_refused(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(4, activation="gelu"),
            keras.layers.Dense(784),
            keras.layers.Reshape((28, 28, 1)),
        ]
    )
    model.save(tmp_path / "gelu.keras")
    with pytest.raises(UnsupportedLayerError, match="activation 'gelu'"):
        export(tmp_path / "gelu.keras", "h5", tmp_path / "out", log=lambda line: None)


def test_missing_corrupt_and_foreign_sources(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        export(tmp_path / "missing.keras", "onnx", log=lambda line: None)
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n but cut short")
    with pytest.raises(ModelError, match="Cannot load .*corrupt.h5"):
        export(tmp_path / "corrupt.h5", "onnx", log=lambda line: None)
    (tmp_path / "model.pt").write_bytes(b"torch")
    with pytest.raises(ModelError, match="not a Keras model file"):
        export(tmp_path / "model.pt", "onnx", log=lambda line: None)
    with pytest.raises(ModelError, match="not a ganport run folder"):
        export(tmp_path, "onnx", log=lambda line: None)


def test_unknown_format_and_self_overwrite(short_run):
    with pytest.raises(UsageError, match="Unknown format 'tflite'"):
        export(short_run, "tflite", log=lambda line: None)
    with pytest.raises(UsageError, match="overwrite the source"):
        export(short_run / "generator.keras", "keras", log=lambda line: None)


def test_a_failed_parity_check_leaves_no_file(tmp_path, short_run, monkeypatch):
    monkeypatch.setitem(PRECISIONS, "fp32", dataclasses.replace(PRECISIONS["fp32"], atol=-1.0))
    for fmt in ("onnx", "h5"):
        with pytest.raises(ParityError, match="generator .*FAILED"):
            export(short_run, fmt, tmp_path, log=lambda line: None)
    assert list(tmp_path.iterdir()) == []


def test_dl4j_hidden_layer_tolerance_scales_with_the_layers_magnitude():
    from ganport.verify import VectorFile, _jvm_comparisons

    def layers(diff: float, scale: float) -> dict:
        return {
            "maxAbsDiff": diff,
            "maxRelDiff": 1e-6,
            "layers": [{"name": "conv", "maxAbsDiff": diff, "maxRelDiff": 1e-6, "scale": scale}],
            "worstLayer": "conv",
            "dl4jOutputShape": [16, 784],
            "kerasOutputShape": [16, 784],
        }

    tolerance = 1e-5
    vectors = VectorFile({}, {"image": np.linspace(-1, 1, 784, dtype=np.float32).reshape(1, 784)})
    check = functools.partial(_jvm_comparisons, tolerance=tolerance, expected=vectors, origin="")
    # A convolution whose activations reach 50: float32 rounding alone differs by ~2e-5 there.
    loud = check("generator", layers(2e-5, 50.0))[1]
    assert loud.backend == "dl4j layers" and loud.passed and loud.bound == pytest.approx(5e-4)
    assert not check("generator", layers(6e-4, 50.0))[1].passed
    # Layers within [-1, 1] keep the tolerance itself (java-check reports their scale as 1).
    assert not check("generator", layers(2e-5, 1.0))[1].passed
