"""The "triton" format: one model of a Triton Inference Server model repository, NAME/config.pbtxt beside
NAME/1/model.onnx, for Triton's onnxruntime backend with dynamic batching.

The ONNX file is the "onnx" format's, validated the same way, or an existing ONNX file (a shipped generator, say),
copied and run against its source. The configuration is built as Triton's own protobuf
message (tritonclient ships model_config_pb2), so a field Triton does not know cannot be written; it is parsed back
from the written text and its tensors are checked against the ONNX file's.

An export writes version 1 and config.pbtxt of NAME/ and nothing else: other versions and the user's files there
stay. Existing ones are replaced only with --overwrite, and one export at a time writes a model folder (a lock).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from ganport import onnx_io
from ganport.errors import ModelError, OutputError, UsageError
from ganport.export import to_onnx
from ganport.export.job import ExportedFile, ExportOptions, Job
from ganport.files import exclusive, staged_entries
from ganport.parity import ATOL, REFERENCE_BATCH, REFERENCE_SEED, compare_outputs, require_all
from ganport.protocol import DATATYPES, MODEL_VERSION, TensorSpec, onnx_signature, triton_config

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"
LOCK_FILE = ".ganport-export.lock"


def write(job: Job) -> ExportedFile:
    """Write the model's version and configuration under temporary names, validate the ONNX file and the
    configuration, then rename them into the model folder."""
    with _model_folder(job.target, job.options) as folder:
        onnx_file = to_onnx.write_model(replace(job, target=folder / MODEL_VERSION / MODEL_FILE))
        inputs, outputs = onnx_tensors(onnx_file.path)
        config = triton_config(job.target.name, inputs, outputs, gpu=job.options.gpu)
        text = text_format.MessageToString(json_format.ParseDict(config, model_config_pb2.ModelConfig()))
        (folder / CONFIG_FILE).write_text(text)
        check_model_folder(folder, job.target.name)
    return ExportedFile(job.target, job.item.role.name, "triton", onnx_file.comparison, quality=onnx_file.quality)


def write_from_onnx(source: Path, target: Path, options: ExportOptions, log: Callable[[str], None]) -> ExportedFile:
    """An existing ONNX model as a Triton model: copied, run on onnxruntime against its source on fixed inputs (the
    copy must give the same numbers), configured and checked as `write` does."""
    inputs, outputs = onnx_tensors(source)
    if any(-1 in spec.shape[1:] or spec.shape[:1] != (-1,) for spec in inputs):
        raise ModelError(
            f"{source} takes {', '.join(f'{spec.name} {list(spec.shape)}' for spec in inputs)}; Triton's dynamic "
            "batching needs a dynamic batch axis and fixed other axes (ganport's own ONNX exports have them)."
        )
    arrays = _fixed_inputs(inputs)
    names = [spec.name for spec in outputs]
    with _model_folder(target, options) as folder:
        model_file = folder / MODEL_VERSION / MODEL_FILE
        model_file.parent.mkdir()
        shutil.copyfile(source, model_file)
        config = triton_config(target.name, inputs, outputs, gpu=options.gpu)
        text = text_format.MessageToString(json_format.ParseDict(config, model_config_pb2.ModelConfig()))
        (folder / CONFIG_FILE).write_text(text)
        check_model_folder(folder, target.name)
        expected, copied = onnx_io.run(source, arrays, names), onnx_io.run(model_file, arrays, names)
        comparison = compare_outputs(target.name, "onnxruntime (Triton copy)", names, expected, copied, ATOL)
        require_all([comparison])
    role = onnx_io.metadata(onnx_io.load(source)).get("role")
    return ExportedFile(target, role or "model", "triton", comparison)


@contextlib.contextmanager
def _model_folder(target: Path, options: ExportOptions) -> Iterator[Path]:
    """A staging folder laid out as a Triton model folder; when the block succeeds, its version folder and
    config.pbtxt replace those of `target`, and nothing else there changes (a folder it created for an export that
    failed is removed)."""
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        with _model_folder_lock(target):
            taken = [str(target / name) for name in (MODEL_VERSION, CONFIG_FILE) if (target / name).exists()]
            if taken and not options.overwrite:
                raise UsageError(
                    f"{' and '.join(taken)} exist already; pass --overwrite to replace version {MODEL_VERSION} and "
                    "config.pbtxt (other versions and files there stay), or another --out."
                )
            with staged_entries(target, (MODEL_VERSION, CONFIG_FILE)) as folder:
                yield folder
    finally:
        if created:
            with contextlib.suppress(OSError):  # not empty: the export succeeded
                target.rmdir()


def _model_folder_lock(target: Path) -> contextlib.AbstractContextManager[None]:
    """One export at a time per model folder; a second one is refused at once, naming the first."""

    def busy(holder: str) -> OutputError:
        return OutputError(f"{target} is being written by another export ({holder}); wait, or pass another --out.")

    return exclusive(target / LOCK_FILE, busy, remove=True)


def _fixed_inputs(inputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Seeded values per input: normal noise for floats, 0, 1, 2, ... cycling through ten classes for integers."""
    rng = np.random.default_rng(REFERENCE_SEED)
    arrays = {}
    for spec in inputs:
        shape = (REFERENCE_BATCH, *spec.shape[1:])
        dtype = DATATYPES[spec.datatype]
        if np.issubdtype(dtype, np.integer):
            labels = (np.arange(REFERENCE_BATCH) % 10).reshape(-1, *[1] * (len(shape) - 1))
            arrays[spec.name] = np.broadcast_to(labels, shape).astype(dtype)
        else:
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
    return arrays


def onnx_tensors(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """An ONNX file's inputs and outputs in the protocol's terms: datatype names, -1 for dynamic axes."""
    return onnx_signature(onnx_io.load(path), path, "a Triton model")


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt against Triton's schema; an unknown or misspelt field raises text_format.ParseError."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def check_model_folder(folder: Path, name: str) -> model_config_pb2.ModelConfig:
    """A model folder's configuration parsed, named `name`, batched, and naming exactly the ONNX file's tensors with
    their types and dims (without the batch axis)."""
    config = read_config(folder / CONFIG_FILE)
    inputs, outputs = onnx_tensors(folder / MODEL_VERSION / MODEL_FILE)
    expected = [(spec.name, f"TYPE_{spec.datatype}", list(spec.shape[1:])) for spec in [*inputs, *outputs]]
    written = [
        (tensor.name, model_config_pb2.DataType.Name(tensor.data_type), list(tensor.dims))
        for tensor in [*config.input, *config.output]
    ]
    if config.name != name or config.max_batch_size < 1 or written != expected:
        raise ModelError(
            f"{folder / CONFIG_FILE} does not describe its model.onnx: name {config.name!r} (folder {name!r}), "
            f"max_batch_size {config.max_batch_size}, tensors {written} vs the ONNX file's {expected}."
        )
    return config
