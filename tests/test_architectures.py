"""DCGAN and the conditional GAN train through the same loop as the lecture's GAN: run folder, grids, resume,
the discriminator's pretraining, and the reference loop."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ganport.errors import UsageError
from ganport.lecture import SeedStyleGan
from ganport.models import ARCHITECTURES
from ganport.run import RunFolder, TrainConfig
from ganport.train import GRID_COLUMNS, GanTrainer, resume, train

pytestmark = pytest.mark.slow


def small(model: str, **changes) -> TrainConfig:
    settings = {"iterations": 6, "save_interval": 3, "checkpoint_interval": 3, "log_interval": 3, "seed": 4}
    return TrainConfig(model=model, **{**settings, **changes})


def saved_weights(folder) -> dict[str, list[np.ndarray]]:
    """Every weight of a run's saved models (`weights`: a loaded model's Dropout seed states are drawn anew)."""
    return {
        name: [variable.numpy() for variable in keras.saving.load_model(folder / name).weights]
        for name in ("generator.keras", "discriminator.keras")
    }


def grid_rows(path) -> int:
    """Rows of 28-pixel tiles in a saved grid (2 px padding, drawn twice as large)."""
    return (Image.open(path).height // 2 - 2) // 30


def test_the_authors_schedules_and_fastest_compiler_are_the_defaults():
    assert {name: TrainConfig(model=name).iterations for name in ARCHITECTURES} == {
        "gan": 30000,
        "dcgan": 4000,
        "dcgan-paper": 10000,
        "cgan": 10000,
    }
    assert TrainConfig(model="dcgan").jit_compile is True and TrainConfig().jit_compile is True
    assert TrainConfig(model="dcgan", precision="bf16").jit_compile is False
    assert TrainConfig(precision="bf16").jit_compile is True
    assert TrainConfig(model="dcgan", iterations=5, jit_compile=True).jit_compile is True
    with pytest.raises(UsageError, match="model must be one of gan, dcgan, dcgan-paper, cgan"):
        TrainConfig(model="wgan")


@pytest.mark.parametrize(("model", "xla"), [("dcgan", None), ("dcgan", False), ("dcgan-paper", None), ("cgan", None)])
def test_each_architecture_trains_end_to_end_and_resumes_to_the_same_weights(model, xla, tmp_path):
    """The DCGAN under XLA (its default), which compiles each iteration alone (XLA's convolutions inside a compiled
    loop are ~25x slower), and on oneDNN's kernels: resumed from a checkpoint, it ends with the same weights, bit for
    bit."""
    straight = train(small(model, jit_compile=xla), tmp_path / "straight")
    assert straight.iteration == 6
    run = RunFolder(tmp_path / "straight")
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [3, 6] and all(np.isfinite(row["g_loss"]) for row in rows)
    grids = sorted(run.samples.glob("iteration_*.png"))
    assert [grid.name for grid in grids] == ["iteration_000003.png", "iteration_000006.png"]
    # A conditional grid has one row per digit; an unconditional one is square.
    assert grid_rows(grids[-1]) == (10 if ARCHITECTURES[model].conditional else GRID_COLUMNS)
    assert run.read_config().model == model

    train(small(model, iterations=3, jit_compile=xla), tmp_path / "split")
    assert resume(tmp_path / "split", iterations=6).iteration == 6
    expected, resumed = saved_weights(tmp_path / "straight"), saved_weights(tmp_path / "split")
    for name, arrays in expected.items():
        for left, right in zip(arrays, resumed[name], strict=True):
            np.testing.assert_array_equal(left, right, err_msg=name)


def test_bf16_is_refused_in_one_line_where_onednn_has_no_bfloat16_kernels(tmp_path, monkeypatch):
    """Capped below AVX512_CORE_BF16 (like a CPU without it), bf16 training is refused before anything is written."""
    from ganport.errors import RuntimeUnavailableError

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU computes bfloat16 whatever the CPU: nothing to refuse here")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(UsageError, match="precision must be one of fp32, bf16"):
        TrainConfig(precision="fp16")
    with pytest.raises(RuntimeUnavailableError, match="AVX512_BF16 or AMX"):
        train(small("dcgan", precision="bf16"), tmp_path / "straight")
    assert not (tmp_path / "straight").exists()


def test_bf16_mixed_precision_is_reproducible_and_saves_float32_models(tmp_path):
    """--precision bf16 computes in bfloat16 with float32 weights where the CPU has AVX512_BF16 or AMX; it resumes
    bit-exactly, and the run's saved models are float32, so they export with float32 parity."""
    from ganport.export import export
    from ganport.host import native_bfloat16

    if not native_bfloat16() and not tf.config.list_physical_devices("GPU"):
        pytest.skip("this CPU has no AVX512_BF16 or AMX (or ONEDNN_MAX_CPU_ISA caps it): bf16 training is refused here")
    train(small("dcgan", precision="bf16"), tmp_path / "straight")
    train(small("dcgan", iterations=3, precision="bf16"), tmp_path / "split")
    assert resume(tmp_path / "split", iterations=6).iteration == 6
    expected, resumed = saved_weights(tmp_path / "straight"), saved_weights(tmp_path / "split")
    for name, arrays in expected.items():
        for left, right in zip(arrays, resumed[name], strict=True):
            np.testing.assert_array_equal(left, right, err_msg=name)
    generator = keras.saving.load_model(tmp_path / "straight" / "generator.keras")
    assert {layer.dtype_policy.name for layer in generator.layers} == {"float32"}
    exported = export(tmp_path / "straight", "onnx", tmp_path / "export", log=lambda line: None)
    assert all(item.comparison.passed for item in exported)


