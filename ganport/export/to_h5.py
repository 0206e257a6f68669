"""DL4J-importable HDF5: a flat Keras 2 Sequential or functional model written with tf_keras, plus test vectors.

DL4J 1.0.0-M2.1 refuses Keras 3 files and nested models, and fails on TF2 optimizer configs, so the model is
rebuilt layer by layer through the registry (a chain as a Sequential, which DL4J imports as a MultiLayerNetwork; a
graph as a functional Model, a ComputationGraph) and saved without its optimizer.

HDF5 files are built in memory and written with plain file I/O: the HDF5 library defers writes to when objects
are closed, where a full disk becomes "Exception ignored" warnings, a file with zeroed datasets and a crash at exit.
Written bytes are then read back and checked before the file is renamed into place.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ganport.errors import OutputError, UnsupportedLayerError
from ganport.export.graph import Graph, InputSpec, build, unique_name
from ganport.export.job import ExportedFile, Job
from ganport.export.layers import LayerSpec, converter
from ganport.export.sources import SourceModel
from ganport.export.vectors import (
    ACTIVATIONS,
    PARITY,
    PROVENANCE,
    TEST_VECTORS_SUFFIX,
    WEIGHTS,
    hdf5_bytes,
    parity_record,
    save_test_vectors,
    vector_arrays,
    weight_digests,
)
from ganport.files import atomic_path
from ganport.host import provenance
from ganport.keras_files.load import FLATTENED_OUTPUTS, load_keras2, tf_keras
from ganport.keras_files.run import framework_versions, predict_all


def _inputs_first(config: dict) -> dict:
    """A functional config with its InputLayers first, in `input_layers` order: DL4J pairs the input names with the
    input types in the order the layers list holds them (tf_keras lists them by depth, so a label input can come
    first), and would give an image input the label's shape."""
    if config["class_name"] == "Sequential":
        return config
    layers = config["config"]["layers"]
    by_name = {layer["config"]["name"]: layer for layer in layers}
    inputs = [by_name[name] for name, *_ in config["config"]["input_layers"]]
    config["config"]["layers"] = inputs + [layer for layer in layers if layer not in inputs]
    return config


def save_model(model_keras2: Any, path: Path, flattened: dict[str, list[int]] | None = None) -> Path:
    """Write `model_keras2` as Keras 2 HDF5 (no optimizer) to `path` through memory; `flattened` names the outputs
    written flat for DL4J with their image shapes, so that ganport's loader restores them (FLATTENED_OUTPUTS)."""

    def fill(archive: h5py.File) -> None:
        tensorflow_logger = logging.getLogger("tensorflow")
        level = tensorflow_logger.level
        with warnings.catch_warnings():
            # HDF5 is "legacy" to Keras, but it is the format DL4J reads; and an uncompiled model has no metrics to
            # build. Both warnings are expected here.
            warnings.filterwarnings("ignore", message=".*HDF5 file.*", category=UserWarning)
            tensorflow_logger.setLevel(logging.ERROR)
            try:
                model_keras2.save(archive, save_format="h5", include_optimizer=False)
            finally:
                tensorflow_logger.setLevel(level)
        written = archive.attrs["model_config"]
        reordered = json.dumps(_inputs_first(json.loads(written)))
        archive.attrs["model_config"] = reordered if isinstance(written, str) else np.bytes_(reordered)
        if flattened:
            archive.attrs[FLATTENED_OUTPUTS] = np.bytes_(json.dumps(flattened))

    path.write_bytes(hdf5_bytes(fill))
    return path


def dl4j_graph(item: SourceModel, input_sizes: tuple[int, ...] | None = None) -> Graph:
    """The graph DL4J will import with the same numbers: every layer DL4J would misread refused in one error, and
    the rewrites that keep the numbers applied (dl4j_form). DL4J needs every input size: a model of dynamic size is
    written at `input_sizes` (--input-shape)."""
    graph = item.graph.sized(input_sizes) if input_sizes is not None and item.graph.dynamic else item.graph
    problems = [f"{kind} ({name}): {problem}" for name, (kind, problem) in dl4j_problems(graph).items()]
    problems += dl4j_input_problems(graph.inputs)
    if problems:
        raise UnsupportedLayerError(
            f"{item.origin} cannot be written for DL4J 1.0.0-M2.1 without changing its numbers: {'; '.join(problems)}. "
            "Export it to ONNX (DL4J users can run that with ONNX Runtime for Java), or change these layers."
        )
    return dl4j_form(graph)


