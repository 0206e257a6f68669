"""Real-world Keras files that store TensorFlow ops or Python code, custom layers, and DL4J's rank-3 outputs.

Each fixture is written the way the Keras that made such files wrote it: tf.keras 2.4+ `TFOpLambda` layers (a raw
TensorFlow op called on a Keras tensor), TF 2.0-2.3 `TensorFlowOpLayer` (a NodeDef and its constants), `Lambda`
layers (marshalled Python bytecode), a Keras 2.13 `.keras` archive, a custom layer class in the user's own file, and
a generator of 3x3 boards (a trailing Reshape to rank 3).
"""

from __future__ import annotations

import json
import textwrap
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from typer.testing import CliRunner

from conftest import assert_one_line_error, require_or_skip
from ganport.cli import app
from ganport.compatibility import inspect_model
from ganport.errors import ModelError, UnsupportedLayerError
from ganport.export import export
from ganport.keras_files.load import LoadOptions, load_model_file

pytestmark = pytest.mark.slow


def _quiet(line: str) -> None:
    pass


def _fast_srgan_generator() -> tf_keras.Model:
    """Fast-SRGAN's generator in small: convolutions with PReLU, a residual block with BatchNorm, a sub-pixel
    upsampling by tf.nn.depth_to_space (a TFOpLambda in tf.keras 2.4+), then tanh; 8x8x3 -> 16x16x3."""
    layers = tf_keras.layers
    low = tf_keras.Input((8, 8, 3))
    features = layers.PReLU(shared_axes=[1, 2])(layers.Conv2D(8, 3, padding="same")(low))
    block = layers.BatchNormalization(momentum=0.8)(layers.Conv2D(8, 3, padding="same")(features))
    features = layers.Add()([features, layers.PReLU(shared_axes=[1, 2])(block)])
    upsampled = tf.nn.depth_to_space(layers.Conv2D(32, 3, padding="same")(features), 2)
    high = layers.Conv2D(3, 3, padding="same", activation="tanh")(layers.PReLU(shared_axes=[1, 2])(upsampled))
    return tf_keras.Model(low, high, name="fast_srgan_generator")


