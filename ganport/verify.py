"""Parity across runtimes: the Keras model against onnxruntime, tf_keras's reload of the HDF5 file, real DL4J and
ONNX Runtime for Java.

Every backend runs on the inputs stored in the export's test-vector files, and is compared with the Keras
predictions stored there (which the live Keras model must reproduce too). Every file is read as export reads it:
models through ganport's loaders and code gate, test vectors checked in shape and size before they are used. The
bound each model is held to comes from ganport's rule applied to the model itself (ganport.parity); the bound stored
with the vectors may only tighten it, so a tampered vector file cannot let another model pass. The JVM runtimes run
in java-check/, built with Maven on first use, with their heap and native memory capped from the memory budget.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ganport import onnx_io
from ganport.budget import memory_budget, require_within_budget
from ganport.contract import LABEL_INPUT, ROLES, describe, role_from_shapes, role_named_by
from ganport.errors import GanportError, UsageError, reason_of
from ganport.export.vectors import PARITY, PROVENANCE, TEST_VECTORS_SUFFIX, WEIGHTS, weight_digests
from ganport.files import file_problem, size_text
from ganport.host import describe_provenance
from ganport.parity import (
    ATOL,
    STORED_ERROR_CEILING,
    Accumulation,
    Comparison,
    Float64Errors,
    against_float64,
    compare_outputs,
    float64_errors,
    scale,
)
from ganport.run import RunFolder

JAVA_CHECK_ENV = "GANPORT_JAVA_CHECK"
PARITY_MAIN = "ganport.dl4j.ParityCheck"
# The model files a test-vector file can be checked against, by suffix.
MODEL_SUFFIXES = (".keras", ".onnx", ".h5")
# Copies of a test-vector file's arrays the JVM holds at once at worst: the arrays read, the runtime's own
# activations (DL4J keeps every layer's), and the slice being compared.
JVM_COPIES = 3
# The JVM's own memory beside the data: its code, DL4J's and onnxruntime's native libraries.
JVM_BASE = 768 * 2**20
# How a JVM that ran out of its memory cap says so.
_OUT_OF_MEMORY = ("OutOfMemoryError", "Physical memory usage is too high", "Cannot allocate new")


class VerifyError(GanportError):
    """A backend could not be run at all (as opposed to running and disagreeing)."""


def java_check_dir() -> Path:
    folder = Path(os.environ.get(JAVA_CHECK_ENV, Path(__file__).resolve().parent.parent / "java-check"))
    if not (folder / "pom.xml").is_file():
        raise VerifyError(
            f"java-check not found at {folder}; run from a ganport checkout, set {JAVA_CHECK_ENV}, or pass --no-dl4j."
        )
    return folder


def build_java_check(log: Callable[[str], None] = print) -> list[str]:
    """Build java-check with Maven unless its build is newer than its sources; returns the java classpath."""
    folder = java_check_dir()
    classpath_file = folder / "target" / "classpath.txt"
    classes = folder / "target" / "classes"
    sources = [folder / "pom.xml", *(folder / "src" / "main").rglob("*")]
    fresh = classpath_file.is_file() and classpath_file.stat().st_mtime >= max(p.stat().st_mtime for p in sources)
    if not fresh:
        for tool in ("mvn", "java"):
            if shutil.which(tool) is None:
                raise VerifyError(
                    f"`{tool}` is not installed; DL4J parity needs Maven and a JDK 17 "
                    "(apt-get install maven openjdk-17-jdk-headless), or pass --no-dl4j."
                )
        log(
            "building java-check with Maven (the first build downloads about 330 MB: DL4J, ND4J's oneDNN build, ONNX "
            "Runtime for Java; later ones reuse ~/.m2)"
        )
        result = subprocess.run(
            ["mvn", "-B", "-q", "-DskipTests", "package"], cwd=folder, capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise VerifyError(f"Maven could not build java-check (exit {result.returncode}): {tail}")
        classpath_file.touch()  # Maven leaves an unchanged classpath file's time alone: mark the build fresh
    return [str(classes), *classpath_file.read_text().strip().split(os.pathsep)]


@dataclass(frozen=True)
class JvmMemory:
    """java-check's memory caps, from the memory budget: its heap (-Xmx), the native memory ND4J allocates through
    JavaCPP (maxbytes), and the whole process (maxphysicalbytes: JavaCPP refuses allocations past it)."""

    heap: int
    native: int

    @classmethod
    def from_budget(cls) -> JvmMemory:
        budget = memory_budget()
        return cls(heap=max(256 * 2**20, budget // 4), native=budget)

    @property
    def physical(self) -> int:
        return self.heap + self.native + JVM_BASE

    def options(self) -> list[str]:
        return [
            f"-Xmx{self.heap}",
            f"-Dorg.bytedeco.javacpp.maxbytes={self.native}",
            f"-Dorg.bytedeco.javacpp.maxphysicalbytes={self.physical}",
        ]

    def describe(self) -> str:
        return f"heap {size_text(self.heap)}, native {size_text(self.native)}"


# java-check's runtimes: the name ParityCheck takes, and the suffix of the files it runs.
JVM_RUNTIMES = {"dl4j": ".h5", "onnx": ".onnx"}
# Each runtime's backend name in the table, as java-check's reports give it (GanModel.Runtime.label).
JVM_BACKENDS = {"dl4j": "dl4j", "onnx": "java onnxruntime"}
# ND4J's native builds java-check carries (pom.xml), by the name GANPORT_DL4J_NATIVES takes, each with the JavaCPP
# platform extension that loads it. oneDNN's runs DL4J's "valid" Deconvolution2D through oneDNN, about 4x faster
# (docs/java-check.md); it is the build to deploy with, so parity is proven on it unless the plain one is named.
DL4J_NATIVES_ENV = "GANPORT_DL4J_NATIVES"
DL4J_NATIVES = {"onednn": "-onednn", "plain": ""}


def dl4j_natives() -> str:
    """The ND4J build GANPORT_DL4J_NATIVES names (oneDNN's by default)."""
    name = os.environ.get(DL4J_NATIVES_ENV, "onednn")
    if name not in DL4J_NATIVES:
        raise UsageError(
            f"{DL4J_NATIVES_ENV}={name!r} names no ND4J build java-check has: use one of {', '.join(DL4J_NATIVES)}."
        )
    return name


def dl4j_natives_option(natives: str) -> str:
    """The JVM option under which JavaCPP loads that ND4J build."""
    return f"-Dorg.bytedeco.javacpp.platform.extension={DL4J_NATIVES[natives]}"


def run_java_check(folder: Path, runtime: str = "dl4j", log: Callable[[str], None] = print) -> dict:
    """Run java-check's ParityCheck on a folder of exports through one JVM runtime (DL4J on the HDF5 files, ONNX
    Runtime for Java on the ONNX files), within JvmMemory's caps; returns its JSON report: numbers only (no tolerance
    is given to it), which ganport's parity rule judges here."""
    natives = dl4j_natives()
    classpath = build_java_check(log)
    memory = JvmMemory.from_budget()
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "report.json"
        command = [
            "java",
            *memory.options(),
            dl4j_natives_option(natives),
            "-cp",
            os.pathsep.join(classpath),
            PARITY_MAIN,
            "--runtime",
            runtime,
            str(folder),
            str(report_path),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if not report_path.is_file():
            tail = " | ".join(result.stderr.strip().splitlines()[-3:])
            if result.returncode in (-9, 137) or any(sign in result.stderr for sign in _OUT_OF_MEMORY):
                raise VerifyError(
                    f"java-check's parity check ({runtime}) ran out of its memory cap ({memory.describe()}, from "
                    f"ganport's memory budget of {size_text(memory_budget())}); the models in {folder} need more: "
                    "raise GANPORT_MEMORY_BUDGET on a machine that has it, or pass --no-jvm."
                )
            raise VerifyError(f"java-check's parity check ({runtime}) did not run (exit {result.returncode}): {tail}")
        report = json.loads(report_path.read_text())
    if report.get("natives") != natives:  # fail closed: parity proven on one build must not be claimed for another
        raise VerifyError(
            f"java-check ran ND4J's {report.get('natives')} build where {DL4J_NATIVES_ENV} asks for {natives}: "
            "rebuild java-check (rm -r java-check/target) so that its classpath holds both builds."
        )
    if runtime == "dl4j":
        log(f"DL4J ran on ND4J's {natives} build (set {DL4J_NATIVES_ENV} to one of {', '.join(DL4J_NATIVES)})")
    return report


@dataclass(frozen=True)
class VectorFile:
    """A test-vector file's inputs (by name, in the model's order), the Keras predictions (by output name), and
    ganport's records: the parity rule's inputs, where the predictions were computed, the model file's weight digests
    (each None in files written before ganport stored it)."""

    inputs: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]
    parity: dict | None = None
    provenance: dict | None = None
    weights: dict[str, str] | None = None
    path: Path | None = None  # the file, from which the activations are read when needed

    @property
    def main_input(self) -> str:
        """The noise or image input: the one that is not a class label."""
        return next((name for name in self.inputs if name != LABEL_INPUT), next(iter(self.inputs)))

    @property
    def stored_accumulation(self) -> Accumulation | None:
        if self.parity is None:
            return None
        return Accumulation(self.parity["summing_layers"], self.parity["longest_sum"])

    @property
    def stored_float64_errors(self) -> Float64Errors | None:
        """Keras float32's errors against float64 as export recorded them (exports before 2026-12-07 did not)."""
        if self.parity is None or "keras_float32_error" not in self.parity:
            return None
        return Float64Errors(tuple(self.parity["keras_float32_error"]), tuple(self.parity["float64_scale"]))

    def activations(self, names: list[str]) -> dict[str, np.ndarray]:
        """The stored Keras activations of the named layers that the file holds (h5 exports store every layer's, for
        the first of the inputs: ganport.export.vectors.activation_rows), each checked to hold 1 to batch rows."""
        if self.path is None:
            return {}
        with h5py.File(self.path, "r") as archive:
            group = archive.get("activations")
            stored = {name: group[name][()] for name in names if group is not None and name in group}
        batch = len(next(iter(self.inputs.values())))
        for name, array in stored.items():
            if array.ndim < 1 or not 1 <= len(array) <= batch:
                raise VerifyError(
                    f"{self.path}: activations/{name} holds {len(array) if array.ndim else 0} rows for {batch} "
                    "inputs; re-export with `ganport export --format h5`."
                )
        return stored


_RECORDS = (PARITY, PROVENANCE, WEIGHTS)


def read_vectors(path: Path) -> VectorFile:
    """A test-vector file, checked: its declared arrays within the memory budget, its name lists, arrays and records
    of the kinds ganport writes; anything else is one VerifyError naming the file and what is wrong."""
    from ganport.keras_files.sniff import hdf5_dataset_bytes

    problem = file_problem(path)
    if problem:
        raise VerifyError(f"{path} {problem}; re-export with `ganport export --format h5` (or onnx).")
    require_within_budget(
        f"{path}: the arrays it stores, held {JVM_COPIES} times over by a JVM runtime",
        hdf5_dataset_bytes(path) * JVM_COPIES,
        "the file is damaged or hostile, or too large to check here.",
    )
    try:
        with h5py.File(path, "r") as archive:
            inputs = {name: _array(archive, "inputs", name) for name in _names(archive, "inputs")}
            predictions = {name: _array(archive, "predictions", name) for name in _names(archive, "outputs")}
            records = {name: _record(archive, name) for name in _RECORDS}
    except (OSError, KeyError, ValueError, TypeError, AttributeError, IndexError, RecursionError) as error:
        raise VerifyError(
            f"{path} is not a ganport test-vector file ({reason_of(error)}); re-export with "
            "`ganport export --format h5`."
        ) from None
    batches = {len(array) for array in [*inputs.values(), *predictions.values()]}
    if len(batches) != 1 or batches == {0}:
        raise VerifyError(f"{path} holds arrays of different batch sizes ({sorted(batches)}); re-export it.")
    return VectorFile(inputs, predictions, records[PARITY], records[PROVENANCE], records[WEIGHTS], path)


def _names(archive: h5py.File, attribute: str) -> list[str]:
    names = json.loads(archive.attrs[attribute])[attribute]
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"its {attribute!r} attribute is not a list of names")
    if len(set(names)) != len(names):
        raise ValueError(f"its {attribute!r} attribute names a tensor twice")
    return names


