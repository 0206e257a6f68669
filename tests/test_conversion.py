"""Convolutional, conditional and multi-output GANs through every exporter, saved the Keras 3 way and the lecture's
tf_keras way, with parity, named ONNX ends, DL4J-ready configs, BatchNorm folding and `ganport inspect`."""

from __future__ import annotations

import collections
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import onnx
import pytest
import zoo
from typer.testing import CliRunner

from conftest import assert_one_line_error
from ganport.cli import app
from ganport.compatibility import inspect_model
from ganport.errors import UnsupportedLayerError
from ganport.export import ExportOptions, export
from ganport.export.fold import fold_batch_norm
from ganport.export.graph import build, read_graph

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("way", zoo.WAYS)
@pytest.mark.parametrize("name", zoo.MODELS)
def test_every_format_matches_keras_within_the_float32_rule(conversions, name, way):
    for fmt in ("onnx", "h5", "keras"):
        comparison = conversions[name, way][fmt].comparison
        assert comparison.passed and comparison.bound < 1e-4, comparison.line()


def _dims(value: onnx.ValueInfoProto) -> list:
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize(
    ("name", "inputs", "outputs"),
    [
        ("dcgan_generator", {"z": ("batch", 100)}, {"image": ("batch", 28, 28, 1)}),
        ("dcgan_discriminator", {"image": ("batch", 28, 28, 1)}, {"validity": ("batch", 1)}),
        ("cgan_generator", {"z": ("batch", 100), "label": ("batch", 1)}, {"image": ("batch", 28, 28, 1)}),
        ("cgan_discriminator", {"image": ("batch", 28, 28, 1), "label": ("batch", 1)}, {"validity": ("batch", 1)}),
        (
            "acgan_discriminator",
            {"image": ("batch", 28, 28, 1)},
            {"validity": ("batch", 1), "class_probabilities": ("batch", 10)},
        ),
    ],
)
def test_onnx_names_inputs_and_outputs_with_int64_labels_and_a_dynamic_batch(conversions, name, inputs, outputs):
    model = onnx.load(conversions[name, "lecture"]["onnx"].path)
    onnx.checker.check_model(model, full_check=True)
    assert {value.name: tuple(_dims(value)) for value in model.graph.input} == inputs
    assert {value.name: tuple(_dims(value)) for value in model.graph.output} == outputs
    assert [value.name for value in model.graph.output] == list(outputs)  # the Keras model's order, not sorted
    types = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
    assert all(
        kind == (onnx.TensorProto.INT64 if n == "label" else onnx.TensorProto.FLOAT) for n, kind in types.items()
    )


def _ops(path) -> collections.Counter:
    return collections.Counter(node.op_type for node in onnx.load(path).graph.node)


def test_onnx_upsampling_is_one_resize_and_the_layout_needs_one_transpose(conversions):
    ops = _ops(conversions["dcgan_generator", "keras3"]["onnx"].path)
    assert ops["Resize"] == 2 and ops["Tile"] == 0, ops
    assert ops["Transpose"] == 1, ops  # was 3 (and 57 nodes) with UpSampling2D's repeat ops


def test_batchnorm_after_a_convolution_or_a_reshaped_dense_is_folded(conversions, tmp_path):
    folded = _ops(conversions["transpose_generator", "keras3"]["onnx"].path)
    (plain_file,) = export(
        conversions["transpose_generator", "keras3"]["source"],
        "onnx",
        tmp_path,
        log=lambda line: None,
        options=ExportOptions(fold_batch_norm=False),
    )
    plain = _ops(plain_file.path)
    assert plain["Mul"] == 2 and folded["Mul"] == 0, (plain, folded)


def test_folding_is_exact_for_every_pattern_it_folds():
    model = zoo.randomized(zoo.transpose_generator())
    graph = read_graph(model)
    folded = fold_batch_norm(graph)
    assert [spec.kind for spec in folded.layers] == [
        "Dense",
        "Reshape",
        "ReLU",
        "Conv2DTranspose",
        "ReLU",
        "Conv2DTranspose",
    ]
    z = np.random.default_rng(0).standard_normal((32, 32)).astype(np.float32)
    expected = model(z, training=False).numpy()
    np.testing.assert_allclose(build(folded, keras)(z, training=False).numpy(), expected, atol=2e-6)


