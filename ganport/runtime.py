"""ONNX generators on onnxruntime: latent vectors in, images out, in batches bounded in bytes. This module never
imports TensorFlow, so sampling starts in a fraction of a second.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ganport import onnx_io
from ganport.budget import require_within_budget, rows_within_budget
from ganport.contract import (
    CLASSES,
    GENERATOR,
    LABEL_INPUT,
    require_generator_signature,
    require_images,
    require_seed,
)
from ganport.errors import ModelError, UsageError
from ganport.images import to_uint8
from ganport.onnx_io import CUDA, open_session

DEFAULT_BATCH = 4096
# The reference models: the repository's models/, which a wheel installs as ganport/shipped (GANPORT_MODELS overrides).
_PACKAGED_MODELS = Path(__file__).resolve().parent / "shipped"
SHIPPED_MODELS = Path(
    os.environ.get(
        "GANPORT_MODELS", _PACKAGED_MODELS if _PACKAGED_MODELS.is_dir() else _PACKAGED_MODELS.parent.parent / "models"
    )
)
# What `sample` and `serve` run when no model is named: the best-scoring unconditional reference (its card says why).
DEFAULT_GENERATOR = SHIPPED_MODELS / "mnist-gan-ema" / "generator.onnx"
# Labels drawn for a conditional generator come from their own stream of the seed, so the noise stays the same.
LABEL_STREAM = 1
# What `labels=` may be: one class for every image, one per image, or None (drawn uniformly when conditional).
Labels = int | np.ndarray | list[int] | None


class Generator:
    """A generator .onnx file behind one reusable onnxruntime session: latent vectors in, images in [-1, 1] out."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None, session: Any = None) -> None:
        """Open `path` on `device`, or wrap a `session` already opened on it (open_session), and check that it is a
        generator."""
        self.path = Path(path)
        self.session = session if session is not None else open_session(self.path, device, threads)
        self.provider = self.session.get_providers()[0]
        inputs, outputs = onnx_io.signature(self.session)
        require_generator_signature(
            str(self.path),
            [(item.name, item.type, item.shape) for item in inputs],
            [(item.name, item.type, item.shape) for item in outputs],
        )
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        role = self.metadata.get("role") or GENERATOR.name
        if role != GENERATOR.name:
            raise ModelError(f"{self.path} is a {role} (its metadata says so); sampling needs a generator.")
        noise_input = next(item for item in inputs if item.name != LABEL_INPUT)
        self.input_name = noise_input.name
        self.label_name = LABEL_INPUT if len(inputs) > 1 else None
        self.classes = int(self.metadata.get("classes") or CLASSES) if self.conditional else 0
        self.output_name = outputs[0].name
        self.latent_dim = int(noise_input.shape[1])
        self.image_shape = tuple(outputs[0].shape[1:])
        # Batches are bounded in bytes, not rows: a 64x64 RGB generator's row takes a hundred times an MNIST one's.
        self.row_bytes = onnx_io.row_bytes(onnx_io.load(self.path))
        require_within_budget(f"One image of {self.path}", self.row_bytes, "this generator is too large to run here.")
        self.max_rows = rows_within_budget(self.row_bytes, DEFAULT_BATCH)
        # A tiny probe proves the contract on real output, before any caller relies on it.
        require_images(str(self.path), self.sample(2, seed=0, batch_size=2))

    @property
    def conditional(self) -> bool:
        """Whether the generator also takes a class label per image (a conditional GAN's generator)."""
        return self.label_name is not None

    def generate(
        self, noise: np.ndarray, out: np.ndarray | None = None, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """Images [n, *image_shape] in [-1, 1] for latent vectors [n, latent] (and, for a conditional generator, one
        class label per vector), written into `out` when given.

        IO binding lets onnxruntime write straight into `out` on the CPU; on CUDA the noise goes to the device in
        one copy and the images come back in one.
        """
        noise = np.ascontiguousarray(noise, dtype=np.float32)
        if noise.ndim != 2 or noise.shape[1] != self.latent_dim:
            raise ModelError(f"Noise must be [n, {self.latent_dim}]. Received: shape={list(noise.shape)}")
        feeds = {self.input_name: noise}
        if self.conditional:
            feeds[LABEL_INPUT] = self._label_column(labels, len(noise))
        elif labels is not None:
            raise self._no_labels()
        if out is None:
            out = np.empty((len(noise), *self.image_shape), dtype=np.float32)
        elif out.shape != (len(noise), *self.image_shape) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ModelError(
                f"out must be C-contiguous float32 {[len(noise), *self.image_shape]}. "
                f"Received: {out.dtype} {list(out.shape)}"
            )
        import onnxruntime

        binding = self.session.io_binding()
        if self.provider == CUDA:
            for name, array in feeds.items():
                binding.bind_ortvalue_input(name, onnxruntime.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
            binding.bind_output(self.output_name, "cuda", 0)
            self.session.run_with_iobinding(binding)
            out[...] = binding.copy_outputs_to_cpu()[0]
        else:
            for name, array in feeds.items():
                binding.bind_cpu_input(name, array)
            binding.bind_output(self.output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
            self.session.run_with_iobinding(binding)
        return out

    def labels_from_text(self, text: str) -> list[int]:
        """The classes a `--label` text names (parse_labels), for this generator's classes."""
        if not self.conditional:
            raise self._no_labels()
        return parse_labels(text, self.classes)

    def _no_labels(self) -> UsageError:
        return UsageError(
            f"{self.path} is unconditional (it has no {LABEL_INPUT!r} input), so it takes no labels; "
            "drop --label, or pass a conditional generator."
        )

    def _label_column(self, labels: np.ndarray | None, n: int) -> np.ndarray:
        """Labels as the int64 [n, 1] column the ONNX graph takes, each checked to be one of the model's classes."""
        if labels is None:
            raise UsageError(f"{self.path} is conditional: pass one class label (0-{self.classes - 1}) per image.")
        column = np.asarray(labels)
        if column.size != n:
            raise UsageError(f"Pass one label per image ({n}). Received: shape {list(column.shape)}")
        require_classes(column, self.classes, str(self.path))
        return np.ascontiguousarray(column.reshape(n, 1), dtype=np.int64)

    def sample(
        self, n: int, seed: int = 0, batch_size: int = DEFAULT_BATCH, uint8: bool = False, labels: Labels = None
    ) -> np.ndarray:
        """`n` images from seeded standard-normal noise, generated in batches of at most `batch_size`.

        The noise stream depends only on `seed`, so the same seed gives the same images whatever the batch size.
        A conditional generator takes `labels`: one class for all images, or one per image; without them each
        image's class is drawn uniformly from a second stream of the same seed.
        """
        stream = self.batches(n, seed, batch_size, labels)
        images = np.empty((n, *self.image_shape), dtype=np.uint8 if uint8 else np.float32)
        start = 0
        for batch in stream:
            images[start : start + len(batch)] = to_uint8(batch) if uint8 else batch
            start += len(batch)
        return images

    def batches(
        self, n: int, seed: int = 0, batch_size: int = DEFAULT_BATCH, labels: Labels = None
    ) -> Iterator[np.ndarray]:
        """The images of `sample(n, seed, labels=labels)` one float32 batch at a time: any `n` in memory bounded by a
        batch.

        Each batch is a view of one reused buffer; consume it before asking for the next. A batch holds at most
        `batch_size` rows, and fewer when that many would pass the memory budget (ganport.budget).
        """
        batch_size = min(batch_size, self.max_rows)
        noise_stream = noise_batches(n, self.latent_dim, seed, batch_size)  # checks the arguments now
        label_stream = self._label_batches(n, seed, batch_size, labels)
        buffer = np.empty((min(n, batch_size), *self.image_shape), np.float32)
        return (
            self.generate(noise, buffer[: len(noise)], batch_labels)
            for noise, batch_labels in zip(noise_stream, label_stream, strict=True)
        )

    def _label_batches(self, n: int, seed: int, batch_size: int, labels: Labels) -> Iterator[np.ndarray | None]:
        if not self.conditional:
            if labels is not None:
                raise self._no_labels()
            return (None for _ in range(0, n, batch_size))
        if labels is None:
            rng = np.random.default_rng((seed, LABEL_STREAM))
            return (rng.integers(0, self.classes, min(batch_size, n - start)) for start in range(0, n, batch_size))
        labels = np.asarray(labels)
        if labels.ndim == 0:
            labels = np.full(n, labels)
        if labels.shape != (n,):
            raise UsageError(
                f"Pass one label for all images or one per image ({n}). Received: shape {list(labels.shape)}"
            )
        require_classes(labels, self.classes, str(self.path))  # now, not at the first bad batch
        return (labels[start : start + batch_size] for start in range(0, n, batch_size))


def require_classes(labels: np.ndarray, classes: int, source: str) -> None:
    if labels.dtype.kind not in "iu":
        raise UsageError(f"Labels must be integers. Received: {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise UsageError(
            f"{source} knows classes 0-{classes - 1}. Received labels from {labels.min()} to {labels.max()}."
        )


def parse_labels(text: str, classes: int) -> list[int]:
    """`--label` text: one class ("7"), a range ("0-9") or a list ("3,5,8", items may be ranges), each from 0 to
    classes - 1 (checked before any range is expanded)."""
    labels = []
    for item in text.split(","):
        first, _, last = item.strip().partition("-")
        last = last or first
        if not (_is_decimal(first) and _is_decimal(last)) or int(last) < int(first):
            raise UsageError(f"--label takes a class (7), a range (0-9) or a list (3,5,8). Received: {text!r}")
        if int(last) >= classes:
            raise UsageError(f"--label {text}: the model knows classes 0-{classes - 1}.")
        labels.extend(range(int(first), int(last) + 1))
    return labels


def _is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def noise_batches(n: int, latent_dim: int, seed: int, batch_size: int) -> Iterator[np.ndarray]:
    """Standard-normal latent vectors [<= batch_size, latent_dim], n in all, one stream per seed.

    Arguments are checked here, when called, not when the first batch is drawn.
    """
    if n <= 0 or batch_size <= 0:
        raise UsageError(f"n and batch size must be positive. Received: n={n}, batch_size={batch_size}")
    require_seed(seed)
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((min(batch_size, n - start), latent_dim), dtype=np.float32)
        for start in range(0, n, batch_size)
    )