def _array(archive: h5py.File, group: str, name: str) -> np.ndarray:
    item = archive[group][name]
    if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "biuf" or item.ndim < 1:
        raise ValueError(f"{group}/{name} is not an array of numbers with a batch axis")
    return item[()]


def _record(archive: h5py.File, name: str) -> dict | None:
    """One of ganport's JSON records, of the shape ganport writes it, or None when absent (older exports)."""
    if name not in archive.attrs:
        return None
    record = json.loads(archive.attrs[name])
    if not isinstance(record, dict) or not all(isinstance(key, str) for key in record):
        raise ValueError(f"its {name!r} record is not an object")
    if name == PARITY and not all(
        isinstance(record.get(key), int) and not isinstance(record.get(key), bool) and record[key] >= 0
        for key in ("summing_layers", "longest_sum")
    ):
        raise ValueError(f"its {name!r} record does not hold the rule's summing_layers and longest_sum")
    if name == PARITY and "keras_float32_error" in record:
        lists = [record.get(key) for key in ("keras_float32_error", "float64_scale")]
        if (
            not all(isinstance(found, list) for found in lists)
            or len(lists[0]) != len(lists[1])
            or not all(
                isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
                for found in lists
                for value in found
            )
        ):
            raise ValueError(f"its {name!r} record's float64 errors are not lists of non-negative numbers")
    if name in (WEIGHTS, PROVENANCE) and not all(isinstance(value, str) for value in record.values()):
        raise ValueError(f"its {name!r} record does not map names to text")
    return record


