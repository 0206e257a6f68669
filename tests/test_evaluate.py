"""`ganport eval`: the metrics themselves, the real-data baseline, and ONNX vs Keras generators agreeing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganport.cli import app
from ganport.errors import ModelError
from ganport.evaluate import (
    PREVIEW,
    RunningMetrics,
    classifier_path,
    classifier_score,
    evaluate,
    feature_statistics,
    frechet_distance,
)


def test_classifier_score_spans_one_to_ten():
    assert classifier_score(np.eye(10)[np.arange(1000) % 10]) == pytest.approx(10, rel=1e-6)
    assert classifier_score(np.tile(np.eye(10)[3], (100, 1))) == pytest.approx(1)
    assert classifier_score(np.full((50, 10), 0.1)) == pytest.approx(1)


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((20000, 4))
    stats = feature_statistics(features)
    assert frechet_distance(stats, stats) == pytest.approx(0, abs=1e-9)
    shifted = feature_statistics(features + np.array([3.0, 0, 0, 4.0]))
    assert frechet_distance(stats, shifted) == pytest.approx(25, rel=1e-6)
    # Doubling the features: S_b = 4 S_a, so Tr(S_a + 4 S_a - 2 * 2 S_a) = Tr(S_a), plus the shift of the means.
    mean, covariance = stats
    expected = np.sum(mean**2) + np.trace(covariance)
    assert frechet_distance(stats, feature_statistics(features * 2)) == pytest.approx(expected, rel=1e-9)


def test_metrics_summed_batch_by_batch_equal_those_of_all_samples_at_once():
    rng = np.random.default_rng(3)
    features = rng.standard_normal((5000, 16)) * 3 + 1
    probabilities = rng.dirichlet(np.full(10, 0.3), 5000)
    labels = np.arange(5000) % 10
    reference = feature_statistics(rng.standard_normal((4000, 16)))
    running = RunningMetrics()
    for start in range(0, 5000, 1700):
        running.add(features[start : start + 1700], probabilities[start : start + 1700], labels[start : start + 1700])
    streamed = running.metrics("streamed", reference, labelled=True)
    assert streamed.n == 5000
    assert streamed.classifier_score == pytest.approx(classifier_score(probabilities), rel=1e-9)
    mean, covariance = feature_statistics(features)
    np.testing.assert_allclose(running.statistics()[0], mean, rtol=1e-9)
    np.testing.assert_allclose(running.statistics()[1], covariance, rtol=1e-9, atol=1e-9)
    assert streamed.frechet_distance == pytest.approx(frechet_distance((mean, covariance), reference), rel=1e-9)
    predicted = probabilities.argmax(axis=1)
    assert streamed.class_histogram == np.bincount(predicted, minlength=10).tolist()
    assert streamed.label_accuracy == pytest.approx(np.mean(predicted == labels))


def test_the_shipped_classifier_is_used():
    assert classifier_path().parent.name == "models"


def test_onnx_and_keras_generators_score_the_same_and_real_data_is_the_baseline(exported, short_run):
    onnx_report, samples = evaluate(exported["onnx"][0].path, n=2000, seed=1, log=lambda line: None)
    keras_report, _ = evaluate(short_run / "generator.keras", n=2000, seed=1, log=lambda line: None)
    assert samples.shape == (PREVIEW, 28, 28, 1)  # the picture's samples: the rest streamed through the sums
    assert onnx_report.generated.classifier_score == pytest.approx(keras_report.generated.classifier_score, abs=1e-3)
    assert onnx_report.generated.frechet_distance == pytest.approx(keras_report.generated.frechet_distance, rel=1e-3)
    real = onnx_report.real
    assert real.classifier_score > 9.5 and real.classes_covered == 10 and real.frechet_distance < 2
    assert float(onnx_report.classifier_test_accuracy) >= 0.99
    # 40 training iterations: far from real digits.
    assert onnx_report.generated.frechet_distance > 10 * real.frechet_distance


def test_eval_cli_writes_table_json_and_picture(exported, tmp_path):
    model = exported["onnx"][0].path
    result = CliRunner().invoke(
        app, ["eval", str(model), "--n", "1000", "--json", str(tmp_path / "m.json"), "--png", str(tmp_path / "m.png")]
    )
    assert result.exit_code == 0, result.output
    assert "classifier" in result.output and "real MNIST" in result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["generated"]["n"] == 1000 and len(metrics["generated"]["class_histogram"]) == 10
    assert Image.open(tmp_path / "m.png").size[0] > 600


def test_eval_refuses_discriminators_and_missing_files(short_run, tmp_path):
    with pytest.raises(ModelError, match="discriminator"):
        evaluate(short_run / "discriminator.keras", n=10, log=lambda line: None)
    with pytest.raises(ModelError, match="does not exist"):
        evaluate(tmp_path / "none.onnx", n=10, log=lambda line: None)


def test_eval_refuses_images_the_mnist_classifier_cannot_score(tmp_path):
    import keras

    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(32 * 32, activation="tanh"), keras.layers.Reshape((32, 32, 1))]
    )
    model.save(tmp_path / "big.keras")
    with pytest.raises(ModelError, match=r"shape \[32, 32, 1\].*\[28, 28, 1\] images only"):
        evaluate(tmp_path / "big.keras", n=10, log=lambda line: None)
