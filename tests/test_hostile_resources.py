"""Small inputs that ask for a lot of memory: each is refused in one line before the memory is taken, or served
within the memory budget (bytes, not rows), with its peak RSS measured.

Commands run in their own process with GANPORT_MEMORY_BUDGET set low, so that a refusal or a bounded result shows
in seconds; a process importing TensorFlow starts at about 0.7 GB, one with onnxruntime alone at about 0.15 GB.
One case per hole found in main on 2026-12-06 (issue 30; there these inputs took 3 to 14 GB).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from serving import call, running_server

pytestmark = pytest.mark.slow

GiB, MiB = 2**30, 2**20
BUDGET = 256 * MiB
# What a command's own libraries take beside the data budget: TensorFlow and Keras, or onnxruntime and numpy.
TENSORFLOW_BASE, ONNXRUNTIME_BASE = int(1.5 * GiB), 512 * MiB
# The process's own peak (VmHWM): getrusage's ru_maxrss also counts what the forking parent held before exec.
_MEASURED = (
    "import re, sys\n"
    "from pathlib import Path\n"
    "from ganport.cli import main\n"
    "sys.argv = ['ganport', *sys.argv[1:]]\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    peak = re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text()).group(1)\n"
    "    print(f'peak-rss {int(peak) * 1024}', file=sys.stderr)\n"
)


def measured(*args: object, budget: int = BUDGET) -> tuple[int, str, int]:
    """Exit status, output and peak RSS (bytes) of `ganport ARGS` in a process of its own, under `budget`."""
    env = {**os.environ, "GANPORT_MEMORY_BUDGET": str(budget), "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, *map(str, args)], capture_output=True, text=True, env=env, timeout=900
    )
    peak = int(re.search(r"peak-rss (\d+)", result.stderr).group(1))
    return result.returncode, result.stdout + result.stderr.replace(f"peak-rss {peak}", ""), peak


def assert_refused(result: tuple[int, str, int], fragment: str, limit: int, exit_code: int = 1) -> None:
    code, output, peak = result
    assert code == exit_code, output
    assert "Traceback" not in output, output
    assert [line for line in output.splitlines() if line.startswith("error: ")], output
    assert fragment in output, output
    assert peak < limit, f"peak RSS {peak / GiB:.2f} GiB"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import keras
    import tf_keras

    folder = tmp_path_factory.mktemp("large")
    found = {}
    # an HDF5 model whose kernel dataset declares 60000x60000 floats (14.4 GB) in chunks never written
    small = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, name="big")])
    for name, declared_dataset in (("declared_dataset.h5", True), ("declared_config.h5", False)):
        small.save(folder / name)
        with h5py.File(folder / name, "r+") as archive:
            config = json.loads(archive.attrs["model_config"])
            config["config"]["layers"][0]["config"]["batch_input_shape"] = [None, 60000]
            config["config"]["layers"][1]["config"]["units"] = 60000
            archive.attrs["model_config"] = json.dumps(config).encode()
            if declared_dataset:
                group = archive["model_weights/big/big"]
                del group["kernel:0"]
                group.create_dataset("kernel:0", shape=(60000, 60000), dtype="float32", chunks=(1000, 1000))
        found[name] = folder / name
    # Keras 3's .keras with the same Dense in its config only
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="big")]).save(folder / "small.keras")
    with zipfile.ZipFile(folder / "small.keras") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    config["config"]["layers"][0]["config"]["batch_shape"] = [None, 60000]
    dense = config["config"]["layers"][1]
    dense["config"]["units"], dense["build_config"] = 60000, {"input_shape": [None, 60000]}
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(folder / "declared_config.keras", "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    found["declared_config.keras"] = folder / "declared_config.keras"
    # a .keras whose weights entry inflates to 1 GiB of zeros (a zip bomb of about a megabyte)
    with zipfile.ZipFile(folder / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("metadata.json", "config.json"):
            archive.writestr(name, entries[name])
        with archive.open("model.weights.h5", "w", force_zip64=True) as entry:
            block = bytes(MiB)
            for _ in range(1024):
                entry.write(block)
    found["bomb.keras"] = folder / "bomb.keras"
    # a 16 KB model declaring a 4000x4000x3 input
    keras.Sequential([keras.Input((4000, 4000, 3)), keras.layers.Conv2D(3, 3, padding="same")]).save(
        folder / "huge_input.keras"
    )
    found["huge_input.keras"] = folder / "huge_input.keras"
    # a Keras-layout .npz whose x_train header declares 5,000,000 images (3.9 GB); the data is not there
    header = {"descr": "|u1", "fortran_order": False, "shape": (5_000_000, 28, 28)}
    with zipfile.ZipFile(folder / "declared.npz", "w") as archive, archive.open("x_train.npy", "w") as entry:
        np.lib.format.write_array_header_1_0(entry, header)
        entry.write(bytes(1000))
    found["declared.npz"] = folder / "declared.npz"
    # a gzip IDX folder whose images file declares 100,000,000 images
    idx = folder / "idx"
    idx.mkdir()
    with gzip.open(idx / "train-images-idx3-ubyte.gz", "wb") as stream:
        stream.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 100_000_000, 28, 28) + bytes(1000))
    found["idx"] = idx
    return found


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("declared_dataset.h5", "the arrays it stores would take 13.4 GiB"),
        ("declared_config.h5", "the weights its config declares would take 13.4 GiB"),
        ("declared_config.keras", "the weights its config declares would take 13.4 GiB"),
        ("bomb.keras", "its entries once inflated would take 1.0 GiB"),
    ],
)
def test_files_declaring_more_than_the_budget_are_refused_before_loading(files, name, fragment):
    assert_refused(measured("inspect", files[name]), fragment, TENSORFLOW_BASE + BUDGET)


def test_an_input_too_large_to_check_is_refused_before_any_prediction(files, tmp_path):
    result = measured("export", files["huge_input.keras"], "--out", tmp_path / "out")
    assert_refused(result, "Checking one sample of", TENSORFLOW_BASE + BUDGET)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_large_samples_export_with_fewer_reference_samples(tmp_path):
    """A bounded, correct result: a 128x128 image-to-image model checks fewer samples when 16 would pass the budget,
    and its exports pass their checks and verify."""
    import keras

    source = tmp_path / "image_to_image.keras"
    layers = keras.layers
    keras.Sequential(
        [
            keras.Input((128, 128, 3)),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(3, 3, padding="same"),
        ]
    ).save(source)
    code, output, peak = measured("export", source, "--format", "onnx", "--out", tmp_path / "out", budget=64 * MiB)
    assert code == 0, output
    with h5py.File(tmp_path / "out" / "image_to_image_inputs_and_outputs.h5") as vectors:
        assert 1 <= len(vectors["inputs"][next(iter(vectors["inputs"]))]) < 16
    assert peak < TENSORFLOW_BASE + 64 * MiB
    code, output, _ = measured("verify", tmp_path / "out", "--no-jvm", budget=64 * MiB)
    assert code == 0, output


def test_training_data_declaring_more_than_the_budget_is_refused(files, tmp_path):
    for data, fragment in ((files["declared.npz"], "the arrays it declares"), (files["idx"], "images it declares")):
        result = measured("train", "--data", data, "--iterations", "1", "--out", tmp_path / "run")
        assert_refused(result, fragment, TENSORFLOW_BASE + BUDGET)
        assert not (tmp_path / "run").exists()


def test_eval_refuses_sample_counts_beyond_its_range_at_once():
    from ganport.runtime import SHIPPED_MODELS

    for n in ("500000000", str(2**62)):
        code, output, peak = measured("eval", SHIPPED_MODELS / "mnist-gan" / "generator.onnx", "--n", n)
        assert code == 2 and "Traceback" not in output and "--n" in output, output
        assert peak < ONNXRUNTIME_BASE


@pytest.fixture(scope="module")
def rgb_generator(tmp_path_factory) -> Path:
    """A 64x64 RGB DCGAN-style generator as ONNX (latent 100, transposed convolutions)."""
    import keras

    from ganport.export import export

    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((100,)),
            layers.Dense(8 * 8 * 128),
            layers.Reshape((8, 8, 128)),
            layers.Conv2DTranspose(128, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(64, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="tanh"),
        ]
    )
    folder = tmp_path_factory.mktemp("rgb")
    model.save(folder / "generator.keras")
    (exported,) = export(folder / "generator.keras", "onnx", folder / "onnx", log=lambda line: None)
    return exported.path


def test_sampling_to_npy_is_bounded_in_bytes_whatever_n(rgb_generator, tmp_path):
    """README: memory is one batch, whatever -n; a batch is bounded in bytes, not in rows (4096 rows of a 64x64 RGB
    generator took 4 GB)."""
    from ganport.runtime import Generator

    out = tmp_path / "images.npy"
    code, output, peak = measured("sample", rgb_generator, "-n", "3000", "--out", out)
    assert code == 0, output
    assert peak < ONNXRUNTIME_BASE + BUDGET, f"peak RSS {peak / GiB:.2f} GiB"
    images = np.load(out, mmap_mode="r")
    assert images.shape == (3000, 64, 64, 3)
    expected = Generator(rgb_generator, device="cpu").sample(40, seed=0, batch_size=7)
    np.testing.assert_array_equal(images[:40], expected)


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def _upscaler(folder: Path) -> Path:
    """A x4 nearest upscaler with dynamic height and width, [batch, 3, H, W] -> [batch, 3, 4H, 4W]."""
    import onnx
    from onnx import TensorProto, helper

    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 4.0, 4.0])
    graph = helper.make_graph(
        [helper.make_node("Resize", ["image", "", "scales"], ["upscaled"], mode="nearest")],
        "upscaler",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("upscaled", TensorProto.FLOAT, ["batch", 3, None, None])],
        [scales],
    )
    path = folder / "upscaler.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime 1.31 reads (onnx 1.23 writes 14 by default)
    onnx.save(model, path)
    return path


def test_the_server_bounds_batches_and_replies_in_bytes(rgb_generator, tmp_path, monkeypatch):
    """`serve --max-batch 4096`: one request of 4096 rows of a 64x64 RGB generator is refused (413) for its bytes;
    a dynamic-size upscaler's JSON reply too large is refused (413) while its binary reply is sent; the server keeps
    serving, within its budget."""
    monkeypatch.setenv("GANPORT_MEMORY_BUDGET", str(BUDGET))
    upscaler = _upscaler(tmp_path)
    with running_server(rgb_generator, upscaler, "--max-batch", "4096", "--max-body-mb", "64") as server:
        rows = np.random.default_rng(0).standard_normal((4096, 100)).astype(np.float32)
        body = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [4096, 100], "data": rows.ravel().tolist()}]}
        status, _, content = call(f"{server.url}/v2/models/generator/infer", json.dumps(body).encode())
        assert status == 413 and b"would take" in content, content
        small = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [2, 100], "data": rows[:2].ravel().tolist()}]}
        status, _, content = call(f"{server.url}/v2/models/generator/infer", json.dumps(small).encode())
        assert status == 200, content

        image = np.zeros((1, 3, 512, 512), np.float32)
        header = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 3, 512, 512]}]}
        for binary in (False, True):
            request = {
                **header,
                "inputs": [{**header["inputs"][0], "parameters": {"binary_data_size": image.nbytes}}],
                "parameters": {"binary_data_output": binary},
            }
            text = json.dumps(request).encode()
            status, _, content = call(
                f"{server.url}/v2/models/upscaler/infer",
                text + image.tobytes(),
                {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(text))},
            )
            if binary:
                assert status == 200, content[:300]
            else:
                assert status == 413 and b"ask for binary outputs" in content, content[:300]
        assert _peak_rss(server.process.pid) < ONNXRUNTIME_BASE + BUDGET
