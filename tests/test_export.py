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


def test_h5_test_vectors_keep_a_convolutional_generators_activations_for_the_first_inputs(tmp_path):
    """16 samples of every layer of Keras-GAN's DCGAN generator took 12.6 MB: each layer's activations are stored for
    the first inputs, as many as ACTIVATION_BYTES holds, computed on those inputs (as DL4J then computes them)."""
    from ganport.export.vectors import ACTIVATION_BYTES, activation_rows
    from ganport.models import build_dcgan_generator

    source = tmp_path / "dcgan_generator.keras"
    build_dcgan_generator().save(source)
    (exported,) = export(source, "h5", tmp_path / "out", log=lambda line: None)
    with h5py.File(exported.path) as archive:
        last_layer = json.loads(archive.attrs["model_config"])["config"]["layers"][-1]["config"]["name"]
    with h5py.File(exported.test_vectors) as archive:
        predictions = archive["predictions/image"][()]
        activations = {name: archive["activations"][name][()] for name in archive["activations"]}
    sample_bytes = sum(array[0].nbytes for array in activations.values())
    rows = activation_rows(sample_bytes, 16)
    assert 1 < rows < 16 and rows * sample_bytes <= ACTIVATION_BYTES < (rows + 1) * sample_bytes
    assert {len(array) for array in activations.values()} == {rows} and len(predictions) == 16
    np.testing.assert_allclose(activations[last_layer], predictions[:rows], atol=1e-5)


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
            keras.layers.Permute((2, 1, 3)),
            keras.layers.Flatten(),
            keras.layers.ActivityRegularization(0.1),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.save(tmp_path / "conv.keras")
    with pytest.raises(UnsupportedLayerError) as error:
        export(tmp_path / "conv.keras", "onnx", tmp_path, log=lambda line: None)
    message = str(error.value)
    assert "Permute" in message and "ActivityRegularization" in message
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
    with pytest.raises(ModelError, match="corrupt.h5 is not a readable HDF5 file .*; is it damaged"):
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
    import ganport.parity

    monkeypatch.setitem(PRECISIONS, "fp32", dataclasses.replace(PRECISIONS["fp32"], atol=-1.0))
    monkeypatch.setattr(ganport.parity, "FLOAT64_FACTOR", -1e9)  # the deep-model rule fails too
    for fmt in ("onnx", "h5"):
        with pytest.raises(ParityError, match="generator .*FAILED"):
            export(short_run, fmt, tmp_path, log=lambda line: None)
    assert list(tmp_path.iterdir()) == []


