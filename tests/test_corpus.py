"""The corpus tier: every real Keras file of ../shared/corpus (MANIFEST.tsv: 45 GAN files from 30 public repositories,
Keras 2.0.6 to 3.8) through inspect, inspect --json, export to ONNX and to DL4J-ready HDF5, verify (DL4J and ONNX
Runtime for Java included) and an independent check that does not use ganport.

Asserted for every file: no traceback ever; each command a success or a one-line refusal; the outcome the
MANIFEST's expert columns allow (a file an expert could convert is converted with parity; one an expert could not
is refused in one line or converted with parity); written files agree with the original loaded independently
(tf_keras or Keras 3 as the MANIFEST says, its outputs on the same inputs, within 1e-4 of max(1, |output|)).

The files belong to their authors and stay in ../shared/corpus (GANPORT_CORPUS elsewhere): this module reads them
there and skips, saying so, where the folder is absent. One export folder holds every written file, named after its
corpus file, so that one `verify` (one JVM per runtime) checks them all.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from serving import ROOT
from typer.testing import CliRunner

from conftest import require_or_skip
from ganport.cli import app
from ganport.errors import GanportError

CORPUS = Path(os.environ.get("GANPORT_CORPUS", ROOT.parent / "shared" / "corpus"))
FORMATS = {"onnx": ".onnx", "h5": ".h5"}
EXPECTED = {"onnx": "expected_onnx", "h5": "expected_h5"}
INDEPENDENT_TOLERANCE = 1e-4

pytestmark = [pytest.mark.corpus, pytest.mark.slow, pytest.mark.maven]


def _manifest() -> list[dict[str, str]]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    only = os.environ.get("GANPORT_CORPUS_ONLY", "")  # a part of the file names to run, while working on them
    with manifest.open(newline="") as stream:
        return [row for row in csv.DictReader(stream, delimiter="\t") if only in row["file"]]


ROWS = _manifest()
if not ROWS:
    pytest.skip(
        f"the corpus of real Keras files is absent ({CORPUS}/MANIFEST.tsv): the corpus tier did not run",
        allow_module_level=True,
    )


def _stem(row: dict[str, str]) -> str:
    return row["file"].replace("/", "__").replace(".", "_").replace("-", "_")


@dataclass
class Outcome:
    """What ganport did with one corpus file: each command's exit code and output, the files it wrote."""

    row: dict[str, str]
    commands: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    written: dict[str, Path] = field(default_factory=dict)


def _invoke(*args: object) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of a command (an exception that escaped is a traceback: exit 99)."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return 99, result.stdout, f"{result.stderr}\nTraceback: {type(result.exception).__name__}: {result.exception}"
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[dict[str, Outcome], tuple[int, str], list]:
    """Every corpus file through every command; then one verify of every written file, with the JVM runtimes."""
    import shutil

    from ganport.verify import verify

    require_or_skip(
        shutil.which("mvn") is not None and shutil.which("java") is not None,
        "Maven and a JDK are needed for the corpus tier's DL4J checks",
    )

    exports = tmp_path_factory.mktemp("corpus") / "exports"
    exports.mkdir()
    outcomes = {}
    for row in ROWS:
        model, stem = CORPUS / row["file"], _stem(row)
        outcome = outcomes[row["file"]] = Outcome(row)
        outcome.commands["inspect"] = _invoke("inspect", model)
        outcome.commands["inspect --json"] = _invoke("inspect", model, "--json")
        for fmt, suffix in FORMATS.items():
            target = exports / f"{stem}{suffix}"
            outcome.commands[f"export {fmt}"] = _invoke("export", model, "--format", fmt, "--out", target)
            if outcome.commands[f"export {fmt}"][0] == 0:
                outcome.written[fmt] = target
    if not any(outcome.written for outcome in outcomes.values()):
        return outcomes, (0, "", ""), []
    try:
        comparisons, verified = verify(exports, log=lambda line: None), (0, "", "")
    except GanportError as error:  # one line, as the CLI would print it; anything else is a traceback: a failure
        comparisons, verified = [], (1, "", f"error: {error}")
    return outcomes, verified, comparisons


@pytest.mark.parametrize("file", [row["file"] for row in ROWS])
def test_no_traceback_and_each_command_succeeds_or_refuses_in_one_line(corpus, file):
    outcomes, _, _ = corpus
    for command, (code, stdout, stderr) in outcomes[file].commands.items():
        assert "Traceback" not in stdout + stderr and code in (0, 1, 2), (command, stderr[-2000:])
        assert "failed unexpectedly" not in stderr, (command, stderr[-2000:])  # a case no check foresaw
        if code:
            errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, (command, stderr[-2000:])
    code, stdout, _ = outcomes[file].commands["inspect --json"]
    if code == 0 or stdout.strip():  # the report, whatever the verdicts (a file that does not load has none)
        json.loads(stdout)


