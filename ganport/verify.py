"""Parity across runtimes: the Keras model against onnxruntime, tf_keras's reload of the HDF5 file, real DL4J and
ONNX Runtime for Java.

Every backend runs on the inputs stored in the export's test-vector files, and is compared with the Keras
predictions stored there (which the live Keras model must reproduce too). The JVM runtimes run in java-check/, built
with Maven on first use.
"""

from __future__ import annotations

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

import h5py
import numpy as np

from ganport.contract import LABEL_INPUT, ROLES, describe, role_from_shapes, role_named_by
from ganport.errors import GanportError
from ganport.export.vectors import PARITY, PROVENANCE, TEST_VECTORS_SUFFIX, WEIGHTS, weight_digests
from ganport.parity import ATOL, Accumulation, Comparison, compare_outputs, describe_provenance, scale
from ganport.run import RunFolder

JAVA_CHECK_ENV = "GANPORT_JAVA_CHECK"
PARITY_MAIN = "ganport.dl4j.ParityCheck"


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
        log("building java-check with Maven (the first build downloads about 180 MB of DL4J; later ones reuse ~/.m2)")
        result = subprocess.run(
            ["mvn", "-B", "-q", "-DskipTests", "package"], cwd=folder, capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise VerifyError(f"Maven could not build java-check (exit {result.returncode}): {tail}")
        classpath_file.touch()  # Maven leaves an unchanged classpath file's time alone: mark the build fresh
    return [str(classes), *classpath_file.read_text().strip().split(os.pathsep)]


# java-check's runtimes: the name ParityCheck takes, and the suffix of the files it runs.
JVM_RUNTIMES = {"dl4j": ".h5", "onnx": ".onnx"}


def run_java_check(folder: Path, runtime: str = "dl4j", atol: float = ATOL, log: Callable[[str], None] = print) -> dict:
    """Run java-check's ParityCheck on a folder of exports through one JVM runtime (DL4J on the HDF5 files, ONNX
    Runtime for Java on the ONNX files); returns its JSON report. ParityCheck judges each model by the tolerance
    stored with its test vectors, and by `atol` where none is (older exports)."""
    classpath = build_java_check(log)
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "report.json"
        result = subprocess.run(
            [
                "java",
                "-cp",
                os.pathsep.join(classpath),
                PARITY_MAIN,
                "--runtime",
                runtime,
                str(folder),
                str(report_path),
                repr(atol),
            ],
            capture_output=True,
            text=True,
        )
        if not report_path.is_file():
            tail = " | ".join(result.stderr.strip().splitlines()[-3:])
            raise VerifyError(f"java-check's parity check ({runtime}) did not run (exit {result.returncode}): {tail}")
        return json.loads(report_path.read_text())


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

    @property
    def main_input(self) -> str:
        """The noise or image input: the one that is not a class label."""
        return next(name for name in self.inputs if name != LABEL_INPUT)


_RECORDS = (PARITY, PROVENANCE, WEIGHTS)


def _read_vectors(path: Path) -> VectorFile:
    try:
        with h5py.File(path, "r") as archive:
            inputs = json.loads(archive.attrs["inputs"])["inputs"]
            outputs = json.loads(archive.attrs["outputs"])["outputs"]
            records = [json.loads(archive.attrs[name]) if name in archive.attrs else None for name in _RECORDS]
            return VectorFile(
                {name: archive["inputs"][name][()] for name in inputs},
                {name: archive["predictions"][name][()] for name in outputs},
                *records,
            )
    except (OSError, KeyError, IndexError, ValueError, StopIteration) as error:
        raise VerifyError(
            f"{path} is not a ganport test-vector file ({error}); re-export with `ganport export --format h5`."
        ) from error


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
    raise VerifyError(f"{source} is neither a run folder nor a folder of exports.")


def verify(
    source: str | Path, jvm: bool = True, atol: float | None = None, log: Callable[[str], None] = print
) -> list[Comparison]:
    """Compare every available backend with the Keras predictions on the same fixed inputs; with `jvm`, also DL4J
    (the HDF5 files) and ONNX Runtime for Java (the ONNX files) through java-check.

    Each model is held to ganport's float32 rule (ganport.parity) unless `atol` gives a fixed bound instead.
    """
    import keras

    from ganport.export import to_onnx
    from ganport.loading import load_keras2, predict_all, shapes

    folder, run_folder = export_folder(Path(source), log)
    vector_files = sorted(folder.glob(f"*{TEST_VECTORS_SUFFIX}"), key=lambda p: (not p.name.startswith("gen"), p.name))
    if not vector_files:
        raise VerifyError(f"{folder} holds no *{TEST_VECTORS_SUFFIX}; export with `--format onnx` or `h5` first.")
    jvm_results: dict[str, dict[str, dict]] = {runtime: {} for runtime in JVM_RUNTIMES}
    for runtime, suffix in JVM_RUNTIMES.items() if jvm else ():
        stems = [vectors.name.removesuffix(TEST_VECTORS_SUFFIX) for vectors in vector_files]
        if any((folder / f"{stem}{suffix}").is_file() for stem in stems):
            report = run_java_check(folder, runtime, ATOL if atol is None else atol, log)
            jvm_results[runtime] = {result["model"]: result for result in report["models"]}
    comparisons: list[Comparison] = []
    for vectors in vector_files:
        stem = vectors.name.removesuffix(TEST_VECTORS_SUFFIX)
        expected = _read_vectors(vectors)
        h5_file = folder / f"{stem}.h5"
        tolerance = _tolerance(expected, h5_file) if atol is None else atol
        origin = describe_provenance(expected.provenance)
        checked = partial(_checked, stem, expected=expected, tolerance=tolerance, origin=origin)
        arrays = list(expected.inputs.values())
        keras_file = next(
            (p for p in ((run_folder or folder) / f"{stem}.keras", folder / f"{stem}.keras") if p.is_file()), None
        )
        if keras_file is not None:
            live = keras.saving.load_model(keras_file, compile=False)
            comparisons.append(checked("keras", *shapes(live), run=partial(predict_all, live, arrays)))
        onnx_file = folder / f"{stem}.onnx"
        if onnx_file.is_file():
            run_onnx = partial(to_onnx.run_all, onnx_file, expected.inputs, list(expected.predictions))
            comparisons.append(checked("onnxruntime", *to_onnx.shapes(onnx_file), run=run_onnx))
        if h5_file.is_file():
            if expected.weights is not None:
                comparisons.append(_weights_comparison(stem, h5_file, expected.weights, origin))
            reloaded = load_keras2(h5_file)
            comparisons.append(checked("tf_keras h5", *shapes(reloaded), run=partial(predict_all, reloaded, arrays)))
        if jvm and h5_file.is_file():
            comparisons.extend(_jvm_comparisons(stem, jvm_results["dl4j"].get(stem), tolerance, expected, origin))
        if stem in jvm_results["onnx"]:  # an ONNX-only export is checked on the JVM too
            comparisons.extend(_jvm_comparisons(stem, jvm_results["onnx"][stem], tolerance, expected, origin))
    return comparisons


def _tolerance(expected: VectorFile, h5_file: Path) -> float:
    """The model's bound per unit of output scale: from the rule's inputs stored with its test vectors, or, for
    vectors written before ganport stored them, from the HDF5 model beside them."""
    if expected.parity is not None:
        accumulation = Accumulation(expected.parity["summing_layers"], expected.parity["longest_sum"])
    elif h5_file.is_file():
        from ganport.export.graph import read_graph
        from ganport.loading import load_keras2

        accumulation = read_graph(load_keras2(h5_file)).accumulation()
    else:
        accumulation = Accumulation()
    return accumulation.tolerance(ATOL)


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
    run: Callable[[], list[np.ndarray]],
) -> Comparison:
    """Compare a backend's model with the test vectors, or report why it cannot be: a model that takes other inputs
    than the vectors hold, or whose role contradicts its file name (a discriminator saved as generator.h5)."""
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
    if [list(shape[1:]) for shape in input_shapes] != [shape[1:] for shape in held]:
        problem = f"model maps {shown} but the test vectors hold {', '.join(map(str, held))}"
    elif named is not None and role in ROLES and role is not named:  # a swapped generator and discriminator
        problem = f"named {named.name} but maps {shown}"
    if problem is not None:
        return Comparison(stem, backend, float("inf"), float("inf"), tolerance, f"{problem}; re-export it", origin)
    names = list(expected.predictions)
    comparison = compare_outputs(stem, backend, names, list(expected.predictions.values()), run(), tolerance)
    return replace(comparison, origin=origin)


