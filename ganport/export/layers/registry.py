"""The registry itself: one Converter per supported layer class, and what each export target makes of that layer.

A Converter reads a Keras 2 (tf_keras) or Keras 3 layer into framework-neutral options and builds it again in
either framework; its three TargetRules say, for ONNX, DL4J's Keras import and a Keras 3 file, whether the target takes
the layer, the rewrite (as code) that keeps its numbers there, the fields the written config must hold, and the note
the tables show. The layer modules beside this one register the converters; verdicts.py renders every answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ganport.errors import UnsupportedLayerError

if TYPE_CHECKING:
    from ganport.export.graph import Graph


@dataclass(frozen=True)
class LayerSpec:
    """One layer, independent of the Keras version that made it; `inbound` names the layers (or inputs) it reads."""

    kind: str
    name: str
    options: dict[str, Any]
    weights: list[np.ndarray]
    inbound: tuple[str, ...] = ()


# (options, layer name, keras or tf_keras) -> a layer
Builder = Callable[[dict[str, Any], str, ModuleType], Any]


@dataclass(frozen=True)
class TargetRule:
    """What one export target makes of a layer class."""

    # Why the target never takes this layer class ("" when it does); `problem` may then say it for one layer.
    refused: str = ""
    # Why the target cannot take a layer with these options with the same numbers; None when it can.
    problem: Callable[[dict[str, Any]], str | None] | None = None
    # The graph with this class's layers rewritten so that the target computes the same numbers (layers of other
    # classes and every name the graph had are kept, but for a layer merged into its only reader, so rewrites of
    # different classes can run in any order).
    rewrite: Callable[[Graph], Graph] | None = None
    # Whether a written layer's config holds every field the target reads without a default of its own.
    required: Callable[[dict[str, Any]], bool] | None = None
    # What the tables add: how the target gets the layer, in words.
    note: str = ""
    # The layer the target is built with, in place of the converter's (an equivalent it converts better).
    build: Builder | None = None

    def verdict(self, options: dict[str, Any]) -> str | None:
        """Why the target cannot take a layer with these options, or None when it can."""
        detail = self.problem(options) if self.problem is not None else None
        return detail or self.refused or None


@dataclass(frozen=True)
class Converter:
    read: Callable[[Any], dict[str, Any]]
    build: Builder
    onnx: TargetRule = TargetRule()
    dl4j: TargetRule = TargetRule()
    keras: TargetRule = TargetRule()  # a .keras file holding the layer by itself
    merges: bool = False  # takes a list of tensors (Add, Multiply, Concatenate)
    # How many products one output value sums (ganport.parity's tolerance follows it); 0 for layers that sum nothing.
    accumulation: Callable[[LayerSpec], int] = field(default=lambda spec: 0)
    # The arrays inference reads, in the order the built layer takes them: all its weights unless said otherwise.
    weights: Callable[[Any], list[np.ndarray]] = field(
        default=lambda layer: [np.asarray(weight) for weight in layer.get_weights()]
    )

    def target(self, name: str) -> TargetRule:
        return {"onnx": self.onnx, "dl4j": self.dl4j, "keras": self.keras}[name]


_CONVERTERS: dict[str, Converter] = {}
# Layers whose class comes from outside Keras (a --custom-objects module): rebuilt from their own config.
CUSTOM = "custom layer"


def register(kind: str, converter: Converter) -> None:
    """Register the converter for one layer class; a second registration for the same class is an error."""
    if kind in _CONVERTERS:
        raise ValueError(f"A converter for {kind} is already registered.")
    _CONVERTERS[kind] = converter


def converter(kind: str) -> Converter:
    return _CONVERTERS[kind]


def supported_layers() -> list[str]:
    return sorted(_CONVERTERS)


def kind_of(layer: Any) -> str:
    """The registry entry for a layer: its class name, the kind of a community layer ganport reads
    (keras_files/community.py), or CUSTOM for a class defined outside Keras."""
    module = type(layer).__module__
    if module.startswith(("keras.", "tf_keras.")):
        return type(layer).__name__
    return getattr(type(layer), "ganport_kind", CUSTOM)


def refuse(layer: Any, reason: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(f"{type(layer).__name__} {layer.name!r} {reason}")


def unique_name(wanted: str, taken: set[str]) -> str:
    """`wanted`, or it with underscores appended until no name in `taken` has it; the name is then taken."""
    while wanted in taken:
        wanted += "_"
    taken.add(wanted)
    return wanted


def pointwise(
    name: str, inbound: str, kernel: np.ndarray, image: bool, activation: str = "linear", *bias: np.ndarray
) -> LayerSpec:
    """A layer computing `kernel` [inputs, outputs] at each position: a 1x1 Conv2D on images, a Dense otherwise;
    with `bias` when given. The rewrites build what DL4J reads from it."""
    kernel = np.asarray(kernel, np.float32)
    common = {"activation": activation, "use_bias": bool(bias)}
    if not image:
        options = {"units": kernel.shape[1], **common, "input_rank": 2}
        return LayerSpec("Dense", name, options, [kernel, *bias], (inbound,))
    options = {
        "filters": kernel.shape[1],
        "kernel_size": (1, 1),
        "strides": (1, 1),
        "padding": "valid",
        "dilation_rate": (1, 1),
        **common,
    }
    return LayerSpec("Conv2D", name, options, [kernel.reshape(1, 1, *kernel.shape), *bias], (inbound,))
