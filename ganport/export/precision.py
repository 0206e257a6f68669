"""ONNX precisions: the one place to add one. Each has its converter and the atol of its parity bound (ganport.parity
adds the model's float32 summation spread to it).

Reduced precisions are judged by sample quality (the export's quality gate); their parity bound only catches a broken
graph (int8 moves single pixels by up to about half the [-1, 1] range without changing the digits). onnx and its
converters are imported inside each function, so the CLI can list the choices without loading them.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ganport.parity import ATOL

if TYPE_CHECKING:
    import onnx


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and arithmetic in float16, inputs and outputs kept float32 (for GPUs; CPUs gain nothing)."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():  # it warns for every weight below float16's range, which rounds to zero
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(proto, keep_io_types=True)


def to_int8(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's dynamic quantization: int8 weights, activations quantized per batch at run time."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        onnx.save(proto, source)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process applies to static quantization, not this
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        return onnx.load(target)


@dataclass(frozen=True)
class Precision:
    name: str
    convert: Callable[[onnx.ModelProto], onnx.ModelProto]
    atol: float
    summary: str

    @property
    def reduced(self) -> bool:
        return self.name != FULL_PRECISION


FULL_PRECISION = "fp32"
PRECISIONS: dict[str, Precision] = {
    precision.name: precision
    for precision in (
        Precision(FULL_PRECISION, lambda proto: proto, ATOL, "float32"),
        Precision("fp16", to_fp16, 1e-2, "float16 inside, float32 in and out (GPUs)"),
        Precision("int8", to_int8, 1.0, "dynamic int8 quantization (CPUs), quality-gated"),
    )
}