def test_dl4j_file_has_the_fields_dl4j_needs_and_inputs_first(conversions):
    with h5py.File(conversions["cgan_discriminator", "keras3"]["h5"].path) as archive:
        config = json.loads(archive.attrs["model_config"])
    assert config["class_name"] == "Functional"
    layers = config["config"]["layers"]
    assert [layer["config"]["name"] for layer in layers[:2]] == ["image", "label"]
    embedding = next(layer["config"] for layer in layers if layer["class_name"] == "Embedding")
    assert embedding["mask_zero"] is False and embedding["input_length"] == 1
    assert not any(layer["class_name"] in ("Sequential", "Functional") for layer in layers)
    with h5py.File(conversions["transpose_generator", "keras3"]["h5"].path) as archive:
        config = json.loads(archive.attrs["model_config"])
    batch_norms = [
        layer["config"] for layer in config["config"]["layers"] if layer["class_name"] == "BatchNormalization"
    ]
    assert all(fields["center"] is True for fields in batch_norms)


def test_test_vectors_hold_every_input_and_output_by_name(conversions):
    with h5py.File(conversions["acgan_discriminator", "lecture"]["h5"].test_vectors) as archive:
        assert json.loads(archive.attrs["outputs"])["outputs"] == ["validity", "class_probabilities"]
        assert archive["predictions/class_probabilities"].shape == (16, 10)
    with h5py.File(conversions["cgan_generator", "lecture"]["h5"].test_vectors) as archive:
        assert json.loads(archive.attrs["inputs"])["inputs"] == ["z", "label"]
        np.testing.assert_array_equal(archive["inputs/label"][:, 0], np.arange(16) % 10)


@pytest.mark.parametrize("name", zoo.MODELS)
def test_inspect_says_every_format_can_be_written(conversions, name):
    report = inspect_model(conversions[name, "lecture"]["source"])
    assert report.writable(["onnx", "h5", "keras"]), report.verdicts
    assert report.role in ("generator", "discriminator", "image-to-image", "model")
    assert all(layer.onnx.startswith("yes") and layer.dl4j.startswith("yes") for layer in report.layers)


@pytest.mark.parametrize("name", zoo.MODELS)
def test_ganport_reads_back_every_hdf5_it_writes(conversions, name, tmp_path):
    """Conditional, multi-output and flattened-for-DL4J files go back through inspect and the ONNX formats, and the
    ONNX made from the HDF5 gives the original Keras model's stored predictions."""
    import onnxruntime

    written = conversions[name, "keras3"]["h5"]
    report = inspect_model(written.path)
    assert report.role and report.outputs and report.writable(["onnx", "triton"]), report.verdicts
    (onnx_file,) = export(written.path, "onnx", tmp_path, log=lambda line: None)
    (triton_model,) = export(written.path, "triton", tmp_path / "repository", log=lambda line: None)
    assert onnx_file.comparison.passed and triton_model.comparison.passed
    session = onnxruntime.InferenceSession(str(onnx_file.path), providers=["CPUExecutionProvider"])
    with h5py.File(written.test_vectors) as vectors:
        feeds = {
            item.name: vectors[f"inputs/{item.name}"][()].astype(np.int64 if "int64" in item.type else np.float32)
            for item in session.get_inputs()
        }
        names = json.loads(vectors.attrs["outputs"])["outputs"]
        for output, result in zip(names, session.run(names, feeds), strict=True):
            expected = vectors[f"predictions/{output}"][()]
            np.testing.assert_allclose(result.reshape(expected.shape), expected, atol=written.comparison.bound * 4)


def test_inspect_cli_prints_a_table_and_json(conversions):
    source = str(conversions["cgan_generator", "lecture"]["source"])
    result = CliRunner().invoke(app, ["inspect", source])
    assert result.exit_code == 0, result.output
    assert "Embedding" in result.output and "h5: ok" in result.output
    result = CliRunner().invoke(app, ["inspect", source, "--json"])
    report = json.loads(result.stdout)
    assert [item["name"] for item in report["inputs"]] == ["z", "label"]
    assert report["verdicts"] == {"onnx": [], "h5": [], "keras": [], "triton": []}


