"""The reference models in models/: sampling right after set-up, and their recorded metrics still reproduce."""

from __future__ import annotations

import json

import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SHIPPED_MODEL_NAMES
from ganport.cli import app
from ganport.evaluate import evaluate
from ganport.runtime import DEFAULT_GENERATOR, SHIPPED_MODELS

# Each shipped generator, the iterations it was trained for and the quality it must keep: classifier score, and for
# a conditional generator label accuracy overall and for its worst digit.
REFERENCE_MODELS = {
    "mnist-gan": {"iterations": "30000", "score": 7.5},
    "mnist-gan-ema": {"iterations": "80000", "score": 9.0},
    "mnist-cgan": {"iterations": "30000", "score": 9.0, "label_accuracy": 0.95, "worst_digit": 0.90},
    # Below issue 10's 9.0 (its card says why); the floor keeps it from getting worse.
    "mnist-dcgan": {"iterations": "17000", "score": 8.0},
    # No int8 file: the export's speed gate refused it (not faster than fp32 here; its card has the numbers).
    "mnist-dcgan-paper": {"iterations": "60000", "score": 9.0, "int8": False},
}


def test_every_shipped_model_has_its_targets_here():
    assert sorted(REFERENCE_MODELS) == SHIPPED_MODEL_NAMES


def test_sample_without_a_model_uses_the_shipped_generator(tmp_path):
    result = CliRunner().invoke(app, ["sample", "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    assert str(DEFAULT_GENERATOR) in result.output.replace("\n", "")
    assert Image.open(tmp_path / "grid.png").size == (304, 304)


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_reference_model_reproduces_its_recorded_metrics(name):
    folder, target = SHIPPED_MODELS / name, REFERENCE_MODELS[name]
    recorded = json.loads((folder / "eval.json").read_text())
    report, _ = evaluate(
        folder / "generator.onnx", n=recorded["generated"]["n"], seed=recorded["seed"], log=lambda line: None
    )
    assert report.generated.classifier_score == pytest.approx(recorded["generated"]["classifier_score"], abs=1e-4)
    assert report.generated.classes_covered == 10
    assert report.generated.classifier_score >= target["score"]
    if "label_accuracy" in target:
        assert report.generated.label_accuracy == pytest.approx(recorded["generated"]["label_accuracy"], abs=1e-4)
        assert report.generated.label_accuracy >= target["label_accuracy"]
        assert min(report.generated.label_accuracy_per_class) >= target["worst_digit"]
    props = {p.key: p.value for p in onnx.load(folder / "generator.onnx").metadata_props}
    assert props["iterations"] == target["iterations"] and props["batchnorm_folded"] == "True"
    assert (folder / "generator_int8.onnx").is_file() == target.get("int8", True)
    for file in (
        "generator.h5",
        "generator_inputs_and_outputs.h5",
        "discriminator.h5",
        "discriminator_inputs_and_outputs.h5",
        "samples.png",
        "README.md",
        "config.json",
    ):
        assert (folder / file).is_file(), file
