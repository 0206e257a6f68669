"""A run folder: its settings (TrainConfig), its file layout, and the lock that keeps one trainer per folder.

No TensorFlow here: export, verify and the CLI read run folders without training.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ganport.contract import require_seed
from ganport.errors import RunFolderError, UsageError
from ganport.files import exclusive, output_errors, write_text_atomically
from ganport.models import ARCHITECTURES, DEFAULT_ARCHITECTURE, Architecture

# Training's arithmetic, as Keras dtype policies: float32, or opt-in bfloat16 mixed precision (float32 weights and
# optimizer, bfloat16 products), which oneDNN runs natively on CPUs with AVX512_BF16 or AMX.
TRAIN_PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
GENERATOR_FILE = "generator.keras"
DISCRIMINATOR_FILE = "discriminator.keras"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's result; saved as the run's config.json. Defaults are the lecture's."""

    model: str = DEFAULT_ARCHITECTURE  # a name in ganport.models.ARCHITECTURES
    dataset: str = "mnist"
    data_path: str | None = None
    iterations: int | None = None  # None: the architecture's schedule
    batch_size: int = 32
    save_interval: int = 200
    checkpoint_interval: int = 1000
    log_interval: int = 50
    keep_checkpoints: int = 3
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    latent_dim: int = 100
    seed: int = 0
    jit_compile: bool | None = None  # None: what trains the architecture fastest here
    # Beyond the lecture, both off by default: an exponential moving average of the generator's weights (the
    # generator a run ships), and one-sided label smoothing (real label 1 - smoothing; Salimans et al. 2016).
    ema_decay: float = 0.0
    label_smoothing: float = 0.0
    # The lecture's tip, off by default: this many discriminator-only updates (real vs the untrained generator's
    # fakes) before the first iteration.
    pretrain_discriminator: int = 0
    precision: str = "fp32"  # a name in TRAIN_PRECISIONS

    def __post_init__(self) -> None:
        if self.model not in ARCHITECTURES:
            raise UsageError(f"model must be one of {', '.join(ARCHITECTURES)}. Received: {self.model!r}")
        # Frozen, so the architecture's defaults are filled in here, once; config.json then holds the real values.
        if self.iterations is None:
            object.__setattr__(self, "iterations", self.architecture.iterations)
        if self.precision not in TRAIN_PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(TRAIN_PRECISIONS)}. Received: {self.precision!r}")
        if self.jit_compile is None:
            object.__setattr__(self, "jit_compile", self.precision in self.architecture.xla_precisions)
        if self.pretrain_discriminator < 0:
            raise UsageError(f"pretrain-discriminator must be 0 or more. Received: {self.pretrain_discriminator}")
        positive = (
            "iterations",
            "batch_size",
            "save_interval",
            "checkpoint_interval",
            "log_interval",
            "keep_checkpoints",
            "latent_dim",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise UsageError(f"{name.replace('_', '-')} must be positive. Received: {getattr(self, name)}")
        if self.batch_size % 2:
            raise UsageError(
                f"batch-size must be even (the discriminator sees half real, half fake). Received: {self.batch_size}"
            )
        if not 0 <= self.ema_decay < 1 or not 0 <= self.label_smoothing < 0.5:
            raise UsageError(
                f"ema must be in [0, 1) and label-smoothing in [0, 0.5). "
                f"Received: ema={self.ema_decay}, label_smoothing={self.label_smoothing}"
            )
        if not 0 < self.learning_rate < 1 or not 0 <= self.beta_1 < 1:
            raise UsageError(
                f"Adam needs 0 < lr < 1 and 0 <= beta1 < 1. Received: lr={self.learning_rate}, beta1={self.beta_1}"
            )
        require_seed(self.seed)

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.model]


class RunFolder:
    """Paths and file formats of a run folder, in one place."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / CONFIG_FILE
        self.state = self.path / STATE_FILE
        self.metrics = self.path / METRICS_FILE
        self.samples = self.path / "samples"
        self.checkpoints = self.path / "checkpoints"
        self.tensorboard = self.path / "tensorboard"
        self.generator = self.path / GENERATOR_FILE
        self.discriminator = self.path / DISCRIMINATOR_FILE

    def is_run(self) -> bool:
        """A run folder holds its config and a checkpoint folder (a copied config.json alone does not make one)."""
        return self.config.is_file() and self.checkpoints.is_dir()

    def read_config(self) -> TrainConfig:
        try:
            return TrainConfig(**json.loads(self.config.read_text()))
        except (OSError, ValueError, TypeError, UsageError) as error:
            raise RunFolderError(
                f"{self.config} is not a ganport run config ({error}); pass a run folder written by `ganport train`."
            ) from error

    def write_config(self, config: TrainConfig) -> None:
        write_text_atomically(self.config, json.dumps(asdict(config), indent=2) + "\n")

    def read_state(self) -> dict:
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return {}

    def truncate_metrics(self, iteration: int) -> None:
        """Drop metric rows past `iteration`, so a resumed run does not log iterations twice."""
        if not self.metrics.is_file():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):  # a line torn by kill -9 is dropped
                if json.loads(line)["iteration"] <= iteration:
                    kept.append(line)
        write_text_atomically(self.metrics, "".join(f"{line}\n" for line in kept))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock while training: a second trainer on the same folder is refused, not interleaved.

        flock is released by the kernel when the process dies, so kill -9 never leaves the folder locked.
        """
        with output_errors(self.path, "--out"):
            self.path.mkdir(parents=True, exist_ok=True)

        def busy(holder: str) -> RunFolderError:
            return RunFolderError(
                f"{self.path} is being trained by {holder}; wait for it, stop it, or choose another --out."
            )

        with exclusive(self.path / LOCK_FILE, busy):
            try:
                yield
            finally:  # a start that wrote nothing leaves nothing (removed while the lock is still held)
                if [entry.name for entry in self.path.iterdir()] == [LOCK_FILE]:
                    with contextlib.suppress(OSError):
                        (self.path / LOCK_FILE).unlink()
                        self.path.rmdir()
