"""ONNX files in ganport: read one (a damaged file is one line, never a traceback), its signature (the one reader,
dynamic axes included), sessions on onnxruntime whose provider is checked, runs with feeds cast to the declared types,
and what one row of a batch takes in memory.

onnxruntime-gpu silently falls back to the CPU when CUDA cannot start, so the provider a session really uses is read
back from the session and checked, never assumed. Never imports TensorFlow: sampling and serving start in a fraction
of a second.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganport.budget import require_within_budget
from ganport.contract import KERAS_SUFFIXES
from ganport.errors import ModelError, RuntimeUnavailableError, reason_of
from ganport.files import file_problem
from ganport.host import DEVICES
from ganport.parity import Accumulation

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# onnxruntime's element types and the numpy types they hold; a model using another (strings, bfloat16) is refused.
ELEMENT_TYPES = {
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(float16)": np.float16,
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}
# ONNX's TensorProto element type numbers, as onnxruntime names them.
_ONNX_ELEMENT_TYPES = {
    9: "tensor(bool)",
    2: "tensor(uint8)",
    4: "tensor(uint16)",
    12: "tensor(uint32)",
    13: "tensor(uint64)",
    3: "tensor(int8)",
    5: "tensor(int16)",
    6: "tensor(int32)",
    7: "tensor(int64)",
    10: "tensor(float16)",
    1: "tensor(float)",
    11: "tensor(double)",
    8: "tensor(string)",
    16: "tensor(bfloat16)",
}
_ADVICE = "pass an ONNX file (`ganport export MODEL --format onnx` writes one)"


@dataclass(frozen=True)
class Tensor:
    """An input or output of an ONNX model: its name, onnxruntime's type string, and its dims, each a size, the name
    of a dynamic axis ("batch"), or None for an unnamed dynamic one."""

    name: str
    type: str
    shape: tuple[int | str | None, ...]

    @property
    def dtype(self) -> np.dtype:
        if self.type not in ELEMENT_TYPES:
            raise ModelError(f"{self.name} holds {self.type}, which ganport does not feed or read (numbers only).")
        return np.dtype(ELEMENT_TYPES[self.type])

    @property
    def fixed(self) -> list[int | None]:
        """The dims as sizes, None where an axis is dynamic (named or not)."""
        return [side if isinstance(side, int) and side > 0 else None for side in self.shape]


def load(path: str | Path) -> Any:
    """The ONNX model in a file, checked to be one: a missing, damaged or foreign file, or one whose weights live in
    other files (ganport never writes those, and reading them follows paths the file names), is a ModelError."""
    import onnx

    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise ModelError(f"{path} {problem}; {_ADVICE}.")
    if path.suffix in KERAS_SUFFIXES:
        raise ModelError(
            f"{path} is a Keras model; ganport runs ONNX files on onnxruntime (no TensorFlow). "
            f"Convert it first: `ganport export {path} --format onnx`."
        )
    require_within_budget(f"{path} ({path.stat().st_size} bytes)", path.stat().st_size, f"{_ADVICE}.")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError, onnx's own errors, RecursionError on nested messages
        raise ModelError(f"{path} is not a readable ONNX model ({reason_of(error)}); {_ADVICE}.") from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{path} holds no ONNX graph (is it empty, or another kind of file?); {_ADVICE}.")
    external = [item.name for item in proto.graph.initializer if item.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ModelError(
            f"{path} keeps weights in other files ({external[0]}, ...), which ganport does not read; save the model "
            "with its weights inside (onnx.save(model, path, save_as_external_data=False))."
        )
    return proto


def signature(source: Any) -> tuple[list[Tensor], list[Tensor]]:
    """The inputs and outputs of an ONNX model (a ModelProto, or an onnxruntime session), in the model's order.
    Initializers that older exporters also list as inputs are left out."""
    if hasattr(source, "get_inputs"):
        return [_from_session(item) for item in source.get_inputs()], [
            _from_session(item) for item in source.get_outputs()
        ]
    graph = source.graph
    weights = {item.name for item in graph.initializer}
    inputs = [_from_value(value) for value in graph.input if value.name not in weights]
    return inputs, [_from_value(value) for value in graph.output]


def _from_session(item: Any) -> Tensor:
    return Tensor(item.name, item.type, tuple(side if isinstance(side, int | str) else None for side in item.shape))


def _from_value(value: Any) -> Tensor:
    tensor = value.type.tensor_type
    dims = tuple(dim.dim_value if dim.HasField("dim_value") else dim.dim_param or None for dim in tensor.shape.dim)
    return Tensor(value.name, _ONNX_ELEMENT_TYPES.get(tensor.elem_type, f"tensor(type {tensor.elem_type})"), dims)


def metadata(proto: Any) -> dict[str, str]:
    """The key-value metadata an ONNX model carries (ganport writes its role, latent size, classes ...)."""
    return {item.key: item.value for item in proto.metadata_props}


def available_providers() -> list[str]:
    return list(_onnxruntime().get_available_providers())


def _onnxruntime() -> Any:
    import onnxruntime

    return onnxruntime


def open_session(path: str | Path, device: str = "auto", threads: int | None = None, spinning: bool = True) -> Any:
    """An onnxruntime InferenceSession for an .onnx file on `device`, whose provider is checked, never assumed.

    `spinning=False` makes onnxruntime's threads sleep between calls instead of busy-waiting for the next one: what a
    server sharing its cores with request handling needs (spinning threads starve the event loop).
    """
    if device not in DEVICES:
        raise RuntimeUnavailableError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    path = Path(path)
    load(path)  # a damaged file is refused in one line here, before onnxruntime reads it
    ort = _onnxruntime()
    options = ort.SessionOptions()
    # One thread per core: onnxruntime's default also spins extra threads that only contend on small machines.
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = _providers(device)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/... types
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(f"Cannot load {path} with onnxruntime ({reason}).") from None
    provider = session.get_providers()[0]
    if device == "cuda" and provider != CUDA:
        raise RuntimeUnavailableError(
            f"--device cuda was asked for, but onnxruntime runs on {provider} (CUDA could not start); "
            "install the CUDA libraries (pip install 'onnxruntime-gpu[cuda,cudnn]') or use --device cpu."
        )
    return session


def _providers(device: str) -> list[str]:
    if device == "cpu":
        return [CPU]
    available = available_providers()
    usable = CUDA in available and nvidia_gpu_present()
    if device == "cuda" and not usable:
        raise RuntimeUnavailableError(
            f"--device cuda needs an NVIDIA GPU and onnxruntime-gpu (ganport's gpu extra, in place of the CPU-only "
            f"onnxruntime: docs/install.md); this machine has "
            f"{'a GPU' if nvidia_gpu_present() else 'no NVIDIA GPU'} and providers {', '.join(available)}. "
            "Use --device cpu or auto."
        )
    if not usable:
        return [CPU]
    _preload_cuda_libraries()
    return [CUDA, CPU]


def nvidia_gpu_present() -> bool:
    """Whether an NVIDIA driver exposes a device; without one, trying CUDA only fills the log with load errors."""
    return any(Path("/dev").glob("nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None


def _preload_cuda_libraries() -> None:
    # onnxruntime-gpu >= 1.21 can load CUDA/cuDNN from the nvidia-* wheels; without them CUDA simply won't start,
    # which the provider check in open_session reports.
    preload = getattr(_onnxruntime(), "preload_dlls", None)
    if preload is not None:
        with contextlib.suppress(Exception):  # missing CUDA libraries are reported by the provider check
            preload()


def run(source: Any, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
    """The outputs (all, or those named, in that order) of a model (a path, opened on the CPU, or a session), each
    input cast to the type the model declares (test vectors store class labels as floats, as DL4J reads them)."""
    session = open_session(source, "cpu") if isinstance(source, str | Path) else source
    declared, _ = signature(session)
    missing = [item.name for item in declared if item.name not in inputs]
    if missing:
        raise ModelError(f"the model takes {', '.join(missing)}, which the inputs given do not hold.")
    feeds = {item.name: np.asarray(inputs[item.name], item.dtype) for item in declared}
    try:
        return session.run(list(outputs) if outputs is not None else None, feeds)
    except Exception as error:  # onnxruntime's own types: a shape the graph cannot take, say
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(f"onnxruntime could not run the model on these inputs ({reason}).") from None


def row_bytes(proto: Any, input_shapes: dict[str, Sequence[int]] | None = None) -> int:
    """What one row of a batch takes while onnxruntime runs `proto`: every tensor of the graph for one row (inputs,
    intermediates, outputs; an upper bound, since onnxruntime reuses buffers) plus the largest convolution's
    unfolded input (output positions x kernel taps x channels, the im2col buffer its CPU kernels build).

    `input_shapes` gives the non-batch dims of inputs whose axes are dynamic (an image-to-image model's height and
    width, from a request); a tensor whose size still cannot be inferred counts as the largest one that can."""
    import onnx

    graph = onnx.GraphProto()
    graph.CopyFrom(proto.graph)
    weights = {item.name for item in graph.initializer}
    for value in graph.input:
        if value.name in weights:
            continue
        dims = value.type.tensor_type.shape.dim
        fixed = [1, *(input_shapes or {}).get(value.name, [])]
        for index, dim in enumerate(dims):
            if index < len(fixed):
                dim.Clear()
                dim.dim_value = fixed[index]
    model = onnx.helper.make_model(graph, opset_imports=proto.opset_import, ir_version=proto.ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # a graph onnx cannot infer: count what it declares
        inferred = graph
    values = [*inferred.input, *inferred.value_info, *inferred.output]
    sizes = {value.name: _bytes(value) for value in values if value.name not in weights}
    largest = max((size for size in sizes.values() if size is not None), default=0)
    total = sum(largest if size is None else size for size in sizes.values())
    return total + _convolution_workspace(inferred, {value.name: value for value in values})


def _bytes(value: Any) -> int | None:
    tensor = value.type.tensor_type
    itemsize = np.dtype(ELEMENT_TYPES.get(_ONNX_ELEMENT_TYPES.get(tensor.elem_type, ""), np.float64)).itemsize
    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim][1:]
    if not tensor.HasField("shape") or None in dims:
        return None
    return math.prod(dims) * itemsize


def _convolution_workspace(graph: Any, values: dict[str, Any]) -> int:
    weights = {item.name: list(item.dims) for item in graph.initializer}
    largest = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2 or node.input[1] not in weights:
            continue
        kernel = weights[node.input[1]]  # Conv [out, in / group, kh, kw]; ConvTranspose [in, out / group, kh, kw]
        side = node.output[0] if node.op_type == "Conv" else node.input[0]
        found = values.get(side)
        dims = [] if found is None else [dim.dim_value for dim in found.type.tensor_type.shape.dim][2:]
        if dims and all(dims):
            largest = max(largest, math.prod(dims) * math.prod(kernel[1:]) * 4)
    return largest


# ONNX operators that sum products, and the products one output sums, from their weight's dims.
_SUMMING_OPERATORS: dict[str, Callable[[list[int], Any], int]] = {
    "Gemm": lambda dims, node: dims[1] if _attribute(node, "transB") else dims[0],
    "MatMul": lambda dims, node: dims[0] if len(dims) == 2 else 0,
    "Conv": lambda dims, node: math.prod(dims[1:]),  # [out, in / group, kh, kw]
    "ConvTranspose": lambda dims, node: dims[0] * math.prod(dims[2:]),  # [in, out / group, kh, kw]
    "BatchNormalization": lambda dims, node: dims[0],  # channels, as the Keras rule counts BatchNorm
}


def accumulation(proto: Any) -> Accumulation:
    """An upper estimate of the Keras rule's inputs for an ONNX graph: its summing operators (doubled: a BatchNorm
    folded into the layer before it leaves no node, and the Keras rule counts it), and their longest sum."""
    weights = {item.name: list(item.dims) for item in proto.graph.initializer}
    lengths = []
    for node in proto.graph.node:
        dims = weights.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type in _SUMMING_OPERATORS and dims:
            lengths.append(int(_SUMMING_OPERATORS[node.op_type](dims, node)))
        elif node.op_type == "AveragePool":
            lengths.append(math.prod(_attribute(node, "kernel_shape") or [1]))
    return Accumulation(2 * len(lengths), max(lengths, default=0))


def _attribute(node: Any, name: str) -> Any:
    import onnx

    found = next((item for item in node.attribute if item.name == name), None)
    return None if found is None else onnx.helper.get_attribute_value(found)