def test_dl4j_hidden_layer_tolerance_scales_with_the_layers_magnitude():
    from ganport.verify import VectorFile, _jvm_comparisons

    def layers(diff: float, scale: float) -> dict:
        return {
            "status": "compared",
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
    loud = check("generator", "dl4j", layers(2e-5, 50.0))[1]
    assert loud.backend == "dl4j layers" and loud.passed and loud.bound == pytest.approx(5e-4)
    assert not check("generator", "dl4j", layers(6e-4, 50.0))[1].passed
    # Layers within [-1, 1] keep the tolerance itself (java-check reports their scale as 1).
    assert not check("generator", "dl4j", layers(2e-5, 1.0))[1].passed


@pytest.mark.parametrize("version", ["2.3.1", None])
def test_an_old_sequential_without_input_layer_is_read_as_written(tmp_path, version):
    """tf.keras 2.3 put `batch_input_shape` on the first Dense, with no InputLayer: Keras 3 loads that file silently
    with an extra axis ([None, None, 100]); ganport reads it with tf_keras, by the file's `keras_version` or, where
    the file does not say, because Keras 3's inputs differ from the shapes the file declares."""
    import tf_keras

    from ganport.keras_files.load import load_model_file

    layers = tf_keras.layers
    model = tf_keras.Sequential(
        [
            layers.Dense(32, input_shape=(100,)),
            layers.LeakyReLU(0.2),
            layers.Dense(784, "tanh"),
            layers.Reshape((28, 28, 1)),
        ]
    )
    path = tmp_path / "old_generator.h5"
    model.save(path)
    with h5py.File(path, "a") as archive:  # the file as tf.keras 2.3 wrote it
        config = json.loads(archive.attrs["model_config"])
        written = config["config"]["layers"]
        if written[0]["class_name"] == "InputLayer":
            written[1]["config"]["batch_input_shape"] = written.pop(0)["config"]["batch_input_shape"]
        archive.attrs["model_config"] = json.dumps(config).encode()
        if version is None:
            del archive.attrs["keras_version"]
        else:
            archive.attrs["keras_version"] = version.encode()
    assert list(keras.saving.load_model(path, compile=False).inputs[0].shape) == [None, None, 100]
    assert list(load_model_file(path).inputs[0].shape) == [None, 100]
    (exported,) = export(path, "onnx", tmp_path, log=lambda line: None)
    assert exported.comparison.passed and exported.role == "generator"


def test_keras_gan_saved_model_json_and_weights(tmp_path):
    """Keras-GAN's save_model(): saved_model/NAME.json (model.to_json(), standalone Keras 2.2.4, class "Model") and
    saved_model/NAME_weights.hdf5 (save_weights). The .json finds its weights beside it, or takes --weights."""
    import tf_keras
    from typer.testing import CliRunner

    from conftest import assert_one_line_error
    from ganport.cli import app
    from ganport.compatibility import inspect_model
    from ganport.keras_files.load import load_model_file

    layers = tf_keras.layers
    noise = tf_keras.Input((100,))
    hidden = layers.BatchNormalization(momentum=0.8)(layers.LeakyReLU(0.2)(layers.Dense(64)(noise)))
    model = tf_keras.Model(noise, layers.Reshape((28, 28, 1))(layers.Dense(784, activation="tanh")(hidden)))
    rng = np.random.default_rng(0)
    model.set_weights(
        [rng.uniform(0.5, 1.5, w.shape) if w.ndim == 1 else rng.normal(0, 0.1, w.shape) for w in model.get_weights()]
    )
    folder = tmp_path / "saved_model"
    folder.mkdir()
    architecture = json.loads(model.to_json())
    architecture.update(class_name="Model", keras_version="2.2.4", backend="tensorflow")
    (folder / "generator.json").write_text(json.dumps(architecture))
    model.save_weights(folder / "generator_weights.hdf5")

    report = inspect_model(folder / "generator.json")
    assert report.role == "generator" and report.writable(["onnx", "h5"]), report.verdicts
    for fmt in ("onnx", "h5"):
        (exported,) = export(folder / "generator.json", fmt, tmp_path / "out", log=lambda line: None)
        assert exported.comparison.passed and exported.path.stem == "generator"
    probe = rng.standard_normal((4, 100)).astype(np.float32)
    reloaded = load_model_file(folder / "generator.json")
    np.testing.assert_allclose(reloaded(probe, training=False), model(probe, training=False), atol=1e-6)

    runner = CliRunner()
    weights_only = runner.invoke(app, ["inspect", str(folder / "generator_weights.hdf5")])
    assert_one_line_error(weights_only, "holds weights only", "--weights", exit_code=2)
    moved = tmp_path / "elsewhere.hdf5"
    (folder / "generator_weights.hdf5").rename(moved)
    assert_one_line_error(
        runner.invoke(app, ["inspect", str(folder / "generator.json")]), "pass its weights with --weights", exit_code=2
    )
    result = runner.invoke(
        app, ["export", str(folder / "generator.json"), "--weights", str(moved), "--out", str(tmp_path / "again")]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("way", ["tf_keras h5", "keras3 .keras"])
def test_custom_training_only_objects_are_dropped_and_custom_layers_named(tmp_path, way):
    """A WGAN critic with a custom weight clip and regularizer loads with inert stand-ins (said in one line each) and
    exports with parity; a custom layer, which computes the outputs, is refused by its class name."""
    import tf_keras
    from typer.testing import CliRunner

    from conftest import assert_one_line_error
    from ganport.cli import app

    module = tf_keras if way.startswith("tf_keras") else keras
    suffix = ".h5" if way.startswith("tf_keras") else ".keras"

    class CenterAround(module.constraints.Constraint):
        def __init__(self, ref_value=0.01):
            self.ref_value = ref_value

        def __call__(self, weights):
            return module.ops.clip(weights, -self.ref_value, self.ref_value) if module is keras else weights

        def get_config(self):
            return {"ref_value": self.ref_value}

    class Tiny(module.regularizers.Regularizer):
        def __call__(self, weights):
            return 0.0

        def get_config(self):
            return {}

    class Doubler(module.layers.Layer):
        def call(self, inputs):
            return inputs * 2

    layers = module.layers
    image = module.Input((28, 28, 1))
    hidden = layers.Dense(32, kernel_constraint=CenterAround(0.01), kernel_regularizer=Tiny())(layers.Flatten()(image))
    critic = module.Model(image, layers.Dense(1)(layers.LeakyReLU(0.2)(hidden)))
    critic.save(tmp_path / f"critic{suffix}")
    noise = module.Input((100,))
    generator = module.Model(noise, layers.Reshape((28, 28, 1))(Doubler()(layers.Dense(784, activation="tanh")(noise))))
    generator.save(tmp_path / f"generator{suffix}")

    notes: list[str] = []
    for fmt in ("onnx", "h5"):
        (exported,) = export(tmp_path / f"critic{suffix}", fmt, tmp_path / "out", log=notes.append)
        assert exported.comparison.passed
    assert any(line.startswith("dropped on load: constraint CenterAround (kernel_constraint)") for line in notes), notes
    assert any(line.startswith("dropped on load: regularizer Tiny (kernel_regularizer)") for line in notes), notes
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / f"generator{suffix}")])
    assert_one_line_error(result, "uses the custom layer class Doubler")


