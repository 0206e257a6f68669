"""`ganport inspect`: what each layer of a Keras model becomes in each export format, and whether it can be written.

It asks the same registry, graph reader and role check the exporters use, without writing anything, so its
verdict and an export's refusal never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganport.errors import GanportError, ModelError, UnsupportedLayerError
from ganport.export.formats import FORMATS

if TYPE_CHECKING:
    from ganport.keras_files.load import LoadOptions


@dataclass(frozen=True)
class LayerReport:
    name: str
    kind: str
    output_shape: list
    parameters: int
    # What each target makes of the layer, as layers.verdicts renders it: "yes", "yes (how)" or "no: why".
    onnx: str
    dl4j: str
    keras: str


@dataclass(frozen=True)
class Report:
    model: str
    role: str
    inputs: list[dict[str, Any]]
    outputs: list[str]
    layers: list[LayerReport]
    verdicts: dict[str, list[str]] = field(default_factory=dict)  # format -> reasons it cannot be written

    def writable(self, formats: list[str]) -> bool:
        return all(not self.verdicts[name] for name in formats)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect_model(
    path: str | Path, load: LoadOptions | None = None, log: Callable[[str], None] | None = None
) -> Report:
    """Report on the model file at `path` (`load`: what it needs from its user, as export takes it), layer by layer,
    with one verdict per export format."""
    from ganport.export.graph import Graph, read_graph, trace
    from ganport.export.layers.verdicts import dl4j_problems, refusals
    from ganport.export.sources import source_model
    from ganport.keras_files.load import load_model_file

    path = Path(path)
    model = load_model_file(path, load, log)
    everywhere: list[str] = []
    try:
        inputs, traced, _ = trace(model)
    except ModelError as error:
        inputs, traced = [], []
        everywhere.append(str(error))
    specs = {item.name: _read(item) for item in traced}
    everywhere += [f"{name}: {spec}" for name, spec in specs.items() if isinstance(spec, UnsupportedLayerError)]
    graph: Graph | None = None
    role, input_names, output_names = "", [spec.name for spec in inputs], []
    if not everywhere:  # every layer reads: the graph is the source's, or, where it is no source, the model's
        try:
            source = source_model(model, path.stem, path)
            role, input_names, output_names = source.role.name, source.input_names, list(source.output_names)
            graph = source.graph
            inputs = list(graph.inputs)
        except GanportError as error:
            everywhere.append(str(error))
            graph = read_graph(model)
    targets = {target: refusals(graph, target) if graph is not None else [] for target in ("dl4j", "keras")}
    # DL4J's verdict on a layer depends on where it sits (a trailing Reshape is written flat): judged on the graph
    dl4j_layers = dl4j_problems(graph) if graph is not None else None
    verdicts = {
        name: everywhere
        + (targets["dl4j"] if fmt.for_dl4j else [])
        + (targets["keras"] if fmt.keras_layers_only else [])
        for name, fmt in FORMATS.items()
    }
    return Report(
        str(path),
        role,
        [
            {"name": name, "shape": [None, *spec.keras_shape()], "dtype": spec.dtype}
            for name, spec in zip(input_names, inputs, strict=True)
        ],
        output_names,
        [_layer_report(item, specs[item.name], dl4j_layers) for item in traced],
        verdicts,
    )


def _read(item: Any) -> Any:
    """A traced layer through the registry: its LayerSpec, or why the registry cannot read it."""
    from ganport.export.graph import read_layer

    try:
        return read_layer(item)
    except UnsupportedLayerError as error:
        return error


def _layer_report(item: Any, spec: Any, dl4j_layers: dict[str, tuple[str, str]] | None) -> LayerReport:
    """One layer's row: each target's cell, rendered by layers.verdicts; `dl4j_layers` holds DL4J's problems on the
    whole graph where it could be read."""
    from ganport.export.layers import converter
    from ganport.export.layers.verdicts import cell

    layer = item.layer
    shape = [None, *layer.output.shape[1:]]
    if isinstance(spec, UnsupportedLayerError):
        cells = [cell(str(spec))] * 3
    else:
        entry = converter(spec.kind)
        if dl4j_layers is None:
            dl4j = entry.dl4j.verdict(spec.options)
        else:
            dl4j = dl4j_layers[item.name][1] if item.name in dl4j_layers else None
        cells = [
            cell(entry.onnx.verdict(spec.options), entry.onnx.note),
            cell(dl4j, entry.dl4j.note),
            cell(entry.keras.verdict(spec.options), entry.keras.note),
        ]
    return LayerReport(item.name, type(layer).__name__, shape, int(layer.count_params()), *cells)