def test_inspect_redirected_to_a_file_keeps_every_name_whole(conversions, tmp_path):
    """A CI log is where these tables are read: no `BatchNormali…`, however narrow the log's nominal width."""
    source = conversions["transpose_generator", "lecture"]["source"]
    listing = tmp_path / "inspect.txt"
    with listing.open("w") as out:
        result = subprocess.run(
            [Path(sys.executable).with_name("ganport"), "inspect", source],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "60"},
        )
    assert result.returncode == 0, result.stderr
    text = listing.read_text()
    for whole in ("Conv2DTranspose", "BatchNormalization", "Deconvolution2D, NHWC", "triton: ok"):
        assert whole in text, text
    assert "…" not in text


@pytest.fixture(scope="module")
def unconvertible(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("unconvertible")

    @keras.saving.register_keras_serializable(package="tests")
    class Doubling(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2

    models = {
        "lstm": keras.Sequential([keras.Input((10, 4)), keras.layers.LSTM(8), keras.layers.Dense(1)]),
        "custom": keras.Sequential(
            [keras.Input((28, 28, 1)), Doubling(), keras.layers.Flatten(), keras.layers.Dense(1)]
        ),
        "gelu": keras.Sequential(
            [keras.Input((100,)), keras.layers.Dense(784, activation="gelu"), keras.layers.Reshape((28, 28, 1))]
        ),
        "channels_first": keras.Sequential(
            [
                keras.Input((1, 28, 28)),
                keras.layers.Conv2D(4, 3, data_format="channels_first"),
                keras.layers.Flatten(),
                keras.layers.Dense(1),
            ]
        ),
    }
    paths = {}
    for name, model in models.items():
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    return paths


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("lstm", ["Unsupported layer LSTM", "supported: Activation"]),
        ("channels_first", ["data_format='channels_first'", "channels_last"]),
    ],
)
def test_unsupported_layers_get_a_clear_refusal_from_export_and_inspect(unconvertible, name, fragments):
    with pytest.raises(UnsupportedLayerError) as refusal:
        export(unconvertible[name], "onnx", unconvertible[name].parent / "out", log=lambda line: None)
    assert all(fragment in str(refusal.value) for fragment in fragments)
    assert_one_line_error(CliRunner().invoke(app, ["inspect", str(unconvertible[name])]), *fragments)
    assert not (unconvertible[name].parent / "out").exists()


def test_an_integer_input_that_is_not_a_label_is_refused_in_one_line(tmp_path):
    """uint8 pixels fed to a Rescaling: the checks feed integer inputs only as class labels (one per sample), so
    export refuses the model by its input rather than failing on its shape; a label input still converts."""
    image = keras.Input((8, 8, 3), dtype="uint8", name="pixels")
    features = keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(keras.layers.Rescaling(1 / 255)(image)))
    keras.Model(image, keras.layers.Dense(1)(features)).save(tmp_path / "pixels.keras")
    fragments = ("'pixels' takes uint8 values of shape (8, 8, 3)", "class labels", "float32 input")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "pixels.keras"), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()
    assert_one_line_error(CliRunner().invoke(app, ["inspect", str(tmp_path / "pixels.keras")]), *fragments)


@pytest.mark.parametrize("module_name", ["keras", "tf_keras"])
def test_an_embedded_sequence_of_labels_converts_with_labels_in_turn(module_name, tmp_path):
    """An input read only by an Embedding holding several labels per sample (tokens, a label per part): the checks
    feed labels 0, 1, 2, ... across each sample's places, and every target computes the model's numbers."""
    import importlib

    module = importlib.import_module(module_name)
    tokens = module.Input((5,), name="tokens")
    embedded = module.layers.Flatten()(module.layers.Embedding(7, 4)(tokens))
    source = tmp_path / f"tokens{'.keras' if module is keras else '.h5'}"
    module.Model(tokens, module.layers.Dense(3)(embedded)).save(source)
    for fmt in ("onnx", "h5"):
        (exported,) = export(source, fmt, tmp_path / fmt, log=lambda line: None)
        assert exported.comparison.passed, exported.comparison.line()
    with h5py.File(exported.test_vectors) as vectors:
        (name,) = json.loads(vectors.attrs["inputs"])["inputs"]
        fed = vectors[f"inputs/{name}"][()]
    np.testing.assert_array_equal(fed.reshape(-1), np.arange(fed.size) % 7)


