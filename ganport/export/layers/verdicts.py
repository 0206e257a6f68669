"""What each export target makes of a model's layers, in words: the one place inspect's cells and verdicts,
export's refusals and docs/export.md's table are rendered from the registry's TargetRules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ganport.export.layers.dl4j import dl4j_form, input_problems
from ganport.export.layers.registry import LayerSpec, converter, supported_layers

if TYPE_CHECKING:
    from ganport.export.graph import Graph

TARGETS = {"onnx": "ONNX", "dl4j": "DL4J (`--format h5`)", "keras": "Keras 3 (`--format keras`)"}


def cell(problem: str | None, note: str = "") -> str:
    """A layer's cell for a target: "no: why", or "yes" with how the target gets it (its rule's note)."""
    if problem:
        return f"no: {problem}"
    return f"yes ({note})" if note else "yes"


def layer_problems(specs: Iterable[LayerSpec], target: str) -> dict[str, tuple[str, str]]:
    """Layer name -> (class, why `target` cannot take it), for the layers it refuses."""
    return {
        spec.name: (spec.kind, problem)
        for spec in specs
        if (problem := converter(spec.kind).target(target).verdict(spec.options)) is not None
    }


def dl4j_problems(graph: Graph) -> dict[str, tuple[str, str]]:
    """Layer name -> (class, why DL4J would import it with other numbers), judged on the graph as the h5 format
    writes it (a trailing Reshape is written flat, an activation may become a layer of its own)."""
    return layer_problems(dl4j_form(graph).layers, "dl4j")


def refusals(graph: Graph, target: str) -> list[str]:
    """`class (layer): why` for each layer `target` refuses, then DL4J's input problems: what an export says."""
    problems = dl4j_problems(graph) if target == "dl4j" else layer_problems(graph.layers, target)
    listed = [f"{kind} ({name}): {problem}" for name, (kind, problem) in problems.items()]
    return listed + (input_problems(graph.inputs) if target == "dl4j" else [])


def markdown_table() -> str:
    """The registry as docs/export.md's table: each layer class and what each target makes of it ("some options
    refused" where a layer's options decide; `ganport inspect` says which)."""
    rows = [f"| layer | {' | '.join(TARGETS.values())} |", "| --- " * (len(TARGETS) + 1) + "|"]
    for kind in supported_layers():
        cells = []
        for target in TARGETS:
            rule = converter(kind).target(target)
            text = cell(rule.refused, rule.note)
            if rule.problem is not None and not rule.refused:
                text = "yes, " + (f"{rule.note}; " if rule.note else "") + "some options refused"
            cells.append(text)
        rows.append(f"| {kind} | {' | '.join(cells)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m ganport.export.layers.verdicts > the table docs/export.md holds
    print(markdown_table(), end="")