def export_folder(source: Path, log: Callable[[str], None]) -> tuple[Path, Path | None]:
    """The folder of exports to check and, for a run, the run folder holding the live Keras models."""
    if RunFolder(source).is_run():
        folder = source / "export"
        needed = {"onnx": folder / "generator.onnx", "h5": folder / "generator.h5"}
        for fmt, path in needed.items():
            if not path.is_file():
                from ganport.export import export

                log(f"exporting {source} to {fmt} first")
                export(source, fmt, folder, log=log)
        return folder, source
    if source.is_dir():
        return source, None
    problem = file_problem(source) or "is a file"
    raise UsageError(f"{source} {problem}; pass a run folder or a folder of exports (and their test vectors).")


def model_files(folder: Path, run_folder: Path | None, stem: str) -> dict[str, Path]:
    """The model files beside a test-vector file (the live .keras in a run folder first), by suffix; a name that is
    there but cannot be read as a file (a broken link, a loop, a folder) is refused, and so is a stem without any."""
    found: dict[str, Path] = {}
    for suffix in MODEL_SUFFIXES:
        places = [folder / f"{stem}{suffix}"]
        if suffix == ".keras" and run_folder is not None:
            places.insert(0, run_folder / f"{stem}{suffix}")
        for path in places:
            if not (path.exists() or path.is_symlink()):
                continue
            problem = file_problem(path)
            if problem:
                raise VerifyError(f"{path} {problem}; restore the model file or re-export {stem}.")
            found.setdefault(suffix, path)
    if not found:
        raise VerifyError(
            f"{folder} holds {stem}{TEST_VECTORS_SUFFIX} but no model to check against it "
            f"({', '.join(stem + suffix for suffix in MODEL_SUFFIXES)}); nothing was verified. Re-export {stem}, or "
            "remove its test vectors."
        )
    return found


