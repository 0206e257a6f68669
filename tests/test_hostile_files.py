"""Hostile and damaged model files: nothing a file stores or names runs without opt-in, and every damaged input is
one line, never a traceback.

Each code-carrying file is built the way the Keras that reads it writes such files (tf_keras's own .keras archive
and SavedModel folder, a Keras 2 HDF5 file), then edited the way an attacker would; its code, if it ever ran, would
leave a marker, which must never appear. One case per hole found in main on 2026-12-06 (issue 30).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from typer.testing import CliRunner

from conftest import assert_one_line_error
from ganport.cli import app

pytestmark = pytest.mark.slow

COMMANDS = (
    ("inspect",),
    ("export", "--format", "onnx"),
    ("export", "--format", "h5"),
    ("export", "--format", "keras"),
)


def _invoke(*args: str) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def _rewrite_keras_config(source: Path, target: Path, edit: object) -> Path:
    """`source`'s .keras archive with its config.json changed by `edit(config)`, every other entry as it was."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    edit(config)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


def _tf_keras_archive(folder: Path, with_lambda: bool) -> Path:
    """tf_keras's own .keras archive of a small model, with a Lambda layer (later given the attacker's function in
    place of its code) or without."""
    inputs = tf_keras.Input((4,))
    hidden = tf_keras.layers.Lambda(lambda x: x * 2.0)(inputs) if with_lambda else inputs
    outputs = tf_keras.layers.Dense(3, activation="tanh")(hidden)
    path = folder / f"{'lambda' if with_lambda else 'plain'}.keras"
    tf_keras.Model(inputs, outputs).save(path, save_format="keras")
    return path


