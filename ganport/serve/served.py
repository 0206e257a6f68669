"""A model as the server sees it: one onnxruntime session, its tensors in the protocol's terms, and, when it is a
generator, the sampling that the page and sample.png use."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ganport import onnx_io
from ganport.contract import LABEL_INPUT
from ganport.errors import ModelError, UsageError
from ganport.onnx_io import open_session
from ganport.protocol import MODEL_VERSION, ProtocolError, onnx_signature
from ganport.runtime import Generator, require_classes


class ServedModel:
    """An ONNX file served under `name`: any model whose inputs and outputs all have a batch axis first."""

    def __init__(self, path: str | Path, name: str, device: str = "auto", threads: int | None = None) -> None:
        self.path, self.name = Path(path), name
        self.session = open_session(self.path, device, threads, spinning=False)
        self.provider = self.session.get_providers()[0]
        self.inputs, self.outputs = onnx_signature(self.session, self.path, "served")
        fixed = [spec.name for spec in [*self.inputs, *self.outputs] if spec.shape[:1] != (-1,)]
        if fixed:
            raise ModelError(
                f"{self.path} cannot be batched: {', '.join(fixed)} must have a dynamic first (batch) axis; "
                "export it with one (ganport's ONNX exports have it)."
            )
        self.proto = onnx_io.load(self.path)
        self.generator, self.not_a_generator = _generator_or_reason(self.path, self.session)

    @property
    def conditional(self) -> bool:
        return self.generator is not None and self.generator.conditional

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        """What the graph itself would only fail on, for a whole batch: a conditional generator's class labels."""
        if self.conditional and LABEL_INPUT in inputs:
            try:
                require_classes(inputs[LABEL_INPUT], self.generator.classes, self.name)
            except UsageError as error:
                raise ProtocolError(str(error)) from None

    def row_bytes(self, inputs: dict[str, np.ndarray]) -> int:
        """What one row of this request takes while onnxruntime runs it (onnx_io.row_bytes): the same for every
        request when only the batch axis is dynamic, else inferred for its other sizes (a dynamic image size)."""
        return self._row_bytes(tuple((name, array.shape[1:]) for name, array in inputs.items() if self._dynamic(name)))

    def _dynamic(self, name: str) -> bool:
        return any(side == -1 for spec in self.inputs if spec.name == name for side in spec.shape[1:])

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one ServedModel per served file, alive as long as the server
    def _row_bytes(self, sizes: tuple[tuple[str, tuple[int, ...]], ...]) -> int:
        return onnx_io.row_bytes(self.proto, dict(sizes))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All outputs for a batch of inputs (called from the batching worker thread)."""
        arrays = self.session.run(None, feeds)
        return {spec.name: array for spec, array in zip(self.outputs, arrays, strict=True)}

    def metadata(self) -> dict[str, Any]:
        """The protocol's model metadata: tensors with -1 for the batch axis."""
        return {
            "name": self.name,
            "versions": [MODEL_VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [spec.metadata() for spec in self.inputs],
            "outputs": [spec.metadata() for spec in self.outputs],
        }


def _generator_or_reason(path: Path, session: Any) -> tuple[Generator | None, str | None]:
    """The model as a generator, or why it is not one (its role, or a probe that gave NaN): the server says so."""
    try:
        return Generator(path, session=session), None
    except ModelError as error:  # any other model is served too, just without sample.png and the page
        return None, str(error)


def model_names(paths: list[Path], name: str | None) -> list[str]:
    """`--name` for a single model, else each file's stem; two models under one name are refused."""
    if name is not None and len(paths) != 1:
        raise UsageError(f"--name names one model; {len(paths)} were given. Rename the files instead.")
    names = [name] if name is not None else [path.stem for path in paths]
    taken = sorted({item for item in names if names.count(item) > 1})
    if taken:
        raise UsageError(f"Two models would be served as {', '.join(taken)}; pass files with distinct names.")
    return names
