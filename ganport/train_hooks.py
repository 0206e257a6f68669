"""What training does between its compiled chunks of iterations: each hook declares its interval once, and the loop
runs its chunks up to the next hook's boundary, so a log line, a grid or a checkpoint falls on its exact iteration.

Metrics (metrics.jsonl, TensorBoard scalars, the progress line and, off a terminal, a heartbeat), sample grids (PNG
and TensorBoard images) and checkpoints (TensorFlow's checkpoint plus the run's models and state, written whole).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from rich.console import Console
from rich.progress import Progress, TaskID

from ganport import images
from ganport.errors import OutputError
from ganport.files import atomic_path, output_errors, write_text_atomically
from ganport.run import RunFolder, TrainConfig

# Off a terminal (a log file, CI), a progress line at most this often, so a long run shows it is alive.
HEARTBEAT_SECONDS = 10.0
METRICS = ("d_loss", "d_accuracy", "g_loss")


@dataclass
class Hook:
    """Something training does every `interval` iterations (and at the last, when `at_end`)."""

    interval: int
    action: Callable[[int], None]
    at_end: bool = True

    def due(self, iteration: int, last: int) -> bool:
        if iteration == last:
            return self.at_end
        return iteration % self.interval == 0


def next_boundary(iteration: int, last: int, hooks: Sequence[Hook], most: int) -> int:
    """Iterations until the next hook's boundary or the end, at most `most`."""
    boundaries = ((iteration // hook.interval + 1) * hook.interval for hook in hooks)
    return min(last, iteration + most, *boundaries) - iteration


@dataclass
class Metrics:
    """Mean losses and accuracy over the iterations since the last line, and iterations per second."""

    run: RunFolder
    progress: Progress
    task: TaskID
    console: Console
    total: int
    window: list[np.ndarray] = field(default_factory=list)
    window_started: float = field(default_factory=time.perf_counter)
    heartbeat: float = field(default_factory=time.perf_counter)
    last: dict[str, float] = field(default_factory=dict)

    def record(self, values: np.ndarray) -> None:
        self.window.append(values)

    def __call__(self, iteration: int) -> None:
        now = time.perf_counter()
        mean = np.concatenate(self.window).mean(axis=0)
        self.last = {"iteration": iteration, **{name: float(mean[index]) for index, name in enumerate(METRICS)}}
        self.last["it_per_s"] = sum(map(len, self.window)) / (now - self.window_started)
        with output_errors(self.run.metrics), self.run.metrics.open("a") as handle:
            handle.write(json.dumps(self.last) + "\n")
        for name in (*METRICS, "it_per_s"):
            tf.summary.scalar(name, self.last[name], step=iteration)
        self.window, self.window_started = [], now
        stats = (
            f"D loss {self.last['d_loss']:.3f} acc {100 * self.last['d_accuracy']:.0f}% "
            f"G loss {self.last['g_loss']:.3f} {self.last['it_per_s']:.0f} it/s"
        )
        self.progress.update(self.task, stats=stats)
        if not self.console.is_terminal and now - self.heartbeat >= HEARTBEAT_SECONDS:
            self.console.print(f"iteration {iteration}/{self.total}: {stats}")
            self.heartbeat = now


def sample_grids(run: RunFolder, generator: Callable[..., Any], inputs: Any, columns: int) -> Callable[[int], None]:
    """A grid of the generator's images from fixed inputs, as a PNG and in TensorBoard."""

    def write(iteration: int) -> None:
        pictures = images.to_uint8(np.asarray(generator(inputs, training=False), np.float32))
        images.save_grid(pictures, run.samples / f"iteration_{iteration:06d}.png", columns=columns)
        tf.summary.image("samples", pictures, step=iteration, max_outputs=len(pictures))

    return write


def checkpoints(
    run: RunFolder, config: TrainConfig, manager: tf.train.CheckpointManager, saved_models: Callable[[], Sequence[Any]]
) -> Callable[[int], None]:
    """TensorFlow's checkpoint of every variable, then the run's models and state.json, each written whole."""

    def save(iteration: int) -> None:
        try:
            path = manager.save(checkpoint_number=iteration)
        except tf.errors.OpError as error:  # TensorFlow's file system reports ENOSPC/EROFS as its own errors
            reason = str(error).splitlines()[0]
            raise OutputError(f"cannot write a checkpoint in {run.checkpoints}: {reason}") from error
        for model, target in zip(saved_models(), (run.generator, run.discriminator), strict=True):
            with atomic_path(target) as temporary:
                model.save(temporary)
        state = {"iteration": iteration, "checkpoint": Path(path).name, "config": dataclasses.asdict(config)}
        write_text_atomically(run.state, json.dumps(state, indent=2) + "\n")

    return save