def _lambda_config(config: dict) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Lambda")["config"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """name -> a hostile file; each would create the folder or file `marker` beside it if its code ran."""
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "marker"
    plain, with_lambda = _tf_keras_archive(folder, False), _tf_keras_archive(folder, True)
    files = {}

    def named_function(config: dict) -> None:  # tf_keras imports tensorflow.io and calls write_graph(inputs, ...)
        lambda_config = _lambda_config(config)
        lambda_config["function"] = {
            "class_name": "function",
            "module": "tensorflow.io",
            "config": "write_graph",
            "registered_name": "function",
        }
        lambda_config.update(function_type="function", arguments={"logdir": str(marker), "name": "graph.txt"})

    files["named function in a Lambda (.keras)"] = _rewrite_keras_config(
        with_lambda, folder / "named.keras", named_function
    )

    def activation_function(config: dict) -> None:  # the same call hidden in a Dense layer's activation
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["activation"] = {"class_name": "function", "module": "tensorflow.io", "config": "write_file"}

    files["named function as an activation"] = _rewrite_keras_config(
        plain, folder / "activation.keras", activation_function
    )

    module = folder / "ganport_marker_module.py"
    module.write_text(f"open({str(marker)!r}, 'w').close()\n")  # runs when imported

    def foreign_class(config: dict) -> None:  # a layer class looked up by importing a module the file names
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense.update(module="ganport_marker_module", class_name="Evil", registered_name="Evil")

    files["class from a foreign module"] = _rewrite_keras_config(plain, folder / "foreign.keras", foreign_class)

    # a Keras 2 HDF5 Lambda that names os.system by name (Keras 2's function_type "function")
    h5_model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Lambda(tf.nn.relu), tf_keras.layers.Dense(3)])
    h5_path = folder / "named.h5"
    h5_model.save(h5_path)
    with h5py.File(h5_path, "r+") as archive:
        config = json.loads(archive.attrs["model_config"])
        _lambda_config(config).update(function="system", function_type="function", module="os")
        archive.attrs["model_config"] = json.dumps(config).encode()
    files["named function in a Keras 2 HDF5 Lambda"] = h5_path
    files["custom layer named Add in a SavedModel"] = _saved_model_with_a_layer_named_add(folder, marker)
    return {**files, "marker": marker}


def _saved_model_with_a_layer_named_add(folder: Path, marker: Path) -> Path:
    """A SavedModel whose custom layer is called Add and has one config key the built-in Add lacks, so tf_keras
    cannot rebuild it from its config and revives it from the graph it stores, which writes the marker."""

    class Add(tf_keras.layers.Layer):
        def __init__(self, extra: int = 1, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.extra = extra

        def call(self, inputs: tf.Tensor) -> tf.Tensor:
            tf.io.write_file(str(marker), tf.strings.as_string(tf.reduce_sum(inputs)))
            return inputs + 1.0

        def get_config(self) -> dict:
            return {**super().get_config(), "extra": self.extra}

    inputs = tf_keras.Input((4,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(Add()(inputs)))
    path = folder / "saved_model"
    model.save(path, save_format="tf")
    return path


@pytest.mark.parametrize(
    "case",
    [
        "named function in a Lambda (.keras)",
        "named function as an activation",
        "class from a foreign module",
        "named function in a Keras 2 HDF5 Lambda",
        "custom layer named Add in a SavedModel",
    ],
)
def test_code_a_file_names_never_runs_without_opt_in(hostile, case, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(hostile["marker"].parent))  # where the foreign module could be imported from
    for command in COMMANDS:
        out = () if command[0] == "inspect" else ("--out", tmp_path / "out")
        result = _invoke(*command, hostile[case], *out)
        assert_one_line_error(result)
        assert not hostile["marker"].exists(), (command, result.output)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_what_each_refusal_says(hostile):
    said = {
        "named function in a Lambda (.keras)": "names the function tensorflow.io.write_graph",
        "named function as an activation": "names the function tensorflow.io.write_file",
        "class from a foreign module": "it names module ganport_marker_module, which loading would import",
        "named function in a Keras 2 HDF5 Lambda": "names the function os.system",
        "custom layer named Add in a SavedModel": "revived it from the TensorFlow graph the SavedModel stores",
    }
    for case, fragment in said.items():
        assert_one_line_error(_invoke("inspect", hostile[case]), fragment)


def test_a_run_folder_whose_generator_was_replaced_is_refused_by_eval_and_verify(hostile, short_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    shutil.copyfile(hostile["named function in a Lambda (.keras)"], run / "generator.keras")
    shutil.rmtree(run / "export", ignore_errors=True)
    assert_one_line_error(_invoke("eval", run / "generator.keras", "-n", "20"), "write_graph")
    assert_one_line_error(_invoke("verify", run, "--no-jvm"), "write_graph")
    assert not hostile["marker"].exists()


def test_pure_named_functions_still_load(tmp_path):
    """The allow-list lets real files through: a Lambda calling a Keras activation or a converted TensorFlow op by
    name (tf_keras's .keras archive)."""
    import keras

    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(4)(keras.layers.Lambda(keras.activations.tanh)(inputs))
    path = tmp_path / "tanh.keras"
    keras.Model(inputs, outputs).save(path)
    result = _invoke("export", path, "--format", "onnx", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output


def _h5_with_config(path: Path, text: str) -> Path:
    with h5py.File(path, "w", libver="latest") as archive:  # an attribute over 64 KB needs HDF5's dense storage
        archive.attrs["model_config"] = np.bytes_(text)
        archive.attrs["keras_version"] = np.bytes_("2.13.1")
    return path


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
        ('{"class_name": "Sequential", "config": ' * 200 + "1" + "}" * 200, "nested more than 64 levels deep"),
        ("[1, 2, 3]", "is a JSON array, not a Keras model's"),
        ("42", "is a number, not a Keras model's"),
        ('{"class_name": "Functional", "config": {"name": "m", "layers": "nonsense"}}', "does not list its layers"),
        ('{"class_name": "Sequential", "config": [1, 2]}', "does not list its layers"),
        ("{not json", "is not JSON"),
    ],
)
def test_damaged_configs_are_one_line(config, fragment, tmp_path):
    h5 = _h5_with_config(tmp_path / "model.h5", config)
    architecture = tmp_path / "model.json"
    architecture.write_text(config)
    _h5_with_config(tmp_path / "model_weights.h5", "{}")  # beside the .json, as Keras-GAN saves them
    keras_archive = tmp_path / "model.keras"
    with zipfile.ZipFile(keras_archive, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.8.0"}')
        archive.writestr("config.json", config)
    for path in (h5, architecture, keras_archive):
        assert_one_line_error(_invoke("inspect", path), fragment)


@pytest.mark.parametrize(
    ("layer", "field", "value", "fragment"),
    [
        ("Softmax", "axis", 9, "normalises axis 9, which a rank-4 input does not have"),
        ("Rescaling", "scale", "x", "has a setting ganport cannot read (could not convert string to float: 'x')"),
        ("Rescaling", "offset", [[1.0, 2.0], [3.0, 4.0]], "has offset [[1.0, 2.0], [3.0, 4.0]]"),
        ("ELU", "alpha", "steep", "has a setting ganport cannot read (could not convert string to float: 'steep')"),
    ],
)
def test_a_layer_setting_edited_to_nonsense_is_refused_in_one_line(layer, field, value, fragment, tmp_path):
    """Keras loads these files (it checks the settings only when the layer runs): inspect and export refuse them
    by the layer and the setting, never with a TensorFlow error or 'failed unexpectedly'."""
    k = keras.layers
    stack = [k.Rescaling(2.0), k.Conv2D(4, 3, padding="same"), k.ELU(), k.Softmax(), k.Flatten(), k.Dense(1)]
    keras.Sequential([keras.Input((4, 4, 3)), *stack]).save(tmp_path / "sound.keras")

    def edit(config: dict) -> None:
        next(item for item in config["config"]["layers"] if item["class_name"] == layer)["config"][field] = value

    edited = _rewrite_keras_config(tmp_path / "sound.keras", tmp_path / "edited.keras", edit)
    assert_one_line_error(_invoke("inspect", edited), fragment)
    assert_one_line_error(_invoke("export", edited, "--out", tmp_path / "out"), fragment)
    assert not (tmp_path / "out").exists()


def test_a_model_its_own_layers_cannot_run_is_refused_by_the_reference_run():
    """A setting Keras checks only on a call (a softmax over an axis the input lacks: Keras builds the model): the
    export's first run of the model refuses it in one line with Keras's reason, whatever layer it is."""
    from ganport.errors import ModelError
    from ganport.keras_files.run import reference_outputs

    images = keras.Input((4, 4, 3))
    model = keras.Model(images, keras.layers.Softmax(axis=7)(images))
    with pytest.raises(ModelError, match=r"m\.keras does not run on inputs of its own shapes \(Softmax.*dim=7\)"):
        reference_outputs(model, [np.zeros((2, 4, 4, 3), np.float32)], Path("m.keras"))


def test_a_custom_objects_file_that_exits_or_fails_is_one_line(tmp_path):
    source = tmp_path / "model.keras"
    import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(source)
    for code, fragment in (("import sys; sys.exit(3)", "failed to import: exit(3)"), ("1 / 0", "ZeroDivisionError")):
        objects = tmp_path / "objects.py"
        objects.write_text(code + "\n")
        assert_one_line_error(_invoke("inspect", source, "--custom-objects", objects), fragment)


@pytest.fixture(scope="module")
def damaged_onnx(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("damaged-onnx")
    (folder / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "empty.onnx").write_bytes(b"")
    os.symlink("/etc/passwd", folder / "passwd.onnx")
    os.symlink(folder / "loop.onnx", folder / "loop.onnx")
    return {path.stem: path for path in folder.iterdir()}


@pytest.mark.parametrize("name", ["random", "empty", "passwd", "loop"])
def test_damaged_onnx_files_are_one_line_everywhere(damaged_onnx, name, tmp_path):
    path = damaged_onnx[name]
    assert_one_line_error(_invoke("export", path, "--format", "triton", "--out", tmp_path / "repo"), str(path))
    assert_one_line_error(_invoke("sample", path, "--out", tmp_path / "grid.png"), str(path))
    assert_one_line_error(_invoke("eval", path, "-n", "10"), str(path))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "generator.onnx").symlink_to(path)
    with h5py.File(folder / "generator_inputs_and_outputs.h5", "w") as vectors:  # vectors fine, the model not
        vectors.attrs["inputs"] = np.bytes_('{"inputs": ["z"]}')
        vectors.attrs["outputs"] = np.bytes_('{"outputs": ["image"]}')
        vectors["inputs/z"] = np.zeros((2, 4), np.float32)
        vectors["predictions/image"] = np.zeros((2, 3), np.float32)
    assert_one_line_error(_invoke("verify", folder, "--no-jvm"), "generator.onnx")


@pytest.mark.parametrize("element_type", ["STRING", "BFLOAT16"])
def test_a_tensor_type_ganport_does_not_carry_is_one_line_everywhere(element_type, tmp_path):
    """Strings and bfloat16 are not numbers ganport feeds or the protocol carries: every reader of an ONNX signature
    (Triton's config, serve, sample, onnx_io.run) refuses them with the same kind of error."""
    import onnx

    from ganport import onnx_io
    from ganport.errors import ModelError
    from ganport.serve.served import ServedModel

    tensor_type = getattr(onnx.TensorProto, element_type)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["text"], ["same"])],
        "foreign",
        [onnx.helper.make_tensor_value_info("text", tensor_type, ["batch", 1])],
        [onnx.helper.make_tensor_value_info("same", tensor_type, ["batch", 1])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8), path)
    assert_one_line_error(_invoke("export", path, "--format", "triton", "--out", tmp_path / "repo"), str(path))
    assert_one_line_error(_invoke("sample", path, "--out", tmp_path / "grid.png"), str(path))
    held = re.escape(f"text holds tensor({element_type.lower()})")
    with pytest.raises(ModelError, match=held if element_type == "STRING" else "foreign.onnx"):
        ServedModel(path, "foreign")
    if element_type == "STRING":  # onnxruntime has no CPU kernel for Identity on bfloat16: the session is refused
        with pytest.raises(ModelError, match=held):
            onnx_io.run(path, {"text": np.array([["a"]])})


