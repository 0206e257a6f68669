"""Export a run or a Keras model file in any registered format, validating every file against the Keras model.

Each writer puts its file under a temporary name, reloads it, runs it on fixed inputs and compares with the Keras
model; only a file within tolerance is renamed into place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ganport.errors import ModelError, UsageError
from ganport.export.formats import FORMATS
from ganport.export.job import ExportedFile, ExportOptions, Job
from ganport.export.precision import FULL_PRECISION, PRECISIONS
from ganport.export.sources import (
    SourceModel,
    calibration_inputs,
    check_sizes,
    load_sources,
    reference_inputs,
    sized,
)
from ganport.export.vectors import TEST_VECTORS_SUFFIX, holds, vector_arrays
from ganport.files import ensure_writable_folder, file_problem
from ganport.keras_files.config import KERAS_METADATA
from ganport.keras_files.load import LoadOptions, is_saved_model
from ganport.keras_files.run import reference_outputs
from ganport.run import RunFolder


def _target(source: SourceModel, fmt: str, out: Path, single: bool, precision: str) -> Path:
    suffix = FORMATS[fmt].suffix
    variant = "" if precision == FULL_PRECISION else f"_{precision}"
    target = out if _names_file(out, fmt, single) else out / f"{source.stem}{variant}{suffix}"
    if target.resolve() == source.origin.resolve():
        raise UsageError(f"Exporting would overwrite the source {source.origin}; pass --out with another path.")
    return target


def _names_file(out: Path, fmt: str, single: bool) -> bool:
    """Whether --out is the file to write (one model, the format's suffix) rather than a folder to write into."""
    suffix = FORMATS[fmt].suffix
    return single and bool(suffix) and out.suffix == suffix


def _require_valid_options(fmt: str, options: ExportOptions) -> None:
    """Refuse a format, precision or option that does not apply, before anything is loaded."""
    if fmt not in FORMATS:
        raise UsageError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if options.precision not in PRECISIONS:
        raise UsageError(f"Unknown precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if options.precision != FULL_PRECISION and not FORMATS[fmt].onnx_precisions:
        onnx_formats = " or ".join(name for name, item in FORMATS.items() if item.onnx_precisions)
        raise UsageError(
            f"--precision {options.precision} applies to ONNX only (--format {onnx_formats}); "
            "DL4J and Keras files stay fp32."
        )
    if options.gpu and fmt != "triton":
        raise UsageError(f"--gpu adds a GPU instance group to a Triton model; it does not apply to --format {fmt}.")
    if options.precision != FULL_PRECISION and options.score is None:
        raise UsageError(
            f"--precision {options.precision} is quality-gated: pass ExportOptions(score=...), e.g. "
            "ganport.evaluate.score_generator."
        )


def export(
    source: str | Path,
    fmt: str,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    options: ExportOptions | None = None,
    load: LoadOptions | None = None,
) -> list[ExportedFile]:
    """Export every model in `source` to `fmt`, validating each against the Keras model; `load`: what a model file
    needs from its user (an architecture .json's weights file, custom objects, trust in its Python code)."""
    load = load or LoadOptions()
    options = options or ExportOptions()
    _require_valid_options(fmt, options)
    source_path = Path(source)
    into_source = source_path.is_dir() and not is_saved_model(source_path)  # a run folder's exports go inside it
    out_path = Path(out) if out is not None else (source_path / "export" if into_source else source_path.parent)
    onnx_files = onnx_sources(source_path)
    if onnx_files:
        if load != LoadOptions():
            raise UsageError(
                f"--weights, --custom-objects and --trust-code go with Keras model files; {onnx_files[0]} is ONNX. "
                "Drop them."
            )
        return _export_onnx_files(onnx_files, fmt, out_path, options, log)
    if is_saved_model(source_path) and not (source_path / KERAS_METADATA).is_file():
        from ganport.export.saved_graph import write_signature

        return write_signature(source_path, fmt, out_path, options, load.trust_code, log)
    sources = load_sources(source, load, log)
    if len(sources) > 1:
        sources = [item for item in sources if item.role.name in FORMATS[fmt].roles]
    single = len(sources) == 1
    ensure_writable_folder(out_path.parent if _names_file(out_path, fmt, single) else out_path, "--out")
    first, *others = check_sizes(sources, options.input_sizes)
    exported = []
    for item in sources:
        target = _target(item, fmt, out_path, single=single, precision=options.precision)
        job = _job(item, sources, first, target, options, log, calibrate=PRECISIONS[options.precision].reduced)
        job = replace(job, at_other_sizes=tuple(_job(item, sources, sizes, target, options, log) for sizes in others))
        _require_new_or_overwrite(job, fmt)
        exported.append(FORMATS[fmt].write(job))
        log(exported[-1].comparison.line() + f" -> {target}")
    return exported


def _job(
    item: SourceModel,
    sources: list[SourceModel],
    sizes: tuple[int, ...] | None,
    target: Path,
    options: ExportOptions,
    log: Callable[[str], None],
    calibrate: bool = False,
) -> Job:
    """What writing `item` needs: its fixed inputs, at `sizes` for a model of dynamic size (whose files keep taking
    any size, except a DL4J one), the Keras model's outputs on them, and if asked what a reduced precision
    calibrates on."""
    sized_sources = [sized(source, sizes) for source in sources]
    inputs = reference_inputs(sized_sources)[item.role.name]
    reference = reference_outputs(item.keras_model, list(inputs.values()), item.origin)
    calibration = tuple(calibration_inputs(sized_sources)[item.role.name]) if calibrate else ()
    return Job(item, target, inputs, reference, options, log, calibration=calibration)


def _require_new_or_overwrite(job: Job, fmt: str) -> None:
    """Refuse, before any work, to replace a file the user has (a model, or test vectors that hold other numbers)
    unless --overwrite says to. A Triton model folder is checked by its own writer (its other versions stay)."""
    if not FORMATS[fmt].suffix or job.options.overwrite:
        return
    vectors = job.target.with_name(job.target.stem + TEST_VECTORS_SUFFIX)
    same = vector_arrays(job.inputs, job.item.output_names, job.reference)
    taken = [job.target] if job.target.exists() or job.target.is_symlink() else []
    if FORMATS[fmt].test_vectors and (vectors.exists() or vectors.is_symlink()) and not holds(vectors, same):
        taken.append(vectors)
    if taken:
        raise UsageError(
            f"{' and '.join(map(str, taken))} exist{'s' if len(taken) == 1 else ''} already; pass --overwrite to "
            "replace them, or another --out."
        )


def onnx_sources(source: Path) -> list[Path]:
    """The ONNX files a source names: itself, or a folder's generator*.onnx when it holds no Keras generator (a shipped
    model's folder, or a run's export folder: the fp32 generator and its reduced-precision variants)."""
    if source.suffix == ".onnx":
        problem = file_problem(source)
        if problem:
            raise ModelError(f"{source} {problem}; pass an ONNX file, a run folder or a Keras model file.")
        return [source]
    if source.is_dir() and not RunFolder(source).generator.is_file():
        return sorted(source.glob("generator*.onnx"))
    return []


def _export_onnx_files(
    files: list[Path], fmt: str, out: Path, options: ExportOptions, log: Callable[[str], None]
) -> list[ExportedFile]:
    takers = [name for name, item in FORMATS.items() if item.takes_onnx]
    if not FORMATS[fmt].takes_onnx:
        raise UsageError(
            f"{files[0]} is ONNX already; --format {' or '.join(takers)} takes ONNX files. Export to {fmt} from the "
            "Keras model (a run folder or a .keras/.h5 file)."
        )
    if options.precision != FULL_PRECISION:
        raise UsageError(
            f"--precision {options.precision} converts a Keras model; {files[0]} is ONNX already (ganport's shipped "
            "folders hold their int8 variant, which is exported beside the fp32 one)."
        )
    ensure_writable_folder(out, "--out")
    exported = []
    for file in files:
        target = out / file.stem
        exported.append(FORMATS[fmt].write_from_onnx(file, target, options, log))
        log(exported[-1].comparison.line() + f" -> {target}")
    return exported
