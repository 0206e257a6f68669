"""The command line: each command end to end, and each error as one line with a non-zero exit."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from conftest import assert_one_line_error
from ganport.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(arg) for arg in args])


def test_sample_writes_a_png_grid_and_npy(exported, tmp_path):
    model = exported["onnx"][0].path
    result = invoke("sample", model, "-n", "25", "--seed", "0", "--out", tmp_path / "grid.png", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "provider: CPUExecutionProvider" in result.output
    assert Image.open(tmp_path / "grid.png").size == (304, 304)
    result = invoke("sample", model, "-n", "3000", "--out", tmp_path / "s.npy", "--batch-size", "1000")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "s.npy").shape == (3000, 28, 28, 1)


def test_export_prints_parity_and_paths(short_run, tmp_path):
    result = invoke("export", short_run, "--format", "h5", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "generator [tf_keras h5]: max abs diff" in result.output and "ok" in result.output
    assert (tmp_path / "discriminator_inputs_and_outputs.h5").is_file()


def test_error_paths_are_one_line(tmp_path, short_run):
    assert_one_line_error(invoke("sample", tmp_path / "none.onnx"), "does not exist")
    assert_one_line_error(invoke("sample", tmp_path / "none.onnx", "--out", "x.jpg"), ".png or .npy", exit_code=2)
    assert_one_line_error(invoke("export", tmp_path / "none.keras"), "does not exist")
    assert_one_line_error(
        invoke("train", "--data", tmp_path / "nothing.npz", "--out", tmp_path / "r"), "does not exist"
    )
    assert_one_line_error(
        invoke("train", "--batch-size", "7", "--out", tmp_path / "r"), "batch-size must be even", exit_code=2
    )
    assert_one_line_error(invoke("train", "--resume"), "--resume needs --out", exit_code=2)
    assert_one_line_error(invoke("train", "--out", short_run), "holds a run stopped at iteration 40", "--resume")
    assert not (tmp_path / "r").exists()


def test_bad_flag_is_a_usage_error():
    result = invoke("sample", "x.onnx", "--colour", "red")
    assert result.exit_code == 2 and "No such option" in result.output