@pytest.mark.parametrize(
    ("record", "fits"),
    [
        (b'{"flat": [2, 2, 1]}', True),
        (b"not json", False),
        (b'{"flat": [3]}', False),  # 3 values for an output of 4
        (b'{"elsewhere": [2, 2, 1]}', False),  # no such output
        (b'{"flat": [2, -2, -1]}', False),
        (b"[1, 2]", False),
    ],
)
def test_a_flat_output_record_is_checked_like_the_rest_of_the_file(record, fits, tmp_path):
    """ganport's DL4J files record the image shape of outputs written flat (ganport.flat_outputs); any HDF5 file can
    carry that attribute, so the loader restores only a record that fits the model, and refuses others in one line."""
    path = tmp_path / "flat.h5"
    tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(4, name="flat")]).save(path)
    with h5py.File(path, "r+") as archive:
        archive.attrs["ganport_flattened_outputs"] = np.bytes_(record)
    result = _invoke("inspect", path, "--format", "onnx")
    if fits:
        assert result.exit_code == 0 and "[None, 2, 2, 1]" in result.output, result.output
    else:
        assert_one_line_error(result, "ganport_flattened_outputs")


@pytest.mark.parametrize(
    "listed",
    [
        pytest.param(b"", id="zero-byte"),
        # written by hand or by a tool that leaves out the times: TensorFlow's manager then lists no checkpoint
        pytest.param(b'model_checkpoint_path: "ckpt-4"\nall_model_checkpoint_paths: "ckpt-4"\n', id="without-times"),
    ],
)
def test_a_checkpoint_list_that_does_not_name_the_files_is_rebuilt_on_resume(tmp_path, listed):
    """A crash can leave TensorFlow's list of checkpoints (checkpoints/checkpoint) empty, and a hand-edited one can
    name none the manager accepts: resume rebuilds it from the checkpoint files and continues from the newest, never
    from iteration 0 while checkpoints are there."""
    out = tmp_path / "run"
    common = ("--iterations", "4", "--checkpoint-interval", "2", "--save-interval", "2", "--out", out)
    assert _invoke("train", *common).exit_code == 0
    (out / "checkpoints" / "checkpoint").write_bytes(listed)
    # as a user runs it: TensorFlow's Python warnings then go to the real stderr (a test runner's capture hides them)
    command = [sys.executable, "-m", "ganport.cli", "train", "--resume", "--out", str(out), "--iterations", "5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rebuilt from the 2 checkpoint(s)" in result.stderr and "at iteration 4" in result.stderr
    assert "Traceback" not in result.stderr and "deprecated" not in result.stderr, result.stderr[-3000:]


def test_resume_refuses_settings_that_are_not_the_runs(short_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    result = _invoke("train", "--resume", "--out", run, "--model", "dcgan", "--precision", "fp32")
    assert_one_line_error(result, "model='dcgan' (the run's: 'gan')", exit_code=2)
    assert "precision" not in result.output  # given, but the run's own


def test_export_never_replaces_a_users_file_without_overwrite(short_run, tmp_path):
    out = tmp_path / "out"
    for fmt in ("onnx", "h5", "keras"):
        assert _invoke("export", short_run, "--format", fmt, "--out", out).exit_code == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    for fmt in ("onnx", "h5", "keras"):
        assert_one_line_error(_invoke("export", short_run, "--format", fmt, "--out", out), "--overwrite", exit_code=2)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert _invoke("export", short_run, "--format", "h5", "--out", out, "--overwrite").exit_code == 0