def test_an_onnx_only_export_folder_is_verifiable(short_run, tmp_path):
    """The onnx format writes its test vectors too (the same inputs and Keras predictions an h5 export stores, without
    the activations), so `verify` works on a folder of ONNX files alone; a later h5 export adds the activations, and
    an ONNX export into its folder keeps them."""
    from ganport.verify import verify

    onnx_only = tmp_path / "onnx-only"
    exported = export(short_run, "onnx", onnx_only, log=lambda line: None)
    assert [item.test_vectors.name for item in exported] == ["generator_inputs_and_outputs.h5"]
    comparisons = verify(onnx_only, jvm=False, log=lambda line: None)
    assert [(c.model, c.backend, c.passed) for c in comparisons] == [("generator", "onnxruntime", True)]
    both = tmp_path / "both"
    export(short_run, "h5", both, log=lambda line: None)
    before = (both / "generator_inputs_and_outputs.h5").read_bytes()
    export(short_run, "onnx", both, log=lambda line: None)
    assert (both / "generator_inputs_and_outputs.h5").read_bytes() == before  # activations kept
    with h5py.File(both / "generator_inputs_and_outputs.h5") as vectors:
        assert "activations" in vectors


def test_a_tf2_savedmodel_folder_converts(tmp_path):
    """`model.save("dir")` in TF 2 (tf.keras): a SavedModel folder with Keras metadata, read by tf_keras; one
    without (tf.saved_model.save) is refused in one line."""
    import tensorflow as tf
    import tf_keras

    from ganport.compatibility import inspect_model

    layers = tf_keras.layers
    model = tf_keras.Sequential(
        [
            tf_keras.Input((16,)),
            layers.Dense(64),
            layers.LeakyReLU(0.2),
            layers.Dense(784, "tanh"),
            layers.Reshape((28, 28, 1)),
        ]
    )
    folder = tmp_path / "generator_savedmodel"
    model.save(folder, save_format="tf")
    assert inspect_model(folder).role == "generator"
    (exported,) = export(folder, "onnx", log=lambda line: None)
    assert exported.path == tmp_path / "generator_savedmodel.onnx" and exported.comparison.passed
    bare = tmp_path / "bare"
    tf.saved_model.save(tf.Module(), str(bare))
    with pytest.raises(ModelError, match="without Keras metadata"):
        export(bare, "onnx", tmp_path / "out", log=lambda line: None)
