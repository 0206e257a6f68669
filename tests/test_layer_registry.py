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
    """An UpSampling2D on the input, a Dense on images, a BatchNorm without center, a per-channel PReLU, an
    UpSampling2D before a 3x3 Conv2D, a Rescaling and a "same" Conv2DTranspose: each class DL4J gets a rewrite for."""
    rng = np.random.default_rng(0)
    dense = {"units": 3, "activation": "linear", "use_bias": True, "input_rank": 4, "input_steps": None}
    norm = {"momentum": 0.9, "epsilon": 1e-3, "center": False, "scale": True}
    convolution = _same_convolution(2, (3, 3))
    transposed = {**_same_convolution(2, (4, 4)), "strides": (2, 2), "output_padding": None}
    rescaling = {"scale": [0.5, 2.0], "offset": 0.25, "input_rank": 4, "channels": 2}
    layers = (
        LayerSpec("UpSampling2D", "up", {"size": (2, 2), "interpolation": "nearest"}, [], ("x",)),
        LayerSpec("Dense", "dense", dense, [rng.normal(size=(3, 3)), rng.normal(size=3)], ("up",)),
        LayerSpec("BatchNormalization", "norm", norm, [np.ones(3), np.zeros(3), np.ones(3)], ("dense",)),
        LayerSpec(
            "PReLU", "prelu", {"shared_axes": [1, 2], "per_channel": True}, [rng.normal(size=(1, 1, 3))], ("norm",)
        ),
        LayerSpec("UpSampling2D", "up_again", {"size": (2, 2), "interpolation": "nearest"}, [], ("prelu",)),
        LayerSpec("Conv2D", "conv", convolution, [rng.normal(size=(3, 3, 3, 2)), rng.normal(size=2)], ("up_again",)),
        LayerSpec("Rescaling", "rescale", rescaling, [], ("conv",)),
        LayerSpec("Conv2DTranspose", "deconv", transposed, [rng.normal(size=(4, 4, 2, 2)), np.zeros(2)], ("rescale",)),
    )
    return Graph("every_rewrite", (InputSpec("x", (4, 4, 3), "float32"),), layers, ("deconv",))


def _wiring(graph: Graph) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(spec.name, spec.kind, spec.inbound) for spec in graph.layers}


