"""The graph DL4J 1.0.0-M2.1 imports with the same numbers: each layer class's DL4J rewrite (its TargetRule), plus
the rules that belong to the graph rather than to one class: an activation function DL4J does not map written as a
layer, Reshapes that are outputs written flat, and the sizes DL4J needs of every input.

What DL4J reads of each layer comes from its source (../shared/research/dl4j-conv-and-graph-import.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ganport.export.layers.registry import LayerSpec, converter, supported_layers, unique_name

if TYPE_CHECKING:
    from ganport.export.graph import Graph, InputSpec

# Keras's `leaky_relu` activation function: negative_slope 0.2 in Keras 3, tf.nn.leaky_relu's alpha 0.2 in tf.keras.
LEAKY_RELU_SLOPE = 0.2


def dl4j_form(graph: Graph) -> Graph:
    """The graph as the h5 format writes it for DL4J: rewritten, and trailing Reshapes DL4J cannot import written
    flat (flat_outputs)."""
    rewritten = _rewritten(graph)
    trailing = {reshape.name: read for read, reshape in _trailing_reshapes(rewritten).items()}
    if not trailing:
        return rewritten
    kept = [spec for spec in rewritten.layers if spec.name not in trailing]
    return replace(rewritten, layers=tuple(kept), outputs=tuple(trailing.get(name, name) for name in rewritten.outputs))


def flat_outputs(graph: Graph) -> dict[str, list[int]]:
    """The outputs dl4j_form writes flat, by their name in the written graph, with the shape each stands for."""
    return {read: list(spec.options["target_shape"]) for read, spec in _trailing_reshapes(_rewritten(graph)).items()}


def _rewritten(graph: Graph) -> Graph:
    """Activations written as layers, then each layer class's DL4J rewrite (they touch their own class only and keep
    every name but that of a layer merged into its only reader, so their order does not matter)."""
    graph = _leaky_relu_layers(graph)
    for kind in supported_layers():
        rewrite = converter(kind).dl4j.rewrite
        if rewrite is not None:
            graph = rewrite(graph)
    return graph


def _leaky_relu_layers(graph: Graph) -> Graph:
    """Each activation="leaky_relu" (DL4J maps no such name) as a LeakyReLU layer with Keras's slope: an Activation
    layer becomes one, and any other layer computes linearly and is followed by one, which its readers then read."""
    layers: list[LayerSpec] = []
    renamed: dict[str, str] = {}
    taken = set(graph.names())
    for spec in graph.layers:
        spec = replace(spec, inbound=tuple(renamed.get(name, name) for name in spec.inbound))
        if spec.options.get("activation") != "leaky_relu":
            layers.append(spec)
        elif spec.kind == "Activation":
            layers.append(LayerSpec("LeakyReLU", spec.name, {"slope": LEAKY_RELU_SLOPE}, [], spec.inbound))
        else:
            name = unique_name(f"{spec.name}_leaky_relu", taken)
            layers.append(replace(spec, options={**spec.options, "activation": "linear"}))
            layers.append(LayerSpec("LeakyReLU", name, {"slope": LEAKY_RELU_SLOPE}, [], (spec.name,)))
            renamed[spec.name] = name
    return replace(graph, layers=tuple(layers), outputs=tuple(renamed.get(name, name) for name in graph.outputs))


def _trailing_reshapes(graph: Graph) -> dict[str, LayerSpec]:
    """The Reshapes that are outputs, by the name of the layer each reads, that the h5 format writes flat.

    DL4J's graph import maps a Reshape to a preprocessor of the layer after it, so one that is an output of a
    functional graph cannot be imported at all, and it cannot reshape to rank 3 anywhere (DL4J issue 8846). Such
    outputs are written flat ([batch, H*W*C], C order, the same numbers), as DL4J's Sequential import does by itself
    with a trailing Reshape to an image, which a chain keeps."""
    layers = {spec.name: spec for spec in graph.layers}
    readers = graph.consumers()
    return {
        layers[name].inbound[0]: layers[name]
        for name in graph.outputs
        if name in layers
        and layers[name].kind == "Reshape"
        and readers[name] == ["<output>"]
        and (not graph.is_chain or len(layers[name].options["target_shape"]) == 2)
    }


def input_problems(inputs: Sequence[InputSpec]) -> list[str]:
    """Why DL4J cannot take these inputs: more than 3 axes after the batch, or a size left open."""
    problems = [
        f"input {spec.name}: DL4J takes inputs of at most 3 axes after the batch, not {len(spec.shape)}"
        for spec in inputs
        if len(spec.shape) > 3
    ]
    return problems + [
        f"input {spec.name} takes any size {[None, *spec.keras_shape()]}, and a DL4J network has fixed sizes: pass "
        "--input-shape with the sizes to write it for (H,W)"
        for spec in inputs
        if spec.dynamic
    ]