def dl4j_form(graph: Graph) -> Graph:
    """The graph as the h5 format writes it for DL4J: rewritten (_rewritten), and trailing Reshapes DL4J cannot
    import written flat."""
    return _without_trailing_reshapes(_rewritten(graph))


def _rewritten(graph: Graph) -> Graph:
    """The graph with each rewrite that keeps its numbers for DL4J: Keras's leaky_relu activation (DL4J maps no such
    name) as a LeakyReLU layer with Keras's slope; a Dense on [batch, H, W, C] (DL4J's Dense reads a flattened
    input) as the 1x1 Conv2D that does the same products; BatchNorm center=False as center=True with beta 0."""
    graph = _prelu_as_relus(_nhwc_before_upsampling(_leaky_relu_layers(graph)))
    return graph.with_layers([_centered(_dense_as_convolution(spec)) for spec in graph.layers])


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
            _pointwise(negated, spec.inbound[0], np.diag(-np.ones_like(slopes)), image),
            LayerSpec("Activation", negative, relu, [], (negated,)),
            _pointwise(scaled, negative, np.diag(-slopes), image),
            LayerSpec("Add", spec.name, {}, [], (positive, scaled)),
        ]
    return graph.with_layers(layers)


def _nhwc_before_upsampling(graph: Graph) -> Graph:
    """An UpSampling2D that reads a model input directly, after a 1x1 Conv2D with an identity kernel (x * 1 + 0:
    the same numbers): DL4J 1.0.0-M2.1 reads such an input channels-first ("Invalid input ... expected
    [minibatch, inputHeight=8, inputWidth=6, numChannels=4]" for a 4x3x3 image; tests/test_dl4j_claims.py), and
    an image after a convolution channels-last."""
    inputs = {item.name: item for item in graph.inputs}
    layers: list[LayerSpec] = []
    taken = set(graph.names())
    for spec in graph.layers:
        if spec.kind == "UpSampling2D" and spec.inbound[0] in inputs:
            channels = inputs[spec.inbound[0]].shape[-1]
            name = unique_name(f"{spec.name}_nhwc", taken)
            layers.append(_pointwise(name, spec.inbound[0], np.eye(channels), image=True))
            spec = replace(spec, inbound=(name,))
        layers.append(spec)
    return graph.with_layers(layers)


def dl4j_problems(graph: Graph) -> dict[str, tuple[str, str]]:
    """Layer name -> (class, why DL4J would import it with other numbers), for the graph as the h5 format writes it:
    the one verdict that export and inspect give."""
    return {
        spec.name: (spec.kind, problem)
        for spec in dl4j_form(graph).layers
        if (problem := converter(spec.kind).dl4j_problem(spec.options)) is not None
    }


# Keras's `leaky_relu` activation function: negative_slope 0.2 in Keras 3, tf.nn.leaky_relu's alpha 0.2 in tf.keras.
LEAKY_RELU_SLOPE = 0.2


def _leaky_relu_layers(graph: Graph) -> Graph:
    """Each activation="leaky_relu" as a LeakyReLU layer: an Activation layer becomes one, and any other layer
    computes linearly and is followed by one, which its readers then read."""
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


def _dense_as_convolution(spec: LayerSpec) -> LayerSpec:
    """A Dense on [batch, H, W, C] as Conv2D(units, 1x1): its kernel [C, units] as [1, 1, C, units]."""
    if spec.kind != "Dense" or spec.options.get("input_rank") != 4:
        return spec
    kernel, *bias = spec.weights
    return _pointwise(spec.name, spec.inbound[0], kernel, True, spec.options["activation"], *bias)


def _pointwise(
    name: str, inbound: str, kernel: np.ndarray, image: bool, activation: str = "linear", *bias: np.ndarray
) -> LayerSpec:
    """A layer computing `kernel` [inputs, outputs] at each position: a 1x1 Conv2D on images, a Dense otherwise;
    with `bias` when given."""
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


def _without_trailing_reshapes(graph: Graph) -> Graph:
    trailing = {reshape.name: read for read, reshape in _trailing_reshapes(graph).items()}
    if not trailing:
        return graph
    kept = [spec for spec in graph.layers if spec.name not in trailing]
    return replace(graph, layers=tuple(kept), outputs=tuple(trailing.get(name, name) for name in graph.outputs))


