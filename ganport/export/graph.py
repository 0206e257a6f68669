"""A Keras model as a framework-neutral graph of registry layers, read from either Keras and rebuilt in either.

Reading follows each output tensor back through `_keras_history` (the same attribute in Keras 3 and tf_keras),
opening nested Sequential and functional models on the way, so the lecture's functional-wraps-Sequential files
and multi-input conditional models become one flat graph that DL4J can import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np

from ganport.errors import ModelError, UnsupportedLayerError
from ganport.export.layers import (
    LayerSpec,
    activation_layer,
    converter,
    kind_of,
    refuse,
    supported_layers,
    unique_name,
)
from ganport.keras_files.community import unwrapped
from ganport.parity import Accumulation

# Keras 3 KerasTensors and tf_keras ones both record (layer, node index, tensor index) here.
_HISTORY = "_keras_history"


# The size an input's dynamic axis stands for, where no side marks it (InputSpec.shape).
DYNAMIC = -1


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]  # without the batch axis; DYNAMIC where the model takes any size (a height, a width)
    dtype: str

    @property
    def is_integer(self) -> bool:
        return self.dtype.startswith(("int", "uint"))

    @property
    def dynamic(self) -> bool:
        return DYNAMIC in self.shape

    def keras_shape(self) -> tuple[int | None, ...]:
        """The shape as Keras and TensorFlow write it: None for a dynamic axis."""
        return tuple(None if side == DYNAMIC else side for side in self.shape)

    def sized(self, sizes: tuple[int, ...]) -> InputSpec:
        """This input with its dynamic axes given `sizes`, in order (one per dynamic axis)."""
        given = iter(sizes)
        return replace(self, shape=tuple(next(given) if side == DYNAMIC else side for side in self.shape))


@dataclass(frozen=True)
class Graph:
    """Inputs, layers in an order where every layer follows the ones it reads, and the layers that are outputs."""

    name: str
    inputs: tuple[InputSpec, ...]
    layers: tuple[LayerSpec, ...]
    outputs: tuple[str, ...]

    def consumers(self) -> dict[str, list[str]]:
        """Name -> the layers that read it (an output also counts as a reader)."""
        readers: dict[str, list[str]] = {name: [] for name in self.names()}
        for spec in self.layers:
            for name in spec.inbound:
                readers[name].append(spec.name)
        for name in self.outputs:
            readers[name].append("<output>")
        return readers

    def names(self) -> list[str]:
        return [item.name for item in self.inputs] + [spec.name for spec in self.layers]

    @property
    def is_chain(self) -> bool:
        """One input, one output and each layer reading the one before: what a flat Sequential can hold."""
        previous = [item.name for item in self.inputs]
        for spec in self.layers:
            if list(spec.inbound) != previous:
                return False
            previous = [spec.name]
        return len(self.inputs) == 1 and list(self.outputs) == previous

    def accumulation(self) -> Accumulation:
        """The float32 summation this graph does, which its parity tolerance follows (ganport.parity says how).

        Global average pooling sums a whole feature map, whose size the graph does not hold; its K is left out.
        """
        lengths = [length for spec in self.layers if (length := int(converter(spec.kind).accumulation(spec)))]
        return Accumulation(len(lengths), max(lengths, default=0))

    def with_layers(self, layers: list[LayerSpec]) -> Graph:
        return replace(self, layers=tuple(layers))

    @property
    def dynamic(self) -> bool:
        """Whether an input takes any size on an axis other than the batch (a fully convolutional model)."""
        return any(item.dynamic for item in self.inputs)

    def sized(self, sizes: tuple[int, ...]) -> Graph:
        """The graph with each input's dynamic axes given `sizes` (the same sizes for every input that has them)."""
        return replace(self, inputs=tuple(item.sized(sizes) if item.dynamic else item for item in self.inputs))

    def renamed(self, names: dict[str, str]) -> Graph:
        """The same graph with inputs (or layers) renamed; a new name that is already taken is refused."""
        taken = set(self.names()) - set(names)
        clashes = sorted(set(names.values()) & taken)
        if clashes:
            raise ModelError(
                f"Model {self.name!r} has a layer named {clashes[0]!r}, the name ganport gives an input; "
                "rename that layer."
            )

        def new(name: str) -> str:
            return names.get(name, name)

        return Graph(
            self.name,
            tuple(replace(item, name=new(item.name)) for item in self.inputs),
            tuple(replace(spec, name=new(spec.name), inbound=tuple(map(new, spec.inbound))) for spec in self.layers),
            tuple(map(new, self.outputs)),
        )


