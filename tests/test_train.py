"""Training on real MNIST: the run folder, the lecture's update semantics, resume, divergence and Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from ganport.errors import GanportError, TrainingDivergedError
from ganport.run import RunFolder, TrainConfig
from ganport.train import GanTrainer, resume, train


def weights(model) -> list[np.ndarray]:
    return [variable.numpy().copy() for variable in model.variables]


def changed(before: list[np.ndarray], after: list[np.ndarray]) -> list[bool]:
    return [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]


def test_short_run_writes_a_complete_run_folder(short_run):
    run = RunFolder(short_run)
    config = run.read_config()
    assert config.iterations == 40 and config.batch_size == 32 and config.learning_rate == 2e-4
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [10, 20, 30, 40]
    for row in rows:
        assert set(row) == {"iteration", "d_loss", "d_accuracy", "g_loss", "it_per_s"}
        assert np.isfinite([row["d_loss"], row["g_loss"]]).all() and 0 <= row["d_accuracy"] <= 1
    assert sorted(p.name for p in run.samples.iterdir()) == ["iteration_000020.png", "iteration_000040.png"]
    assert run.generator.is_file() and run.discriminator.is_file()
    assert run.read_state()["iteration"] == 40
    assert tf.train.latest_checkpoint(run.checkpoints).endswith("ckpt-40")
    assert any(run.tensorboard.glob("events.out.tfevents.*"))


def test_discriminator_steps_move_only_the_discriminator_and_generator_step_only_the_generator():
    trainer = GanTrainer(TrainConfig(seed=1), np.zeros((64, 28, 28), np.uint8))
    noise = tf.random.normal([16, 100], seed=1)
    g_before, d_before = weights(trainer.generator), weights(trainer.discriminator)
    trainer.discriminator_update(trainer.generator(noise, training=False), 0.0)
    # Fakes come from the generator in inference mode: not even its BatchNorm statistics move.
    assert not any(changed(g_before, weights(trainer.generator)))
    assert all(changed(d_before, weights(trainer.discriminator)))

    g_before, d_before = weights(trainer.generator), weights(trainer.discriminator)
    trainer.generator_update(tf.random.normal([32, 100], seed=2))
    assert not any(changed(d_before, weights(trainer.discriminator)))
    assert all(changed(g_before, weights(trainer.generator)))  # kernels, biases and BatchNorm statistics


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path):
    config = TrainConfig(iterations=24, save_interval=100, checkpoint_interval=100, log_interval=4, seed=7)
    straight = train(config, tmp_path / "straight")
    train(TrainConfig(**{**config.__dict__, "iterations": 12}), tmp_path / "split")
    resumed = resume(tmp_path / "split", iterations=24)
    assert straight.iteration == resumed.iteration == 24

    import keras

    for name in ("generator.keras", "discriminator.keras"):
        a = keras.saving.load_model(tmp_path / "straight" / name)
        b = keras.saving.load_model(tmp_path / "split" / name)
        for left, right in zip(a.variables, b.variables, strict=True):
            np.testing.assert_array_equal(left.numpy(), right.numpy(), err_msg=f"{name}:{left.path}")
    rows = [json.loads(line)["iteration"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [4, 8, 12, 16, 20, 24]


def test_non_finite_losses_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = GanTrainer._step

    def poisoned(self):
        values = original(self)
        return tf.where(self.iteration > 15, values * np.nan, values)

    monkeypatch.setattr(GanTrainer, "_step", poisoned)
    config = TrainConfig(iterations=30, save_interval=100, checkpoint_interval=10, log_interval=5, seed=2)
    with pytest.raises(TrainingDivergedError, match="non-finite at iteration 16.*last good checkpoint"):
        train(config, tmp_path / "run")
    run = RunFolder(tmp_path / "run")
    assert tf.train.latest_checkpoint(run.checkpoints).endswith("ckpt-10")
    assert run.read_state()["iteration"] == 10


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "ganport.cli",
        "train",
        "--iterations",
        "100000",
        "--out",
        str(out),
        "--checkpoint-interval",
        "100000",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "checkpoint saved" in stderr and "--resume" in stderr
    state = RunFolder(out).read_state()
    assert state["iteration"] >= 50
    resumed = resume(out, iterations=state["iteration"] + 5)
    assert resumed.iteration == state["iteration"] + 5


def test_existing_run_folder_needs_resume(short_run):
    with pytest.raises(GanportError, match="--resume"):
        train(TrainConfig(iterations=1), short_run)


def test_bad_configs_are_refused():
    with pytest.raises(GanportError, match="batch-size must be even"):
        TrainConfig(batch_size=33)
    with pytest.raises(GanportError, match="iterations must be positive"):
        TrainConfig(iterations=0)


def test_resume_without_a_run_or_beyond_its_end(tmp_path, short_run):
    with pytest.raises(GanportError, match="no config.json"):
        resume(tmp_path)
    with pytest.raises(GanportError, match="already at iteration 40"):
        resume(short_run)


def _stderr_of(lines_inside: str, lines_after: str) -> str:
    """What a fresh Python process prints to descriptor 2 when it runs `lines_inside` (indented) within the native
    log filter and `lines_after` once the filter has ended."""
    snippet = "import logging, os, sys\nfrom ganport.native_logs import filtered_native_stderr\n"
    snippet += f"with filtered_native_stderr():\n{lines_inside}{lines_after}"
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_the_native_log_filter_drops_only_tensorflows_noise():
    """Lines written below Python to descriptor 2 pass unless they are known noise; Python's own output passes."""
    stderr = _stderr_of(
        "    os.write(2, b'E0000 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: Mutation::Apply error\\n')\n"
        "    os.write(2, b'E0000 kernel.cc:1] a real failure\\n')\n"
        "    print('from python', file=sys.stderr)\n",
        "os.write(2, b'after the filter\\n')\n",
    )
    # Python's line and the forwarded ones may interleave either way; none is lost, the noise is gone
    expected = ["E0000 kernel.cc:1] a real failure", "after the filter", "from python"]
    assert sorted(stderr.splitlines()) == expected, stderr


