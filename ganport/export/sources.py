"""The models an export starts from: a run folder's generator and discriminator, or one model file, with roles.

Inputs and outputs get the names every export uses: `z` (noise) or `image` (a critic's input), `label` for a
conditional model's class input, and `image` / `validity` (+ `class_probabilities`) for outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import ganport
from ganport.budget import require_within_budget, rows_within_budget
from ganport.contract import (
    CLASS_OUTPUT,
    CLASSES,
    DISCRIMINATOR,
    GENERATOR,
    LABEL_INPUT,
    MODEL,
    ROLES,
    SCORES_OUTPUT,
    Role,
    role_from_shapes,
)
from ganport.errors import ModelError, UsageError
from ganport.export.graph import DYNAMIC, Graph, InputSpec, build, read_graph
from ganport.keras_files.load import LoadOptions, is_saved_model, load_as, load_model_file
from ganport.keras_files.run import predict_all, sample_bytes
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
        """The noise (generator) or image (discriminator) input: the first that is not a class label."""
        labels = _label_inputs(self.graph)
        return next(item for item in self.graph.inputs if item not in labels)

    @property
    def conditional(self) -> bool:
        return bool(_label_inputs(self.graph))

    @property
    def classes(self) -> int:
        """How many labels a conditional model takes: the input size of the first Embedding reading a label."""
        labels = {item.name for item in _label_inputs(self.graph)}
        embedding = next(
            (spec for spec in self.graph.layers if spec.kind == "Embedding" and labels & set(spec.inbound)), None
        )
        return CLASSES if embedding is None else int(embedding.options["input_dim"])

    def build(self, module: ModuleType) -> Any:
        """This model rebuilt in keras (Keras 3) or tf_keras (Keras 2): a flat Sequential when it is a chain."""
        return build(self.graph, module)


def _label_inputs(graph: Graph) -> list[InputSpec]:
    """Integer inputs of one value per sample, and inputs read only by Embeddings: class labels."""
    readers = graph.consumers()
    kinds = {spec.name: spec.kind for spec in graph.layers}
    return [
        item
        for item in graph.inputs
        if (item.is_integer and math.prod(item.shape) == 1)
        or (readers[item.name] and all(kinds.get(n) == "Embedding" for n in readers[item.name]))
    ]


def _refuse_integer_data(graph: Graph, labels: list[InputSpec]) -> None:
    """Integer inputs that are not labels (uint8 pixels, say): the checks feed integers only as class labels."""
    for item in graph.inputs:
        if item.is_integer and item not in labels:
            raise ModelError(
                f"Input {item.name!r} takes {item.dtype} values of shape {item.keras_shape()}; ganport reads integer "
                "inputs only as class labels (one per sample). Give the model a float32 input (a Rescaling layer "
                "after it keeps the pixel scale)."
            )


def source_model(model: Any, stem: str, origin: Path, iterations: int | None = None) -> SourceModel:
    """Read `model` into a graph and describe its role from the shapes of its main input and first output. A
    generator's and a discriminator's ends get ganport's names (z, label, image, validity, class_probabilities);
    any other model keeps its own."""
    graph = read_graph(model)
    labels = _label_inputs(graph)
    _refuse_integer_data(graph, labels)
    mains = [item for item in graph.inputs if item not in labels]
    output_shapes = [list(tensor.shape) for tensor in model.outputs]
    role = MODEL
    if len(mains) == 1 and len(labels) <= 1:
        role = role_from_shapes([None, *mains[0].shape], output_shapes[0])
    extra = len(graph.outputs) - 1
    if role is GENERATOR and extra:  # images and something else: not a plain generator
        role = MODEL
    if role not in ROLES:
        return SourceModel(role, model, graph, tuple(graph.outputs), stem, origin, iterations)
    first = role.output_name if role is GENERATOR or output_shapes[0][1:] == [1] else SCORES_OUTPUT
    output_names = (first, *([CLASS_OUTPUT] if extra == 1 else [f"output_{i}" for i in range(1, extra + 1)]))
    names = {mains[0].name: role.input_name, **{item.name: LABEL_INPUT for item in labels}}
    return SourceModel(role, model, graph.renamed(names), output_names, stem, origin, iterations)


def load_sources(
    source: str | Path, load: LoadOptions | None = None, log: Callable[[str], None] | None = None
) -> list[SourceModel]:
    """A run folder gives its generator and discriminator, each checked for its role; a model file gives itself (an
    architecture .json with `load.weights`, or with the weights file found beside it; `load` also names the user's
    custom objects and whether the file's Python code may run)."""
    load = load or LoadOptions()
    path = Path(source)
    if path.is_dir() and not is_saved_model(path):
        if load.weights is not None:
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
    return [source_model(load_model_file(path, load, log), path.stem, path)]


# Copies of every activation an export holds at once at worst: Keras's outputs of each layer, the test-vector
# arrays, their compressed file in memory, and the reload that checks it.
ACTIVATION_COPIES = 4


# The sizes of a model's dynamic axes (a fully convolutional model's height and width) that its exports are checked
# at where --input-shape does not say: two of them, so that a file that fixed one size by mistake shows; multiples of
# 16, which models that halve their resolution four times take.
CHECK_SIDE, OTHER_SIDES = 64, (96, 80)


def check_sizes(sources: list[SourceModel], given: tuple[int, ...] | None) -> list[tuple[int, ...] | None]:
    """The sizes the fixed inputs give the sources' dynamic axes: `given` (--input-shape), else ganport's two; [None]
    when no input has one."""
    counts = {item.shape.count(DYNAMIC) for source in sources for item in source.graph.inputs if item.dynamic}
    if not counts:
        if given is not None:
            raise UsageError(
                f"--input-shape sizes the dynamic axes of a model's inputs; {sources[0].origin} has none "
                "(its input sizes are fixed). Drop --input-shape."
            )
        return [None]
    if len(counts) > 1 or (given is not None and len(given) != next(iter(counts))):
        shapes = ", ".join(f"{item.name} {[None, *item.keras_shape()]}" for item in sources[0].graph.inputs)
        raise UsageError(f"--input-shape gives one size per dynamic axis of the inputs ({shapes}). Received: {given}")
    count = next(iter(counts))
    if given is not None:
        return [given]
    return [(CHECK_SIDE,) * count, tuple(OTHER_SIDES[index % len(OTHER_SIDES)] for index in range(count))]


def sized(source: SourceModel, sizes: tuple[int, ...] | None) -> SourceModel:
    """`source` with its inputs' dynamic axes given `sizes` (its Keras model unchanged: it takes any)."""
    return source if sizes is None or not source.graph.dynamic else replace(source, graph=source.graph.sized(sizes))


# How many inputs static int8 quantization calibrates activation ranges on, and the first of their batches' seeds.
CALIBRATION_SAMPLES = 256
CALIBRATION_SEED = REFERENCE_SEED + 1


def reference_batch(sources: list[SourceModel]) -> int:
    """How many samples the fixed inputs hold: REFERENCE_BATCH, or fewer when each sample is large (a 256x256
    image-to-image model), so that an export stays within the memory budget; refused when one sample does not fit.
    A model of dynamic size is measured at the size it is checked at (sources sized)."""
    sizes = [found for source in sources if (found := sample_bytes(_measurable(source))) is not None]
    largest = max((size.activations * ACTIVATION_COPIES + size.workspace for size in sizes), default=0)
    require_within_budget(
        f"Checking one sample of {sources[0].origin} (its layers' activations, as the DL4J test vectors keep them, "
        "and its largest convolution's workspace)",
        largest,
        "export on a machine with more memory, or raise GANPORT_MEMORY_BUDGET.",
    )
    return rows_within_budget(largest, REFERENCE_BATCH)


def _measurable(source: SourceModel) -> Any:
    """A model whose tensors hold one sample's sizes: the Keras model, or where it takes any size (a fully
    convolutional one), its graph built again at the size it is checked at."""
    dynamic = any(side is None for tensor in source.keras_model.inputs for side in list(tensor.shape)[1:])
    return build(source.graph, keras) if dynamic and not source.graph.dynamic else source.keras_model


def reference_inputs(sources: list[SourceModel], seed: int = REFERENCE_SEED) -> dict[str, dict[str, np.ndarray]]:
    """Fixed inputs per role, by input name: seeded noise for a generator; its images (or seeded uniform values in
    [-1, 1]) for a critic and any other model; labels 0, 1, 2, ... cycling through the classes for conditional
    models. reference_batch says how many. Sources of dynamic size must be sized first (`sized`)."""
    if any(source.graph.dynamic for source in sources):
        raise ValueError("reference_inputs needs sized sources: their inputs' dynamic axes given sizes")
    batch = reference_batch(sources)
    inputs: dict[str, dict[str, np.ndarray]] = {}
    generator = next((source for source in sources if source.role is GENERATOR), None)
    for source in sorted(sources, key=lambda item: item.role is not GENERATOR):
        arrays: dict[str, np.ndarray] = {}
        labels = _label_inputs(source.graph)
        for item in source.graph.inputs:
            if item in labels:
                cycled = np.arange(batch * math.prod(item.shape)) % source.classes  # a sequence: labels in turn
                arrays[item.name] = cycled.reshape(-1, *item.shape).astype(item.dtype)
            elif source.role is GENERATOR:
                arrays[item.name] = reference_noise(item.shape[-1], batch, seed)
            elif generator is not None:
                arrays[item.name] = predict_all(generator.keras_model, list(inputs[GENERATOR.name].values()))[0]
            else:
                rng = np.random.default_rng(seed)
                arrays[item.name] = rng.uniform(-1, 1, (batch, *item.shape)).astype(np.float32)
        inputs[source.role.name] = arrays
    return inputs


def calibration_inputs(sources: list[SourceModel]) -> dict[str, list[dict[str, np.ndarray]]]:
    """What each role's model meets in use, for static quantization to calibrate on: batches of inputs made the way
    reference_inputs makes them (noise for a generator, the generator's images or uniform values for a critic,
    labels over every class), CALIBRATION_SAMPLES in all, from other seeds than the reference inputs', which then
    check the quantized model on inputs it was not calibrated on."""
    batch = reference_batch(sources)
    batches = [
        reference_inputs(sources, CALIBRATION_SEED + offset) for offset in range(-(-CALIBRATION_SAMPLES // batch))
    ]
    return {source.role.name: [inputs[source.role.name] for inputs in batches] for source in sources}


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