@dataclass(frozen=True)
class TracedLayer:
    layer: Any
    name: str  # the layer's name, made unique when a nested model reuses an outer one
    inbound: tuple[str, ...]


def _dtype_name(dtype: Any) -> str:
    return getattr(dtype, "name", str(dtype))


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(DYNAMIC if side is None else int(side) for side in tensor.shape[1:])


def _node_inputs(node: Any) -> list[Any]:
    # tf_keras keeps the flat input tensors in `keras_inputs`; Keras 3 in `input_tensors`.
    inputs = getattr(node, "keras_inputs", None)
    return list(inputs if inputs is not None else node.input_tensors)


def _is_model(layer: Any) -> bool:
    return hasattr(layer, "layers") and getattr(layer, "inputs", None) is not None


def trace(model: Any) -> tuple[list[InputSpec], list[TracedLayer], list[str]]:
    """The model's inputs, every layer in a dependency order with the names it reads, and its output layers."""
    inputs = [InputSpec(getattr(t, _HISTORY)[0].name, _shape(t), _dtype_name(t.dtype)) for t in _tensors(model.inputs)]
    traced: dict[str, TracedLayer] = {}
    seen_layers: set[int] = set()
    nested: dict[tuple[int, int], dict[int, str]] = {}  # one tensor -> name map per call of a nested model

    def visit(tensor: Any, seen: dict[int, str]) -> str:
        if id(tensor) in seen:
            return seen[id(tensor)]
        layer, node_index, tensor_index = getattr(tensor, _HISTORY)
        node = layer._inbound_nodes[node_index]
        inbound = tuple(visit(item, seen) for item in _node_inputs(node))
        if _is_model(layer):  # open nested models: their inputs are this node's inbound tensors
            inner = nested.setdefault(
                (id(layer), node_index), dict(zip((id(item) for item in _tensors(layer.inputs)), inbound, strict=True))
            )
            name = visit(_tensors(layer.outputs)[tensor_index], inner)
        elif type(layer).__name__ == "InputLayer":
            raise ModelError(f"Model {model.name!r} reads input {layer.name!r}, which is not one of its inputs.")
        else:
            if id(layer) in seen_layers:
                raise UnsupportedLayerError(
                    f"Layer {layer.name!r} is called more than once (a shared layer); DL4J and ganport's rebuild "
                    "need each layer once. Give each call its own layer."
                )
            name = layer.name
            while name in traced or name in (item.name for item in inputs):
                name += "_"  # a nested model may reuse an outer layer's name
            seen_layers.add(id(layer))
            traced[name] = TracedLayer(unwrapped(layer), name, inbound)  # a spectral normalization's own layer
        seen[id(tensor)] = name
        return name

    seen = {id(tensor): item.name for tensor, item in zip(_tensors(model.inputs), inputs, strict=True)}
    outputs = [visit(tensor, seen) for tensor in _tensors(model.outputs)]
    return inputs, list(traced.values()), outputs


def _tensors(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, list | tuple) else [value]


def _unsupported(layers: list[str]) -> str:
    plural = "s" if len(layers) > 1 else ""
    return f"Unsupported layer{plural} {', '.join(layers)}; supported: {', '.join(supported_layers())}."


def _is_supported(item: TracedLayer) -> bool:
    return kind_of(item.layer) in supported_layers()