def test_a_log_handler_made_inside_the_filter_still_writes_after_it():
    """TensorFlow makes its Python log handler on its first warning, often inside the filter (at import): later
    warnings reach the terminal instead of a closed stream ('--- Logging error ---' and a traceback)."""
    stderr = _stderr_of(
        "    logging.getLogger('tensorflow').addHandler(logging.StreamHandler(sys.stderr))\n",
        "logging.getLogger('tensorflow').warning('a warning after the filter')\n",
    )
    assert stderr.splitlines() == ["a warning after the filter"], stderr


@pytest.mark.slow
@pytest.mark.parametrize("compiler", ["--xla", "--no-xla"])
def test_a_dcgan_run_prints_no_tensorflow_cpp_error_lines(compiler, tmp_path):
    """Under XLA (the default) and on TensorFlow's kernels, where grappler's remapper reports a failure of its own."""
    command = [sys.executable, "-m", "ganport.cli", "train", "--model", "dcgan", "--iterations", "3", compiler]
    command += ["--save-interval", "3", "--checkpoint-interval", "3", "--out", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    native = [line for line in output.splitlines() if re.match(r"[EWF]\d{4} ", line)]
    assert native == [] and "remapper" not in output, native
    assert re.search(r"^device: (CPU .*(AVX|SSE)|GPU )", output, re.MULTILINE), output[-2000:]


def test_training_on_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from conftest import assert_one_line_error
    from ganport.cli import app

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here")
    result = CliRunner().invoke(app, ["train", "--device", "cuda", "--iterations", "2", "--out", str(tmp_path / "r")])
    assert_one_line_error(result, "--device cuda: TensorFlow sees no GPU", "--device cpu")
    assert not (tmp_path / "r").exists()