@pytest.mark.parametrize("module_name", ["keras", "tf_keras"])
def test_a_valid_transposed_convolution_with_output_padding_converts_to_onnx(module_name, tmp_path):
    """tf2onnx 1.17 writes it as a ConvTranspose with negative pads (ONNX's checker rejects them): ganport's ONNX form
    gives Keras's numbers, the BatchNorm after it folded in; DL4J, which never reads output_padding, refuses it."""
    import importlib

    module = importlib.import_module(module_name)
    k = module.layers
    stack = [k.Conv2DTranspose(4, 3, strides=(2, 3), output_padding=(1, 2), activation="relu"), k.BatchNormalization()]
    model = module.Sequential([module.Input((5, 5, 3)), *stack, k.Flatten(), k.Dense(2)])
    source = tmp_path / f"padded{'.keras' if module is keras else '.h5'}"
    zoo.randomized(model).save(source)
    (exported,) = export(source, "onnx", tmp_path / "onnx", log=lambda line: None)
    assert exported.comparison.passed, exported.comparison.line()
    assert {"ConvTranspose", "Pad"} <= set(_ops(exported.path)) and "BatchNormalization" not in _ops(exported.path)
    result = CliRunner().invoke(app, ["export", str(source), "-f", "h5", "--out", str(tmp_path / "h5")])
    assert_one_line_error(result, "never reads output_padding", exit_code=1)


@pytest.mark.parametrize("module_name", ["keras", "tf_keras"])
def test_batch_renormalization_and_an_elu_held_as_activation_convert_to_every_format(module_name, tmp_path):
    """renorm=True adds arrays that act only while training (inference reads gamma, beta and the moving statistics);
    an ELU layer given as a Dense's activation becomes a layer of its own."""
    import importlib

    module = importlib.import_module(module_name)
    k = module.layers
    stack = [k.Dense(8), k.BatchNormalization(renorm=True), k.Dense(8, activation=k.ELU(alpha=0.5)), k.Dense(2)]
    source = tmp_path / f"renorm{'.keras' if module is keras else '.h5'}"
    zoo.randomized(module.Sequential([module.Input((6,)), *stack])).save(source)
    for fmt in ("onnx", "h5", "keras"):
        (exported,) = export(source, fmt, tmp_path / fmt, log=lambda line: None)
        assert exported.comparison.passed, exported.comparison.line()


def test_a_rms_scaled_layer_normalization_of_keras_3_converts_to_onnx(tmp_path):
    stack = [keras.layers.Dense(8), keras.layers.LayerNormalization(rms_scaling=True), keras.layers.Dense(2)]
    zoo.randomized(keras.Sequential([keras.Input((6,)), *stack])).save(tmp_path / "rms.keras")
    for fmt in ("onnx", "keras"):
        (exported,) = export(tmp_path / "rms.keras", fmt, tmp_path / fmt, log=lambda line: None)
        assert exported.comparison.passed, exported.comparison.line()


def test_a_custom_layer_whose_class_is_at_hand_converts_to_onnx_only(unconvertible, tmp_path):
    """A registered custom class (here, in this process; for users, --custom-objects) is rebuilt from its config."""
    (exported,) = export(unconvertible["custom"], "onnx", tmp_path, log=lambda line: None)
    assert exported.comparison.passed
    report = inspect_model(unconvertible["custom"])
    assert any("a custom layer (Doubling)" in reason for reason in report.verdicts["h5"]), report.verdicts


def test_a_layer_dl4j_would_misread_blocks_h5_only(unconvertible, tmp_path):
    report = inspect_model(unconvertible["gelu"])
    assert report.verdicts["onnx"] == [] and "gelu" in report.verdicts["h5"][0]
    result = CliRunner().invoke(app, ["export", str(unconvertible["gelu"]), "-f", "h5", "--out", str(tmp_path)])
    assert_one_line_error(result, "activation 'gelu' is not one DL4J imports", "Export it to ONNX")
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(app, ["inspect", str(unconvertible["gelu"]), "--format", "onnx"])
    assert result.exit_code == 0, result.output