def verify(
    source: str | Path, jvm: bool = True, atol: float | None = None, log: Callable[[str], None] = print
) -> list[Comparison]:
    """Compare every available backend with the Keras predictions on the same fixed inputs; with `jvm`, also DL4J
    (the HDF5 files) and ONNX Runtime for Java (the ONNX files) through java-check.

    Each model is held to ganport's float32 rule (ganport.parity), computed from the model itself and tightened by
    the rule's inputs stored with its vectors, unless `atol` gives a fixed bound instead.
    """
    if atol is not None and not 0 < atol < 1:  # also false for NaN
        raise UsageError(
            f"--atol must be a bound above 0 and below 1 per unit of output scale, such as 1e-4 (1 or more accepts "
            f"any output). Received: {atol}"
        )
    folder, run_folder = export_folder(Path(source), log)
    vector_files = sorted(folder.glob(f"*{TEST_VECTORS_SUFFIX}"), key=lambda p: (not p.name.startswith("gen"), p.name))
    if not vector_files:
        raise VerifyError(f"{folder} holds no *{TEST_VECTORS_SUFFIX}; export with `--format onnx` or `h5` first.")
    stems = [vectors.name.removesuffix(TEST_VECTORS_SUFFIX) for vectors in vector_files]
    expected = {stem: read_vectors(vectors) for stem, vectors in zip(stems, vector_files, strict=True)}
    models = {stem: model_files(folder, run_folder, stem) for stem in stems}
    reports: dict[str, dict[str, dict]] = {runtime: {} for runtime in JVM_RUNTIMES}
    for runtime, suffix in JVM_RUNTIMES.items() if jvm else ():
        if any(suffix in files for files in models.values()):
            report = run_java_check(folder, runtime, log)
            reports[runtime] = {result.get("model"): result for result in report.get("models", [])}
    comparisons: list[Comparison] = []
    for stem in stems:
        found = {runtime: results.get(stem) for runtime, results in reports.items()} if jvm else None
        comparisons += _verify_model(stem, expected[stem], models[stem], atol, found, run_folder)
    return comparisons