def _with_tensorflow_op_layers(path: Path) -> Path:
    """TF 2.0-2.3's way of the same ops: TensorFlowOpLayers with their NodeDefs and constant inputs (a resize size, a
    concat axis, a scale), written by tf_keras's own TensorFlowOpLayer class."""
    from tf_keras.src.engine.base_layer import TensorFlowOpLayer

    def op(name: str, inputs: list[str], attrs: dict, constants: dict | None = None) -> TensorFlowOpLayer:
        node_def = {"name": name, "op": name, "input": inputs, "attr": {"T": {"type": "DT_FLOAT"}, **attrs}}
        return TensorFlowOpLayer(node_def, name=name, constants=constants or {})

    layers = tf_keras.layers
    low = tf_keras.Input((8, 8, 3))
    features = layers.Conv2D(12, 3, padding="same")(low)
    upsampled = op("DepthToSpace", ["conv2d/Identity"], {"block_size": {"i": "2"}, "data_format": {"s": "TkhXQw=="}})(
        features
    )
    resized = op(
        "ResizeBilinear",
        ["DepthToSpace", "ResizeBilinear/size"],
        {"align_corners": {"b": False}, "half_pixel_centers": {"b": True}},
        {1: np.array([16, 16], np.int32)},
    )(layers.UpSampling2D()(low))
    joined = op("ConcatV2", ["a", "b", "ConcatV2/axis"], {"N": {"i": "2"}}, {2: np.array(-1, np.int32)})(
        [upsampled, resized]
    )
    scaled = op("Mul", ["ConcatV2", "Mul/y"], {}, {1: np.array(0.5, np.float32)})(joined)
    model = tf_keras.Model(low, layers.Conv2D(3, 1, activation="tanh")(scaled), name="tf23_generator")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def stored_ops(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stored-ops")
    generator = _fast_srgan_generator()
    generator.save(folder / "fast_srgan.h5")
    with h5py.File(folder / "fast_srgan.h5") as archive:
        kinds = [layer["class_name"] for layer in json.loads(archive.attrs["model_config"])["config"]["layers"]]
    assert "TFOpLambda" in kinds
    return {
        "tf_op_lambda": folder / "fast_srgan.h5",
        "tensorflow_op_layer": _with_tensorflow_op_layers(folder / "tf23.h5"),
    }


@pytest.mark.parametrize("kind", ["tf_op_lambda", "tensorflow_op_layer"])
def test_stored_tensorflow_ops_convert_to_onnx_and_are_refused_for_dl4j_and_keras(stored_ops, kind, tmp_path):
    source = stored_ops[kind]
    (onnx_file,) = export(source, "onnx", tmp_path, log=_quiet)
    assert onnx_file.comparison.passed and onnx_file.comparison.max_abs_diff < 1e-5, onnx_file.comparison.line()
    report = inspect_model(source)
    assert report.verdicts["onnx"] == [] and report.role == "image-to-image"
    op_name = "DepthToSpace" if kind == "tensorflow_op_layer" else "tf.nn.depth_to_space"
    assert any(op_name in reason and "DL4J" in reason for reason in report.verdicts["h5"]), report.verdicts["h5"]
    assert any("Keras 3 has no layer" in reason for reason in report.verdicts["keras"]), report.verdicts["keras"]
    for fmt, fragment in (("h5", "Export it to ONNX"), ("keras", "Export it to ONNX")):
        result = CliRunner().invoke(app, ["export", str(source), "-f", fmt, "--out", str(tmp_path / fmt)])
        assert_one_line_error(result, op_name, fragment)
        assert not (tmp_path / fmt).exists() or not any((tmp_path / fmt).iterdir())


def test_a_fast_srgan_generator_exported_to_onnx_verifies_on_its_own(stored_ops, tmp_path):
    from ganport.verify import verify

    export(stored_ops["tf_op_lambda"], "onnx", tmp_path, log=_quiet)
    comparisons = verify(tmp_path, jvm=False, log=_quiet)
    assert [(c.backend, c.passed) for c in comparisons] == [("onnxruntime", True)], [c.line() for c in comparisons]


def _rewrite_config(path: Path, change) -> None:
    with h5py.File(path, "a") as archive:
        config = json.loads(archive.attrs["model_config"])
        change(config["config"]["layers"])
        archive.attrs["model_config"] = json.dumps(config).encode()


@pytest.mark.parametrize("kind", ["tf_op_lambda", "tensorflow_op_layer"])
def test_a_file_naming_another_tensorflow_op_is_refused_before_it_runs(stored_ops, kind, tmp_path):
    """A stored op runs whenever the model runs, so only the ops ganport converts are loaded: a file whose op would
    write a file is refused before Keras reads it, and nothing is written."""
    hostile = tmp_path / "hostile.h5"
    hostile.write_bytes(stored_ops[kind].read_bytes())

    def to_write_file(layers: list[dict]) -> None:
        for layer in layers:
            if layer["class_name"] == "TFOpLambda":
                layer["config"]["function"] = "io.write_file"
            elif layer["class_name"] == "TensorFlowOpLayer":
                layer["config"]["node_def"]["op"] = "WriteFile"

    _rewrite_config(hostile, to_write_file)
    with pytest.raises(ModelError, match="not one of the TensorFlow ops ganport converts"):
        load_model_file(hostile)
    result = CliRunner().invoke(app, ["export", str(hostile), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "WriteFile" if kind == "tensorflow_op_layer" else "tf.io.write_file")
    assert not (tmp_path / "out").exists()


def _lambda_models(module, witness: Path):
    """A Lambda as users write them (tf_keras: a depth_to_space; Keras 3, whose reloaded Lambdas see no `tf`, a
    rescale), and one whose code writes `witness` when it runs."""
    layers = module.layers
    low = module.Input((4, 4, 8))
    function = (lambda x: tf.nn.depth_to_space(x, 2)) if module is tf_keras else (lambda x: x * 0.5 + 0.25)
    upsampled = layers.Lambda(function)(layers.Conv2D(8, 3, padding="same")(low))
    benign = module.Model(low, layers.Conv2D(3, 1, activation="tanh")(upsampled))
    marker = str(witness)
    noise = module.Input((4,))
    hostile = module.Model(noise, layers.Lambda(lambda x: (open(marker, "w").close(), x)[1])(noise))
    return benign, hostile


@pytest.mark.parametrize("suffix", [".h5", ".keras", ".json", "(SavedModel)"])
def test_lambda_code_runs_only_with_trust_code(tmp_path, suffix):
    """tf_keras runs a Lambda's stored bytecode while loading an HDF5 file, an architecture .json or a SavedModel,
    without asking: ganport refuses such a file before loading it unless --trust-code says the user trusts it;
    trusted, the Lambda converts to ONNX."""
    module = keras if suffix == ".keras" else tf_keras
    witness = tmp_path / "code-ran"
    models = dict(zip(("benign", "hostile"), _lambda_models(module, witness), strict=True))
    paths = {}
    for name, model in models.items():
        if suffix == ".json":  # Keras-GAN's way: the architecture, and its weights beside it
            paths[name] = tmp_path / f"{name}.json"
            paths[name].write_text(model.to_json())
            model.save_weights(tmp_path / f"{name}_weights.hdf5")
        else:
            paths[name] = tmp_path / (name if suffix == "(SavedModel)" else f"{name}{suffix}")
            model.save(paths[name])
    witness.unlink(missing_ok=True)  # building the model ran the function once
    for path in paths.values():
        result = CliRunner().invoke(app, ["inspect", str(path)])
        assert_one_line_error(result, "stores Python code", "--trust-code")
    assert not witness.exists()
    options = LoadOptions(trust_code=True)
    (exported,) = export(paths["benign"], "onnx", tmp_path / "out", log=_quiet, load=options)
    assert exported.comparison.passed and exported.comparison.max_abs_diff < 1e-5
    arguments = ["export", str(paths["benign"]), "-f", "h5", "--trust-code", "--out", str(tmp_path / "h5")]
    assert_one_line_error(CliRunner().invoke(app, arguments), "Python code, which DL4J's Keras import cannot run")
    if suffix == ".keras":  # its rescale trips tf2onnx's transpose optimiser, which logs a traceback: one line here
        import subprocess
        import sys

        command = [sys.executable, "-m", "ganport.cli", "export", str(paths["benign"]), "--trust-code"]
        result = subprocess.run([*command, "--out", str(tmp_path / "cli")], capture_output=True, text=True)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]


CUSTOM_LAYER = """
    import keras


    class ScaledTanh(keras.layers.Layer):
        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def build(self, input_shape):
            self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gain")

        def call(self, inputs):
            return keras.ops.tanh(inputs * self.gain) * self.scale

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}
"""


def test_custom_objects_supply_a_custom_layer(tmp_path):
    """A generator with a custom layer class, saved by Keras 3: without its code, one line names the class and
    --custom-objects; with the user's .py file, ONNX and .keras exports have parity and DL4J's refusal names it."""
    import importlib.util

    module_path = tmp_path / "my_layers.py"
    module_path.write_text(textwrap.dedent(CUSTOM_LAYER))
    spec = importlib.util.spec_from_file_location("my_layers_for_saving", module_path)
    user_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(user_module)
    noise = keras.Input((16,))
    hidden = user_module.ScaledTanh(0.9)(keras.layers.Dense(48)(noise))
    generator = keras.Model(noise, keras.layers.Reshape((4, 4, 3))(hidden))
    generator.layers[2].set_weights([np.linspace(0.5, 1.5, 48, dtype=np.float32)])
    generator.save(tmp_path / "generator.keras")

    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "generator.keras")])
    assert_one_line_error(result, "custom layer class", "ScaledTanh", "--custom-objects")
    load = LoadOptions(custom_objects=module_path)
    for fmt in ("onnx", "keras"):
        (exported,) = export(tmp_path / "generator.keras", fmt, tmp_path / "out", log=_quiet, load=load)
        assert exported.comparison.passed and exported.comparison.max_abs_diff < 1e-5, exported.comparison.line()
    assert exported.role == "generator"
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "generator.keras"), "-f", "h5", "--custom-objects", str(module_path)]
    )
    assert_one_line_error(result, "a custom layer (ScaledTanh)", "Export it to ONNX")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no GPU here')\n")
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "generator.keras"), "--custom-objects", str(broken)])
    assert_one_line_error(result, "failed to import: RuntimeError: no GPU here")


