"""ONNX precisions: the one place to add one. Each has its converter and the atol of its parity bound (ganport.parity
adds the model's float32 summation spread to it).

Reduced precisions are judged by sample quality, or by their outputs' agreement with float32's where no classifier
scores them (the export's quality gate); their parity bound only catches a broken graph (int8 moves single pixels
by up to about half the [-1, 1] range without changing the digits). A precision sold as a CPU speed-up is also
timed against float32 at export (the speed gate). onnx and its converters are imported inside each function, so
the CLI can list the choices without loading them.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ganport import onnx_io
from ganport.parity import ATOL

if TYPE_CHECKING:
    import onnx

# Operators onnxruntime runs as integer kernels only when activations are quantized ahead of time (static
# quantization): dynamic quantization leaves them float with a quantize/dequantize round trip, about 5x slower.
STATIC_OPERATORS = frozenset({"Conv", "ConvTranspose"})
# What static quantization quantizes: the operators with integer kernels. Elementwise operators between them
# (BatchNorm's Mul and Add, Resize, activations) stay float: quantizing them too made the DCGAN generator 13% slower
# at batch 1 (1.99x fp32 against 2.29x) and its samples no better (classifier score 8.192 against 8.194).
QUANTIZED_OPERATORS = [*sorted(STATIC_OPERATORS), "Gemm", "MatMul"]

Feeds = dict[str, np.ndarray]


def to_fp16(proto: onnx.ModelProto, calibration: Sequence[Feeds]) -> onnx.ModelProto:
    """Weights and arithmetic in float16, inputs and outputs kept float32 (for GPUs; CPUs gain nothing)."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():  # it warns for every weight below float16's range, which rounds to zero
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(proto, keep_io_types=True)


def to_int8(proto: onnx.ModelProto, calibration: Sequence[Feeds]) -> onnx.ModelProto:
    """onnxruntime's int8 quantization, the kind that is fast for the graph: static QDQ (per-channel int8 weights,
    activation ranges calibrated on `calibration`, the model's own inputs) when it has convolutions; dynamic
    otherwise (int8 weights, activations quantized per batch at run time: matrix products gain, nothing to
    calibrate)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    declared, _ = onnx_io.signature(proto)

    class Calibration(CalibrationDataReader):
        """The feeds, each input cast to the type the graph declares (class labels as int64)."""

        def __init__(self) -> None:
            self.feeds = iter(calibration)

        def get_next(self) -> Feeds | None:
            feed = next(self.feeds, None)
            return None if feed is None else {item.name: np.asarray(feed[item.name], item.dtype) for item in declared}

    with tempfile.TemporaryDirectory() as scratch, _quiet_root_logger():
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        onnx.save(proto, source)
        if is_static(proto):
            quantize_static(
                source,
                target,
                Calibration(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                op_types_to_quantize=QUANTIZED_OPERATORS,
            )
        else:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return onnx.load(target)


def is_static(proto: onnx.ModelProto) -> bool:
    """Whether int8 quantizes this graph statically (it has an operator only static quantization makes fast)."""
    return any(node.op_type in STATIC_OPERATORS for node in proto.graph.node)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # onnxruntime's quantizer logs advice through the root logger (pre-process the model first: its symbolic shape
    # inference, which needs sympy, adds nothing to these graphs, whose shapes tf2onnx already wrote).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@dataclass(frozen=True)
class Precision:
    name: str
    convert: Callable[[onnx.ModelProto, Sequence[Feeds]], onnx.ModelProto]
    atol: float
    summary: str
    # Sold as faster than float32 on CPUs: the export times it against float32 and refuses a slower file.
    cpu_speedup: bool = False

    @property
    def reduced(self) -> bool:
        return self.name != FULL_PRECISION


FULL_PRECISION = "fp32"
PRECISIONS: dict[str, Precision] = {
    precision.name: precision
    for precision in (
        Precision(FULL_PRECISION, lambda proto, calibration: proto, ATOL, "float32"),
        Precision("fp16", to_fp16, 1e-2, "float16 inside, float32 in and out (GPUs)"),
        Precision(
            "int8",
            to_int8,
            1.0,
            "int8 quantization for CPUs: static (calibrated) with convolutions, dynamic without; quality- and "
            "speed-gated",
            cpu_speedup=True,
        ),
    )
}
