"""`ganport inspect`: what each layer of a Keras model becomes in each export format, and whether it can be written.

It asks the same registry, graph reader and role check the exporters use, without writing anything, so its
verdict and an export's refusal never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ganport.errors import GanportError, ModelError, UnsupportedLayerError
from ganport.export.formats import FORMATS


@dataclass(frozen=True)
class LayerReport:
    name: str
    kind: str
    output_shape: list
    parameters: int
    supported: str  # "" when the registry converts it, else why not (every format)
    dl4j_problem: str  # "" when DL4J imports it with the same numbers
    dl4j_rewrite: str  # what ganport writes so DL4J reads it right


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
    path: str | Path, weights: str | Path | None = None, log: Callable[[str], None] | None = None
) -> Report:
    """Report on the model file at `path` (an architecture .json with its `weights`, if they are not beside it),
    layer by layer, with one verdict per export format."""
    from ganport.export.graph import read_layer, trace
    from ganport.export.layers import converter
    from ganport.export.sources import source_model
    from ganport.export.to_h5 import dl4j_input_problems
    from ganport.loading import load_model_file

    path = Path(path)
    model = load_model_file(path, None if weights is None else Path(weights), log)
    everywhere: list[str] = []
    layers: list[LayerReport] = []
    try:
        inputs, traced, _ = trace(model)
    except ModelError as error:
        inputs, traced = [], []
        everywhere.append(str(error))
    for item in traced:
        shape = [None, *item.layer.output.shape[1:]]
        supported, problem, rewrite = "", "", ""
        try:
            spec = read_layer(item)
            problem = converter(spec.kind).dl4j_problem(spec.options) or ""
            rewrite = converter(spec.kind).dl4j_rewrite
        except UnsupportedLayerError as error:
            supported = problem = str(error)
        layers.append(
            LayerReport(
                item.name, type(item.layer).__name__, shape, int(item.layer.count_params()), supported, problem, rewrite
            )
        )
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
    dl4j += dl4j_input_problems(inputs)
    verdicts = {name: everywhere + (dl4j if fmt.for_dl4j else []) for name, fmt in FORMATS.items()}
    return Report(
        str(path),
        role,
        [
            {"name": name, "shape": [None, *spec.shape], "dtype": spec.dtype}
            for name, spec in zip(input_names, inputs, strict=True)
        ],
        output_names,
        layers,
        verdicts,
    )
