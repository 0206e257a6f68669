"""Normalisation, embeddings and learned activations."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ganport.export.layers.reading import is_keras2, keras_layer, last_axis_only
from ganport.export.layers.registry import Converter, LayerSpec, TargetRule, pointwise, register, unique_name

if TYPE_CHECKING:
    from ganport.export.graph import Graph


def _read_batch_normalization(layer: Any) -> dict[str, Any]:
    last_axis_only(layer, "feature, channels_last")
    return {
        "momentum": float(layer.momentum),
        "epsilon": float(layer.epsilon),
        "center": bool(layer.center),
        "scale": bool(layer.scale),
    }


def _batch_normalization_weights(layer: Any) -> list[np.ndarray]:
    """gamma, beta, moving mean and variance (each that the layer has), without what renorm=True adds for training."""
    variables = [getattr(layer, name, None) for name in ("gamma", "beta", "moving_mean", "moving_variance")]
    return [np.asarray(variable) for variable in variables if variable is not None]


def _centered(graph: Graph) -> Graph:
    """Each BatchNormalization with center=False (DL4J's import crashes on it) as center=True with beta 0."""

    def rewritten(spec: LayerSpec) -> LayerSpec:
        if spec.kind != "BatchNormalization" or spec.options["center"]:
            return spec
        weights = list(spec.weights)
        weights.insert(1 if spec.options["scale"] else 0, np.zeros_like(weights[-1]))
        return replace(spec, options={**spec.options, "center": True}, weights=weights)

    return graph.with_layers([rewritten(spec) for spec in graph.layers])


def _read_embedding(layer: Any) -> dict[str, Any]:
    shape = layer.input.shape
    length = int(shape[1]) if len(shape) == 2 and shape[1] is not None else None
    return {"input_dim": int(layer.input_dim), "output_dim": int(layer.output_dim), "input_length": length}


def _embedding(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    # DL4J needs `input_length` and zeroes row 0 unless `mask_zero` is false; a mask never changes Keras's values,
    # so false is exact. Keras 3 has no `input_length`.
    keep = {"input_dim": options["input_dim"], "output_dim": options["output_dim"], "mask_zero": False}
    if is_keras2(module):
        keep["input_length"] = options["input_length"]
    return module.layers.Embedding(name=name, **keep)


register(
    "BatchNormalization",
    Converter(
        _read_batch_normalization,
        keras_layer("BatchNormalization"),
        weights=_batch_normalization_weights,
        dl4j=TargetRule(
            rewrite=_centered,
            required=lambda config: (
                config.get("center") is True
                and isinstance(config.get("momentum"), float)
                and isinstance(config.get("epsilon"), float)
            ),
            note="center=False written as True, beta 0",
        ),
    ),
)
register(
    "Embedding",
    Converter(
        _read_embedding,
        _embedding,
        dl4j=TargetRule(
            problem=lambda options: (
                None if options["input_length"] else "DL4J needs a fixed sequence length [batch, length]"
            ),
            required=lambda config: config.get("mask_zero") is False and isinstance(config.get("input_length"), int),
            note="input_length, mask_zero=false written",
        ),
    ),
)

# --- learned activations and normalisation over features ------------------------------------------------------------


def _read_prelu(layer: Any) -> dict[str, Any]:
    shared = layer.shared_axes
    rank = len(layer.input.shape)
    shared_axes = [] if shared is None else [int(axis) % rank for axis in shared]
    return {
        "shared_axes": None if shared is None else [int(axis) for axis in shared],
        # DL4J gets the rewrite (_prelu_as_relus) where one slope per channel is shared over every other axis
        "per_channel": rank == 2 or (rank == 4 and sorted(shared_axes) == [1, 2]),
    }


def _prelu(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    return module.layers.PReLU(name=name, shared_axes=options["shared_axes"])


def _prelu_problem(options: dict[str, Any]) -> str | None:
    if options["per_channel"]:
        return None
    # measured with DL4J 1.0.0-M2.1: its PReLU keeps the slopes of its initializer, not the file's (W stays 0)
    return (
        "DL4J 1.0.0-M2.1 does not load PReLU's slopes (they stay at their initializer); ganport writes it with "
        "layers DL4J reads where each channel has one slope (Dense outputs, or shared_axes=[1, 2])"
    )


def _prelu_as_relus(graph: Graph) -> Graph:
    """Each PReLU with one slope per channel as ReLU(x) + (-slopes) * ReLU(-x), from layers DL4J reads (DL4J
    1.0.0-M2.1 leaves PReLU's slopes at their initializer): -x and the scaling by the slopes as a Dense or 1x1 Conv2D
    with a diagonal kernel and no bias (products by one value and sums of zeros: the same numbers), then an Add
    under the PReLU's own name, which its readers read."""
    layers: list[LayerSpec] = []
    taken = set(graph.names())
    for spec in graph.layers:
        if spec.kind != "PReLU" or not spec.options.get("per_channel"):
            layers.append(spec)
            continue
        slopes = spec.weights[0].reshape(-1).astype(np.float32)
        image = spec.weights[0].ndim == 3

        def named(part: str, spec: LayerSpec = spec) -> str:
            return unique_name(f"{spec.name}_{part}", taken)

        positive, negated, negative, scaled = named("positive"), named("negated"), named("negative"), named("slopes")
        relu = {"activation": "relu"}
        layers += [
            LayerSpec("Activation", positive, relu, [], spec.inbound),
            pointwise(negated, spec.inbound[0], np.diag(-np.ones_like(slopes)), image),
            LayerSpec("Activation", negative, relu, [], (negated,)),
            pointwise(scaled, negative, np.diag(-slopes), image),
            LayerSpec("Add", spec.name, {}, [], (positive, scaled)),
        ]
    return graph.with_layers(layers)


def _read_layer_normalization(layer: Any) -> dict[str, Any]:
    last_axis_only(layer, "feature")
    options = {"axis": -1, "epsilon": float(layer.epsilon), "center": bool(layer.center), "scale": bool(layer.scale)}
    if getattr(layer, "rms_scaling", False):  # Keras 3 only: scaled by gamma alone (no beta), as Keras 3 computes it
        options["rms_scaling"] = True
    return options


register(
    "PReLU",
    Converter(
        _read_prelu,
        _prelu,
        dl4j=TargetRule(
            problem=_prelu_problem,
            rewrite=_prelu_as_relus,
            note="one slope per channel: ReLU(x) + slopes x ReLU(-x), in 1x1 layers",
        ),
    ),
)
register(
    "LayerNormalization",
    Converter(
        _read_layer_normalization,
        keras_layer("LayerNormalization"),
        dl4j=TargetRule(
            refused='DL4J 1.0.0-M2.1\'s Keras import has no LayerNormalization ("Unsupported keras layer type")'
        ),
        accumulation=lambda spec: spec.weights[0].shape[0] if spec.weights else 0,  # mean and variance over features
    ),
)


def _read_group_normalization(layer: Any) -> dict[str, Any]:
    last_axis_only(layer, "feature, channels_last")
    shape = layer.input.shape
    return {
        "groups": int(layer.groups),
        "axis": -1,
        "epsilon": float(layer.epsilon),
        "center": bool(layer.center),
        "scale": bool(layer.scale),
        # values one mean sums: the positions times the channels of one group
        "group_size": int(np.prod([side or 1 for side in shape[1:-1]])) * int(shape[-1]) // int(layer.groups),
    }


def _group_normalization(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    kept = {key: value for key, value in options.items() if key != "group_size"}
    return module.layers.GroupNormalization(name=name, **kept)


register(
    "GroupNormalization",
    Converter(
        _read_group_normalization,
        _group_normalization,
        dl4j=TargetRule(
            refused='DL4J 1.0.0-M2.1\'s Keras import has no GroupNormalization ("Unsupported keras layer type")'
        ),
        accumulation=lambda spec: spec.options["group_size"],
    ),
)


# --- keras-contrib and TensorFlow Addons normalisation, read without their libraries ----------------------------------


def _read_community_normalization(layer: Any) -> dict[str, Any]:
    return {
        "axis": layer.axis,
        "epsilon": float(layer.epsilon),
        "center": bool(layer.center),
        "scale": bool(layer.scale),
        "groups": layer.groups,
    }


def _community_normalization(options: dict[str, Any], name: str, module: ModuleType) -> Any:
    from ganport.keras_files.community import normalization_class

    return normalization_class(module)(name=name, **options)


def _community_problem(options: dict[str, Any]) -> str:
    library = (
        "keras-contrib's InstanceNormalization" if options.get("groups") is None else "TensorFlow Addons' normalization"
    )
    return f"{library}, which DL4J's Keras import does not have"


register(
    "CommunityNormalization",
    Converter(
        _read_community_normalization,
        _community_normalization,
        onnx=TargetRule(
            note="keras-contrib InstanceNormalization, TensorFlow Addons InstanceNormalization and "
            "GroupNormalization, read without their libraries"
        ),
        dl4j=TargetRule(
            refused="a keras-contrib or TensorFlow Addons layer, which DL4J's Keras import does not have",
            problem=_community_problem,
        ),
        keras=TargetRule(
            refused="a keras-contrib or TensorFlow Addons layer, which a .keras file cannot reload without its library"
        ),
    ),
)