def dl4j_input_problems(inputs: Sequence[InputSpec]) -> list[str]:
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


def _centered(spec: LayerSpec) -> LayerSpec:
    if spec.kind != "BatchNormalization" or spec.options["center"]:
        return spec
    weights = list(spec.weights)
    weights.insert(1 if spec.options["scale"] else 0, np.zeros_like(weights[-1]))
    return replace(spec, options={**spec.options, "center": True}, weights=weights)


# Fields DL4J reads without a default it would silently apply (../shared/research/dl4j-conv-and-graph-import.md).
_REQUIRED_FIELDS = {
    "LeakyReLU": lambda config: isinstance(config.get("alpha"), float),
    "Embedding": lambda config: config.get("mask_zero") is False and isinstance(config.get("input_length"), int),
    "Conv2DTranspose": lambda config: config.get("output_padding") is None,
    "BatchNormalization": lambda config: (
        config.get("center") is True
        and isinstance(config.get("momentum"), float)
        and isinstance(config.get("epsilon"), float)
    ),
    "UpSampling2D": lambda config: config.get("interpolation") == "nearest" and isinstance(config.get("size"), list),
    "InputLayer": lambda config: "batch_input_shape" in config,
}


def check_dl4j_config(path: Path) -> None:
    """Read the written model's config as DL4J will, and refuse it if a field DL4J needs is missing or wrong."""
    with h5py.File(path, "r") as archive:
        version = archive.attrs.get("keras_version")
        config = json.loads(archive.attrs["model_config"])
    problems = [] if str(version).startswith("2") else [f"keras_version {version!r} (DL4J needs 2.x)"]
    for layer in config["config"]["layers"]:
        kind, fields = layer["class_name"], layer["config"]
        if kind in ("Sequential", "Functional", "Model"):
            problems.append(f"{fields.get('name')}: a nested model")
        elif fields.get("data_format", "channels_last") != "channels_last":
            problems.append(f"{fields['name']}: data_format {fields['data_format']}")
        elif kind in _REQUIRED_FIELDS and not _REQUIRED_FIELDS[kind](fields):
            problems.append(f"{fields['name']}: {kind} config {json.dumps(fields)[:200]}")
    if problems:
        raise OutputError(f"cannot write {path} for DL4J: {'; '.join(problems)} (a ganport bug: please report it).")


def test_vector_arrays(
    model_keras2: Any, item: SourceModel, inputs: dict[str, np.ndarray], predictions: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """Dataset path -> array: the inputs, the Keras predictions and every layer's activations."""
    layers = [layer for layer in model_keras2.layers if type(layer).__name__ != "InputLayer"]
    probe = tf_keras().Model(model_keras2.inputs, [layer.output for layer in layers])
    activations = predict_all(probe, list(inputs.values()))
    arrays = vector_arrays(inputs, item.output_names, predictions)
    for layer, activation in zip(layers, activations, strict=True):
        arrays[f"{ACTIVATIONS}/{layer.name}"] = np.asarray(activation, np.float32)
    return arrays


def write(job: Job) -> ExportedFile:
    """The "h5" format: the model file, checked for DL4J's fields, reloaded and compared, and its test vectors,
    read back and checked."""
    item, target = job.item, job.target
    rebuilt = build(dl4j_graph(item, job.options.input_sizes), tf_keras())
    vectors = target.with_name(target.stem + TEST_VECTORS_SUFFIX)
    with atomic_path(target) as model_file, atomic_path(vectors) as vectors_file:
        trailing = _trailing_reshapes(_rewritten(item.graph))
        flattened = {read: list(spec.options["target_shape"]) for read, spec in trailing.items()}
        save_model(rebuilt, model_file, flattened)
        check_dl4j_config(model_file)
        reloaded = load_keras2(model_file)
        comparison = job.compare("tf_keras h5", predict_all(reloaded, job.input_list))
        arrays = test_vector_arrays(reloaded, item, job.inputs, job.reference)
        records = {
            PARITY: parity_record(job),
            PROVENANCE: provenance(framework_versions()),
            WEIGHTS: weight_digests(model_file),
        }
        save_test_vectors(vectors_file, arrays, item.input_names, list(item.output_names), records)
    return ExportedFile(target, item.role.name, "h5", comparison, vectors)