def read_layer(traced: TracedLayer) -> LayerSpec:
    """One traced layer through its converter; an unsupported class or option raises UnsupportedLayerError."""
    kind = kind_of(traced.layer)
    if not _is_supported(traced):
        raise UnsupportedLayerError(_unsupported([f"{type(traced.layer).__name__} ({traced.layer.name})"]))
    entry = converter(kind)
    try:
        options = entry.read(traced.layer)
    except (TypeError, ValueError) as error:  # a hand-edited or damaged config: a value of the wrong kind
        raise refuse(traced.layer, f"has a setting ganport cannot read ({error}).") from error
    return LayerSpec(kind, traced.name, options, entry.weights(traced.layer), traced.inbound)


def read_graph(model: Any) -> Graph:
    """The model as a Graph; every unsupported layer is named in one error. A layer holding a Keras layer as its
    activation (Conv2D(..., activation=LeakyReLU(0.2))) becomes two: itself, linear, and that layer after it."""
    inputs, traced, outputs = trace(model)
    unsupported = sorted(
        {f"{type(item.layer).__name__} ({item.layer.name})" for item in traced if not _is_supported(item)}
    )
    if unsupported:
        raise UnsupportedLayerError(_unsupported(unsupported))
    specs: list[LayerSpec] = []
    renamed: dict[str, str] = {}  # a layer whose activation became a layer of its own -> that layer
    taken = {item.name for item in traced} | {item.name for item in inputs}
    for item in traced:
        spec = read_layer(replace(item, inbound=tuple(renamed.get(name, name) for name in item.inbound)))
        specs.append(spec)
        held = activation_layer(item.layer)
        if held is not None:
            name = unique_name(f"{item.name}_{kind_of(held).lower()}", taken)
            specs.append(read_layer(TracedLayer(held, name, (spec.name,))))
            renamed[item.name] = name
    return Graph(model.name, tuple(inputs), tuple(specs), tuple(renamed.get(name, name) for name in outputs))


def build(graph: Graph, module: ModuleType, target: str | None = None) -> Any:
    """The graph as a model of `module` (keras or tf_keras): a flat Sequential for a chain, else functional; for a
    `target` ("onnx"), each layer as that target's rule builds it where it names an equivalent it converts better."""

    def built(spec: LayerSpec) -> Any:
        entry = converter(spec.kind)
        own = entry.target(target).build if target is not None else None
        return (own or entry.build)(spec.options, spec.name, module)

    layers = {spec.name: built(spec) for spec in graph.layers}
    if graph.is_chain:
        (source,) = graph.inputs
        model = module.Sequential(name=graph.name)
        model.add(module.Input(shape=source.keras_shape(), name=source.name, dtype=source.dtype))
        for spec in graph.layers:
            model.add(layers[spec.name])
    else:
        tensors = {
            item.name: module.Input(shape=item.keras_shape(), name=item.name, dtype=item.dtype) for item in graph.inputs
        }
        for spec in graph.layers:
            arguments = [tensors[name] for name in spec.inbound]
            several = converter(spec.kind).merges or len(arguments) > 1  # a TensorFlow op may read several
            tensors[spec.name] = layers[spec.name](arguments if several else arguments[0])
        model = module.Model(
            [tensors[item.name] for item in graph.inputs], [tensors[name] for name in graph.outputs], name=graph.name
        )
    for spec in graph.layers:
        layers[spec.name].set_weights(spec.weights)
    return model


def float64_outputs(graph: Graph, inputs: list[np.ndarray], layers: tuple[str, ...] = ()) -> list[np.ndarray]:
    """The graph's outputs, then the named layers' outputs, computed in float64 by Keras 3 with the same weights:
    the truth that the deep-model parity rule measures float32 backends against (ganport.parity)."""
    import keras

    from ganport.keras_files.run import predict_all

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")  # each layer built now keeps float64 weights and computes in float64
    try:
        model = build(graph, keras)
    finally:
        keras.config.set_dtype_policy(previous)
    if layers:
        model = keras.Model(model.inputs, [*model.outputs, *(model.get_layer(name).output for name in layers)])
    return [np.asarray(output, np.float64) for output in predict_all(model, inputs)]
