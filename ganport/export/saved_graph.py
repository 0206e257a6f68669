"""A TensorFlow SavedModel without Keras metadata (`tf.saved_model.save`, not `model.save`): no layers to convert one
by one, but a serving signature that tf2onnx converts whole, for the "onnx" format.

Its graph is code: loading it runs its restore functions, and checking it runs its signature. So before TensorFlow
reads it, every op of its graph and of every function it holds is checked against GRAPH_OPS (numbers, shapes,
activations, the ops ganport converts elsewhere) and CHECKPOINT_OPS (how a SavedModel restores its variables); a
graph holding any other op (tf.io.write_file's WriteFile, a py_function's EagerPyFunc) is refused in one line. The
ONNX file is then checked against the signature on fixed inputs, within ganport's float32 rule estimated from the
ONNX graph (no Keras graph here for the float64 one), and written with its test vectors, so `verify` checks it as it
checks any ONNX export.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import ganport
from ganport import onnx_io
from ganport.budget import require_within_budget
from ganport.contract import role_from_shapes
from ganport.errors import ModelError, UsageError, reason_of
from ganport.export.job import ExportedFile, ExportOptions
from ganport.export.sources import ACTIVATION_COPIES, CHECK_SIDE
from ganport.export.vectors import PARITY, PROVENANCE, TEST_VECTORS_SUFFIX, save_test_vectors, vector_arrays
from ganport.files import atomic_path
from ganport.host import provenance
from ganport.parity import (
    ATOL,
    REFERENCE_BATCH,
    REFERENCE_SEED,
    compare_outputs,
    reference_noise,
    require_all,
)

SIGNATURE = "serving_default"
# Pure ops a serving graph may hold: numbers, shapes, activations, normalisation, convolution and resizing.
GRAPH_OPS = frozenset(
    {
        *("Placeholder", "Const", "Identity", "IdentityN", "NoOp", "StatefulPartitionedCall", "PartitionedCall"),
        *("MatMul", "BatchMatMulV2", "Conv2D", "Conv2DBackpropInput", "DepthwiseConv2dNative", "BiasAdd"),
        *("Add", "AddV2", "Sub", "Mul", "RealDiv", "Neg", "Maximum", "Minimum", "Abs", "Square", "Sqrt", "Rsqrt"),
        *("Exp", "Log", "Pow", "SquaredDifference", "ClipByValue", "Floor", "Erf"),
        *("Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Tanh", "Sigmoid", "Softplus", "Softsign", "Softmax"),
        *("Mean", "Sum", "Max", "Min", "Prod", "FusedBatchNormV3", "MaxPool", "AvgPool"),
        *("Reshape", "Transpose", "ConcatV2", "Pack", "Unpack", "StridedSlice", "Slice", "Shape", "Cast"),
        *("ExpandDims", "Squeeze", "Fill", "Range", "Tile", "Pad", "PadV2", "MirrorPad", "GatherV2", "ResourceGather"),
        *("ResizeNearestNeighbor", "ResizeBilinear", "DepthToSpace", "SpaceToDepth", "OneHot"),
    }
)
# How a SavedModel restores its variables when loaded (and saves them, which nothing here calls).
CHECKPOINT_OPS = frozenset(
    {
        *("VarHandleOp", "ReadVariableOp", "AssignVariableOp", "DisableCopyOnRead", "RestoreV2", "SaveV2"),
        *("MergeV2Checkpoints", "ShardedFilename", "StringJoin", "StaticRegexFullMatch", "Select", "SelectV2"),
    }
)


def graph_ops(folder: Path) -> set[str]:
    """Every op a SavedModel's graph holds: its own nodes' and every function's."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    except Exception as error:  # protobuf's DecodeError, or a RecursionError on nested messages
        raise ModelError(f"{folder}/saved_model.pb cannot be read ({error}); the SavedModel is damaged.") from None
    found: set[str] = set()
    for meta_graph in saved.meta_graphs:
        found |= {node.op for node in meta_graph.graph_def.node}
        for function in meta_graph.graph_def.library.function:
            found |= {node.op for node in function.node_def}
    return found


def require_pure_graph(folder: Path, trust_code: bool) -> None:
    """Refuse, before TensorFlow reads it, a SavedModel graph holding an op outside GRAPH_OPS and CHECKPOINT_OPS."""
    if trust_code:
        return
    foreign = sorted(op for op in graph_ops(folder) if op not in GRAPH_OPS | CHECKPOINT_OPS)
    if foreign:
        named = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ModelError(
            f"{folder} is a SavedModel graph that calls the TensorFlow op{'s' if len(foreign) > 1 else ''} {named}, "
            "which ganport does not run from a stored graph (it runs numeric ops only); it was not loaded. If you "
            "trust the file, pass --trust-code."
        )