@pytest.mark.parametrize("file", [row["file"] for row in ROWS])
def test_what_an_expert_could_convert_is_converted(corpus, file):
    outcomes, _, _ = corpus
    outcome = outcomes[file]
    for fmt in FORMATS:
        if outcome.row[EXPECTED[fmt]] == "yes":
            code, _, stderr = outcome.commands[f"export {fmt}"]
            assert code == 0 and fmt in outcome.written, (fmt, stderr[-2000:])


@pytest.mark.parametrize("file", [row["file"] for row in ROWS])
def test_every_written_file_verifies_on_every_backend(corpus, file):
    outcomes, (code, _, stderr), comparisons = corpus
    assert code == 0, stderr[-3000:]
    outcome = outcomes[file]
    if not outcome.written:
        pytest.skip(f"{file}: nothing written (refused in one line, as its MANIFEST row allows)")
    mine = [comparison for comparison in comparisons if comparison.model == _stem(outcome.row)]
    backends = {comparison.backend for comparison in mine}
    if "onnx" in outcome.written:
        assert {"onnxruntime", "java onnxruntime"} <= backends, backends
    if "h5" in outcome.written:
        assert {"tf_keras h5", "dl4j"} <= backends or {"keras h5", "dl4j"} <= backends, backends
    failed = [comparison.line() for comparison in mine if not comparison.passed]
    assert not failed, failed


def _outputs(model, feeds: list[np.ndarray]) -> list[np.ndarray]:
    outputs = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    return [np.asarray(item) for item in (outputs if isinstance(outputs, list | tuple) else [outputs])]


def _original(row: dict[str, str]):
    """The corpus file loaded without ganport: Keras 3 or tf_keras as its MANIFEST row says, an architecture .json
    with the weights beside it by tf_keras; None where no Keras loads it by itself."""
    import keras
    import tf_keras

    path = CORPUS / row["file"]
    loads_with = row["loads_with"]
    if path.suffix == ".json":
        model = tf_keras.models.model_from_json(path.read_text())
        model.load_weights(str(path.with_name(f"{path.stem}_weights.hdf5")))
        return model
    if loads_with.startswith("keras3"):
        return keras.saving.load_model(path, compile=False)
    if loads_with.startswith("tf_keras"):
        return tf_keras.models.load_model(path, compile=False)
    return None


@pytest.mark.parametrize("file", [row["file"] for row in ROWS])
def test_written_files_agree_with_the_original_loaded_independently(corpus, file):
    import h5py
    import onnxruntime
    import tf_keras

    outcomes, _, _ = corpus
    outcome = outcomes[file]
    if not outcome.written:
        pytest.skip(f"{file}: nothing written")
    original = _original(outcome.row)
    if original is None:
        pytest.skip(f"{file}: no Keras loads it by itself ({outcome.row['loads_with'][:80]})")
    vectors = next(iter(outcome.written.values())).with_name(f"{_stem(outcome.row)}_inputs_and_outputs.h5")
    with h5py.File(vectors, "r") as archive:
        names = json.loads(archive.attrs["inputs"])["inputs"]
        inputs = {name: archive["inputs"][name][()] for name in names}  # in the model's input order
    feeds = [
        np.asarray(array, getattr(tensor.dtype, "name", tensor.dtype))
        for array, tensor in zip(inputs.values(), original.inputs, strict=True)
    ]
    expected = _outputs(original, feeds)
    candidates = {}
    if "onnx" in outcome.written:
        session = onnxruntime.InferenceSession(str(outcome.written["onnx"]), providers=["CPUExecutionProvider"])
        feed = {
            item.name: np.asarray(inputs[item.name], np.int64 if item.type == "tensor(int64)" else np.float32)
            for item in session.get_inputs()
        }
        candidates["onnxruntime"] = session.run(None, feed)
    if "h5" in outcome.written:
        candidates["tf_keras h5"] = _outputs(tf_keras.models.load_model(outcome.written["h5"], compile=False), feeds)
    for backend, outputs in candidates.items():
        for want, got in zip(expected, outputs, strict=True):
            want, got = want.reshape(len(want), -1), np.asarray(got).reshape(len(want), -1)  # DL4J-ready: flat
            bound = INDEPENDENT_TOLERANCE * max(1.0, float(np.abs(want).max()))
            assert float(np.abs(want - got).max()) <= bound, (backend, float(np.abs(want - got).max()), bound)