def _verify_model(
    stem: str,
    expected: VectorFile,
    files: dict[str, Path],
    atol: float | None,
    jvm: dict[str, dict | None] | None,
    run_folder: Path | None = None,
) -> list[Comparison]:
    """Every backend's comparison for one model: its files loaded as export loads them, its bound from the rule;
    `jvm`: java-check's result for it per runtime (None when the JVM runtimes were not asked for)."""
    from ganport.keras_files.load import load_model_file
    from ganport.keras_files.run import predict_all, shapes

    loaded = {suffix: load_model_file(path) for suffix, path in files.items() if suffix != ".onnx"}
    proto = onnx_io.load(files[".onnx"]) if ".onnx" in files else None
    tolerance = atol if atol is not None else _rule(expected, loaded, proto)
    origin = describe_provenance(expected.provenance)
    truth = Float64Truth(expected, _source_of_truth(expected, files, loaded, run_folder)) if atol is None else None
    checked = partial(_checked, stem, expected=expected, tolerance=tolerance, origin=origin, truth=truth)
    arrays = list(expected.inputs.values())
    comparisons = []
    if ".keras" in loaded:
        live = loaded[".keras"]
        comparisons.append(checked("keras", *shapes(live), run=partial(predict_all, live, arrays)))
    if proto is not None:
        inputs, outputs = onnx_io.signature(proto)
        run_onnx = partial(onnx_io.run, files[".onnx"], expected.inputs, list(expected.predictions))
        comparisons.append(checked("onnxruntime", [i.fixed for i in inputs], [o.fixed for o in outputs], run=run_onnx))
    if ".h5" in loaded:
        if expected.weights is not None:
            comparisons.append(_weights_comparison(stem, files[".h5"], expected.weights, origin))
        reloaded = loaded[".h5"]
        backend = "tf_keras h5" if not _is_keras3(reloaded) else "keras h5"
        comparisons.append(checked(backend, *shapes(reloaded), run=partial(predict_all, reloaded, arrays)))
    for runtime, suffix in JVM_RUNTIMES.items() if jvm is not None else ():
        if suffix in files:  # an ONNX-only export is checked on the JVM too
            comparisons.extend(_jvm_comparisons(stem, runtime, jvm[runtime], tolerance, expected, origin, truth))
    return comparisons


def _layer_note(layer: dict, compared: int, batch: int) -> str:
    """A layer row's note; where the layer was compared on the first inputs only (those its activations are stored
    for), how many."""
    inputs = layer.get("inputs", batch)
    first = f", on the first {inputs} of {batch} inputs" if inputs < batch else ""
    return f"worst of {compared}: {layer['name']}, scale {layer['scale']:.3g}{first}"


def _layer_against_float64(name: str, comparison: Comparison, errors: Float64Errors) -> Comparison:
    deep = against_float64(comparison, [name], None, errors)
    return replace(deep, note=f"{name}: {deep.note}")


