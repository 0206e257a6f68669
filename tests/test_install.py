"""ganport installed the way Python users install tools: a wheel from `pip wheel .` in a new virtual environment,
without extras, used from an empty folder. The shipped generators and the classifier come with it; TensorFlow
does not."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from serving import ROOT, post_json, running_server

pytestmark = pytest.mark.slow

# The target for the base install (TensorFlow and its kin took it to 2.6 GB).
MAX_BASE_INSTALL_MB = 400


def _run(command: list, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def base_install(tmp_path_factory) -> dict:
    """A venv holding ganport's wheel and its base dependencies only; an empty folder; a cache without MNIST."""
    root = tmp_path_factory.mktemp("install")
    env = {**os.environ, "GANPORT_CACHE_DIR": str(root / "cache"), "KERAS_HOME": str(root / "keras")}
    env.pop("GANPORT_MODELS", None)
    built = _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", root / "wheel"], root, env)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (root / "wheel").glob("ganport-*.whl")
    created = _run([sys.executable, "-m", "venv", root / "venv"], root, env)
    assert created.returncode == 0, created.stderr
    python = root / "venv" / "bin" / "python"
    installed = _run([python, "-m", "pip", "install", "-q", wheel], root, env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    folder = root / "empty"
    folder.mkdir()
    return {"python": python, "ganport": python.with_name("ganport"), "folder": folder, "env": env, "root": root}


def test_the_base_install_has_no_tensorflow_and_stays_small(base_install):
    for module in ("tensorflow", "tf_keras", "tf2onnx", "keras", "h5py"):
        found = _run([base_install["python"], "-c", f"import {module}"], base_install["folder"], base_install["env"])
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, module
    size = sum(path.stat().st_size for path in (base_install["root"] / "venv").rglob("*") if path.is_file())
    print(f"base install: {size / 2**20:.0f} MB")
    assert size < MAX_BASE_INSTALL_MB * 2**20


def test_sample_and_eval_run_from_an_empty_folder_on_the_packaged_models(base_install):
    folder, env = base_install["folder"], base_install["env"]
    sampled = _run([base_install["ganport"], "sample", "-n", "4", "--out", "grid.png"], folder, env)
    assert sampled.returncode == 0, sampled.stderr
    assert "site-packages/ganport/shipped/mnist-gan-ema/generator.onnx" in sampled.stdout + sampled.stderr
    assert (folder / "grid.png").is_file()
    located = _run(
        [base_install["python"], "-c", "from ganport.runtime import SHIPPED_MODELS as m; print(m)"], folder, env
    )
    reference = Path(located.stdout.strip()) / "mnist-gan" / "generator.onnx"
    evaluated = _run(
        [base_install["ganport"], "eval", reference, "-n", "1000", "--png", "eval.png", "--json", "eval.json"],
        folder,
        env,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "real MNIST" in evaluated.stdout and (folder / "eval.json").is_file()
    assert not (Path(env["KERAS_HOME"]) / "datasets").exists()  # the classifier's MNIST statistics came packaged


def test_serve_answers_from_the_base_install(base_install):
    with running_server(python=base_install["python"], cwd=base_install["folder"]) as server:
        status, ready = post_json(
            f"{server.url}/v2/models/generator/infer",
            {"inputs": [{"name": "z", "shape": [1, 100], "datatype": "FP32", "data": [0.0] * 100}]},
        )
        assert status == 200, ready
        assert ready["outputs"][0]["shape"] == [1, 28, 28, 1]


def test_commands_that_need_tensorflow_name_the_keras_extra(base_install):
    for command in (["export", "x.keras"], ["train", "--iterations", "1"], ["inspect", "x.h5"]):
        result = _run([base_install["ganport"], *command], base_install["folder"], base_install["env"])
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines() == [
            "error: this command needs tensorflow, which comes with ganport's keras extra: "
            "pip install 'ganport[keras]'."
        ]
    version = _run([base_install["ganport"], "--version"], base_install["folder"], base_install["env"])
    assert version.stdout.startswith("ganport ")


def test_the_wheel_holds_every_module_of_the_source_tree(base_install):
    """A package left out of pyproject's list installs without complaint and fails at the first import."""
    (wheel,) = (base_install["root"] / "wheel").glob("ganport-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.endswith(".py")}
    source = {str(path.relative_to(ROOT)) for path in (Path(ROOT) / "ganport").rglob("*.py")}
    assert source - packaged == set()
