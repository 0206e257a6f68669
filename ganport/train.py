"""Training: the lecture's GAN semantics in one compiled step, with a run folder, checkpoints and resume.

Per iteration, exactly as the lecture: a discriminator update on half a batch of real images (label 1), a second
update on half a batch of fakes made by the generator in inference mode (label 0), then a generator update on a full
batch through the frozen discriminator (label 1). Each network has its own Adam. The same loop trains every
architecture in ganport.models.ARCHITECTURES (the lecture's MLP GAN, DCGAN, the conditional GAN).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from tensorflow.core.util import event_pb2

from ganport.contract import CLASSES
from ganport.data import load_dataset
from ganport.errors import OutputError, RunFolderError, RuntimeUnavailableError, TrainingDivergedError, UsageError
from ganport.files import atomic_path, remove_stale_temporaries_in
from ganport.host import DEVICES, describe_cpu, native_bfloat16
from ganport.models import network_input
from ganport.run import LOCK_FILE, TRAIN_PRECISIONS, RunFolder, TrainConfig
from ganport.stopping import exit_status, signal_name, stop_signals
from ganport.train_hooks import Hook, Metrics, checkpoints, next_boundary, sample_grids
from ganport.train_kernels import forward

# Sample grids: 5 x 5 images, or for a conditional GAN one row per class, each row from the same 5 noise vectors.
GRID_COLUMNS = 5
# Iterations per compiled call: long enough to amortise the call, short enough for a lively progress bar and a
# prompt stop on SIGINT/SIGTERM (the loop checks for them between calls).
MAX_CHUNK = 25


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    iteration: int
    seconds: float
    last_metrics: dict[str, float]
    stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped the run early, if any

    @property
    def exit_code(self) -> int:
        """0 for a finished run; the stop policy's status for one stopped early."""
        return 0 if self.stopped_by is None else exit_status(self.stopped_by)