class Float64Truth:
    """The float64 truth for one model's test vectors (ganport.parity's deep-model rule), computed on first need:
    from its Keras graph when a Keras model file is at hand, else from Keras float32's errors as the vectors record
    them, which may widen the static bound by STORED_ERROR_CEILING at most."""

    def __init__(self, expected: VectorFile, keras_model: Any) -> None:
        self.expected, self.keras_model = expected, keras_model

    @functools.cached_property
    def graph(self) -> Any:
        from ganport.export.graph import read_graph

        return None if self.keras_model is None else read_graph(self.keras_model)

    @functools.cached_property
    def outputs(self) -> list[np.ndarray] | None:
        from ganport.export.graph import float64_outputs

        return None if self.graph is None else float64_outputs(self.graph, list(self.expected.inputs.values()))

    @functools.cached_property
    def errors(self) -> Float64Errors | None:
        if self.outputs is not None:
            return float64_errors(list(self.expected.predictions.values()), self.outputs)
        return self.expected.stored_float64_errors

    @property
    def ceiling(self) -> float | None:
        return None if self.outputs is not None else STORED_ERROR_CEILING

    def check(self, comparison: Comparison, candidates: list[np.ndarray] | None = None) -> Comparison:
        """`comparison` as it is when it passed the static rule or no truth is known, else by the deep rule."""
        if comparison.passed or self.errors is None:
            return comparison
        names = list(self.expected.predictions)
        return against_float64(comparison, names, self.outputs, self.errors, candidates, ceiling=self.ceiling)

    def layer_errors(self, names: list[str]) -> dict[str, Float64Errors]:
        """Keras float32's own error against float64 for each named layer the graph holds, from the activations
        the test vectors store (as java-check compares them)."""
        from ganport.export.graph import float64_outputs

        known = [name for name in names if self.graph is not None and name in self.graph.names()]
        stored = self.expected.activations(known)
        known = [name for name in known if name in stored]
        if not known:
            return {}
        rows = max(len(stored[name]) for name in known)
        first_inputs = [array[:rows] for array in self.expected.inputs.values()]
        truths = float64_outputs(self.graph, first_inputs, tuple(known))[len(self.expected.predictions) :]
        return {
            name: float64_errors([stored[name]], [truth[: len(stored[name])]])
            for name, truth in zip(known, truths, strict=True)
        }


def _source_of_truth(
    expected: VectorFile, files: dict[str, Path], loaded: dict[str, Any], run_folder: Path | None
) -> Any:
    """The model whose float64 outputs are the truth for the deep-model rule: one known to hold the weights that
    made the stored predictions, never a candidate that may have changed (a tampered file would vouch for itself):
    a run folder's own Keras model, or an HDF5 export whose weights still match the digests taken at export. None
    when neither is at hand (the rule then uses the errors the vectors record, capped)."""
    if ".keras" in files and run_folder is not None and files[".keras"].parent == run_folder:
        return loaded[".keras"]
    if ".h5" in files and expected.weights is not None and weight_digests(files[".h5"]) == expected.weights:
        return loaded[".h5"]
    return None


def _is_keras3(model: Any) -> bool:
    import keras

    return isinstance(model, keras.Model)


def _rule(expected: VectorFile, loaded: dict[str, Any], proto: Any) -> float:
    """The model's bound per unit of output scale: ganport's rule on the model's own summation (its Keras graph, or
    an upper estimate from its ONNX graph), tightened by the rule's inputs stored with its vectors."""
    from ganport.export.graph import read_graph

    keras_model = loaded.get(".h5") or loaded.get(".keras")
    accumulation = read_graph(keras_model).accumulation() if keras_model is not None else onnx_io.accumulation(proto)
    rule = accumulation.tolerance(ATOL)
    stored = expected.stored_accumulation
    return rule if stored is None else min(rule, stored.tolerance(ATOL))


def _weights_comparison(stem: str, h5_file: Path, stored: dict[str, str], origin: str) -> Comparison:
    """The HDF5 file's weights against the digests taken when it was exported: any change, one ulp included."""
    found = weight_digests(h5_file)
    changed = sorted(name for name in stored.keys() | found.keys() if stored.get(name) != found.get(name))
    if not changed:
        return Comparison(stem, "h5 weights", 0.0, 0.0, 0.0, note=f"{len(found)} arrays as exported", origin=origin)
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return Comparison(
        stem,
        "h5 weights",
        float("inf"),
        float("inf"),
        0.0,
        note=f"changed since export (SHA-256 differs): {shown}; re-export it",
        origin=origin,
    )


