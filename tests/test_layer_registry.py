"""The layer registry's contract, on graphs built from LayerSpecs (no Keras file): DL4J rewrites of different classes
commute and keep every name but a merged layer's, keep the numbers, and the tables are rendered from the rules
without calling a verdict function."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from ganport.export.graph import Graph, InputSpec, build
from ganport.export.layers import LayerSpec, converter, supported_layers
from ganport.export.layers.dl4j import dl4j_form
from ganport.export.layers.verdicts import markdown_table


def _same_convolution(filters: int, kernel: tuple[int, int], use_bias: bool = True) -> dict:
    """A stride-1 "same" Conv2D's options, as the registry reads them."""
    return {
        "filters": filters,
        "kernel_size": kernel,
        "strides": (1, 1),
        "padding": "same",
        "dilation_rate": (1, 1),
        "activation": "linear",
        "use_bias": use_bias,
    }


def _graph_with_every_rewrite() -> Graph:
    """An UpSampling2D on the input, a Dense on images, a BatchNorm without center, a per-channel PReLU and an
    UpSampling2D before a 3x3 Conv2D: each class DL4J gets a rewrite for."""
    rng = np.random.default_rng(0)
    dense = {"units": 3, "activation": "linear", "use_bias": True, "input_rank": 4, "input_steps": None}
    norm = {"momentum": 0.9, "epsilon": 1e-3, "center": False, "scale": True}
    convolution = _same_convolution(2, (3, 3))
    layers = (
        LayerSpec("UpSampling2D", "up", {"size": (2, 2), "interpolation": "nearest"}, [], ("x",)),
        LayerSpec("Dense", "dense", dense, [rng.normal(size=(3, 3)), rng.normal(size=3)], ("up",)),
        LayerSpec("BatchNormalization", "norm", norm, [np.ones(3), np.zeros(3), np.ones(3)], ("dense",)),
        LayerSpec(
            "PReLU", "prelu", {"shared_axes": [1, 2], "per_channel": True}, [rng.normal(size=(1, 1, 3))], ("norm",)
        ),
        LayerSpec("UpSampling2D", "up_again", {"size": (2, 2), "interpolation": "nearest"}, [], ("prelu",)),
        LayerSpec("Conv2D", "conv", convolution, [rng.normal(size=(3, 3, 3, 2)), rng.normal(size=2)], ("up_again",)),
    )
    return Graph("every_rewrite", (InputSpec("x", (4, 4, 3), "float32"),), layers, ("conv",))


def _wiring(graph: Graph) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(spec.name, spec.kind, spec.inbound) for spec in graph.layers}


def test_dl4j_rewrites_of_different_classes_commute_and_keep_every_name_but_a_merged_upsampling():
    graph = _graph_with_every_rewrite()
    rewrites = [rule.rewrite for kind in supported_layers() if (rule := converter(kind).dl4j).rewrite is not None]
    assert len(rewrites) == 5
    forward = functools.reduce(lambda current, rewrite: rewrite(current), rewrites, graph)
    backward = functools.reduce(lambda current, rewrite: rewrite(current), reversed(rewrites), graph)
    assert _wiring(forward) == _wiring(backward)
    assert set(graph.names()) - {"up_again"} <= set(forward.names()) and forward.outputs == graph.outputs
    written = dl4j_form(graph)
    assert _wiring(written) == _wiring(forward)
    kinds = {spec.name: spec.kind for spec in written.layers}
    assert kinds["dense"] == "Conv2D" and kinds["prelu"] == "Add" and kinds["up_nhwc"] == "Conv2D"
    assert "up_again" not in kinds and kinds["conv"] == "Conv2DTranspose"
    assert next(spec for spec in written.layers if spec.name == "norm").options["center"] is True


def test_the_table_is_rendered_from_the_rules_alone():
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in markdown_table().splitlines()[2:]}
    assert sorted(rows) == supported_layers()
    for kind, row in rows.items():
        dl4j = converter(kind).dl4j
        if dl4j.refused:
            assert f"no: {dl4j.refused}" in row
        elif dl4j.problem is not None:
            assert "some options refused" in row


@pytest.mark.parametrize(
    ("upsampling", "kernel"), [(None, (3, 3)), (None, (3, 5)), ((2, 2), (3, 3)), ((2, 2), (5, 5)), ((2, 3), (3, 3))]
)
def test_a_stride_one_convolution_is_written_for_dl4j_as_a_transposed_one_with_the_same_numbers(upsampling, kernel):
    """Keras computes the Conv2DTranspose the DL4J form writes (taking in the nearest UpSampling2D before it) as it
    computes the Conv2D: DL4J's side is tests/test_dl4j_claims.py."""
    rng = np.random.default_rng(1)
    options = _same_convolution(4, kernel)
    weights = [rng.normal(size=(*kernel, 3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)]
    layers = [LayerSpec("Conv2D", "conv", options, weights, ("x",))]
    if upsampling is not None:
        layers = [
            LayerSpec("UpSampling2D", "up", {"size": upsampling, "interpolation": "nearest"}, [], ("x",)),
            LayerSpec("Conv2D", "conv", options, weights, ("up",)),
        ]
    graph = Graph("stride_one", (InputSpec("x", (5, 6, 3), "float32"),), tuple(layers), ("conv",))
    written = dl4j_form(graph)
    assert [(spec.kind, spec.inbound) for spec in written.layers] == [("Conv2DTranspose", ("x",))]
    images = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    expected, actual = (build(item, keras).predict(images, verbose=0) for item in (graph, written))
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


def test_an_upsampling_by_a_large_factor_stays_a_layer_of_its_own():
    """A file's upsampling factor must not size the transposed kernel (a 1000x factor would ask for terabytes)."""
    options = _same_convolution(2, (3, 3), use_bias=False)
    layers = (
        LayerSpec("UpSampling2D", "up", {"size": (1000, 1000), "interpolation": "nearest"}, [], ("x",)),
        LayerSpec("Conv2D", "conv", options, [np.ones((3, 3, 2, 2), np.float32)], ("up",)),
    )
    graph = Graph("large_factor", (InputSpec("x", (4, 4, 2), "float32"),), layers, ("conv",))
    written = {spec.name: spec for spec in dl4j_form(graph).layers}
    assert written["up"].kind == "UpSampling2D" and written["conv"].inbound == ("up",)
    assert written["conv"].kind == "Conv2DTranspose" and written["conv"].options["kernel_size"] == (3, 3)
