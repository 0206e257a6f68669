"""Training: the lecture's GAN semantics in one compiled step, with a run folder, checkpoints and resume.

Per iteration, exactly as the lecture: a discriminator update on half a batch of real images (label 1), a second
update on half a batch of fakes made by the generator in inference mode (label 0), then a generator update on a full
batch through the frozen discriminator (label 1). Each network has its own Adam.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ganport import images
from ganport.data import load_dataset
from ganport.errors import GanportError, TrainingDivergedError
from ganport.files import atomic_path, write_text_atomically
from ganport.models import build_discriminator, build_generator

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
GENERATOR_FILE = "generator.keras"
DISCRIMINATOR_FILE = "discriminator.keras"
GRID_NOISE = 25
# Iterations per compiled call: long enough to amortise the call, short enough for a lively progress bar.
MAX_CHUNK = 25


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's result; saved as the run's config.json."""

    dataset: str = "mnist"
    data_path: str | None = None
    iterations: int = 30000
    batch_size: int = 32
    save_interval: int = 200
    checkpoint_interval: int = 1000
    log_interval: int = 50
    keep_checkpoints: int = 3
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    latent_dim: int = 100
    seed: int = 0
    jit_compile: bool = True
    # Beyond the lecture, both off by default: an exponential moving average of the generator's weights (the
    # generator a run ships), and one-sided label smoothing (real label 1 - smoothing; Salimans et al. 2016).
    ema_decay: float = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
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
                raise GanportError(f"{name.replace('_', '-')} must be positive. Received: {getattr(self, name)}")
        if self.batch_size % 2:
            raise GanportError(
                f"batch-size must be even (the discriminator sees half real, half fake). Received: {self.batch_size}"
            )
        if not 0 <= self.ema_decay < 1 or not 0 <= self.label_smoothing < 0.5:
            raise GanportError(
                f"ema must be in [0, 1) and label-smoothing in [0, 0.5). "
                f"Received: ema={self.ema_decay}, label_smoothing={self.label_smoothing}"
            )
        if not 0 < self.learning_rate < 1 or not 0 <= self.beta_1 < 1:
            raise GanportError(
                f"Adam needs 0 < lr < 1 and 0 <= beta1 < 1. Received: lr={self.learning_rate}, beta1={self.beta_1}"
            )


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    iteration: int
    seconds: float
    last_metrics: dict[str, float]
    interrupted: bool = False