class GanTrainer(tf.Module):
    """Models, optimizers, random state and the compiled iteration; everything a checkpoint must restore.

    A conditional architecture (CGAN) feeds each batch's class labels to both networks, as Keras-GAN's cgan.py: the
    half batch of fakes gets the labels of the half batch of real images, and the generator's step draws its labels
    uniformly.
    """

    def __init__(self, config: TrainConfig, train_images: np.ndarray, train_labels: np.ndarray | None = None) -> None:
        super().__init__(name="gan_trainer")
        self.config = config
        architecture = config.architecture
        keras.utils.set_random_seed(config.seed)
        with dtype_policy(TRAIN_PRECISIONS[config.precision]):
            self.generator = architecture.build_generator(config.latent_dim)
            self.discriminator = architecture.build_discriminator()
            self.generator_ema = None
            if config.ema_decay:
                self.generator_ema = architecture.build_generator(config.latent_dim)
        self.generator_optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)
        self.discriminator_optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        if self.generator_ema is not None:
            self.generator_ema.set_weights(self.generator.get_weights())
        self.float32_copies = None  # what a bfloat16 run saves (saved_models)
        if config.precision != "fp32":
            self.float32_copies = [architecture.build_generator(config.latent_dim), architecture.build_discriminator()]
        self.rng = tf.random.Generator.from_seed(config.seed)
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
        self.pretrained = tf.Variable(0, dtype=tf.int64, trainable=False, name="pretrained")
        # uint8 keeps the 60k images at 47 MB in memory; scaling to [-1, 1] happens per batch inside the step.
        self.images = tf.constant(train_images)
        self.labels = None
        if architecture.conditional:
            self.labels = tf.constant(_class_labels(config, train_labels), tf.int32)
        # Dropout draws its masks from a seed generator whose state Keras 3 leaves out of the models' checkpoints;
        # without it a resumed run would replay the first masks. (Keras names every such state this way.)
        self.random_states = [
            variable.value
            for model in (self.generator, self.discriminator)
            for variable in model.variables
            if variable.name == "seed_generator_state"
        ]
        self.loss = keras.losses.BinaryCrossentropy()
        if config.jit_compile and _convolutional(self.generator, self.discriminator):
            # XLA's CPU convolution gradients inside a compiled loop run ~25x slower than the same step compiled
            # alone (the loop body's layouts; jax-ml/jax#12868, bench/xla_conv_loop.py): compile each iteration,
            # and loop in TensorFlow, which costs a call per iteration, nothing beside a DCGAN iteration.
            self._step = tf.function(self._step, jit_compile=True)
            self._discriminator_step = tf.function(self._discriminator_step, jit_compile=True)
            self.steps = tf.function(self._steps)
            self.pretrain_steps = tf.function(self._pretrain_steps)
        else:
            self.steps = tf.function(self._steps, jit_compile=config.jit_compile)
            self.pretrain_steps = tf.function(self._pretrain_steps, jit_compile=config.jit_compile)

    def _real_batch(self, size: int) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Real images in [-1, 1] and, for a conditional GAN, their class labels [size, 1]."""
        index = self.rng.uniform([size], 0, tf.shape(self.images)[0], dtype=tf.int32)
        pixels = tf.cast(tf.gather(self.images, index), tf.float32)
        labels = None if self.labels is None else tf.gather(self.labels, index)[:, None]
        return (pixels[..., None] - 127.5) / 127.5, labels

    def _sampled_labels(self, size: int) -> tf.Tensor | None:
        if self.labels is None:
            return None
        return self.rng.uniform([size, 1], 0, CLASSES, dtype=tf.int32)

    def discriminator_update(
        self, batch: tf.Tensor, label: float, classes: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """One Adam step of the discriminator alone on a batch that is all real (1) or all fake (0)."""
        with tf.GradientTape() as tape:
            # float32 scores (a bfloat16 run's are bfloat16): the loss and its gradient start in float32
            prediction = tf.cast(forward(self.discriminator, network_input(batch, classes), training=True), tf.float32)
            targets = tf.fill(tf.shape(prediction), label)
            loss = self.loss(targets, prediction)
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply(tape.gradient(loss, variables), variables)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(prediction > 0.5, label > 0.5), tf.float32))
        return loss, accuracy

    def generator_update(self, noise: tf.Tensor, classes: tf.Tensor | None = None) -> tf.Tensor:
        """One Adam step of the generator through the frozen discriminator, labelling its fakes as real.

        Frozen means its weights stay; it still runs in training mode (Dropout on, BatchNorm on batch statistics), as
        in the Keras 2 code these GANs come from. In inference mode a BatchNorm critic (DCGAN's) judges by moving
        statistics it never trains with, and the generator learns to fool that judge instead of the real one.
        """
        with tf.GradientTape() as tape:
            fakes = forward(self.generator, network_input(noise, classes), training=True)
            prediction = tf.cast(forward(self.discriminator, network_input(fakes, classes), training=True), tf.float32)
            loss = self.loss(tf.ones_like(prediction), prediction)
        variables = self.generator.trainable_variables
        self.generator_optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    def _discriminator_step(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The discriminator's half of an iteration: real half batch, then as many fakes; mean loss and accuracy."""
        half = self.config.batch_size // 2
        real, classes = self._real_batch(half)
        loss_real, accuracy_real = self.discriminator_update(real, 1.0 - self.config.label_smoothing, classes)
        noise = self.rng.normal([half, self.config.latent_dim])
        fakes = forward(self.generator, network_input(noise, classes), training=False)
        loss_fake, accuracy_fake = self.discriminator_update(fakes, 0.0, classes)
        return (loss_real + loss_fake) / 2, (accuracy_real + accuracy_fake) / 2

    def _step(self) -> tf.Tensor:
        discriminator_loss, discriminator_accuracy = self._discriminator_step()
        noise = self.rng.normal([self.config.batch_size, self.config.latent_dim])
        generator_loss = self.generator_update(noise, self._sampled_labels(self.config.batch_size))
        if self.generator_ema is not None:
            decay = self.config.ema_decay
            for average, current in zip(self.generator_ema.weights, self.generator.weights, strict=True):
                average.assign(decay * average + (1.0 - decay) * current)
        self.iteration.assign_add(1)
        return tf.stack([discriminator_loss, discriminator_accuracy, generator_loss])

    def _pretrain_steps(self, count: tf.Tensor) -> tf.Tensor:
        metrics = tf.TensorArray(tf.float32, size=count)
        for index in tf.range(count):
            metrics = metrics.write(index, tf.stack(self._discriminator_step()))
            self.pretrained.assign_add(1)
        return metrics.stack()

    def pretrain(self, count: int) -> np.ndarray:
        """`count` discriminator-only iterations; returns [count, 2]: D loss, D accuracy per iteration."""
        return self.pretrain_steps(tf.constant(count, tf.int32)).numpy()

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

    def saved_models(self) -> tuple[keras.Model, keras.Model]:
        """The generator and discriminator a run saves, in float32: a bfloat16 run's are rebuilt in float32 with
        the same (float32) weights, so exports, sampling and eval compute as with any other run."""
        if self.float32_copies is None:
            return self.shipped_generator, self.discriminator
        for copy, model in zip(self.float32_copies, (self.shipped_generator, self.discriminator), strict=True):
            copy.set_weights(model.get_weights())
        return self.float32_copies[0], self.float32_copies[1]

    def checkpoint(self) -> tf.train.Checkpoint:
        extra = {} if self.generator_ema is None else {"generator_ema": self.generator_ema}
        if self.config.pretrain_discriminator:  # only then: runs from before the option restore as they were saved
            extra["pretrained"] = self.pretrained
        if self.random_states:
            extra["random_states"] = self.random_states
        return tf.train.Checkpoint(
            **extra,
            generator=self.generator,
            discriminator=self.discriminator,
            generator_optimizer=self.generator_optimizer,
            discriminator_optimizer=self.discriminator_optimizer,
            rng=self.rng,
            iteration=self.iteration,
        )


def _convolutional(*models: keras.Model) -> bool:
    """Whether any of the models (nested ones opened) has a convolution."""
    layers = [layer for model in models for layer in model.layers]
    return any(
        _convolutional(layer) if isinstance(layer, keras.Model) else "Conv" in type(layer).__name__ for layer in layers
    )


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras builds layers with the dtype policy `name` inside this block (Keras has one global policy)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def require_precision_support(precision: str, device: str) -> None:
    """Refuse bfloat16 training where nothing computes it natively: oneDNN has no bfloat16 kernels there (capped by
    ONEDNN_MAX_CPU_ISA, a bfloat16 product aborts the process)."""
    if precision == "bf16" and not device.startswith("GPU") and not native_bfloat16():
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
        capped = f", ONEDNN_MAX_CPU_ISA={cap}" if cap else ""
        raise RuntimeUnavailableError(
            f"--precision bf16 needs a CPU with AVX512_BF16 or AMX that oneDNN may use (this one: {describe_cpu()}"
            f"{capped}) or a GPU; elsewhere oneDNN has no bfloat16 kernels. Train with --precision fp32."
        )


def _class_labels(config: TrainConfig, labels: np.ndarray | None) -> np.ndarray:
    """The training labels a conditional GAN needs, checked against the classes its embeddings have."""
    if labels is None:
        raise UsageError(
            f"--model {config.model} learns from class labels, and {config.data_path or config.dataset} has none; "
            "pass a labelled dataset (an IDX folder with train-labels, or an .npz with y_train)."
        )
    if labels.size and int(labels.max()) >= CLASSES:
        raise UsageError(
            f"--model {config.model} embeds {CLASSES} classes (0-{CLASSES - 1}); the training labels go up to "
            f"{int(labels.max())}. Pass a dataset with labels 0-{CLASSES - 1}."
        )
    return labels


def _grid_inputs(config: TrainConfig) -> tuple[np.ndarray | list[np.ndarray], int]:
    """The fixed generator input of every sample grid of a run, and the grid's width."""
    rng = np.random.default_rng(config.seed)
    if not config.architecture.conditional:
        return rng.standard_normal((GRID_COLUMNS * GRID_COLUMNS, config.latent_dim)).astype(np.float32), GRID_COLUMNS
    noise = np.tile(rng.standard_normal((GRID_COLUMNS, config.latent_dim)).astype(np.float32), (CLASSES, 1))
    labels = np.repeat(np.arange(CLASSES, dtype=np.int32), GRID_COLUMNS)[:, None]
    return [noise, labels], GRID_COLUMNS


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def run_ops_in_order(console: Console) -> None:
    """One TensorFlow op at a time (each still uses every core). When TensorFlow schedules the DCGAN step's
    independent ops in parallel, its results change in the last bits from run to run, so a resumed run would not
    equal an uninterrupted one; in order, every run is bitwise reproducible, at a cost of 0-10% here."""
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow's runtime started earlier in this process: its setting stays
        if os.environ.get("TF_NUM_INTEROP_THREADS") != "1":
            console.print(
                "note: TensorFlow started before training, so its ops may run in parallel and a rerun may differ in "
                "the last bits; set TF_NUM_INTEROP_THREADS=1 before starting Python for bitwise-reproducible runs",
                markup=False,
            )


def select_device(device: str = "auto") -> str:
    """Make TensorFlow train on `device`, and say what that is. A GPU is used only if TensorFlow sees one; `cuda`
    without one is an error, never a silent fall back to the CPU."""
    if device not in DEVICES:
        raise UsageError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError as error:  # TensorFlow's runtime started earlier in this process
            raise RuntimeUnavailableError(
                "TensorFlow started on the GPU before training; start a new process to train on the CPU."
            ) from error
        gpus = []
    if device == "cuda" and not gpus:
        raise RuntimeUnavailableError(
            "--device cuda: TensorFlow sees no GPU here (it needs an NVIDIA driver and `pip install "
            "tensorflow[and-cuda]`); train with --device cpu or auto."
        )
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU {details.get('device_name', gpus[0].name)} (TensorFlow sees {len(gpus)})"
    return f"CPU {describe_cpu()}, {os.cpu_count()} cores"


def train(
    config: TrainConfig, out: str | Path | None = None, console: Console | None = None, device: str = "auto"
) -> TrainResult:
    """Start a new run in `out` (default runs/<timestamp>) on `device` (host.DEVICES). SIGINT or SIGTERM saves a
    checkpoint and returns."""
    run = RunFolder(out or default_run_dir())
    if run.path.exists() and not run.path.is_dir():
        raise UsageError(f"--out {run.path} is a file; pass a folder for the run.")
    if run.path.is_dir() and any(entry.name != LOCK_FILE for entry in run.path.iterdir()):
        raise RunFolderError(_occupied(run))
    return _run(config, run, resume=False, console=console or Console(stderr=True), device=device)


def _occupied(run: RunFolder) -> str:
    """Why a new run cannot start in this folder, and what to do instead."""
    if not run.config.is_file():
        return f"{run.path} already holds files that are not a ganport run; choose another --out or empty it."
    iteration = run.read_state().get("iteration")
    where = f"at iteration {iteration}" if iteration is not None else "before its first checkpoint"
    return (
        f"{run.path} holds a run stopped {where}; pass --resume to continue it with its saved settings, "
        "or delete the folder (or choose another --out) to start a new one."
    )


def resume(
    out: str | Path,
    iterations: int | None = None,
    console: Console | None = None,
    device: str = "auto",
    settings: dict[str, Any] | None = None,
) -> TrainResult:
    """Continue a run from its last complete checkpoint (or from iteration 0 if it has none) with its settings, on
    `device` (a run may move between machines). `settings`: TrainConfig fields the user gave along with --resume;
    each must be the run's own (a run continues as it started)."""
    run = RunFolder(out)
    if not run.config.is_file():
        raise RunFolderError(
            f"--resume needs a run folder written by `ganport train`; {run.path} has no {run.config.name}."
        )
    config = run.read_config()
    conflicts = {name: value for name, value in (settings or {}).items() if getattr(config, name) != value}
    if conflicts:
        given = ", ".join(
            f"{name}={value!r} (the run's: {getattr(config, name)!r})" for name, value in conflicts.items()
        )
        raise UsageError(
            f"--resume continues {run.path} with the settings it started with; {given} differ. Drop them, or start "
            "a new run in another --out."
        )
    if iterations is not None:
        config = dataclasses.replace(config, iterations=iterations)
    return _run(config, run, resume=True, console=console or Console(stderr=True), device=device)


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """SIGINT and SIGTERM (kill, systemd, docker stop, Slurm) both ask the loop to stop at the next chunk boundary.

    The signal is only recorded, so it can never land inside a checkpoint write; the loop then saves a checkpoint.
    Signal handlers can only be set from the main thread; elsewhere the caller's handling stays.
    """
    requested: list[int] = []
    with stop_signals(lambda number, frame: requested.append(number)):
        yield requested


def _run(config: TrainConfig, run: RunFolder, resume: bool, console: Console, device: str) -> TrainResult:
    used = select_device(device)
    require_precision_support(config.precision, used)
    console.print(
        f"device: {used}" + (", bfloat16 mixed precision" if config.precision == "bf16" else ""), markup=False
    )
    run_ops_in_order(console)
    dataset = load_dataset(config.dataset, config.data_path)  # before the folder exists: bad data leaves nothing
    console.print(f"data: {len(dataset.x_train)} images from {dataset.source}", markup=False)
    if config.batch_size > len(dataset.x_train):
        raise UsageError(
            f"batch-size {config.batch_size} is larger than the {len(dataset.x_train)} training images; "
            "the lecture uses 32."
        )
    with _stop_requests() as stop_requests, run.locked():
        removed = remove_stale_temporaries_in(run.path)
        removed += [leftover for leftover in run.checkpoints.glob("*_temp*") if _remove_tree(leftover)]
        if removed:
            console.print(f"removed {len(removed)} temporary file(s) left by an earlier, killed run", markup=False)
        trainer = GanTrainer(config, dataset.x_train, dataset.y_train)
        checkpoint = trainer.checkpoint()
        manager = _checkpoint_manager(run, checkpoint, config.keep_checkpoints, console)
        if resume:
            _restore(run, manager, checkpoint, console)
            if trainer.iteration.numpy() >= config.iterations:
                raise RunFolderError(
                    f"{run.path} is already at iteration {int(trainer.iteration.numpy())}; "
                    "pass a larger --iterations to train further."
                )
            _discard_after(run, int(trainer.iteration.numpy()))
        run.write_config(config)
        return _loop(config, run, trainer, manager, stop_requests, console)


def _checkpoint_manager(
    run: RunFolder, checkpoint: tf.train.Checkpoint, keep: int, console: Console
) -> tf.train.CheckpointManager:
    """TensorFlow's checkpoint manager for the run. Its list (checkpoints/checkpoint) is rebuilt from the checkpoint
    files there when it is damaged (empty after a crash) or lists other checkpoints than those files: edited, copied
    from another run, or written without times (the manager then lists none, and resume would start from 0)."""
    numbered = {
        int(index.stem.removeprefix("ckpt-")): index
        for index in run.checkpoints.glob("ckpt-*.index")
        if index.stem.removeprefix("ckpt-").isdigit()
    }
    found = [numbered[number] for number in sorted(numbered)]
    try:
        manager = tf.train.CheckpointManager(checkpoint, run.checkpoints, max_to_keep=keep)
        if sorted(Path(path).name for path in manager.checkpoints) == [index.stem for index in found]:
            return manager
        problem = "did not list the checkpoint files there"
    except ValueError:  # "Invalid checkpoint state loaded from ..."
        problem = "was damaged"
    (run.checkpoints / "checkpoint").unlink(missing_ok=True)
    if found:
        # the manager lists only checkpoints newer than its last "preserved" time: their files' times
        times = [index.stat().st_mtime for index in found]
        tensorflow_logger = tf.get_logger()
        level = tensorflow_logger.level
        tensorflow_logger.setLevel("ERROR")  # its deprecation notice is for ganport's code, not for the user
        try:
            tf.compat.v1.train.update_checkpoint_state(  # paths as the manager names them: its folder + ckpt-N
                str(run.checkpoints),
                str(found[-1].with_suffix("")),
                [str(index.with_suffix("")) for index in found],
                all_model_checkpoint_timestamps=times,
                last_preserved_timestamp=min(times) - 1,
            )
        finally:
            tensorflow_logger.setLevel(level)
    console.print(
        f"{run.checkpoints / 'checkpoint'} {problem}; rebuilt from the {len(found)} checkpoint(s) found there",
        markup=False,
    )
    return tf.train.CheckpointManager(checkpoint, run.checkpoints, max_to_keep=keep)


def _restore(
    run: RunFolder, manager: tf.train.CheckpointManager, checkpoint: tf.train.Checkpoint, console: Console
) -> None:
    """Restore the newest checkpoint that reads back whole; a run without one starts again from iteration 0."""
    for path in reversed(manager.checkpoints):
        problem = _unreadable(path)
        if problem is None:
            checkpoint.restore(path).assert_existing_objects_matched()
            console.print(f"resumed from {path} at iteration {int(checkpoint.iteration.numpy())}", markup=False)
            return
        console.print(f"skipping {path}: it does not read back ({problem})", markup=False)
    console.print(
        f"{run.path} has no complete checkpoint; starting again from iteration 0 with the run's saved settings "
        "(same seed, same result)",
        markup=False,
    )


def _unreadable(path: str) -> str | None:
    """Why a checkpoint cannot be restored (every tensor is read, so a torn file shows), or None."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # TensorFlow's reader raises OpError, ValueError, IndexError... for a torn file
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None


def _remove_tree(path: Path) -> bool:
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def _discard_after(run: RunFolder, iteration: int) -> None:
    """Forget what an earlier attempt logged past `iteration`: metric rows, TensorBoard events and sample grids."""
    run.truncate_metrics(iteration)
    for grid in run.samples.glob("iteration_*.png"):
        with contextlib.suppress(ValueError):
            if int(grid.stem.removeprefix("iteration_")) > iteration:
                grid.unlink()
    for events in run.tensorboard.glob("events.out.tfevents.*"):
        _trim_events(events, iteration)


def _trim_events(path: Path, iteration: int) -> None:
    """Rewrite a TensorBoard event file without the steps past `iteration`, so a resumed run shows each step once.

    A record torn by kill -9 ends the file; the records before it are kept.
    """
    records = []
    with contextlib.suppress(tf.errors.DataLossError):
        records.extend(record.numpy() for record in tf.data.TFRecordDataset(str(path)))
    kept = [record for record in records if event_pb2.Event.FromString(record).step <= iteration]
    if len(kept) == len(records):
        return
    with atomic_path(path) as temporary, tf.io.TFRecordWriter(str(temporary)) as writer:
        for record in kept:
            writer.write(record)


def _require_finite(values: np.ndarray, start: int, run: RunFolder, stage: str = "iteration") -> None:
    """Stop on the first non-finite loss in a chunk of [D loss, D accuracy(, G loss)] rows that began after `start`."""
    finite = np.all(np.isfinite(values), axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        losses = f"D loss {values[first, 0]}" + (f", G loss {values[first, 2]}" if values.shape[1] > 2 else "")
        raise TrainingDivergedError(
            f"losses became non-finite at {stage} {start + first + 1} ({losses}); the last good checkpoint in "
            f"{run.checkpoints} is intact. Lower the learning rate or change the seed, then --resume."
        )


def _pretrain(
    config: TrainConfig,
    trainer: GanTrainer,
    run: RunFolder,
    progress: Progress,
    stop_requests: list[int],
    console: Console,
) -> None:
    """The discriminator's head start (--pretrain-discriminator), resumable: its count is in the checkpoint."""
    done = int(trainer.pretrained.numpy())
    if done >= config.pretrain_discriminator:
        return
    task = progress.add_task("pretrain D", total=config.pretrain_discriminator, completed=done, stats="compiling…")
    values = np.zeros((0, 2), np.float32)
    while done < config.pretrain_discriminator and not stop_requests:
        values = trainer.pretrain(min(MAX_CHUNK, config.pretrain_discriminator - done))
        _require_finite(values, done, run, stage="discriminator pretraining update")
        done += len(values)
        loss, accuracy = values.mean(axis=0)
        progress.update(task, completed=done, stats=f"D loss {loss:.3f} acc {100 * accuracy:.0f}%")
    if len(values):
        console.print(
            f"discriminator pretrained for {done}/{config.pretrain_discriminator} updates "
            f"(last: D loss {loss:.3f}, accuracy {100 * accuracy:.0f}%)",
            markup=False,
        )


def _progress(console: Console) -> Progress:
    """The training bar: iterations done, the last metrics line, time left."""
    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"))
    return Progress(*columns, TimeRemainingColumn(), console=console, transient=False)


def _loop(
    config: TrainConfig,
    run: RunFolder,
    trainer: GanTrainer,
    manager: tf.train.CheckpointManager,
    stop_requests: list[int],
    console: Console,
) -> TrainResult:
    grid_inputs, grid_columns = _grid_inputs(config)
    writer = tf.summary.create_file_writer(str(run.tensorboard))
    start_iteration = int(trainer.iteration.numpy())
    started = time.perf_counter()
    save = checkpoints(run, config, manager, trainer.saved_models)
    if not console.is_terminal:
        console.print(f"compiling the training step, then iterations {start_iteration}-{config.iterations}")
    iteration = start_iteration
    try:
        with _progress(console) as progress, writer.as_default():
            _pretrain(config, trainer, run, progress, stop_requests, console)
            task = progress.add_task("train", total=config.iterations, completed=start_iteration, stats="compiling…")
            metrics = Metrics(run, progress, task, console, config.iterations)
            grids = sample_grids(
                run,
                lambda inputs, training: trainer.shipped_generator(inputs, training=training),
                grid_inputs,
                grid_columns,
            )
            hooks = (
                Hook(config.log_interval, metrics),
                Hook(config.save_interval, grids),
                Hook(config.checkpoint_interval, save, at_end=False),  # the end's checkpoint follows the loop
            )
            while iteration < config.iterations and not stop_requests:
                values = trainer.train_steps(next_boundary(iteration, config.iterations, hooks, MAX_CHUNK))
                _require_finite(values, iteration, run)
                iteration += len(values)
                metrics.record(values)
                for hook in hooks:
                    if hook.due(iteration, config.iterations):
                        hook.action(iteration)
                progress.update(task, completed=iteration)
        save(int(trainer.iteration.numpy()))
    except OutputError as error:
        raise OutputError(
            f"{error} Training stopped at iteration {iteration}; `ganport train --resume --out {run.path}` "
            "continues from the last complete checkpoint."
        ) from error
    seconds = time.perf_counter() - started
    iteration = int(trainer.iteration.numpy())
    stopped_by = stop_requests[0] if stop_requests else None
    if stopped_by is not None:
        console.print(
            f"stopped by {signal_name(stopped_by)} at iteration {iteration}; checkpoint saved, continue with "
            f"`ganport train --resume --out {run.path}`",
            markup=False,
        )
    return TrainResult(run.path, iteration, seconds, metrics.last, stopped_by)
