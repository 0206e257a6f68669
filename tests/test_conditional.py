"""Conditional generators after export: `labels=` in the runtime, `ganport sample --label`, label accuracy in
`ganport eval`, and the int8 quality gate, on a trained CGAN and on a lookup-table generator whose answers are known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import assert_one_line_error
from ganport.cli import app
from ganport.errors import UsageError
from ganport.evaluate import Classifier, classifier_path, evaluate
from ganport.images import from_uint8
from ganport.runtime import Generator, parse_labels

runner = CliRunner()


@pytest.fixture(scope="module")
def digit_table() -> np.ndarray:
    """One real MNIST test image per digit, each one the classifier reads correctly: [10, 28, 28, 1] in [-1, 1]."""
    from ganport.data import load_dataset

    images, labels = load_dataset("mnist").require_test()
    _, probabilities = Classifier(classifier_path())(from_uint8(images[:200]))
    right = probabilities.argmax(axis=1) == labels[:200]
    first = [int(np.flatnonzero(right & (labels[:200] == digit))[0]) for digit in range(10)]
    return from_uint8(images[first])


def lookup_generator(table: np.ndarray, folder: Path, name: str) -> Path:
    """A conditional generator that draws table[label] whatever the noise (a zero Dense keeps the noise input
    wired), exported to ONNX the way any Keras model is."""
    import keras

    from ganport.export import export

    noise = keras.Input(shape=(100,), name="z")
    label = keras.Input(shape=(1,), dtype="int32", name="label")
    flat = table.reshape(len(table), -1)
    picture = keras.layers.Flatten()(
        keras.layers.Embedding(10, flat.shape[1], embeddings_initializer=keras.initializers.Constant(flat))(label)
    )
    silent = keras.layers.Dense(flat.shape[1], use_bias=False, kernel_initializer="zeros")(noise)
    image = keras.layers.Reshape((28, 28, 1))(keras.layers.Add()([picture, silent]))
    source = folder / f"{name}.keras"
    keras.Model([noise, label], image, name="generator").save(source)
    (exported,) = export(source, "onnx", folder, log=lambda line: None)
    return exported.path


@pytest.fixture(scope="module")
def lookup(digit_table, tmp_path_factory) -> dict[str, Path]:
    """The table in order (label d draws digit d) and shifted by one (label d draws digit d + 1)."""
    folder = tmp_path_factory.mktemp("lookup")
    return {
        "right": lookup_generator(digit_table, folder, "right"),
        "shifted": lookup_generator(np.roll(digit_table, -1, axis=0), folder, "shifted"),
    }


def test_labels_reach_the_graph(lookup, digit_table):
    generator = Generator(lookup["right"], device="cpu")
    assert generator.conditional and generator.classes == 10
    images = generator.sample(20, seed=3, labels=np.arange(20) % 10)
    np.testing.assert_allclose(images, np.concatenate([digit_table, digit_table]), atol=1e-6)
    np.testing.assert_allclose(generator.sample(4, labels=7), np.repeat(digit_table[7:8], 4, axis=0), atol=1e-6)


def test_label_accuracy_is_exact_on_known_answers(lookup):
    right, _ = evaluate(lookup["right"], n=100, seed=0, log=lambda line: None)
    assert right.generated.label_accuracy == 1.0 and right.generated.label_accuracy_per_class == [1.0] * 10
    shifted, _ = evaluate(lookup["shifted"], n=100, seed=0, log=lambda line: None)
    assert shifted.generated.label_accuracy == 0.0 and shifted.generated.label_accuracy_per_class == [0.0] * 10
    # Both draw each digit ten times: the class histogram cannot tell them apart, label accuracy can.
    assert right.generated.class_histogram == shifted.generated.class_histogram == [10] * 10
    assert right.real.label_accuracy == pytest.approx(float(right.classifier_test_accuracy), abs=1e-4)


def test_sampling_a_trained_cgan(conditional_onnx):
    generator = Generator(conditional_onnx, device="cpu")
    assert generator.conditional and generator.classes == 10 and generator.latent_dim == 100
    asked = generator.sample(30, seed=2, labels=np.arange(30) % 10)
    np.testing.assert_array_equal(asked, generator.sample(30, seed=2, labels=np.arange(30) % 10, batch_size=7))
    drawn = generator.sample(30, seed=2)  # labels drawn from their own stream of the seed
    np.testing.assert_array_equal(drawn, generator.sample(30, seed=2, batch_size=4))
    assert not np.array_equal(drawn, generator.sample(30, seed=3))
    sevens, eights = generator.sample(5, seed=1, labels=7), generator.sample(5, seed=1, labels=8)
    assert not np.array_equal(sevens, eights)  # same noise, another label: another image
    with pytest.raises(UsageError, match="knows classes 0-9. Received labels from 0 to 10"):
        generator.sample(3, labels=[0, 10, 2])
    with pytest.raises(UsageError, match=r"one per image \(3\)"):
        generator.sample(3, labels=[1, 2])
    with pytest.raises(UsageError, match="pass one class label"):
        generator.generate(np.zeros((2, 100), np.float32))


def test_unconditional_generators_refuse_labels(exported):
    generator = Generator(exported["onnx"][0].path, device="cpu")
    assert not generator.conditional
    with pytest.raises(UsageError, match="unconditional .*takes no labels"):
        generator.sample(2, labels=3)


def test_label_text():
    assert parse_labels("7", 10) == [7] and parse_labels("0-9", 10) == list(range(10))
    assert parse_labels("3,5,8", 10) == [3, 5, 8] and parse_labels("1-3, 7", 10) == [1, 2, 3, 7]
    for text in ("", "a", "5-3", "-2", "1,,2", "2.5", "²", "1-²"):
        with pytest.raises(UsageError, match="--label takes a class"):
            parse_labels(text, 10)
    for text in ("10", "99999999999999999999", "0-99999999999", "3,12"):  # checked before a range is expanded
        with pytest.raises(UsageError, match="knows classes 0-9"):
            parse_labels(text, 10)


def test_sample_cli_draws_one_row_per_label(conditional_onnx, tmp_path):
    grid = tmp_path / "digits.png"
    result = runner.invoke(app, ["sample", str(conditional_onnx), "--label", "0-9", "-n", "3", "--out", str(grid)])
    assert result.exit_code == 0, result.output
    assert "30 images (labels 0-9, 3 each)" in result.output
    # 28-pixel tiles with 2-pixel gaps, drawn twice as large: 10 rows of 3.
    assert Image.open(grid).size == ((3 * 30 + 2) * 2, (10 * 30 + 2) * 2)
    raw = tmp_path / "digits.npy"
    result = runner.invoke(app, ["sample", str(conditional_onnx), "--label", "3,5,8", "-n", "4", "--out", str(raw)])
    assert result.exit_code == 0, result.output
    images = np.load(raw)
    assert images.shape == (12, 28, 28, 1)
    np.testing.assert_array_equal(images, Generator(conditional_onnx).sample(12, labels=np.repeat([3, 5, 8], 4)))
    result = runner.invoke(app, ["sample", str(conditional_onnx), "-n", "4", "--out", str(tmp_path / "any.png")])
    assert result.exit_code == 0 and "labels drawn uniformly from 0-9" in result.output


def test_sample_cli_refusals_are_one_line(conditional_onnx, exported, tmp_path):
    out = str(tmp_path / "grid.png")
    unconditional = str(exported["onnx"][0].path)
    result = runner.invoke(app, ["sample", unconditional, "--label", "7", "--out", out])
    assert_one_line_error(result, "unconditional", "drop --label", exit_code=2)
    result = runner.invoke(app, ["sample", str(conditional_onnx), "--label", "12", "--out", out])
    assert_one_line_error(result, "knows classes 0-9", exit_code=2)
    result = runner.invoke(app, ["sample", str(conditional_onnx), "--label", "seven", "--out", out])
    assert_one_line_error(result, "--label takes a class", exit_code=2)
    assert not Path(out).exists()


@pytest.mark.slow
def test_eval_cli_reports_label_accuracy_and_int8_is_gated_on_it(cgan_run, conditional_onnx, tmp_path):
    result = runner.invoke(app, ["eval", str(conditional_onnx), "-n", "500", "--png", str(tmp_path / "e.png")])
    assert result.exit_code == 0, result.output
    assert "label accuracy:" in result.output and "per digit: 0:" in result.output

    from ganport.evaluate import score_generator
    from ganport.export import ExportOptions, export

    options = ExportOptions(precision="int8", force=True, score=lambda path: score_generator(path, n=500))
    lines = []
    (generator,) = [item for item in export(cgan_run, "onnx", tmp_path, lines.append, options) if item.quality]
    assert 0 <= generator.quality["label_accuracy"] <= 1 and 0 <= generator.quality["fp32_label_accuracy"] <= 1
    assert any("label accuracy" in line and "vs fp32" in line for line in lines)
