"""What several converters read and build alike: activations (and whether DL4J maps them), data formats, sizes and
pairs, and Keras's own layers built from their options."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from ganport.export.layers.registry import Builder, kind_of, refuse

# Activations DL4J's Keras import maps to its own (KerasActivationUtils), under their Keras names.
DL4J_ACTIVATIONS = (
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "softmax",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "swish",
)
# Keras 3 renamed swish to silu; Keras 2 and DL4J know it as swish.
_KERAS2_ACTIVATION_NAMES = {"silu": "swish"}
# Activation layers a Keras layer may hold as its `activation` (Conv2D(..., activation=LeakyReLU(0.2))): the graph
# reader writes each as a layer of its own after the one holding it (graph.read_graph), which then reads "linear".
ACTIVATION_LAYERS = ("LeakyReLU", "ReLU", "ELU", "Softmax", "Activation")


def is_keras2(module: ModuleType) -> bool:
    return module.__name__.startswith("tf_keras")


def activation_layer(layer: Any) -> Any | None:
    """The Keras layer a layer holds as its activation, or None when its activation is a function."""
    import keras

    activation = getattr(layer, "activation", None)
    base = keras.layers.Layer
    if type(activation).__module__.startswith("tf_keras"):
        from ganport.keras_files.load import tf_keras

        base = tf_keras().layers.Layer
    return activation if isinstance(activation, base) else None


def activation_option(layer: Any) -> str:
    import keras

    held = activation_layer(layer)
    if held is not None:
        if kind_of(held) not in ACTIVATION_LAYERS or held.weights:
            raise refuse(
                layer,
                f"holds a {type(held).__name__} layer as its activation; ganport reads "
                f"{', '.join(ACTIVATION_LAYERS)} there. Apply it as a layer of its own after this one.",
            )
        return "linear"  # the held layer becomes a layer of its own (graph.read_graph)
    name = getattr(layer.activation, "__name__", str(layer.activation))
    try:
        keras.activations.get(name)
    except ValueError as error:
        raise refuse(layer, f"uses activation {name!r}, which is not a built-in Keras activation.") from error
    return name


def activation_problem(options: dict[str, Any]) -> str | None:
    name = options.get("activation", "linear")
    if _KERAS2_ACTIVATION_NAMES.get(name, name) not in DL4J_ACTIVATIONS:
        return f"activation {name!r} is not one DL4J imports ({', '.join(DL4J_ACTIVATIONS)})"
    return None


def keras_activation(options: dict[str, Any], module: ModuleType) -> dict[str, Any]:
    if "activation" in options and is_keras2(module):
        return {**options, "activation": _KERAS2_ACTIVATION_NAMES.get(options["activation"], options["activation"])}
    return options


def last_axis_only(layer: Any, axis_is: str) -> None:
    """Refuse a layer whose `axis` (an int, or a list: tf_keras keeps it in a ListWrapper) is not its input's last
    axis alone."""
    value = layer.axis
    axes = [int(axis) for axis in value] if isinstance(value, Iterable) else [int(value)]
    rank = len(layer.input.shape)
    if [axis % rank for axis in axes] != [rank - 1]:
        shown = axes[0] if len(axes) == 1 else axes
        raise refuse(layer, f"normalises axis {shown}; only the last ({axis_is}) axis is supported.")


def channels_last(layer: Any) -> None:
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format != "channels_last":
        raise refuse(
            layer,
            f"uses data_format={data_format!r}; ganport converts channels_last models only (DL4J's importer flips "
            "channels_first layers of TensorFlow models). Rebuild the model with channels_last.",
        )


def pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(side) for side in value)


def pairs(value: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """ZeroPadding2D / Cropping2D amounts in their most explicit form: ((top, bottom), (left, right))."""
    if isinstance(value, int):
        return ((value, value), (value, value))
    first, second = value
    as_pair = (lambda side: (int(side), int(side))) if isinstance(first, int) else (lambda side: tuple(map(int, side)))
    return (as_pair(first), as_pair(second))


def keras_layer(kind: str) -> Builder:
    """The builder of Keras's own `kind` layer from its options as read, in either Keras."""

    def build(options: dict[str, Any], name: str, module: ModuleType) -> Any:
        return getattr(module.layers, kind)(name=name, **keras_activation(options, module))

    return build
