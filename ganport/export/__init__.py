"""Export a run or a Keras model file to ONNX, DL4J-ready HDF5 or native .keras, then validate what was written.

Each file is written under a temporary name, reloaded, run on fixed inputs and compared with the Keras model; only a
file within tolerance is renamed into place.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf

import ganport
from ganport.errors import ModelError, QualityGateError
from ganport.export import to_h5, to_onnx
from ganport.export.fold import fold_batch_norm
from ganport.export.layers import LayerSpec, build_sequential, read_layers
from ganport.files import atomic_path
from ganport.parity import (
    EXPORT_ATOL,
    REFERENCE_BATCH,
    REFERENCE_SEED,
    Comparison,
    compare,
    reference_noise,
    require_all,
)
from ganport.train import RunFolder

FORMATS = {"onnx": ".onnx", "h5": ".h5", "keras": ".keras"}
# Parity with Keras per ONNX precision. Reduced precisions are judged by sample quality; their bound only catches a
# broken graph (int8 moves single pixels by up to about half the [-1, 1] range without changing the digits).
PRECISION_ATOL = {"fp32": EXPORT_ATOL, "fp16": 1e-2, "int8": 1.0}
QUALITY_DROP = 0.1
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass(frozen=True)
class Role:
    """What a model is, and the tensor names its exports use."""

    name: str
    input_name: str
    output_name: str


GENERATOR = Role("generator", "z", "image")
DISCRIMINATOR = Role("discriminator", "image", "validity")


@dataclass(frozen=True)
class SourceModel:
    """A loaded model (Keras 3, or Keras 2 for files Keras 3 cannot read) and its flat, neutral layer list."""

    role: Role
    reference: Any  # the model exactly as loaded: exports are compared with it
    specs: list[LayerSpec]
    stem: str
    origin: Path
    iterations: int | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(side) for side in self.reference.inputs[0].shape[1:])

    def build(self, module: ModuleType) -> Any:
        """A flat Sequential of this model in keras (Keras 3) or tf_keras (Keras 2)."""
        return build_sequential(self.specs, self.input_shape, self.reference.name, module)


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    role: str
    format: str
    comparison: Comparison
    test_vectors: Path | None = None
    quality: dict[str, float] | None = None


def role_of(model: Any) -> Role:
    rank = len(model.inputs[0].shape)
    if rank == 2:
        return GENERATOR
    if rank in (3, 4) and tuple(model.outputs[0].shape[1:]) == (1,):
        return DISCRIMINATOR
    raise ModelError(
        f"Model {model.name!r} maps {list(model.inputs[0].shape)} to {list(model.outputs[0].shape)}; "
        "expected a generator [batch, latent] -> image or a discriminator image -> [batch, 1]."
    )


def load_model_file(path: Path) -> Any:
    """Load with Keras 3; a Keras 2 HDF5 file that Keras 3 cannot rebuild (a nested Sequential) loads with tf_keras."""
    if not path.is_file():
        raise ModelError(f"{path} does not exist; pass a run folder or a .keras/.h5 model file.")
    if path.suffix not in MODEL_SUFFIXES:
        raise ModelError(
            f"{path} is not a Keras model file ({', '.join(MODEL_SUFFIXES)}); pass a run folder or a saved Keras model."
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for corrupt or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if path.suffix != ".keras" and _saved_by_keras2(path):
            with contextlib.suppress(ModelError):
                return to_h5.load_model(path)
        raise ModelError(f"Cannot load {path} as a Keras model ({reason}).") from None


def _saved_by_keras2(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as archive:
            version = archive.attrs.get("keras_version", b"")
    except OSError:
        return False
    return (version.decode() if isinstance(version, bytes) else str(version)).startswith("2.")


def source_model(model: Any, stem: str, origin: Path, iterations: int | None = None) -> SourceModel:
    return SourceModel(role_of(model), model, read_layers(model), stem, origin, iterations)


def load_sources(source: str | Path) -> list[SourceModel]:
    """A run folder gives its generator and discriminator; a model file gives itself."""
    path = Path(source)
    run = RunFolder(path)
    if path.is_dir():
        if not run.generator.is_file():
            raise ModelError(
                f"{path} is not a ganport run folder (no {run.generator.name}); "
                "pass a run folder written by `ganport train` or a model file."
            )
        iterations = run.read_state().get("iteration")
        return [
            source_model(load_model_file(file), file.stem, file, iterations)
            for file in (run.generator, run.discriminator)
        ]
    return [source_model(load_model_file(path), path.stem, path)]


def reference_inputs(sources: list[SourceModel]) -> dict[str, np.ndarray]:
    """Fixed inputs per role: seeded noise for the generator; its images (or seeded uniform pixels) for the critic."""
    inputs: dict[str, np.ndarray] = {}
    generator = next((source for source in sources if source.role is GENERATOR), None)
    if generator is not None:
        inputs[GENERATOR.name] = reference_noise(generator.input_shape[-1])
    for source in sources:
        if source.role is DISCRIMINATOR:
            inputs[DISCRIMINATOR.name] = (
                predict(generator.reference, inputs[GENERATOR.name])
                if generator is not None
                else np.random.default_rng(REFERENCE_SEED)
                .uniform(-1, 1, (REFERENCE_BATCH, *source.input_shape))
                .astype(np.float32)
            )
    return inputs


def predict(model: Any, inputs: np.ndarray) -> np.ndarray:
    """Inference-mode output of a Keras 2 or Keras 3 model."""
    return np.asarray(model(tf.constant(inputs), training=False))


def metadata(source: SourceModel) -> dict[str, str]:
    return {
        "producer": "ganport",
        "ganport_version": ganport.__version__,
        "role": source.role.name,
        "latent_dim": str(source.input_shape[-1]) if source.role is GENERATOR else "",
        "iterations": "" if source.iterations is None else str(source.iterations),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }


def _target(source: SourceModel, fmt: str, out: Path, single: bool, precision: str) -> Path:
    suffix = FORMATS[fmt]
    variant = "" if precision == "fp32" else f"_{precision}"
    target = out if single and out.suffix == suffix else out / f"{source.stem}{variant}{suffix}"
    if target.resolve() == source.origin.resolve():
        raise ModelError(f"Exporting would overwrite the source {source.origin}; pass --out with another path.")
    return target


@dataclass(frozen=True)
class ExportOptions:
    """How to export: ONNX precision, BatchNorm folding, and whether to override the quality gate."""

    precision: str = "fp32"
    fold_batch_norm: bool = True
    force: bool = False


def export(
    source: str | Path,
    fmt: str,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    options: ExportOptions = ExportOptions(),
) -> list[ExportedFile]:
    """Export every model in `source` to `fmt`, validating each against the Keras model."""
    if fmt not in FORMATS:
        raise ModelError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if options.precision not in PRECISION_ATOL:
        raise ModelError(f"Unknown precision {options.precision!r}; choose one of {', '.join(PRECISION_ATOL)}.")
    if options.precision != "fp32" and fmt != "onnx":
        raise ModelError(f"--precision {options.precision} applies to ONNX only; DL4J and Keras files stay fp32.")
    sources = load_sources(source)
    if fmt == "onnx":
        sources = [s for s in sources if s.role is GENERATOR] or sources
    source_path = Path(source)
    out_path = (
        Path(out) if out is not None else (source_path / "export" if source_path.is_dir() else source_path.parent)
    )
    inputs = reference_inputs(sources)
    exported = []
    for item in sources:
        model_inputs = inputs[item.role.name]
        reference = predict(item.reference, model_inputs)
        target = _target(item, fmt, out_path, single=len(sources) == 1, precision=options.precision)
        exported.append(_EXPORTERS[fmt](_Job(item, target, model_inputs, reference, options, log)))
        log(exported[-1].comparison.line() + f" -> {target}")
    return exported


@dataclass(frozen=True)
class _Job:
    """One model to write in one format: what every exporter needs."""

    item: SourceModel
    target: Path
    inputs: np.ndarray
    reference: np.ndarray
    options: ExportOptions
    log: Callable[[str], None]


def _export_onnx(job: _Job) -> ExportedFile:
    item, options = job.item, job.options
    specs = fold_batch_norm(item.specs) if options.fold_batch_norm else item.specs
    model = build_sequential(specs, item.input_shape, item.reference.name, keras)
    info = {**metadata(item), "precision": options.precision, "batchnorm_folded": str(options.fold_batch_norm)}
    fp32 = to_onnx.convert(model, item.role.input_name, item.role.output_name, info)
    proto = to_onnx.PRECISIONS[options.precision](fp32)
    atol = PRECISION_ATOL[options.precision]
    backend = f"onnxruntime {options.precision}"
    quality = None
    with atomic_path(job.target) as temporary:
        to_onnx.save(proto, temporary)
        comparison = compare(item.stem, backend, job.reference, to_onnx.run(temporary, job.inputs), atol)
        require_all([comparison])
        if options.precision != "fp32":
            quality = _quality_gate(fp32, temporary, item, options, job.log)
    return ExportedFile(job.target, item.role.name, "onnx", comparison, quality=quality)


def _quality_gate(
    fp32: Any, variant: Path, item: SourceModel, options: ExportOptions, log: Callable[[str], None]
) -> dict[str, float]:
    """Score the variant and the fp32 graph on the same noise; refuse a classifier-score drop over QUALITY_DROP."""
    from ganport.evaluate import score_generator

    with tempfile.TemporaryDirectory() as scratch:
        baseline = to_onnx.save(fp32, Path(scratch) / "fp32.onnx")
        before = score_generator(baseline, log=log)
        after = score_generator(variant, log=log)
    quality = {
        "fp32_classifier_score": before.classifier_score,
        "classifier_score": after.classifier_score,
        "fp32_frechet_distance": before.frechet_distance,
        "frechet_distance": after.frechet_distance,
    }
    drop = before.classifier_score - after.classifier_score
    log(
        f"{item.stem} [{options.precision}]: classifier score {after.classifier_score:.3f} vs fp32 "
        f"{before.classifier_score:.3f} (drop {drop:+.3f}, limit {QUALITY_DROP}); Fréchet distance "
        f"{after.frechet_distance:.3f} vs {before.frechet_distance:.3f}"
    )
    if drop > QUALITY_DROP and not options.force:
        raise QualityGateError(
            f"{options.precision} export of {item.stem} drops the classifier score by {drop:.3f} "
            f"(> {QUALITY_DROP}); keep fp32, or pass --force to write it anyway."
        )
    return quality


def _export_h5(job: _Job) -> ExportedFile:
    item, target, inputs, reference = job.item, job.target, job.inputs, job.reference
    rebuilt = item.build(to_h5.tf_keras())
    vectors = target.with_name(target.stem + to_h5.TEST_VECTORS_SUFFIX)
    with atomic_path(target) as temporary:
        to_h5.save_model(rebuilt, temporary)
        reloaded = to_h5.load_model(temporary)
        comparison = compare(item.stem, "tf_keras h5", reference, predict(reloaded, inputs), PRECISION_ATOL["fp32"])
        require_all([comparison])
        to_h5.save_test_vectors(reloaded, inputs, reference, vectors, item.role.input_name, item.role.output_name)
    return ExportedFile(target, item.role.name, "h5", comparison, vectors)


def _export_keras(job: _Job) -> ExportedFile:
    item, target, inputs, reference = job.item, job.target, job.inputs, job.reference
    with atomic_path(target) as temporary:
        item.build(keras).save(temporary)
        reloaded = keras.saving.load_model(temporary, compile=False)
        comparison = compare(item.stem, "keras", reference, predict(reloaded, inputs), PRECISION_ATOL["fp32"])
        require_all([comparison])
    return ExportedFile(target, item.role.name, "keras", comparison)


_EXPORTERS: dict[str, Callable[[_Job], ExportedFile]] = {
    "onnx": _export_onnx,
    "h5": _export_h5,
    "keras": _export_keras,
}