def _jvm_comparisons(
    stem: str, result: dict | None, tolerance: float, expected: VectorFile, origin: str
) -> list[Comparison]:
    """A JVM runtime's output, and for DL4J the worst of its per-layer activations (a hidden layer can be off while
    outputs agree; ONNX files keep no layers to compare).

    The worst layer and its scale come from java-check's ParityCheck (ModelResult.maxLayerScaledDiff there says why):
    a hidden layer's bound is the tolerance times its scale, as an output's is.
    """
    if result is None:
        return [Comparison(stem, "dl4j", float("inf"), float("inf"), tolerance, f"no {stem}.h5 to import", origin)]
    runtime = result.get("runtime", "dl4j")
    if result.get("maxAbsDiff") is None:
        return [Comparison(stem, runtime, float("inf"), float("inf"), tolerance, result.get("reason") or "", origin)]
    reshaped = result["dl4jOutputShape"] != result["kerasOutputShape"]
    note = f"{runtime} gives {result['dl4jOutputShape']}: compared flat, C order" if reshaped else ""
    output_scale = max(scale(prediction) for prediction in expected.predictions.values())
    worst = next((layer for layer in result["layers"] if layer["name"] == result.get("worstLayer")), None)
    comparisons = [
        Comparison(stem, runtime, result["maxAbsDiff"], result["maxRelDiff"], tolerance * output_scale, note, origin)
    ]
    if worst is not None:
        comparisons.append(
            Comparison(
                stem,
                f"{runtime} layers",
                worst["maxAbsDiff"],
                worst["maxRelDiff"],
                tolerance * worst["scale"],
                note=f"worst of {len(result['layers'])}: {worst['name']}, scale {worst['scale']:.3g}",
                origin=origin,
            )
        )
    return comparisons