def test_conditional_models_take_the_batch_labels_and_refuse_unlabelled_data():
    images = np.zeros((64, 28, 28), np.uint8)
    trainer = GanTrainer(TrainConfig(model="cgan", seed=0), images, np.arange(64) % 10)
    real, labels = trainer._real_batch(16)
    assert real.shape == (16, 28, 28, 1) and labels.shape == (16, 1) and labels.dtype == tf.int32
    with pytest.raises(UsageError, match="learns from class labels.*has none"):
        GanTrainer(TrainConfig(model="cgan"), images, None)
    with pytest.raises(UsageError, match="embeds 10 classes.*up to 12"):
        GanTrainer(TrainConfig(model="cgan"), images, np.full(64, 12))


def test_pretraining_moves_only_the_discriminator_and_resumes_where_it_stopped(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    trainer = GanTrainer(TrainConfig(seed=0, pretrain_discriminator=4), images)
    generator = [variable.numpy().copy() for variable in trainer.generator.variables]
    discriminator = [variable.numpy().copy() for variable in trainer.discriminator.variables]
    values = trainer.pretrain(4)
    assert values.shape == (4, 2) and int(trainer.pretrained.numpy()) == 4 and int(trainer.iteration.numpy()) == 0
    for before, variable in zip(generator, trainer.generator.variables, strict=True):
        np.testing.assert_array_equal(before, variable.numpy())
    assert all(
        not np.array_equal(before, variable.numpy())
        for before, variable in zip(discriminator, trainer.discriminator.variables, strict=True)
    )

    config = small("gan", pretrain_discriminator=5)
    train(config, tmp_path / "straight")
    train(small("gan", pretrain_discriminator=5, iterations=3), tmp_path / "split")
    resume(tmp_path / "split", iterations=6)  # the checkpoint says pretraining is done: it is not repeated
    expected, resumed = saved_weights(tmp_path / "straight"), saved_weights(tmp_path / "split")
    for name, arrays in expected.items():
        for left, right in zip(arrays, resumed[name], strict=True):
            np.testing.assert_array_equal(left, right, err_msg=name)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(tmp_path / "split" / "checkpoints"))
    assert reader.get_tensor("pretrained/.ATTRIBUTES/VARIABLE_VALUE") == 5


@pytest.mark.parametrize("model", ["dcgan", "cgan"])
def test_the_reference_loop_trains_each_network_in_its_own_step(model):
    rng = np.random.default_rng(0)
    gan = SeedStyleGan(rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64), model=model)
    for _ in range(2):  # the first calls trace the train functions
        generator = [variable.numpy().copy() for variable in gan.generator.trainable_weights]
        gan.iteration()
        assert all(
            not np.array_equal(before, variable.numpy())
            for before, variable in zip(generator, gan.generator.trainable_weights, strict=True)
        )
    assert np.isfinite(gan.iteration()).all()
