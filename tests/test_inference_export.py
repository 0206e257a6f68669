"""Fast inference exports: BatchNorm folding, fp16/int8 variants and their quality gate."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import pytest

from ganport.errors import QualityGateError, UsageError
from ganport.evaluate import score_generator
from ganport.export import ExportOptions, export
from ganport.export.fold import fold_batch_norm
from ganport.export.graph import build, read_graph


def quiet(line: str) -> None:
    pass


def score(model):
    return score_generator(model, log=quiet)


def test_folded_graph_holds_only_matmul_add_leakyrelu_tanh_reshape(exported):
    (item,) = exported["onnx"]
    ops = [node.op_type for node in onnx.load(item.path).graph.node]
    assert set(ops) <= {"Gemm", "MatMul", "Add", "LeakyRelu", "Tanh", "Reshape"}, ops
    assert ops.count("LeakyRelu") == 3 and "Mul" not in ops
    assert item.comparison.max_abs_diff <= 5e-5


def test_plain_graph_keeps_batchnorm_as_mul_add(short_run, tmp_path):
    (item,) = export(short_run, "onnx", tmp_path, log=quiet, options=ExportOptions(fold_batch_norm=False))
    ops = [node.op_type for node in onnx.load(item.path).graph.node]
    assert ops.count("Mul") == 3


@pytest.mark.parametrize(("center", "scale"), [(True, True), (False, True), (True, False)])
def test_folding_is_exact_up_to_float_rounding(center, scale):
    rng = np.random.default_rng(0)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(30),
            keras.layers.LeakyReLU(0.2),
            keras.layers.BatchNormalization(center=center, scale=scale),
            keras.layers.Dense(10, use_bias=False),
        ]
    )
    batch_norm = model.layers[2]
    batch_norm.set_weights([rng.uniform(0.5, 2, w.shape).astype(np.float32) for w in batch_norm.get_weights()])
    folded = fold_batch_norm(read_graph(model))
    assert [spec.kind for spec in folded.layers] == ["Dense", "LeakyReLU", "Dense"]
    x = rng.standard_normal((64, 20)).astype(np.float32)
    expected = model(x, training=False).numpy()
    actual = build(folded, keras)(x, training=False).numpy()
    np.testing.assert_allclose(actual, expected, atol=2e-5)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_reports_parity_and_quality_change(short_run, tmp_path, precision):
    messages: list[str] = []
    (item,) = export(
        short_run, "onnx", tmp_path, log=messages.append, options=ExportOptions(precision=precision, score=score)
    )
    assert item.path.name == f"generator_{precision}.onnx"
    assert item.comparison.backend == f"onnxruntime {precision}" and item.comparison.passed
    assert set(item.quality) == {
        "fp32_classifier_score",
        "classifier_score",
        "fp32_frechet_distance",
        "frechet_distance",
    }
    assert any("classifier score" in message and "vs fp32" in message for message in messages)
    props = {p.key: p.value for p in onnx.load(item.path).metadata_props}
    assert props["precision"] == precision


def test_quality_gate_refuses_and_force_overrides(short_run, tmp_path, monkeypatch):
    monkeypatch.setattr("ganport.export.quality.QUALITY_DROP", -1.0)
    with pytest.raises(QualityGateError, match="drops the classifier score.*--force"):
        export(short_run, "onnx", tmp_path, log=quiet, options=ExportOptions(precision="int8", score=score))
    assert list(tmp_path.iterdir()) == []
    (item,) = export(
        short_run, "onnx", tmp_path, log=quiet, options=ExportOptions(precision="int8", force=True, score=score)
    )
    assert item.path.is_file()


def test_precision_is_for_onnx_only(short_run):
    with pytest.raises(UsageError, match="applies to ONNX only"):
        export(short_run, "h5", log=quiet, options=ExportOptions(precision="int8", score=score))
    with pytest.raises(UsageError, match="Unknown precision 'int4'"):
        export(short_run, "onnx", log=quiet, options=ExportOptions(precision="int4", score=score))
