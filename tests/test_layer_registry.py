"""The layer registry's contract, on graphs built from LayerSpecs (no Keras model): DL4J rewrites of different classes
commute and keep every name, and the tables are rendered from the rules without calling a verdict function."""

from __future__ import annotations

import functools

import numpy as np

from ganport.export.graph import Graph, InputSpec
from ganport.export.layers import LayerSpec, converter, supported_layers
from ganport.export.layers.dl4j import dl4j_form
from ganport.export.layers.verdicts import markdown_table


def _graph_with_every_rewrite() -> Graph:
    """An UpSampling2D on the input, a Dense on images, a BatchNorm without center and a per-channel PReLU: each
    class DL4J gets a rewrite for."""
    rng = np.random.default_rng(0)
    dense = {"units": 3, "activation": "linear", "use_bias": True, "input_rank": 4, "input_steps": None}
    norm = {"momentum": 0.9, "epsilon": 1e-3, "center": False, "scale": True}
    layers = (
        LayerSpec("UpSampling2D", "up", {"size": (2, 2), "interpolation": "nearest"}, [], ("x",)),
        LayerSpec("Dense", "dense", dense, [rng.normal(size=(3, 3)), rng.normal(size=3)], ("up",)),
        LayerSpec("BatchNormalization", "norm", norm, [np.ones(3), np.zeros(3), np.ones(3)], ("dense",)),
        LayerSpec(
            "PReLU", "prelu", {"shared_axes": [1, 2], "per_channel": True}, [rng.normal(size=(1, 1, 3))], ("norm",)
        ),
    )
    return Graph("every_rewrite", (InputSpec("x", (4, 4, 3), "float32"),), layers, ("prelu",))


def _wiring(graph: Graph) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(spec.name, spec.kind, spec.inbound) for spec in graph.layers}


def test_dl4j_rewrites_of_different_classes_commute_and_keep_every_name():
    graph = _graph_with_every_rewrite()
    rewrites = [rule.rewrite for kind in supported_layers() if (rule := converter(kind).dl4j).rewrite is not None]
    assert len(rewrites) == 4
    forward = functools.reduce(lambda current, rewrite: rewrite(current), rewrites, graph)
    backward = functools.reduce(lambda current, rewrite: rewrite(current), reversed(rewrites), graph)
    assert _wiring(forward) == _wiring(backward)
    assert set(graph.names()) <= set(forward.names()) and forward.outputs == graph.outputs
    written = dl4j_form(graph)
    assert _wiring(written) == _wiring(forward)
    kinds = {spec.name: spec.kind for spec in written.layers}
    assert kinds["dense"] == "Conv2D" and kinds["prelu"] == "Add" and kinds["up_nhwc"] == "Conv2D"
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
