"""Shared fixtures: one short real training run on MNIST, exported once, reused by many tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serving import MODELS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Training's bitwise reproducibility needs TensorFlow to run one op at a time (ganport.train.run_ops_in_order); the
# tests start TensorFlow before training, so they ask for it before it starts.
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

IN_CI = os.environ.get("CI", "").lower() == "true"

# The reference models shipped in models/ (each folder with a generator), so that tests over them miss none.
SHIPPED_MODEL_NAMES = sorted(folder.name for folder in MODELS.iterdir() if (folder / "generator.onnx").is_file())


def require_or_skip(condition: bool, reason: str) -> None:
    """Skip locally when an optional tool is missing; under CI a missing tool is a failure, never a skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this must be installed by .ci/run)")
    pytest.skip(reason)


def assert_one_line_error(result, *fragments: str, exit_code: int = 1) -> None:
    """A CLI result that failed with `exit_code` and one `error:` line holding each fragment, without a traceback."""
    assert result.exit_code == exit_code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: "), result.output
    assert "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture(scope="session")
def short_run(tmp_path_factory) -> Path:
    """40 real iterations on MNIST: checkpoints at 20 and 40, grids every 20."""
    from ganport.run import TrainConfig
    from ganport.train import train

    out = tmp_path_factory.mktemp("runs") / "short"
    config = TrainConfig(iterations=40, save_interval=20, checkpoint_interval=20, log_interval=10, seed=3)
    train(config, out)
    return out


@pytest.fixture(scope="session")
def exported(short_run, tmp_path_factory) -> dict[str, list]:
    from ganport.export import export

    out = tmp_path_factory.mktemp("export")
    return {fmt: export(short_run, fmt, out, log=lambda line: None) for fmt in ("onnx", "h5", "keras")}


class ZooExports:
    """The zoo's models, each saved the Keras 3 way and the lecture's, and exported per format on first use (kept for
    the session): `conversions[name, way]["source"]` is the saved file, `conversions[name, way][fmt]` its
    ExportedFile, and a test that needs one model in one format builds only that."""

    FORMATS = ("onnx", "h5", "keras")

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._folders: dict[str, Path] = {}
        self._made: dict[tuple, object] = {}

    def __getitem__(self, key: tuple[str, str]) -> _ZooModel:
        return _ZooModel(self, *key)

    def _folder(self, name: str) -> Path:
        if name not in self._folders:
            self._folders[name] = self._factory.mktemp(name)
        return self._folders[name]

    def source(self, name: str, way: str) -> Path:
        import zoo

        if (name, way) not in self._made:
            self._made[name, way] = zoo.WAYS[way](name, self._folder(f"{way}-sources"))
        return self._made[name, way]

    def exported(self, name: str, way: str, fmt: str) -> object:
        from ganport.export import export

        if (name, way, fmt) not in self._made:
            (self._made[name, way, fmt],) = export(self.source(name, way), fmt, self.folder(way), log=lambda line: None)
        return self._made[name, way, fmt]

    def folder(self, way: str) -> Path:
        """The folder every export of `way` is written to."""
        return self._folder(f"{way}-exports")

    def every_model(self, way: str) -> Path:
        """`folder(way)` once it holds every zoo model in every format."""
        import zoo

        for name in zoo.MODELS:
            for fmt in self.FORMATS:
                self.exported(name, way, fmt)
        return self.folder(way)


class _ZooModel:
    def __init__(self, zoo_exports: ZooExports, name: str, way: str) -> None:
        self._exports, self._name, self._way = zoo_exports, name, way

    def __getitem__(self, key: str) -> object:
        if key == "source":
            return self._exports.source(self._name, self._way)
        return self._exports.exported(self._name, self._way, key)


@pytest.fixture(scope="session")
def conversions(tmp_path_factory) -> ZooExports:
    return ZooExports(tmp_path_factory)


@pytest.fixture(scope="session")
def cgan_run(tmp_path_factory) -> Path:
    """20 real iterations of the conditional GAN on MNIST, checkpoint and grid at 10 and 20."""
    from ganport.run import TrainConfig
    from ganport.train import train

    out = tmp_path_factory.mktemp("runs") / "cgan"
    train(TrainConfig(model="cgan", iterations=20, save_interval=10, checkpoint_interval=10, log_interval=5), out)
    return out


@pytest.fixture(scope="session")
def conditional_onnx(cgan_run, tmp_path_factory) -> Path:
    """The short conditional run's generator as ONNX (inputs z and label)."""
    from ganport.export import export

    out = tmp_path_factory.mktemp("cgan-export")
    (generator,) = [item for item in export(cgan_run, "onnx", out, log=lambda line: None) if item.role == "generator"]
    return generator.path
