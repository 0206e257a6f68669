"""Hostile and damaged verify folders: a folder that cannot be checked is an error (never an empty table and exit
0), every file is read through ganport's loaders and checks, the bound comes from the rule applied to the model,
and every damaged input is one line. One case per hole found in main on 2026-12-06 (issue 30).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from conftest import assert_one_line_error
from ganport.cli import app

pytestmark = pytest.mark.slow

VECTORS = "generator_inputs_and_outputs.h5"


def _verify(folder: Path, *options: str) -> object:
    return CliRunner().invoke(app, ["verify", str(folder), "--no-jvm", *options])


@pytest.fixture(scope="module")
def exports(short_run, tmp_path_factory) -> Path:
    """The short run's generator exported to ONNX and HDF5 (with their test vectors)."""
    from ganport.export import export

    folder = tmp_path_factory.mktemp("verify-exports")
    for fmt in ("onnx", "h5"):
        export(short_run, fmt, folder, log=lambda line: None)
    return folder


@pytest.fixture
def folder(exports, tmp_path) -> Path:
    copy = tmp_path / "exports"
    shutil.copytree(exports, copy)
    return copy


def test_the_folder_as_exported_verifies(folder):
    result = _verify(folder)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("how", ["missing", "renamed", "symlink loop", "folder"])
def test_test_vectors_without_a_model_are_an_error(folder, how):
    for suffix in (".onnx", ".h5"):
        model = folder / f"generator{suffix}"
        if how == "renamed":
            model.rename(folder / f"gen{suffix}")
        else:
            model.unlink()
        if how == "symlink loop":
            model.symlink_to(model)
        elif how == "folder":
            model.mkdir()
    fragment = {"symlink loop": "is a symbolic link loop", "folder": "is a folder"}.get(how, "but no model to check")
    assert_one_line_error(_verify(folder), fragment)


def _lambda_archive(path: Path) -> Path:
    import keras

    inputs = keras.Input((100,))
    outputs = keras.layers.Reshape((28, 28, 1))(keras.layers.Dense(784)(keras.layers.Lambda(lambda x: x * 2)(inputs)))
    keras.Model(inputs, outputs).save(path)
    return path


def _zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.8.0"}')
        archive.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}')
        with archive.open("model.weights.h5", "w", force_zip64=True) as entry:
            for _ in range(64):
                entry.write(bytes(2**20))
    return path


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("Keras 3 Lambda", "stores Python code"),
        ("zip bomb", "its entries once inflated would take 64.0 MiB"),
        ("truncated", "generator.keras"),
    ],
)
def test_keras_files_in_a_folder_are_read_as_export_reads_them(folder, kind, fragment, monkeypatch):
    target = folder / "generator.keras"
    if kind == "Keras 3 Lambda":
        _lambda_archive(target)
    elif kind == "zip bomb":
        monkeypatch.setenv("GANPORT_MEMORY_BUDGET", "32MiB")
        _zip_bomb(target)
    else:
        _lambda_archive(target)
        target.write_bytes(target.read_bytes()[:300])
    assert_one_line_error(_verify(folder), fragment)


def _set_attribute(name: str, value: str) -> Callable[[h5py.File], None]:
    def edit(vectors: h5py.File) -> None:
        vectors.attrs[name] = np.bytes_(value)

    return edit


def _replace_dataset(path: str, value: np.ndarray) -> Callable[[h5py.File], None]:
    def edit(vectors: h5py.File) -> None:
        del vectors[path]
        vectors[path] = value

    return edit


