"""Convolutions, pooling, padding, cropping and upsampling (channels_last only)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ganport.export.layers.reading import (
    activation_option,
    activation_problem,
    channels_last,
    keras_layer,
    pair,
    pairs,
)
from ganport.export.layers.registry import Converter, LayerSpec, TargetRule, pointwise, refuse, register, unique_name

if TYPE_CHECKING:
    from ganport.export.graph import Graph


def _read_convolution(layer: Any) -> dict[str, Any]:
    channels_last(layer)
    if getattr(layer, "groups", 1) != 1:
        raise refuse(layer, f"uses groups={layer.groups}; grouped convolutions are not supported.")
    options = {
        "filters": int(layer.filters),
        "kernel_size": pair(layer.kernel_size),
        "strides": pair(layer.strides),
        "padding": str(layer.padding),
        "dilation_rate": pair(layer.dilation_rate),
        "activation": activation_option(layer),
        "use_bias": bool(layer.use_bias),
    }
    if options["padding"] not in ("same", "valid"):
        raise refuse(layer, f"uses padding={options['padding']!r}; same and valid are supported.")
    if type(layer).__name__ == "Conv2DTranspose":
        padding = getattr(layer, "output_padding", None)
        options["output_padding"] = None if padding is None else pair(padding)
    return options


def _transpose_problem(options: dict[str, Any]) -> str | None:
    if options["output_padding"] is not None:
        return "DL4J's Deconvolution2D never reads output_padding"
    if options["dilation_rate"] != (1, 1):
        return "DL4J's Deconvolution2D import ignores dilation"
    return activation_problem(options)


def _read_depthwise(layer: Any) -> dict[str, Any]:
    channels_last(layer)
    options = {
        "kernel_size": pair(layer.kernel_size),
        "strides": pair(layer.strides),
        "padding": str(layer.padding),
        "depth_multiplier": int(layer.depth_multiplier),
        "dilation_rate": pair(layer.dilation_rate),
        "activation": activation_option(layer),
        "use_bias": bool(layer.use_bias),
    }
    if type(layer).__name__ == "SeparableConv2D":
        options["filters"] = int(layer.filters)
    return options


def _read_convolution_1d(layer: Any) -> dict[str, Any]:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise refuse(layer, "uses channels_first; ganport converts channels_last models only.")
    if str(layer.padding) not in ("same", "valid") or getattr(layer, "groups", 1) != 1:
        raise refuse(layer, f"uses padding={layer.padding!r} or groups; same and valid, ungrouped, are supported.")
    return {
        "filters": int(layer.filters),
        "kernel_size": int(layer.kernel_size[0]),
        "strides": int(layer.strides[0]),
        "padding": str(layer.padding),
        "dilation_rate": int(layer.dilation_rate[0]),
        "activation": activation_option(layer),
        "use_bias": bool(layer.use_bias),
    }


def _nearest_then_convolution(upsampling: int, kernel: int) -> tuple[np.ndarray, int] | None:
    """Along one axis, nearest upsampling by `upsampling` (1: none) then a stride-1 "same" convolution of odd size
    `kernel`, as one transposed convolution of stride `upsampling`: the matrix M with transposed[j] = sum_t M[j, t] *
    kernel[t], and its size. None when Keras would pad that transposed convolution unevenly (DL4J's is symmetric) or
    the factor exceeds the kernel + 1.

    Output position s*i + a reads upsampled rows s*i + a + t - r (r = kernel // 2), that is input row
    i + (a + t - r) // s; a transposed convolution of stride s adds input i into output s*i + j - p. Without
    upsampling this is the kernel reversed."""
    if upsampling > kernel + 1:  # the transposed kernel would exceed twice the size: a file's factor bounds no memory
        return None
    reach = kernel // 2
    taps = [(phase, tap, (phase + tap - reach) // upsampling) for phase in range(upsampling) for tap in range(kernel)]
    offsets = [phase - upsampling * row for phase, _, row in taps]  # each tap's kernel index, before padding
    padding = -min(offsets)
    size = max(offsets) + padding + 1
    if size - upsampling != 2 * padding:  # Keras pads a "same" transposed convolution by (size - stride) // 2 first
        return None
    matrix = np.zeros((size, kernel))
    for (_, tap, _), offset in zip(taps, offsets, strict=True):
        matrix[offset + padding, tap] += 1
    return matrix, size


def _transposable(options: dict[str, Any]) -> bool:
    """A stride-1 "same" convolution of odd size: one a stride-1 transposed convolution computes exactly."""
    odd = all(size % 2 for size in options["kernel_size"])
    return odd and options["padding"] == "same" and options["strides"] == (1, 1) and options["dilation_rate"] == (1, 1)


def _absorbed_upsamplings(graph: Graph) -> dict[str, LayerSpec]:
    """The nearest UpSampling2D layers read only by a transposable Conv2D, by that Conv2D's name."""
    readers = graph.consumers()
    layers = {spec.name: spec for spec in graph.layers}
    absorbed = {}
    for spec in graph.layers:
        upsampling = layers.get(spec.inbound[0]) if spec.kind == "Conv2D" and _transposable(spec.options) else None
        if upsampling is None or upsampling.kind != "UpSampling2D" or readers[upsampling.name] != [spec.name]:
            continue
        sizes = zip(upsampling.options["size"], spec.options["kernel_size"], strict=True)
        if upsampling.options["interpolation"] == "nearest" and all(_nearest_then_convolution(*pair) for pair in sizes):
            absorbed[spec.name] = upsampling
    return absorbed


def _convolutions_transposed(graph: Graph) -> Graph:
    """Each stride-1 "same" Conv2D as the Conv2DTranspose that computes the same numbers (kernel reversed), taking in
    a nearest UpSampling2D that only it reads (Keras-GAN's UpSampling2D + 3x3 Conv2D: kernel 4 at stride 2).

    DL4J 1.0.0-M2.1 runs its Deconvolution2D 1.2x to 50x faster than its ConvolutionLayer on the same product (its
    convolution copies the input into im2col columns through a strided permute first; docs/java-check.md), and an
    absorbed upsampling is never materialised, with 4/9 of the products. It is written cropped
    (_transposes_cropped), the Cropping2D with the Conv2D's name; an absorbed UpSampling2D's name is gone (only the
    Conv2D read it)."""
    absorbed = _absorbed_upsamplings(graph)
    gone = {upsampling.name for upsampling in absorbed.values()}
    layers: list[LayerSpec] = []
    for spec in graph.layers:
        if spec.name in gone:
            continue
        if spec.kind != "Conv2D" or not _transposable(spec.options):
            layers.append(spec)
            continue
        upsampling = absorbed.get(spec.name)
        strides = upsampling.options["size"] if upsampling is not None else (1, 1)
        sizes = zip(strides, spec.options["kernel_size"], strict=True)
        (rows, height), (columns, width) = [_nearest_then_convolution(*pair) for pair in sizes]
        kernel = np.einsum("ys,xt,stio->yxoi", rows, columns, spec.weights[0].astype(np.float64)).astype(np.float32)
        options = {**spec.options, "kernel_size": (height, width), "strides": strides, "output_padding": None}
        inbound = upsampling.inbound if upsampling is not None else spec.inbound
        layers.append(LayerSpec("Conv2DTranspose", spec.name, options, [kernel, *spec.weights[1:]], inbound))
    return _transposes_cropped(graph.with_layers(layers))


def _cropping(options: dict[str, Any]) -> tuple[tuple[int, int], ...] | None:
    """What a "same" Conv2DTranspose crops from its "valid" output, per axis (before, after): Keras pads it as the
    convolution it is the gradient of, by k - s in all, (k - s) // 2 first. None where nothing is cropped: padding
    "valid", or a kernel smaller than the stride (then "same" pads rather than crops)."""
    totals = [kernel - stride for kernel, stride in zip(options["kernel_size"], options["strides"], strict=True)]
    if options["padding"] != "same" or min(totals) < 0:
        return None
    return tuple((total // 2, total - total // 2) for total in totals)


# DL4J layers that hand on the array they read at inference (an activation in place, a dropout as it is), and
# the layer that computes a new one from it.
_HANDING_ON = frozenset({"Activation", "LeakyReLU", "ReLU", "Dropout", "SpatialDropout2D"})
_COPYING = "BatchNormalization"


def _copied_before_use(name: str, readers: dict[str, list[str]], kinds: dict[str, str]) -> bool:
    """Whether every reader of layer `name` (`readers`: Graph.consumers()), past the layers that hand its array on,
    is a BatchNormalization or the model's output: DL4J's Cropping2D gives a view of its input, and ND4J's oneDNN
    deconv2d reads a view wrongly (a Deconvolution2D given a cropped view: outputs off by 1e35 where the plain build
    is exact; measured with 1.0.0-M2.1). Any other reader might hand the view to a oneDNN op."""
    pending = [name]
    while pending:
        for reader in readers[pending.pop()]:
            kind = kinds.get(reader)
            if kind in _HANDING_ON:
                pending.append(reader)
            elif kind != _COPYING and reader in kinds:  # a layer's name, not the output's mark
                return False
    return True


def _transposes_cropped(graph: Graph) -> Graph:
    """Each "same" Conv2DTranspose whose output is copied before use (_copied_before_use) as its "valid" one (named
    `<name>_full`) then a Cropping2D with its name: the same numbers. ND4J 1.0.0-M2.1's deconv2d runs through oneDNN
    only in "valid" mode (its PLATFORM_CHECK refuses "same"): with the oneDNN build of ND4J the DCGAN generator runs
    about 4x faster (docs/java-check.md); with the plain build the crop is one view."""
    layers: list[LayerSpec] = []
    taken = set(graph.names())
    readers, kinds = graph.consumers(), {spec.name: spec.kind for spec in graph.layers}
    for spec in graph.layers:
        cropping = _cropping(spec.options) if spec.kind == "Conv2DTranspose" else None
        if cropping is None or not _copied_before_use(spec.name, readers, kinds):
            layers.append(spec)
            continue
        full = unique_name(f"{spec.name}_full", taken)
        layers.append(replace(spec, name=full, options={**spec.options, "padding": "valid"}))
        layers.append(LayerSpec("Cropping2D", spec.name, {"cropping": cropping}, [], (full,)))
    return graph.with_layers(layers)


# Convolutions with an activation: (class, reader, what DL4J makes of it, products one output sums).
_CONVOLUTIONS: tuple[tuple[str, Callable, TargetRule, Callable[[LayerSpec], int]], ...] = (
    (
        "Conv2D",
        _read_convolution,
        TargetRule(
            problem=activation_problem,
            rewrite=_convolutions_transposed,
            note='NHWC; stride 1 "same": Deconvolution2D (faster), with an UpSampling2D before it',
        ),
        lambda spec: math.prod(spec.weights[0].shape[:3]),
    ),
    (
        "Conv2DTranspose",
        _read_convolution,
        TargetRule(
            problem=_transpose_problem,
            rewrite=_transposes_cropped,
            required=lambda config: config.get("output_padding") is None,
            note='Deconvolution2D, NHWC; "same" read by a BatchNorm or the output: "valid" + Cropping2D (faster)',
        ),
        # kernel [kh, kw, out, in]; with strides an output sums fewer, so this is the most one can
        lambda spec: math.prod(spec.weights[0].shape[:2]) * spec.weights[0].shape[3],
    ),
    (
        "DepthwiseConv2D",
        _read_depthwise,
        # measured with DL4J 1.0.0-M2.1 (2026-12-02): its import stops with "Index 0 out of bounds for length 0"
        TargetRule(refused="DL4J 1.0.0-M2.1's import of DepthwiseConv2D fails (an index error in its weight reader)"),
        lambda spec: math.prod(spec.weights[0].shape[:2]),  # kernel [kh, kw, in, multiplier]
    ),
    (
        "SeparableConv2D",
        _read_depthwise,
        TargetRule(problem=activation_problem, note="SeparableConvolution2D, NHWC"),
        # a depthwise sum of kh*kw, then a pointwise one of in*multiplier: bounded by their product
        lambda spec: math.prod(spec.weights[0].shape),
    ),
    (
        "Conv1D",
        _read_convolution_1d,
        TargetRule(problem=activation_problem, note="Convolution1DLayer"),
        lambda spec: math.prod(spec.weights[0].shape[:2]),  # kernel [k, in, out]
    ),
)


def _transpose_for_onnx(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    """A "valid" Conv2DTranspose with output_padding as onnx_forms.ValidTransposeThenPad: tf2onnx 1.17 writes the
    layer itself as a ConvTranspose with negative pads, which ONNX's checker rejects; others as Keras has them."""
    if options["padding"] != "valid" or not any(options["output_padding"] or ()):
        return keras_layer("Conv2DTranspose")(options, name, module)
    from ganport.export.layers.onnx_forms import ValidTransposeThenPad

    return ValidTransposeThenPad(name=name, **{key: value for key, value in options.items() if key != "padding"})


# Layers the ONNX export builds in another form that tf2onnx converts (onnx_forms.py).
_ONNX_FORMS = {"Conv2DTranspose": TargetRule(build=_transpose_for_onnx)}
for _kind, _read, _dl4j, _accumulation in _CONVOLUTIONS:
    register(
        _kind,
        Converter(
            _read,
            keras_layer(_kind),
            onnx=_ONNX_FORMS.get(_kind, TargetRule()),
            dl4j=_dl4j,
            accumulation=_accumulation,
        ),
    )

# --- pooling, padding, cropping ------------------------------------------------------------------------------------


def _read_pooling(layer: Any) -> dict[str, Any]:
    channels_last(layer)
    return {"pool_size": pair(layer.pool_size), "strides": pair(layer.strides), "padding": str(layer.padding)}


def _read_global_pooling(layer: Any) -> dict[str, Any]:
    channels_last(layer)
    return {"keepdims": bool(getattr(layer, "keepdims", False))}


register(
    "ZeroPadding2D",
    Converter(
        lambda layer: channels_last(layer) or {"padding": pairs(layer.padding)},
        keras_layer("ZeroPadding2D"),
    ),
)
register(
    "Cropping2D",
    Converter(
        lambda layer: channels_last(layer) or {"cropping": pairs(layer.cropping)},
        keras_layer("Cropping2D"),
    ),
)
for _pooling in ("MaxPooling2D", "AveragePooling2D"):
    register(
        _pooling,
        Converter(
            _read_pooling,
            keras_layer(_pooling),
            dl4j=TargetRule(note="SubsamplingLayer"),
            accumulation=lambda spec, kind=_pooling: math.prod(spec.options["pool_size"]) if "Average" in kind else 0,
        ),
    )
for _pooling in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalMaxPooling1D"):
    register(
        _pooling,
        Converter(
            _read_global_pooling,
            keras_layer(_pooling),
            dl4j=TargetRule(
                problem=lambda options: "DL4J does not read keepdims" if options["keepdims"] else None,
                note="GlobalPoolingLayer",
            ),
        ),
    )


def _read_pooling_1d(layer: Any) -> dict[str, Any]:
    channels_last(layer)

    def length(value: Any) -> int:  # Keras keeps a 1D size as a tuple of one
        return int(value[0] if isinstance(value, tuple | list) else value)

    return {"pool_size": length(layer.pool_size), "strides": length(layer.strides), "padding": str(layer.padding)}


# ZeroPadding1D, Cropping1D and AveragePooling1D: measured with DL4J 1.0.0-M2.1 (2026-12-08), beside its
# MaxPooling1D, GlobalPooling and SpatialDropout1D that compute Keras's numbers
register(
    "ZeroPadding1D",
    Converter(
        lambda layer: {"padding": pair(layer.padding)},
        keras_layer("ZeroPadding1D"),
        dl4j=TargetRule(refused="DL4J 1.0.0-M2.1 fails on a ZeroPadding1D's output (the Conv1D after it stops)"),
    ),
)
register(
    "Cropping1D",
    Converter(
        lambda layer: {"cropping": pair(layer.cropping)},
        keras_layer("Cropping1D"),
        dl4j=TargetRule(refused="DL4J 1.0.0-M2.1's Cropping1D output has another shape than Keras's"),
    ),
)
register(
    "MaxPooling1D",
    Converter(_read_pooling_1d, keras_layer("MaxPooling1D"), dl4j=TargetRule(note="Subsampling1DLayer")),
)
register(
    "AveragePooling1D",
    Converter(
        _read_pooling_1d,
        keras_layer("AveragePooling1D"),
        dl4j=TargetRule(refused="DL4J 1.0.0-M2.1's AveragePooling1D gives other values than Keras (off by 1.2)"),
        accumulation=lambda spec: spec.options["pool_size"],
    ),
)
# --- upsampling ----------------------------------------------------------------------------------------------------


def _read_upsampling(layer: Any) -> dict[str, Any]:
    channels_last(layer)
    return {"size": pair(layer.size), "interpolation": str(layer.interpolation)}


def _nhwc_before_upsampling(graph: Graph) -> Graph:
    """An UpSampling2D that reads a model input directly, after a 1x1 Conv2D with an identity kernel (x * 1 + 0:
    the same numbers): DL4J 1.0.0-M2.1 reads such an input channels-first ("Invalid input ... expected
    [minibatch, inputHeight=8, inputWidth=6, numChannels=4]" for a 4x3x3 image; tests/test_dl4j_claims.py), and
    an image after a convolution channels-last. One the Conv2D reading it absorbs (_convolutions_transposed) is left
    to it: its Deconvolution2D reads the input NHWC."""
    inputs = {item.name: item for item in graph.inputs}
    absorbed = {upsampling.name for upsampling in _absorbed_upsamplings(graph).values()}
    layers: list[LayerSpec] = []
    taken = set(graph.names())
    for spec in graph.layers:
        if spec.kind == "UpSampling2D" and spec.inbound[0] in inputs and spec.name not in absorbed:
            channels = inputs[spec.inbound[0]].shape[-1]
            name = unique_name(f"{spec.name}_nhwc", taken)
            layers.append(pointwise(name, spec.inbound[0], np.eye(channels), image=True))
            spec = replace(spec, inbound=(name,))
        layers.append(spec)
    return graph.with_layers(layers)


def _upsampling_for_onnx(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    """Nearest upsampling as one ONNX Resize (onnx_forms.NearestResize); other interpolations as Keras has them."""
    if options["interpolation"] != "nearest":
        return module.layers.UpSampling2D(name=name, **options)
    from ganport.export.layers.onnx_forms import NearestResize

    return NearestResize(options["size"], name=name)


register(
    "UpSampling2D",
    Converter(
        _read_upsampling,
        keras_layer("UpSampling2D"),
        onnx=TargetRule(build=_upsampling_for_onnx),
        dl4j=TargetRule(
            problem=lambda options: (
                None if options["interpolation"] == "nearest" else "DL4J upsamples by nearest neighbour only"
            ),
            rewrite=_nhwc_before_upsampling,
            required=lambda config: config.get("interpolation") == "nearest" and isinstance(config.get("size"), list),
            note="on a model input: after a 1x1 identity Conv2D; before a stride-1 Conv2D: in its Deconvolution2D",
        ),
    ),
)
register(
    "UpSampling1D",
    Converter(
        lambda layer: {"size": int(layer.size)},
        keras_layer("UpSampling1D"),
        # measured with DL4J 1.0.0-M2.1: outputs off by up to 1.8 after it
        dl4j=TargetRule(refused="DL4J 1.0.0-M2.1's Upsampling1D gives other values than Keras"),
    ),
)