@pytest.mark.parametrize("style", ["sequential", "functional"])
def test_a_board_generator_reshaping_to_rank_3_is_written_flat_for_dl4j(tmp_path, style):
    """3x3 boards: Dense(9, tanh) -> Reshape((3, 3)). DL4J cannot reshape to rank 3, so the h5 format writes the
    output flat (the same numbers), records it, and ganport reads its own file back as [batch, 3, 3]."""
    layers = tf_keras.layers
    if style == "sequential":
        model = tf_keras.Sequential(
            [
                tf_keras.Input((20,)),
                layers.Dense(32),
                layers.LeakyReLU(0.2),
                layers.Dense(9, "tanh"),
                layers.Reshape((3, 3)),
            ]
        )
    else:
        noise = tf_keras.Input((20,))
        model = tf_keras.Model(noise, layers.Reshape((3, 3))(layers.Dense(9, "tanh")(layers.Dense(32)(noise))))
    model.save(tmp_path / "boards.h5")
    assert inspect_model(tmp_path / "boards.h5").verdicts["h5"] == []
    (written,) = export(tmp_path / "boards.h5", "h5", tmp_path / "out", log=_quiet)
    assert written.comparison.passed
    with h5py.File(written.path) as archive:
        kinds = [layer["class_name"] for layer in json.loads(archive.attrs["model_config"])["config"]["layers"]]
    assert "Reshape" not in kinds
    assert list(load_model_file(written.path).outputs[0].shape) == [None, 3, 3]
    inside = tf_keras.Sequential([tf_keras.Input((20,)), layers.Dense(9), layers.Reshape((3, 3)), layers.Flatten()])
    inside.save(tmp_path / "inside.h5")
    with pytest.raises(UnsupportedLayerError, match="rank 3 inside a model"):
        export(tmp_path / "inside.h5", "h5", tmp_path / "inside", log=_quiet)


