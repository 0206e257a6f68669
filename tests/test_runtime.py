"""Sampling through onnxruntime: determinism, batching, providers, outputs, and no TensorFlow on this path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ganport.errors import ModelError, RuntimeUnavailableError
from ganport.onnx_io import nvidia_gpu_present
from ganport.runtime import Generator


@pytest.fixture(scope="module")
def onnx_path(exported):
    return exported["onnx"][0].path


def test_same_seed_same_images_whatever_the_batch_size(onnx_path):
    generator = Generator(onnx_path, device="cpu")
    whole = generator.sample(50, seed=5)
    batched = generator.sample(50, seed=5, batch_size=7)
    np.testing.assert_array_equal(whole, batched)
    assert not np.array_equal(whole, generator.sample(50, seed=6))
    assert whole.shape == (50, 28, 28, 1) and whole.dtype == np.float32 and np.abs(whole).max() <= 1


def test_uint8_images_match_the_float_images(onnx_path):
    generator = Generator(onnx_path, device="cpu")
    pixels = generator.sample(10, seed=1, uint8=True)
    floats = generator.sample(10, seed=1)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, np.clip(np.rint((floats + 1) * 127.5), 0, 255).astype(np.uint8))


def test_provider_is_reported_and_metadata_is_read(onnx_path):
    generator = Generator(onnx_path, device="auto")
    assert generator.provider in generator.session.get_providers()
    assert generator.latent_dim == 100 and generator.metadata["producer"] == "ganport"


@pytest.mark.skipif(nvidia_gpu_present(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_an_error_not_a_silent_fallback(onnx_path):
    with pytest.raises(RuntimeUnavailableError, match="--device cuda needs an NVIDIA GPU"):
        Generator(onnx_path, device="cuda")


def test_bad_models_and_inputs(tmp_path, onnx_path):
    with pytest.raises(ModelError, match="does not exist"):
        Generator(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="junk.onnx is not a readable ONNX model"):
        Generator(tmp_path / "junk.onnx")
    generator = Generator(onnx_path, device="cpu")
    with pytest.raises(ModelError, match=r"Noise must be \[n, 100\]"):
        generator.generate(np.zeros((2, 64), np.float32))
    with pytest.raises(RuntimeUnavailableError, match="Unknown device 'tpu'"):
        Generator(onnx_path, device="tpu")


def test_nine_samples_make_a_three_by_three_grid(onnx_path, tmp_path):
    from typer.testing import CliRunner

    from ganport.cli import app

    result = CliRunner().invoke(app, ["sample", str(onnx_path), "-n", "9", "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "g.png").size == (2 * (3 * 30 + 2), 2 * (3 * 30 + 2))