CRAFTED = {
    "inputs not JSON": _set_attribute("inputs", "{not json"),
    "inputs a list of numbers": _set_attribute("inputs", '{"inputs": [1, 2]}'),
    "inputs an object": _set_attribute("inputs", '{"inputs": {"z": 1}}'),
    "outputs missing": lambda vectors: vectors.attrs.__delitem__("outputs"),
    "an input that is not there": _set_attribute("inputs", '{"inputs": ["noise"]}'),
    "an input of text": _replace_dataset("inputs/z", np.array([b"a", b"b"])),
    "an input without a batch axis": _replace_dataset("inputs/z", np.float32(1.0)),
    "another batch size": _replace_dataset("inputs/z", np.zeros((3, 100), np.float32)),
    "parity not numbers": _set_attribute("parity", '{"summing_layers": "many", "longest_sum": 1}'),
    "parity a list": _set_attribute("parity", "[1, 2]"),
    "weights not text": _set_attribute("weights_sha256", '{"a": 1}'),
    "provenance a number": _set_attribute("provenance", "7"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_test_vector_files_are_one_line(folder, case):
    with h5py.File(folder / VECTORS, "r+") as vectors:
        CRAFTED[case](vectors)
    assert_one_line_error(_verify(folder), VECTORS)


def test_a_tampered_vector_file_cannot_widen_the_bound(folder):
    """A model changed well beyond rounding fails, whatever bound its vector file claims: the rule is applied to the
    model itself, and a stored bound may only tighten it."""
    model = onnx.load(folder / "generator.onnx")
    weights = next(item for item in model.graph.initializer if len(item.dims) == 2)
    array = onnx.numpy_helper.to_array(weights).copy()
    array[:4] += 0.05
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    onnx.save(model, folder / "generator.onnx")
    (folder / "generator.h5").unlink()
    with h5py.File(folder / VECTORS, "r+") as vectors:
        vectors.attrs["parity"] = np.bytes_(json.dumps({"summing_layers": 10**6, "longest_sum": 10**12}))
    result = _verify(folder)
    assert_one_line_error(result, "disagree with Keras")


@pytest.mark.parametrize("atol", ["inf", "nan", "1e308", "1", "0", "-1e-4"])
def test_atol_must_be_a_meaningful_bound(folder, atol):
    result = _verify(folder, "--atol", atol)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output


def test_an_onnx_output_with_a_named_axis_after_the_batch_verifies(folder):
    """A symbolic dimension after the batch axis (tf2onnx names unknown ones unk__N) is read as dynamic."""
    model = onnx.load(folder / "generator.onnx")
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[1].Clear()
    dims[1].dim_param = "unk__12"
    onnx.save(model, folder / "generator.onnx")
    result = _verify(folder)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("rows", [0, 17])
def test_stored_activations_of_no_rows_or_more_rows_than_inputs_are_refused(tmp_path, rows):
    """Each layer's activations are stored for the first 1 to 16 of the 16 inputs; any other count is a damaged file,
    refused in one line when verify reads them (a layer DL4J disagrees on)."""
    from ganport.verify import VectorFile, VerifyError

    path = tmp_path / VECTORS
    with h5py.File(path, "w") as archive:
        archive["activations/dense"] = np.zeros((rows, 4), np.float32)
    vectors = VectorFile({"z": np.zeros((16, 100), np.float32)}, {"image": np.zeros((16, 784), np.float32)}, path=path)
    with pytest.raises(VerifyError, match=f"activations/dense holds {rows} rows for 16 inputs; re-export"):
        vectors.activations(["dense", "absent"])


def test_a_model_java_check_reports_nothing_for_fails_on_both_jvm_routes(folder, monkeypatch):
    """java-check is given the folder's HDF5 and ONNX files; a model missing from its report fails (fail closed)."""
    import ganport.verify
    from ganport.verify import verify

    monkeypatch.setattr(ganport.verify, "run_java_check", lambda folder, runtime, log: {"models": []})
    comparisons = verify(folder, log=lambda line: None)
    missing = {c.backend: c for c in comparisons if c.model == "generator" and c.backend.startswith(("dl4j", "java"))}
    assert set(missing) == {"dl4j", "java onnxruntime"}
    assert not missing["dl4j"].passed and missing["dl4j"].note == "java-check reported nothing for generator.h5"
    assert missing["java onnxruntime"].note == "java-check reported nothing for generator.onnx"
    assert not missing["java onnxruntime"].passed