@pytest.mark.maven
def test_dl4j_imports_the_board_generator_and_ort_java_the_fast_srgan_one(stored_ops, tmp_path):
    import shutil

    from ganport.verify import verify

    require_or_skip(shutil.which("mvn") is not None, "Maven is needed for the DL4J checks")
    layers = tf_keras.layers
    noise = tf_keras.Input((20,))
    boards = tf_keras.Model(noise, layers.Reshape((3, 3))(layers.Dense(9, "tanh")(layers.Dense(32)(noise))))
    boards.save(tmp_path / "boards.h5")
    export(tmp_path / "boards.h5", "h5", tmp_path / "out", log=_quiet)
    export(stored_ops["tf_op_lambda"], "onnx", tmp_path / "out", log=_quiet)
    comparisons = verify(tmp_path / "out", log=_quiet)
    rows = {(c.model, c.backend): c for c in comparisons}
    for row in (("boards", "dl4j"), ("boards", "dl4j layers"), ("fast_srgan", "java onnxruntime")):
        assert rows[row].passed, rows[row].line()


def test_a_keras_2_13_zip_is_read_by_tf_keras(tmp_path):
    """Keras 2.12-2.15 wrote .keras zips of their own; ganport reads one with tf_keras (its metadata says 2.x)."""
    layers = tf_keras.layers
    noise = tf_keras.Input((16,))
    model = tf_keras.Model(noise, layers.Reshape((4, 4, 1))(layers.Dense(16, "tanh")(layers.Dense(8)(noise))))
    written = tmp_path / "written.keras"
    model.save(written)
    path = tmp_path / "generator.keras"
    with zipfile.ZipFile(written) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "keras_version": "2.13.1"}).encode()
            target.writestr(entry, data)
    loaded = load_model_file(path)
    assert type(loaded).__module__.startswith("tf_keras")
    (exported,) = export(path, "onnx", tmp_path / "out", log=_quiet)
    assert exported.comparison.passed and exported.role == "generator"


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"function": ["4wEAAAAA", None, None], "function_type": "lambda"}, True),  # Keras 2 bytecode
        ({"function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAA"}}}, True),  # Keras 3 bytecode
        ({"function": "depth_to_space_2", "function_type": "function"}, False),  # looked up by name
        ({"function": {"class_name": "function", "config": "depth_to_space_2"}}, False),
        ({"function": "f", "function_type": "function", "output_shape": ["4wEA", None, None]}, False),  # raw shape
        ({"function": "f", "function_type": "function", "output_shape": ["4wEA"], "output_shape_type": "lambda"}, True),
        ({"function": {"class_name": "__tuple__", "items": ["4wEA", None, None]}, "function_type": "lambda"}, True),
    ],
)
def test_only_lambdas_that_store_python_code_need_trust(config, code):
    from ganport.tf_ops import is_python_lambda

    assert is_python_lambda({"class_name": "Lambda", "config": config}) is code
