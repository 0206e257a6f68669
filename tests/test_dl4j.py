"""JVM parity with the real libraries (DL4J, ONNX Runtime for Java): java-check's Maven build and JUnit tests, and
`ganport verify`.

Locally these skip when Maven or a JDK is missing; under CI (CI=true) that is a failure, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import SHIPPED_MODEL_NAMES, require_or_skip
from ganport.verify import java_check_dir, verify

pytestmark = pytest.mark.maven


@pytest.fixture(scope="module", autouse=True)
def maven_and_java():
    require_or_skip(
        shutil.which("mvn") is not None and shutil.which("java") is not None,
        "Maven and a JDK are needed for the DL4J checks",
    )


def test_java_check_junit_suite_passes_on_both_jvm_routes_with_models_ganport_exports_in_the_same_build():
    result = subprocess.run(
        ["mvn", "-B", "verify", f"-Dganport.python={sys.executable}"],
        cwd=java_check_dir(),
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Tests run: 12, Failures: 0, Errors: 0, Skipped: 0" in output
    assert "generator [dl4j]: max abs diff" in output and "not DL4J-importable: Keras major version" in output
    assert "mnist-dcgan: generator [java onnxruntime]: max abs diff" in output


@pytest.fixture(scope="module")
def verified_run(short_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("verify") / "run"
    shutil.copytree(short_run, run)
    return run


def test_verify_compares_keras_onnxruntime_tf_keras_and_dl4j(verified_run):
    comparisons = verify(verified_run, log=lambda line: None)
    backends = {(c.model, c.backend) for c in comparisons}
    both = ("keras", "h5 weights", "tf_keras h5", "dl4j", "dl4j layers")
    onnx_only = ("onnxruntime", "java onnxruntime")
    assert backends == {("generator", b) for b in (*both, *onnx_only)} | {("discriminator", b) for b in both}
    for comparison in comparisons:
        assert comparison.passed, comparison.line()
    generator_dl4j = next(c for c in comparisons if c.model == "generator" and c.backend == "dl4j")
    assert "[16, 784]" in generator_dl4j.note


def test_verify_catches_a_tampered_h5(verified_run, tmp_path):
    folder = tmp_path / "exports"
    shutil.copytree(verified_run / "export", folder)
    with h5py.File(folder / "discriminator.h5", "r+") as archive:
        kernel = next(name for name in _dataset_names(archive["model_weights"]) if name.endswith("kernel:0"))
        archive["model_weights"][kernel][0, 0] += 0.5
    comparisons = verify(folder, log=lambda line: None)
    failed = {(c.model, c.backend) for c in comparisons if not c.passed}
    assert failed == {("discriminator", b) for b in ("h5 weights", "tf_keras h5", "dl4j", "dl4j layers")}


def test_verify_cli_prints_the_table_and_fails_on_disagreement(verified_run, tmp_path):
    from typer.testing import CliRunner

    from ganport.cli import app

    result = CliRunner().invoke(app, ["verify", str(verified_run), "--no-jvm"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output and "pass" in result.output
    assert "dl4j" not in result.output and "java onnxruntime" not in result.output
    result = CliRunner().invoke(app, ["verify", str(verified_run), "--no-jvm", "--atol", "1e-12"])
    assert result.exit_code == 1 and "disagree with Keras" in result.output


def _dataset_names(group: h5py.Group) -> list[str]:
    names: list[str] = []
    group.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


@pytest.mark.parametrize("way", ["keras3", "lecture"])
def test_conv_conditional_and_two_output_models_import_into_dl4j_with_parity(conversions, way):
    import zoo

    folder = conversions.every_model(way)
    comparisons = verify(folder, log=lambda line: None)
    assert {c.model for c in comparisons} == set(zoo.MODELS)
    for backend in ("keras", "onnxruntime", "tf_keras h5", "dl4j", "dl4j layers", "java onnxruntime"):
        assert {c.model for c in comparisons if c.backend == backend} == set(zoo.MODELS), backend
    for comparison in comparisons:
        assert comparison.passed and comparison.bound < 1e-3, comparison.line()


def test_dl4j_writes_a_png_grid_from_an_imported_conditional_generator(conversions, tmp_path):
    from PIL import Image

    model = conversions["cgan_generator", "lecture"]["h5"].path
    script = java_check_dir() / "sample-grid"
    result = subprocess.run([script, model, tmp_path / "grid.png", "6", "1", "3,5,8"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(tmp_path / "grid.png").size == (6 * 28, 3 * 28)
    refused = subprocess.run(
        [script, conversions["dcgan_generator", "lecture"]["h5"].path, tmp_path / "x.png", "4", "0", "7"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "not a conditional generator" in refused.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("suffix", ["h5", "onnx"])
def test_the_jvm_writes_a_colour_grid_from_an_rgb_generator(conversions, tmp_path, suffix):
    """java-check's sample-grid draws RGB generators in colour through DL4J (whose output is flat) and ONNX Runtime."""
    from PIL import Image

    model = conversions["rgb_generator", "lecture"][suffix].path
    result = subprocess.run(
        [java_check_dir() / "sample-grid", model, tmp_path / "grid.png", "6", "1"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    grid = Image.open(tmp_path / "grid.png")
    assert grid.mode == "RGB" and grid.size == (3 * 16, 2 * 16), (grid.mode, grid.size)
    pixels = np.asarray(grid, np.int16)
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() > 10  # colour, not gray copied into three channels


@pytest.mark.parametrize("name", SHIPPED_MODEL_NAMES)
def test_shipped_reference_models_import_into_dl4j_with_parity(name):
    from ganport.runtime import SHIPPED_MODELS

    comparisons = verify(SHIPPED_MODELS / name, log=lambda line: None)
    assert {c.backend for c in comparisons} == {
        "onnxruntime",
        "h5 weights",
        "tf_keras h5",
        "dl4j",
        "dl4j layers",
        "java onnxruntime",
    }
    for comparison in comparisons:
        assert comparison.passed, comparison.line()


def test_a_model_needing_more_than_the_jvms_memory_cap_fails_in_one_line_and_the_next_one_runs(
    verified_run, tmp_path, monkeypatch
):
    """java-check runs with its native memory capped from ganport's budget; here the cap (1 MB) is below what either
    model needs: each is reported as having run out of it, verify fails in one line, and the JVM is not killed."""
    from typer.testing import CliRunner

    from conftest import assert_one_line_error
    from ganport.cli import app
    from ganport.export import export
    from ganport.verify import JvmMemory

    folder = tmp_path / "exports"
    export(verified_run, "h5", folder, log=lambda line: None)
    monkeypatch.setattr(JvmMemory, "from_budget", classmethod(lambda cls: cls(heap=256 * 2**20, native=10**6)))
    comparisons = verify(folder, log=lambda line: None)
    capped = [c for c in comparisons if c.backend in ("dl4j", "java onnxruntime") and not c.passed]
    assert {c.model for c in capped if c.backend == "dl4j"} == {"generator", "discriminator"}
    assert all("ran out of java-check's memory cap" in c.note for c in capped if c.backend == "dl4j")
    assert_one_line_error(CliRunner().invoke(app, ["verify", str(folder)]), "ran out of java-check's memory cap")


def test_dl4j_compares_each_layer_on_the_inputs_whose_activations_are_stored(conversions, tmp_path, monkeypatch):
    """Test vectors keep each layer's activations for the first inputs only (one here, forced): java-check computes the
    layers on those inputs of a two-input graph and passes; activations of more rows than inputs fail in one line."""
    from ganport.export import export
    from ganport.export import vectors as vector_files

    monkeypatch.setattr(vector_files, "ACTIVATION_BYTES", 1)
    folder = tmp_path / "first"
    (exported,) = export(conversions["cgan_generator", "lecture"]["source"], "h5", folder, log=lambda line: None)
    with h5py.File(exported.test_vectors) as archive:
        assert {archive["activations"][name].shape[0] for name in archive["activations"]} == {1}
        assert archive["inputs/label"].shape[0] == 16
    comparisons = verify(folder, log=lambda line: None)
    assert {c.backend for c in comparisons} >= {"dl4j", "dl4j layers"}
    for comparison in comparisons:
        assert comparison.passed, comparison.line()
    layers = next(c for c in comparisons if c.backend == "dl4j layers")
    assert layers.note.endswith("on the first 1 of 16 inputs"), layers.note

    with h5py.File(exported.test_vectors, "r+") as archive:
        name = next(iter(archive["activations"]))
        del archive["activations"][name]
        archive["activations"][name] = np.zeros((17, 1), np.float32)
    layers = next(c for c in verify(folder, log=lambda line: None) if c.backend == "dl4j")
    assert not layers.passed and f"activations/{name} holds 17 rows for 16 inputs" in layers.note, layers.line()


def test_onnx_runtime_for_java_checks_a_folder_of_onnx_files_alone(short_run, tmp_path):
    """ONNX exports' test vectors hold no activations group (a model DL4J cannot take is exported to ONNX only):
    java-check compares the outputs and reads no layers, rather than failing on the group's absence."""
    from ganport.export import export

    folder = tmp_path / "onnx-only"
    export(short_run, "onnx", folder, log=lambda line: None)
    comparisons = verify(folder, log=lambda line: None)
    java = [c for c in comparisons if c.backend == "java onnxruntime"]
    assert {c.model for c in java} == {"generator"}
    for comparison in comparisons:
        assert comparison.passed, comparison.line()
