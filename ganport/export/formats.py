"""The export formats: the one place to add one. The CLI reads its choices from here without importing TensorFlow.

Each format names the module that writes it; that module's `write(job) -> ExportedFile` writes, reloads and
validates one model, and is imported only when the format is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from ganport.export.job import ExportedFile, ExportOptions, Job


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    writer_module: str
    summary: str
    roles: tuple[str, ...]  # the roles a run folder exports in this format
    for_dl4j: bool = False  # written for DL4J's Keras import, so limited to what it reads exactly
    onnx_precisions: bool = False  # ONNX inside, so --precision fp16/int8 applies
    takes_onnx: bool = False  # also made from ONNX files: its writer module has `write_from_onnx`
    keras_layers_only: bool = False  # a Keras file that must reload by itself: no TensorFlow ops or Python code
    test_vectors: bool = False  # also writes NAME_inputs_and_outputs.h5 beside the model

    @property
    def write(self) -> Callable[[Job], ExportedFile]:
        return importlib.import_module(self.writer_module).write

    @property
    def write_from_onnx(self) -> Callable[[Path, Path, ExportOptions, Callable[[str], None]], ExportedFile]:
        return importlib.import_module(self.writer_module).write_from_onnx


FORMATS: dict[str, Format] = {
    format.name: format
    for format in (
        Format(
            "onnx",
            ".onnx",
            "ganport.export.to_onnx",
            "ONNX for onnxruntime",
            ("generator",),
            onnx_precisions=True,
            test_vectors=True,
        ),
        Format(
            "h5",
            ".h5",
            "ganport.export.to_h5",
            "DL4J-ready Keras 2 HDF5",
            ("generator", "discriminator"),
            for_dl4j=True,
            test_vectors=True,
        ),
        Format(
            "keras",
            ".keras",
            "ganport.export.to_keras",
            "native Keras 3",
            ("generator", "discriminator"),
            keras_layers_only=True,
        ),
        Format(
            "triton",
            "",  # a folder: NAME/config.pbtxt and NAME/1/model.onnx in a Triton model repository
            "ganport.export.to_triton",
            "a Triton Inference Server model (onnxruntime backend, dynamic batching)",
            ("generator",),
            onnx_precisions=True,
            takes_onnx=True,
        ),
    )
}
DEFAULT_FORMAT = "onnx"
