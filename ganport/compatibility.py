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
    supported: str  # "" when the registry converts it, else why not (every format)
    dl4j_problem: str  # "" when DL4J imports it with the same numbers
    dl4j_rewrite: str  # what ganport writes so DL4J reads it right
    not_keras: str = ""  # why a .keras file cannot hold it ("" when it can)


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
    from ganport.export.graph import read_graph, read_layer, trace
    from ganport.export.layers import keras_file_problems
    from ganport.export.sources import source_model
    from ganport.export.to_h5 import dl4j_input_problems, dl4j_problems
    from ganport.keras_files.load import load_model_file

    path = Path(path)
    model = load_model_file(path, load, log)
    everywhere: list[str] = []
    try:
        inputs, traced, _ = trace(model)
    except ModelError as error:
        inputs, traced = [], []
        everywhere.append(str(error))
    specs = {}
    for item in traced:
        try:
            specs[item.name] = read_layer(item)
        except UnsupportedLayerError as error:
            specs[item.name] = error
    read = [spec for spec in specs.values() if not isinstance(spec, UnsupportedLayerError)]
    # DL4J's verdict depends on where a layer is (a trailing Reshape is written flat): judged on the whole graph
    problems = dl4j_problems(read_graph(model)) if read and len(read) == len(specs) else {}
    layers = [_layer_report(item, specs[item.name], problems) for item in traced]
    everywhere += [f"{layer.name}: {layer.supported}" for layer in layers if layer.supported]
    role, input_names, output_names = "", [spec.name for spec in inputs], []
    if not everywhere:
        try:
            source = source_model(model, path.stem, path)
            role, input_names, output_names = source.role.name, source.input_names, list(source.output_names)
            inputs = list(source.graph.inputs)
        except GanportError as error:
            everywhere.append(str(error))
    dl4j = [f"{layer.name}: {layer.dl4j_problem}" for layer in layers if layer.dl4j_problem and not layer.supported]
    # a layer the graph reader added (an activation a layer held) has no row of its own
    dl4j += [f"{name}: {problem}" for name, (_, problem) in problems.items() if name not in specs]
    dl4j += dl4j_input_problems(inputs)
    keras_only = keras_file_problems(read)
    verdicts = {
        name: everywhere + (dl4j if fmt.for_dl4j else []) + (keras_only if fmt.keras_layers_only else [])
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
        layers,
        verdicts,
    )


def _layer_report(item: Any, spec: Any, problems: dict[str, tuple[str, str]]) -> LayerReport:
    """One layer's row: what the registry reads of it, and DL4J's verdict on it where it sits in the graph."""
    from ganport.export.layers import converter

    if isinstance(spec, UnsupportedLayerError):
        supported = problem = str(spec)
        rewrite = not_keras = ""
    else:
        entry = converter(spec.kind)
        supported, rewrite, not_keras = "", entry.dl4j_rewrite, entry.not_keras
        problem = problems.get(item.name, ("", ""))[1]
    layer = item.layer
    shape = [None, *layer.output.shape[1:]]
    return LayerReport(
        item.name, type(layer).__name__, shape, int(layer.count_params()), supported, problem, rewrite, not_keras
    )