def _serving_signature(folder: Path) -> tuple[Any, Any]:
    """The loaded SavedModel and its serving function (which reads its variables from the loaded object: keep both)."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(folder))
        signature = loaded.signatures[SIGNATURE]
    except KeyError:
        raise ModelError(
            f"{folder} is a SavedModel without Keras metadata and without a {SIGNATURE!r} signature, so it holds "
            "nothing to convert; save the Keras model with model.save(), or the module with a serving signature."
        ) from None
    except Exception as error:  # TensorFlow's own errors for a SavedModel it cannot restore
        raise ModelError(f"Cannot load {folder} with TensorFlow ({reason_of(error, 300)}).") from None
    return loaded, signature


def write_signature(
    folder: Path,
    fmt: str,
    out: Path,
    options: ExportOptions,
    trust_code: bool,
    log: Callable[[str], None],
) -> list[ExportedFile]:
    """The SavedModel's serving signature as ONNX beside its test vectors, checked against the signature."""
    import tensorflow as tf

    from ganport.export import to_onnx

    if fmt != "onnx" or options.precision != "fp32":
        raise UsageError(
            f"{folder} is a SavedModel without Keras metadata: a TensorFlow graph, not Keras layers, so only "
            "--format onnx (in fp32) converts it, through its serving signature. Save the Keras model with "
            "model.save() for the other formats."
        )
    require_pure_graph(folder, trust_code)
    _loaded, signature = _serving_signature(folder)  # _loaded kept alive: the signature reads its variables
    specs = dict(sorted(signature.structured_input_signature[1].items()))
    inputs = _fixed_inputs(specs, options.input_sizes)
    reference = {name: np.asarray(value) for name, value in signature(**inputs).items()}
    names = sorted(reference)

    def serve(*tensors: Any) -> dict[str, Any]:
        return signature(**dict(zip(specs, tensors, strict=True)))

    typed = [tf.TensorSpec(spec.shape, spec.dtype, name=name) for name, spec in specs.items()]
    first_input, first_output = next(iter(inputs.values())), reference[names[0]]
    role = role_from_shapes([None, *first_input.shape[1:]], [None, *first_output.shape[1:]]).name
    metadata = {"producer": "ganport", "ganport_version": ganport.__version__, "role": role, "source": "signature"}
    proto = to_onnx.convert_function(serve, typed, metadata)
    target = out if out.suffix == ".onnx" else out / f"{folder.name}.onnx"
    vectors = target.with_name(target.stem + TEST_VECTORS_SUFFIX)
    taken = [path for path in (target, vectors) if path.exists() and not options.overwrite]
    if taken:
        raise UsageError(f"{' and '.join(map(str, taken))} exist already; pass --overwrite to replace them.")
    tolerance = onnx_io.accumulation(proto).tolerance(ATOL)
    with atomic_path(target) as temporary, atomic_path(vectors) as vectors_file:
        to_onnx.save(proto, temporary)
        outputs = onnx_io.run(temporary, inputs, names)
        expected = [reference[name] for name in names]
        comparison = compare_outputs(folder.name, "onnxruntime fp32", names, expected, outputs, tolerance)
        require_all([comparison])
        accumulation = onnx_io.accumulation(proto)
        records = {
            PARITY: {
                "atol": ATOL,
                "summing_layers": accumulation.layers,
                "longest_sum": accumulation.longest,
                "tolerance": tolerance,
            },
            PROVENANCE: provenance({"tensorflow": tf.__version__}),
        }
        arrays = vector_arrays(inputs, names, expected)
        save_test_vectors(vectors_file, arrays, list(inputs), names, records)
    log(comparison.line() + f" -> {target}")
    return [ExportedFile(target, role, "onnx", comparison, vectors)]


def _fixed_inputs(specs: dict[str, Any], sizes: tuple[int, ...] | None) -> dict[str, np.ndarray]:
    """Seeded inputs for a signature: normal noise for a float [batch, n], uniform values in [-1, 1] for float
    images, labels 0, 1, 2, ... for integers; dynamic axes other than the batch at `sizes` or CHECK_SIDE."""
    rng = np.random.default_rng(REFERENCE_SEED)
    arrays = {}
    for name, spec in specs.items():
        given = iter(sizes or ())
        shape = [REFERENCE_BATCH, *(side if side is not None else next(given, CHECK_SIDE) for side in spec.shape[1:])]
        dtype = np.dtype(spec.dtype.as_numpy_dtype)
        require_within_budget(
            f"The fixed inputs of signature input {name} {shape}, with its outputs and their copies",
            math.prod(shape) * dtype.itemsize * ACTIVATION_COPIES,
            "the model is too large to check here.",
        )
        if dtype.kind in "iu":
            arrays[name] = (np.arange(np.prod(shape)) % 10).reshape(shape).astype(dtype)
        elif len(shape) == 2:
            arrays[name] = reference_noise(shape[1], REFERENCE_BATCH).astype(dtype)
        else:
            arrays[name] = rng.uniform(-1, 1, shape).astype(dtype)
    return arrays
