"""Fold inference-mode BatchNormalization into an adjacent Dense or convolution, where that is exact.

An inference BatchNorm is y = a * x + c per channel, with a = gamma / sqrt(var + eps) and c = beta - mean * a.
tf2onnx turns it into Mul + Add, which onnxruntime does not fuse after a LeakyRelu or around NHWC convolutions,
and no ONNX optimiser folds these cases, so ganport folds them before conversion:
- after a linear Dense, Conv2D or Conv2DTranspose (optionally through a Reshape of the Dense's units, as DCGAN's
  Dense -> Reshape -> BatchNorm): the layer's kernel is scaled per output channel, its bias becomes b * a + c;
- before a Dense: Dense(y) = x @ (a[:, None] * W) + (c @ W + b).
Before a convolution it is not exact with "same" padding (the zeros padded around a * x + c are not c), so it stays.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ganport.export.graph import Graph
from ganport.export.layers import LayerSpec

# The kernel axis that holds a layer's output channels.
_OUTPUT_AXIS = {"Dense": 1, "Conv2D": 3, "Conv2DTranspose": 2}


def batch_norm_affine(spec: LayerSpec) -> tuple[np.ndarray, np.ndarray]:
    """The per-feature scale a and shift c of an inference-mode BatchNormalization, in float64."""
    weights = [np.asarray(w, np.float64) for w in spec.weights]
    gamma = weights.pop(0) if spec.options["scale"] else None
    beta = weights.pop(0) if spec.options["center"] else None
    mean, variance = weights
    scale = (1.0 if gamma is None else gamma) / np.sqrt(variance + spec.options["epsilon"])
    shift = (0.0 if beta is None else beta) - mean * scale
    return np.broadcast_to(scale, mean.shape), shift


def fold_batch_norm(graph: Graph) -> Graph:
    """The same network with every BatchNormalization that can be merged exactly into a neighbour merged."""
    for name in [spec.name for spec in graph.layers if spec.kind == "BatchNormalization"]:
        graph = _fold_into_producer(graph, name) or _fold_into_dense_reader(graph, name) or graph
    return graph


def _biased(spec: LayerSpec, kernel: np.ndarray, bias: np.ndarray) -> LayerSpec:
    weights = [kernel.astype(np.float32), bias.astype(np.float32)]
    return replace(spec, options={**spec.options, "use_bias": True}, weights=weights)


def _bias(spec: LayerSpec, size: int) -> np.ndarray:
    return np.asarray(spec.weights[1], np.float64) if spec.options["use_bias"] else np.zeros(size)


def _fold_into_producer(graph: Graph, name: str) -> Graph | None:
    layers = {spec.name: spec for spec in graph.layers}
    readers = graph.consumers()
    batch_norm = layers[name]
    (producer_name,) = batch_norm.inbound
    between = layers.get(producer_name)
    if between is not None and between.kind == "Reshape" and readers[between.name] == [name]:
        producer_name = between.inbound[0]
    else:
        between = None
    producer = layers.get(producer_name)
    if (
        producer is None
        or producer.kind not in _OUTPUT_AXIS
        or producer.options["activation"] != "linear"
        or readers[producer.name] != [(between or batch_norm).name]
        or (between is not None and producer.kind != "Dense")
    ):
        return None
    scale, shift = batch_norm_affine(batch_norm)
    kernel = np.asarray(producer.weights[0], np.float64)
    channels = kernel.shape[_OUTPUT_AXIS[producer.kind]]
    if channels % len(scale):
        return None
    # A C-order Reshape of Dense units puts channel u % C at unit u: the per-channel factors repeat.
    scale, shift = np.tile(scale, channels // len(scale)), np.tile(shift, channels // len(shift))
    shape = [1] * kernel.ndim
    shape[_OUTPUT_AXIS[producer.kind]] = channels
    folded = _biased(producer, kernel * scale.reshape(shape), _bias(producer, channels) * scale + shift)
    return _remove(graph, name, (between or producer).name, folded)


def _fold_into_dense_reader(graph: Graph, name: str) -> Graph | None:
    readers = graph.consumers()[name]
    dense = next((spec for spec in graph.layers if readers == [spec.name] and spec.kind == "Dense"), None)
    if dense is None:
        return None
    batch_norm = next(spec for spec in graph.layers if spec.name == name)
    scale, shift = batch_norm_affine(batch_norm)
    kernel = np.asarray(dense.weights[0], np.float64)
    folded = _biased(dense, scale[:, None] * kernel, shift @ kernel + _bias(dense, kernel.shape[1]))
    return _remove(graph, name, batch_norm.inbound[0], folded)


def _remove(graph: Graph, removed: str, replacement: str, changed: LayerSpec) -> Graph:
    """`graph` without layer `removed` (its readers read `replacement`), with `changed` in place of its namesake."""

    def rewire(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(replacement if name == removed else name for name in names)

    layers = [changed if spec.name == changed.name else spec for spec in graph.layers if spec.name != removed]
    return replace(
        graph,
        layers=tuple(replace(spec, inbound=rewire(spec.inbound)) for spec in layers),
        outputs=rewire(graph.outputs),
    )