class GanTrainer(tf.Module):
    """Models, optimizers, random state and the compiled iteration; everything a checkpoint must restore."""

    def __init__(self, config: TrainConfig, train_images: np.ndarray) -> None:
        super().__init__(name="gan_trainer")
        self.config = config
        keras.utils.set_random_seed(config.seed)
        self.generator = build_generator(config.latent_dim)
        self.discriminator = build_discriminator()
        self.generator_optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)
        self.discriminator_optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        self.generator_ema = None
        if config.ema_decay:
            self.generator_ema = build_generator(config.latent_dim)
            self.generator_ema.set_weights(self.generator.get_weights())
        self.rng = tf.random.Generator.from_seed(config.seed)
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
        # uint8 keeps the 60k images at 47 MB in memory; scaling to [-1, 1] happens per batch inside the step.
        self.images = tf.constant(train_images)
        self.loss = keras.losses.BinaryCrossentropy()
        self.steps = tf.function(self._steps, jit_compile=config.jit_compile)

    def _real_batch(self, size: int) -> tf.Tensor:
        index = self.rng.uniform([size], 0, tf.shape(self.images)[0], dtype=tf.int32)
        pixels = tf.cast(tf.gather(self.images, index), tf.float32)
        return (pixels[..., None] - 127.5) / 127.5

    def discriminator_update(self, batch: tf.Tensor, label: float) -> tuple[tf.Tensor, tf.Tensor]:
        """One Adam step of the discriminator alone on a batch that is all real (1) or all fake (0)."""
        with tf.GradientTape() as tape:
            prediction = self.discriminator(batch, training=True)
            targets = tf.fill(tf.shape(prediction), label)
            loss = self.loss(targets, prediction)
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply(tape.gradient(loss, variables), variables)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(prediction > 0.5, label > 0.5), tf.float32))
        return loss, accuracy

    def generator_update(self, noise: tf.Tensor) -> tf.Tensor:
        """One Adam step of the generator through the frozen discriminator, labelling its fakes as real."""
        with tf.GradientTape() as tape:
            prediction = self.discriminator(self.generator(noise, training=True), training=False)
            loss = self.loss(tf.ones_like(prediction), prediction)
        variables = self.generator.trainable_variables
        self.generator_optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    def _step(self) -> tf.Tensor:
        half = self.config.batch_size // 2
        loss_real, accuracy_real = self.discriminator_update(self._real_batch(half), 1.0 - self.config.label_smoothing)
        fakes = self.generator(self.rng.normal([half, self.config.latent_dim]), training=False)
        loss_fake, accuracy_fake = self.discriminator_update(fakes, 0.0)
        generator_loss = self.generator_update(self.rng.normal([self.config.batch_size, self.config.latent_dim]))
        if self.generator_ema is not None:
            decay = self.config.ema_decay
            for average, current in zip(self.generator_ema.weights, self.generator.weights, strict=True):
                average.assign(decay * average + (1.0 - decay) * current)
        self.iteration.assign_add(1)
        return tf.stack([(loss_real + loss_fake) / 2, (accuracy_real + accuracy_fake) / 2, generator_loss])

    def _steps(self, count: tf.Tensor) -> tf.Tensor:
        # Several iterations per call: XLA on CPU copies every variable in and out of each call, which costs more
        # than a whole iteration's arithmetic; inside the loop they stay put. The body is the same for any count,
        # so results do not depend on how the iterations are chunked.
        metrics = tf.TensorArray(tf.float32, size=count)
        for index in tf.range(count):
            metrics = metrics.write(index, self._step())
        return metrics.stack()

    def train_steps(self, count: int) -> np.ndarray:
        """Run `count` iterations; returns [count, 3]: D loss, D accuracy, G loss per iteration."""
        return self.steps(tf.constant(count, tf.int32)).numpy()

    @property
    def shipped_generator(self) -> keras.Model:
        """The generator a run exports and samples from: the moving average when EMA is on."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    def checkpoint(self) -> tf.train.Checkpoint:
        extra = {} if self.generator_ema is None else {"generator_ema": self.generator_ema}
        return tf.train.Checkpoint(
            **extra,
            generator=self.generator,
            discriminator=self.discriminator,
            generator_optimizer=self.generator_optimizer,
            discriminator_optimizer=self.discriminator_optimizer,
            rng=self.rng,
            iteration=self.iteration,
        )


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
        except (OSError, ValueError, TypeError) as error:
            raise GanportError(
                f"{self.config} is not a ganport run config ({error}); pass a run folder written by `ganport train`."
            ) from None

    def read_state(self) -> dict:
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return {}

    def truncate_metrics(self, iteration: int) -> None:
        """Drop metric rows past `iteration`, so a resumed run does not log iterations twice."""
        if not self.metrics.is_file():
            return
        kept = [
            line
            for line in self.metrics.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] <= iteration
        ]
        write_text_atomically(self.metrics, "".join(f"{line}\n" for line in kept))


def _chunk(iteration: int, config: TrainConfig) -> int:
    """Iterations until the next log, grid, checkpoint or the end, at most MAX_CHUNK."""
    intervals = (config.log_interval, config.save_interval, config.checkpoint_interval)
    boundary = min(config.iterations, iteration + MAX_CHUNK, *((iteration // k + 1) * k for k in intervals))
    return boundary - iteration


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def train(config: TrainConfig, out: str | Path | None = None, console: Console | None = None) -> TrainResult:
    """Start a new run in `out` (default runs/<timestamp>). Ctrl-C saves a checkpoint and returns."""
    run = RunFolder(out or default_run_dir())
    if run.path.exists() and any(run.path.iterdir()):
        raise GanportError(f"{run.path} already holds files; pass --resume to continue it or choose another --out.")
    return _run(config, run, resume=False, console=console or Console(stderr=True))


def resume(out: str | Path, iterations: int | None = None, console: Console | None = None) -> TrainResult:
    """Continue a run from its last checkpoint, to its configured iterations or to `iterations`."""
    run = RunFolder(out)
    if not run.config.is_file():
        raise GanportError(f"--resume needs an existing run folder; {run.path} has no {CONFIG_FILE}.")
    config = run.read_config()
    if iterations is not None:
        config = dataclasses.replace(config, iterations=iterations)
    return _run(config, run, resume=True, console=console or Console(stderr=True))


def _run(config: TrainConfig, run: RunFolder, resume: bool, console: Console) -> TrainResult:
    dataset = load_dataset(config.dataset, config.data_path)
    console.print(f"data: {len(dataset.x_train)} images from {dataset.source}", markup=False)
    trainer = GanTrainer(config, dataset.x_train)
    checkpoint = trainer.checkpoint()
    manager = tf.train.CheckpointManager(checkpoint, run.checkpoints, max_to_keep=config.keep_checkpoints)
    if resume:
        if manager.latest_checkpoint is None:
            raise GanportError(f"{run.checkpoints} holds no checkpoint to resume from; start a new run instead.")
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        if trainer.iteration.numpy() >= config.iterations:
            raise GanportError(
                f"{run.path} is already at iteration {int(trainer.iteration.numpy())}; "
                "pass a larger --iterations to train further."
            )
        run.truncate_metrics(int(trainer.iteration.numpy()))
        console.print(
            f"resumed from {manager.latest_checkpoint} at iteration {int(trainer.iteration.numpy())}", markup=False
        )
    run.path.mkdir(parents=True, exist_ok=True)
    write_text_atomically(run.config, json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    grid_noise = np.random.default_rng(config.seed).standard_normal((GRID_NOISE, config.latent_dim)).astype(np.float32)
    writer = tf.summary.create_file_writer(str(run.tensorboard))
    start_iteration = int(trainer.iteration.numpy())
    started = time.perf_counter()
    window: list[np.ndarray] = []
    window_started = started
    last: dict[str, float] = {}
    interrupted = False

    def save() -> None:
        iteration = int(trainer.iteration.numpy())
        path = manager.save(checkpoint_number=iteration)
        for model, target in ((trainer.shipped_generator, run.generator), (trainer.discriminator, run.discriminator)):
            with atomic_path(target) as temporary:
                model.save(temporary)
        state = {"iteration": iteration, "checkpoint": Path(path).name, "config": dataclasses.asdict(config)}
        write_text_atomically(run.state, json.dumps(state, indent=2) + "\n")

    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress, writer.as_default():
        task = progress.add_task("train", total=config.iterations, completed=start_iteration, stats="compiling…")
        try:
            iteration = start_iteration
            while iteration < config.iterations:
                values = trainer.train_steps(_chunk(iteration, config))
                finite = np.all(np.isfinite(values), axis=1)
                if not finite.all():
                    first = int(np.argmin(finite))
                    raise TrainingDivergedError(
                        f"losses became non-finite at iteration {iteration + first + 1} (D loss {values[first, 0]}, "
                        f"G loss {values[first, 2]}); the last good checkpoint in {run.checkpoints} is intact. "
                        "Lower the learning rate or change the seed, then --resume."
                    )
                iteration += len(values)
                window.append(values)
                if iteration % config.log_interval == 0 or iteration == config.iterations:
                    now = time.perf_counter()
                    mean = np.concatenate(window).mean(axis=0)
                    last = {
                        "iteration": iteration,
                        "d_loss": float(mean[0]),
                        "d_accuracy": float(mean[1]),
                        "g_loss": float(mean[2]),
                        "it_per_s": sum(map(len, window)) / (now - window_started),
                    }
                    with run.metrics.open("a") as handle:
                        handle.write(json.dumps(last) + "\n")
                    for name in ("d_loss", "d_accuracy", "g_loss", "it_per_s"):
                        tf.summary.scalar(name, last[name], step=iteration)
                    window, window_started = [], now
                    progress.update(
                        task,
                        stats=(
                            f"D loss {last['d_loss']:.3f} acc {100 * last['d_accuracy']:.0f}% "
                            f"G loss {last['g_loss']:.3f} {last['it_per_s']:.0f} it/s"
                        ),
                    )
                if iteration % config.save_interval == 0 or iteration == config.iterations:
                    pictures = images.to_uint8(trainer.shipped_generator(grid_noise, training=False).numpy())
                    images.save_grid(pictures, run.samples / f"iteration_{iteration:06d}.png", columns=5)
                    tf.summary.image("samples", pictures, step=iteration, max_outputs=GRID_NOISE)
                if iteration % config.checkpoint_interval == 0 and iteration < config.iterations:
                    save()
                    if not console.is_terminal:  # logs and CI get a line per checkpoint instead of a live bar
                        console.print(f"iteration {iteration}/{config.iterations}: {progress.tasks[0].fields['stats']}")
                progress.update(task, completed=iteration)
        except KeyboardInterrupt:
            interrupted = True
    save()
    seconds = time.perf_counter() - started
    iteration = int(trainer.iteration.numpy())
    if interrupted:
        console.print(
            f"interrupted at iteration {iteration}; checkpoint saved, continue with "
            f"`ganport train --resume --out {run.path}`",
            markup=False,
        )
    return TrainResult(run.path, iteration, seconds, last, interrupted)