def test_dl4j_rewrites_of_different_classes_commute_and_keep_every_name_but_a_merged_upsampling():
    graph = _graph_with_every_rewrite()
    rewrites = [rule.rewrite for kind in supported_layers() if (rule := converter(kind).dl4j).rewrite is not None]
    assert len(rewrites) == 7
    forward = functools.reduce(lambda current, rewrite: rewrite(current), rewrites, graph)
    backward = functools.reduce(lambda current, rewrite: rewrite(current), reversed(rewrites), graph)
    assert _wiring(forward) == _wiring(backward)
    assert set(graph.names()) - {"up_again"} <= set(forward.names()) and forward.outputs == graph.outputs
    written = dl4j_form(graph)
    assert _wiring(written) == _wiring(forward)
    kinds = {spec.name: spec.kind for spec in written.layers}
    assert kinds["dense"] == "Conv2D" and kinds["prelu"] == "Add" and kinds["up_nhwc"] == "Conv2D"
    assert kinds["rescale"] == "Conv2D"
    assert "up_again" not in kinds and kinds["conv"] == "Conv2DTranspose"  # "same": another one reads it
    assert kinds["deconv_full"] == "Conv2DTranspose" and kinds["deconv"] == "Cropping2D"  # the output: cropped
    paddings = {spec.name: spec.options["padding"] for spec in written.layers if spec.kind == "Conv2DTranspose"}
    assert paddings == {"conv": "same", "deconv_full": "valid"}
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
    assert [(spec.kind, spec.inbound) for spec in written.layers] == [
        ("Conv2DTranspose", ("x",)),
        ("Cropping2D", ("conv_full",)),
    ]
    images = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    expected, actual = (build(item, keras).predict(images, verbose=0) for item in (graph, written))
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kernel", "strides"), [((4, 4), (2, 2)), ((3, 3), (2, 2)), ((4, 5), (1, 2)), ((2, 2), (3, 3))]
)
def test_a_same_transposed_convolution_is_written_for_dl4j_valid_then_cropped_with_the_same_numbers(kernel, strides):
    """Odd totals crop one more at the end, as Keras pads; a kernel smaller than the stride pads, and stays "same"."""
    rng = np.random.default_rng(2)
    options = {**_same_convolution(4, kernel), "strides": strides, "output_padding": None}
    weights = [rng.normal(size=(*kernel, 4, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)]
    graph = Graph(
        "transposed",
        (InputSpec("x", (5, 6, 3), "float32"),),
        (LayerSpec("Conv2DTranspose", "deconv", options, weights, ("x",)),),
        ("deconv",),
    )
    written = dl4j_form(graph)
    cropped = all(size >= stride for size, stride in zip(kernel, strides, strict=True))
    assert [spec.kind for spec in written.layers] == (
        ["Conv2DTranspose", "Cropping2D"] if cropped else ["Conv2DTranspose"]
    )
    images = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    expected, actual = (build(item, keras).predict(images, verbose=0) for item in (graph, written))
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("readers", "cropped"),
    [
        (["Activation", "BatchNormalization", "Conv2DTranspose"], True),
        (["LeakyReLU", "Dropout"], True),  # then the output
        (["LeakyReLU", "Conv2DTranspose"], False),
        (["MaxPooling2D"], False),
    ],
)
def test_a_transposed_convolution_is_cropped_only_where_its_output_is_copied_before_use(readers, cropped):
    """DL4J's Cropping2D gives a view, which ND4J's oneDNN deconv2d misreads: only a BatchNorm or the output may read
    it, past the layers that hand it on."""
    options = {**_same_convolution(2, (4, 4)), "strides": (2, 2), "output_padding": None}
    kernel = [np.ones((4, 4, 2, 2), np.float32), np.zeros(2, np.float32)]
    layers = [LayerSpec("Conv2DTranspose", "deconv", options, kernel, ("x",))]
    for index, kind in enumerate(readers):
        settings = {
            "Conv2DTranspose": options,
            "MaxPooling2D": {"pool_size": (2, 2), "strides": (2, 2), "padding": "valid"},
            "BatchNormalization": {"momentum": 0.9, "epsilon": 1e-3, "center": True, "scale": True},
            "Activation": {"activation": "relu"},
            "LeakyReLU": {"slope": 0.2},
            "Dropout": {"rate": 0.5},
        }
        weights = {"Conv2DTranspose": kernel, "BatchNormalization": [np.ones(2)] * 4}.get(kind, [])
        layers.append(LayerSpec(kind, f"reader_{index}", settings[kind], weights, (layers[-1].name,)))
    graph = Graph("readers", (InputSpec("x", (4, 4, 2), "float32"),), tuple(layers), (layers[-1].name,))
    written = {spec.name: spec for spec in dl4j_form(graph).layers}
    assert (written["deconv"].kind == "Cropping2D") == cropped


def test_an_upsampling_by_a_large_factor_stays_a_layer_of_its_own():
    """A file's upsampling factor must not size the transposed kernel (a 1000x factor would ask for terabytes)."""
    options = _same_convolution(2, (3, 3), use_bias=False)
    layers = (
        LayerSpec("UpSampling2D", "up", {"size": (1000, 1000), "interpolation": "nearest"}, [], ("x",)),
        LayerSpec("Conv2D", "conv", options, [np.ones((3, 3, 2, 2), np.float32)], ("up",)),
    )
    graph = Graph("large_factor", (InputSpec("x", (4, 4, 2), "float32"),), layers, ("conv",))
    written = {spec.name: spec for spec in dl4j_form(graph).layers}
    assert written["up"].kind == "UpSampling2D" and written["conv_full"].inbound == ("up",)
    assert written["conv_full"].kind == "Conv2DTranspose" and written["conv_full"].options["kernel_size"] == (3, 3)
