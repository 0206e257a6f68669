"""The models an export starts from: a run folder's generator and discriminator, or one model file, with roles.

Inputs and outputs get the names every export uses: `z` (noise) or `image` (a critic's input), `label` for a
conditional model's class input, and `image` / `validity` (+ `class_probabilities`) for outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import ganport
from ganport.contract import (
    CLASS_OUTPUT,
    CLASSES,
    DISCRIMINATOR,
    GENERATOR,
    LABEL_INPUT,
    Role,
    describe,
    role_from_shapes,
)
from ganport.errors import ModelError, UsageError
from ganport.export.graph import Graph, InputSpec, build, read_graph
from ganport.loading import load_as, load_model_file, predict_all
from ganport.parity import REFERENCE_BATCH, REFERENCE_SEED, reference_noise
from ganport.run import RunFolder


@dataclass(frozen=True)
class SourceModel:
    """A loaded model (Keras 3, or Keras 2 for files Keras 3 cannot read) and its neutral graph, inputs renamed."""

    role: Role
    keras_model: Any  # the model exactly as loaded: exports are compared with it
    graph: Graph
    output_names: tuple[str, ...]
    stem: str
    origin: Path
    iterations: int | None = None

    @property
    def input_names(self) -> list[str]:
        return [item.name for item in self.graph.inputs]

    @property
    def main_input(self) -> InputSpec:
        """The noise (generator) or image (discriminator) input."""
        return next(item for item in self.graph.inputs if item.name == self.role.input_name)

    @property
    def conditional(self) -> bool:
        return LABEL_INPUT in self.input_names

    @property
    def classes(self) -> int:
        """How many labels a conditional model takes: the input size of the first Embedding reading `label`."""
        embedding = next(
            (spec for spec in self.graph.layers if spec.kind == "Embedding" and LABEL_INPUT in spec.inbound), None
        )
        return CLASSES if embedding is None else int(embedding.options["input_dim"])

    def build(self, module: ModuleType) -> Any:
        """This model rebuilt in keras (Keras 3) or tf_keras (Keras 2): a flat Sequential when it is a chain."""
        return build(self.graph, module)


def _label_inputs(graph: Graph) -> list[InputSpec]:
    """Integer inputs, and inputs read only by Embeddings: class labels."""
    readers = graph.consumers()
    kinds = {spec.name: spec.kind for spec in graph.layers}
    return [
        item
        for item in graph.inputs
        if item.is_integer or (readers[item.name] and all(kinds.get(n) == "Embedding" for n in readers[item.name]))
    ]


def source_model(model: Any, stem: str, origin: Path, iterations: int | None = None) -> SourceModel:
    """Read `model` into a graph, find its role from the shapes of its main input and first output, name its ends."""
    graph = read_graph(model)
    labels = _label_inputs(graph)
    mains = [item for item in graph.inputs if item not in labels]
    output_shapes = [list(tensor.shape) for tensor in model.outputs]
    received = ", ".join(f"{item.name} {[None, *item.shape]} {item.dtype}" for item in graph.inputs)
    if len(mains) != 1 or len(labels) > 1:
        raise ModelError(
            f"Model {model.name!r} has inputs {received}; ganport exports models with one noise or image input "
            "and at most one integer class label (read by an Embedding)."
        )
    (main,) = mains
    role = role_from_shapes([None, *main.shape], output_shapes[0])
    if role is None:
        raise ModelError(
            f"Model {model.name!r} maps {describe([None, *main.shape], output_shapes[0])}; expected a generator "
            "[batch, latent] -> images or a discriminator images -> [batch, 1] (with a class label if conditional)."
        )
    extra = len(graph.outputs) - 1
    if role is GENERATOR and extra:
        raise ModelError(f"Generator {model.name!r} has {extra + 1} outputs; a generator gives images only.")
    output_names = (role.output_name, *([CLASS_OUTPUT] if extra == 1 else [f"output_{i}" for i in range(1, extra + 1)]))
    names = {main.name: role.input_name, **{item.name: LABEL_INPUT for item in labels}}
    return SourceModel(role, model, graph.renamed(names), output_names, stem, origin, iterations)


def load_sources(
    source: str | Path, weights: Path | None = None, log: Callable[[str], None] | None = None
) -> list[SourceModel]:
    """A run folder gives its generator and discriminator, each checked for its role; a model file gives itself (an
    architecture .json with `weights`, or with the weights file found beside it)."""
    path = Path(source)
    if path.is_dir():
        if weights is not None:
            raise UsageError(f"--weights goes with an architecture .json; {path} is a run folder. Drop --weights.")
        run = RunFolder(path)
        if not run.generator.is_file():
            raise ModelError(
                f"{path} is not a ganport run folder (no {run.generator.name}); "
                "pass a run folder written by `ganport train` or a model file."
            )
        iterations = run.read_state().get("iteration")
        return [
            source_model(load_as(file, role), file.stem, file, iterations)
            for file, role in ((run.generator, GENERATOR), (run.discriminator, DISCRIMINATOR))
        ]
    return [source_model(load_model_file(path, weights, log), path.stem, path)]


def reference_inputs(sources: list[SourceModel]) -> dict[str, dict[str, np.ndarray]]:
    """Fixed inputs per role, by input name: seeded noise for a generator; its images (or seeded uniform pixels)
    for a critic; labels 0, 1, 2, ... cycling through the classes for conditional models."""
    inputs: dict[str, dict[str, np.ndarray]] = {}
    generator = next((source for source in sources if source.role is GENERATOR), None)
    for source in sorted(sources, key=lambda item: item.role is not GENERATOR):
        arrays: dict[str, np.ndarray] = {}
        for item in source.graph.inputs:
            if item.name == LABEL_INPUT:
                labels = np.arange(REFERENCE_BATCH) % source.classes
                arrays[item.name] = labels.reshape(-1, *item.shape).astype(item.dtype)
            elif source.role is GENERATOR:
                arrays[item.name] = reference_noise(item.shape[-1])
            elif generator is not None:
                arrays[item.name] = predict_all(generator.keras_model, list(inputs[GENERATOR.name].values()))[0]
            else:
                rng = np.random.default_rng(REFERENCE_SEED)
                arrays[item.name] = rng.uniform(-1, 1, (REFERENCE_BATCH, *item.shape)).astype(np.float32)
        inputs[source.role.name] = arrays
    return inputs


def export_metadata(source: SourceModel) -> dict[str, str]:
    return {
        "producer": "ganport",
        "ganport_version": ganport.__version__,
        "role": source.role.name,
        "latent_dim": str(source.main_input.shape[-1]) if source.role is GENERATOR else "",
        "classes": str(source.classes) if source.conditional else "",
        "iterations": "" if source.iterations is None else str(source.iterations),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