def _checked(
    stem: str,
    backend: str,
    input_shapes: list[list],
    output_shapes: list[list],
    *,
    expected: VectorFile,
    tolerance: float,
    origin: str,
    truth: Float64Truth | None,
    run: Callable[[], list[np.ndarray]],
) -> Comparison:
    """Compare a backend's model with the test vectors, or report why it cannot be: a model that takes other inputs
    than the vectors hold, or whose role contradicts its file name (a discriminator saved as generator.h5). A size
    that is dynamic in the model (None) takes any size the vectors hold."""
    held = [list(array.shape) for array in expected.inputs.values()]
    main_shape = (
        input_shapes[list(expected.inputs).index(expected.main_input)] if len(held) == len(input_shapes) else []
    )
    output_shape = output_shapes[0]
    predicted = [None, *next(iter(expected.predictions.values())).shape[1:]]
    if None not in output_shape[1:] and math.prod(output_shape[1:]) == math.prod(predicted[1:]):
        output_shape = predicted  # a DL4J-ready file without its trailing Reshape: the same values, flat
    shown = describe(main_shape or input_shapes[0], output_shape)
    role, named = role_from_shapes(main_shape, output_shape), role_named_by(stem)
    problem = None
    if len(input_shapes) != len(held) or not all(
        _fits(shape[1:], sides[1:]) for shape, sides in zip(input_shapes, held, strict=True)
    ):
        problem = f"model maps {shown} but the test vectors hold {', '.join(map(str, held))}"
    elif named is not None and role in ROLES and role is not named:  # a swapped generator and discriminator
        problem = f"named {named.name} but maps {shown}"
    if problem is not None:
        return Comparison(stem, backend, float("inf"), float("inf"), tolerance, f"{problem}; re-export it", origin)
    names, outputs = list(expected.predictions), run()
    comparison = compare_outputs(stem, backend, names, list(expected.predictions.values()), outputs, tolerance)
    if truth is not None:
        comparison = truth.check(comparison, outputs)
    return replace(comparison, origin=origin)


def _fits(declared: list, held: list) -> bool:
    if len(declared) != len(held):
        return False
    return all(side is None or side == size for side, size in zip(declared, held, strict=True))


def _jvm_comparisons(
    stem: str,
    runtime: str,
    result: dict | None,
    tolerance: float,
    expected: VectorFile,
    origin: str,
    truth: Float64Truth | None = None,
) -> list[Comparison]:
    """A JVM runtime's output, and for DL4J the worst of its per-layer activations (a hidden layer can be off while
    outputs agree; ONNX files keep no layers to compare); with `truth`, what fails the static rule is held to the
    deep-model rule (ganport.parity), from java-check's numbers.

    Each layer's difference and scale come from java-check's ParityCheck (ModelResult.maxLayerScaledDiff there says
    why): a hidden layer's bound is the tolerance times its scale, as an output's is.
    """
    backend = JVM_BACKENDS[runtime]
    if result is None:  # java-check was given the file and reported nothing of it: fail closed
        reason = f"java-check reported nothing for {stem}{JVM_RUNTIMES[runtime]}"
        return [Comparison(stem, backend, float("inf"), float("inf"), tolerance, reason, origin)]
    # A check that stopped part way (an error after the outputs, while comparing layers) fails as a whole.
    if result.get("maxAbsDiff") is None or result.get("status") != "compared":
        return [Comparison(stem, backend, float("inf"), float("inf"), tolerance, result.get("reason") or "", origin)]
    batch = len(next(iter(expected.predictions.values())))
    reshaped = result["dl4jOutputShape"] != result["kerasOutputShape"]
    note = f"{backend} gives {result['dl4jOutputShape']}: compared flat, C order" if reshaped else ""
    output_scale = max(scale(prediction) for prediction in expected.predictions.values())
    output = Comparison(
        stem, backend, result["maxAbsDiff"], result["maxRelDiff"], tolerance * output_scale, note, origin
    )
    comparisons = [output if truth is None else truth.check(output)]
    layers = [
        Comparison(
            stem,
            f"{backend} layers",
            layer["maxAbsDiff"],
            layer["maxRelDiff"],
            tolerance * layer["scale"],
            note=_layer_note(layer, len(result["layers"]), batch),
            origin=origin,
        )
        for layer in result["layers"]
    ]
    named = list(zip((layer["name"] for layer in result["layers"]), layers, strict=True))
    failing = [name for name, comparison in named if not comparison.passed]
    if failing and truth is not None:
        errors = truth.layer_errors(failing)
        layers = [
            _layer_against_float64(name, comparison, errors[name])
            if name in errors and not comparison.passed
            else comparison
            for name, comparison in named
        ]
    if layers:
        comparisons.append(max(layers, key=lambda comparison: comparison.max_abs_diff - comparison.bound))
    return comparisons
