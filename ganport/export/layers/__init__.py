"""The layer registry: one converter per supported layer class (registry.py), with what ONNX, DL4J and a Keras 3 file
make of it; the layer modules register them, verdicts.py renders every answer, dl4j.py gives the graph DL4J imports."""

from ganport.export.layers import convolution, core, foreign, normalization  # noqa: F401 - each registers its layers
from ganport.export.layers.reading import ACTIVATION_LAYERS, DL4J_ACTIVATIONS, activation_layer
from ganport.export.layers.registry import (
    CUSTOM,
    Builder,
    Converter,
    LayerSpec,
    TargetRule,
    converter,
    kind_of,
    refuse,
    register,
    supported_layers,
    unique_name,
)

__all__ = [
    "ACTIVATION_LAYERS",
    "CUSTOM",
    "DL4J_ACTIVATIONS",
    "Builder",
    "Converter",
    "LayerSpec",
    "TargetRule",
    "activation_layer",
    "converter",
    "kind_of",
    "refuse",
    "register",
    "supported_layers",
    "unique_name",
]