def test_roles_describe_rgb_image_to_image_tabular_and_k_way_models(conversions, tmp_path):
    """Roles describe, they do not gate: an RGB generator samples a colour grid, and is served with its sample.png in
    colour; an image-to-image model and a tabular one keep their own tensor names and are served; a k-way critic's
    output is `scores`."""
    import onnxruntime
    from PIL import Image
    from serving import call, post_json, running_server

    names = {
        name: (
            [item.name for item in onnx.load(conversions[name, "keras3"]["onnx"].path).graph.input],
            [item.name for item in onnx.load(conversions[name, "keras3"]["onnx"].path).graph.output],
        )
        for name in ("rgb_generator", "image_to_image", "tabular_generator", "multiclass_critic")
    }
    assert names == {
        "rgb_generator": (["z"], ["image"]),
        "image_to_image": (["low_resolution"], ["high_resolution"]),
        "tabular_generator": (["latent", "condition"], ["features"]),
        "multiclass_critic": (["image"], ["scores"]),
    }
    rgb = conversions["rgb_generator", "keras3"]["onnx"].path
    result = CliRunner().invoke(app, ["sample", str(rgb), "-n", "9", "--out", str(tmp_path / "rgb.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "rgb.png").mode == "RGB"

    upscaler = conversions["image_to_image", "keras3"]["onnx"].path
    low = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    expected = onnxruntime.InferenceSession(str(upscaler), providers=["CPUExecutionProvider"]).run(
        None, {"low_resolution": low}
    )[0]
    with running_server(upscaler, rgb) as server:
        body = {
            "inputs": [
                {"name": "low_resolution", "datatype": "FP32", "shape": [2, 16, 16, 3], "data": low.ravel().tolist()}
            ]
        }
        status, answer = post_json(f"{server.url}/v2/models/image_to_image/infer", body)
        assert status == 200, answer
        (output,) = answer["outputs"]
        assert output["name"] == "high_resolution" and output["shape"] == [2, 32, 32, 3]
        np.testing.assert_allclose(np.array(output["data"], np.float32).reshape(2, 32, 32, 3), expected, atol=1e-6)
        status, _, png = call(f"{server.url}/v2/models/rgb_generator/sample.png?n=4")
        assert status == 200 and Image.open(io.BytesIO(png)).mode == "RGB"


@pytest.mark.parametrize("module_name", ["keras", "tf_keras"])
def test_layers_dl4j_cannot_take_convert_to_onnx_and_the_h5_refusal_names_each(module_name, tmp_path):
    """DepthwiseConv2D, PReLU, GroupNormalization, the 1D padding, cropping, upsampling and average pooling, and
    LayerNormalization: ONNX with parity; for DL4J one line naming each layer, why (measured with DL4J 1.0.0-M2.1,
    or its import has no such class), and the ONNX route; no file written."""
    import importlib

    module = importlib.import_module(module_name)
    source = tmp_path / f"onnx_only_layers{'.keras' if module is keras else '.h5'}"
    zoo.randomized(zoo.onnx_only_layers(module)).save(source)
    report = inspect_model(source)
    assert report.verdicts["onnx"] == [] and len(report.verdicts["h5"]) == 9, report.verdicts  # + the rank-3 Reshape
    (exported,) = export(source, "onnx", tmp_path / "out", log=lambda line: None)
    assert exported.comparison.passed, exported.comparison.line()
    result = CliRunner().invoke(app, ["export", str(source), "-f", "h5", "--out", str(tmp_path / "h5")])
    fragments = ("DepthwiseConv2D", "PReLU", "GroupNormalization", "UpSampling1D", "ZeroPadding1D", "Cropping1D")
    fragments += ("AveragePooling1D", "LayerNormalization", "Export it to ONNX")
    assert_one_line_error(result, *fragments, exit_code=1)
    assert not (tmp_path / "h5").exists() or list((tmp_path / "h5").iterdir()) == []
