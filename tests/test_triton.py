"""`ganport export --format triton`: a Triton model repository whose config.pbtxt parses against Triton's own schema
and names the ONNX file's tensors; the same client code works against `ganport serve`."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from google.protobuf import json_format, text_format
from serving import running_server
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from conftest import assert_one_line_error
from ganport.cli import app
from ganport.errors import ModelError
from ganport.export.to_triton import (
    CONFIG_FILE,
    LOCK_FILE,
    MODEL_FILE,
    check_model_folder,
    onnx_tensors,
    read_config,
)
from ganport.protocol import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS
from ganport.runtime import Generator


@pytest.fixture(scope="module")
def repository(short_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton") / "repo"
    result = CliRunner().invoke(app, ["export", str(short_run), "--format", "triton", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_repository_layout_and_config(repository):
    assert sorted(path.relative_to(repository).as_posix() for path in repository.rglob("*")) == [
        "generator",
        "generator/1",
        f"generator/1/{MODEL_FILE}",
        f"generator/{CONFIG_FILE}",
    ]
    config = check_model_folder(repository / "generator", "generator")
    assert config.backend == "onnxruntime" and config.max_batch_size == DEFAULT_MAX_BATCH
    assert config.dynamic_batching.max_queue_delay_microseconds == DEFAULT_MAX_WAIT_MS * 1000
    assert [(tensor.name, list(tensor.dims)) for tensor in config.input] == [("z", [100])]
    assert [(tensor.name, list(tensor.dims)) for tensor in config.output] == [("image", [28, 28, 1])]
    assert [group.kind for group in config.instance_group] == [config.instance_group[0].KIND_CPU]
    assert not config.optimization.HasField("execution_accelerators")


def test_the_model_file_is_the_validated_onnx_export(repository, short_run):
    generator = Generator(repository / "generator" / "1" / MODEL_FILE, device="cpu")
    assert generator.metadata["producer"] == "ganport" and generator.latent_dim == 100


def test_a_misspelt_or_unknown_field_fails_to_parse(repository, tmp_path):
    text = (repository / "generator" / CONFIG_FILE).read_text()
    for broken in (
        text.replace("max_batch_size", "max_batch_sise"),
        text.replace("KIND_CPU", "KIND_CPUS"),
        text + "\nwarmup_rounds: 3\n",
    ):
        (tmp_path / CONFIG_FILE).write_text(broken)
        with pytest.raises(text_format.ParseError):
            read_config(tmp_path / CONFIG_FILE)


def test_a_config_that_disagrees_with_its_onnx_file_is_refused(repository, tmp_path):
    folder = tmp_path / "generator"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / MODEL_FILE).write_bytes((repository / "generator" / "1" / MODEL_FILE).read_bytes())
    text = (repository / "generator" / CONFIG_FILE).read_text()
    for wrong in (text.replace("dims: 100", "dims: 64"), text.replace('name: "z"', 'name: "noise"')):
        (folder / CONFIG_FILE).write_text(wrong)
        with pytest.raises(ModelError, match="does not describe its model.onnx"):
            check_model_folder(folder, "generator")


def test_gpu_adds_a_tensorrt_fp16_gpu_group(short_run, tmp_path):
    dead_writer = tmp_path / "generator" / ".staging.999999999-0123abcd.tmp"  # a killed export's half-written one
    (dead_writer / "1").mkdir(parents=True)
    result = CliRunner().invoke(app, ["export", str(short_run), "--format", "triton", "--out", str(tmp_path), "--gpu"])
    assert result.exit_code == 0, result.output
    config = check_model_folder(tmp_path / "generator", "generator")
    assert [group.kind for group in config.instance_group] == [
        config.instance_group[0].KIND_CPU,
        config.instance_group[0].KIND_GPU,
    ]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and dict(accelerator.parameters) == {"precision_mode": "FP16"}
    assert sorted(path.name for path in (tmp_path / "generator").iterdir()) == ["1", CONFIG_FILE]


def test_gpu_is_refused_for_other_formats(short_run, tmp_path):
    result = CliRunner().invoke(app, ["export", str(short_run), "--format", "onnx", "--out", str(tmp_path), "--gpu"])
    assert_one_line_error(result, "--gpu", "Triton", exit_code=2)


def test_the_same_client_code_works_against_ganport_serve(repository):
    """The README's tritonclient snippet, against `ganport serve` on the repository's model: the config the server
    reports is the exported one, and inference answers."""
    model = repository / "generator" / "1" / MODEL_FILE
    exported = json_format.MessageToDict(read_config(repository / "generator" / CONFIG_FILE))
    inputs, outputs = onnx_tensors(model)
    with running_server(model, "--name", "generator") as server, triton.InferenceServerClient(server.address) as client:
        reported = json_format.ParseDict(client.get_model_config("generator"), model_config_pb2.ModelConfig())
        assert json_format.MessageToDict(reported) == exported
        noise = np.zeros((2, 100), np.float32)
        request = triton.InferInput(inputs[0].name, [2, 100], inputs[0].datatype)
        request.set_data_from_numpy(noise)
        assert client.infer("generator", [request]).as_numpy(outputs[0].name).shape == (2, 28, 28, 1)


def test_a_shipped_model_folder_and_an_onnx_file_become_triton_models(tmp_path):
    from ganport.runtime import SHIPPED_MODELS

    repository = tmp_path / "repo"
    result = CliRunner().invoke(
        app, ["export", str(SHIPPED_MODELS / "mnist-gan"), "--format", "triton", "--out", str(repository)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in repository.iterdir()) == ["generator", "generator_int8"]
    for name, source in (("generator", "generator.onnx"), ("generator_int8", "generator_int8.onnx")):
        config = check_model_folder(repository / name, name)
        assert [(tensor.name, list(tensor.dims)) for tensor in config.input] == [("z", [100])]
        copied = repository / name / "1" / MODEL_FILE
        assert copied.read_bytes() == (SHIPPED_MODELS / "mnist-gan" / source).read_bytes()

    single = tmp_path / "single"
    conditional = SHIPPED_MODELS / "mnist-cgan" / "generator.onnx"
    result = CliRunner().invoke(app, ["export", str(conditional), "--format", "triton", "--out", str(single)])
    assert result.exit_code == 0, result.output
    config = check_model_folder(single / "generator", "generator")
    assert [(tensor.name, list(tensor.dims)) for tensor in config.input] == [("z", [100]), ("label", [1])]


def test_onnx_sources_are_refused_by_keras_formats_and_precisions(tmp_path):
    from ganport.runtime import SHIPPED_MODELS

    onnx_file = str(SHIPPED_MODELS / "mnist-gan" / "generator.onnx")
    result = CliRunner().invoke(app, ["export", onnx_file, "--format", "h5", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is ONNX already; --format triton takes ONNX files" in result.output
    result = CliRunner().invoke(
        app, ["export", onnx_file, "--format", "triton", "--precision", "int8", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "--precision int8 converts a Keras model" in result.output
    assert list(tmp_path.iterdir()) == []


def _export_triton(source, out, *options: str):
    return CliRunner().invoke(app, ["export", str(source), "--format", "triton", "--out", str(out), *options])


def test_an_export_touches_only_its_version_and_config(tmp_path):
    """Other versions and the user's files in the model folder stay; an existing version needs --overwrite."""
    from ganport.runtime import SHIPPED_MODELS

    source = SHIPPED_MODELS / "mnist-gan" / "generator.onnx"
    folder = tmp_path / "repo" / "generator"
    (folder / "2").mkdir(parents=True)
    (folder / "2" / MODEL_FILE).write_bytes(b"version 2")
    (folder / "labels.txt").write_text("mine")
    result = _export_triton(source, tmp_path / "repo")
    assert result.exit_code == 0, result.output
    assert (folder / "2" / MODEL_FILE).read_bytes() == b"version 2" and (folder / "labels.txt").read_text() == "mine"
    assert sorted(path.name for path in folder.iterdir()) == ["1", "2", CONFIG_FILE, "labels.txt"]
    published = (folder / "1" / MODEL_FILE).read_bytes()

    result = _export_triton(source, tmp_path / "repo")  # a second export into the same repository
    assert_one_line_error(result, "exist already; pass --overwrite", exit_code=2)
    assert (folder / "1" / MODEL_FILE).read_bytes() == published

    result = _export_triton(SHIPPED_MODELS / "mnist-cgan" / "generator.onnx", tmp_path / "repo", "--overwrite")
    assert result.exit_code == 0, result.output
    assert [tensor.name for tensor in check_model_folder(folder, "generator").input] == ["z", "label"]
    assert sorted(path.name for path in folder.iterdir()) == ["1", "2", CONFIG_FILE, "labels.txt"]
    assert (folder / "2" / MODEL_FILE).read_bytes() == b"version 2"


def test_a_second_export_into_a_folder_being_written_is_refused(tmp_path):
    import subprocess
    import sys

    from ganport.runtime import SHIPPED_MODELS

    folder = tmp_path / "repo" / "generator"
    folder.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl,sys,time; f=open({str(folder / LOCK_FILE)!r},'w'); "
            "fcntl.flock(f, fcntl.LOCK_EX); f.write('4242'); f.flush(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = _export_triton(SHIPPED_MODELS / "mnist-gan" / "generator.onnx", tmp_path / "repo")
    finally:
        holder.kill()
        holder.wait()
    assert_one_line_error(result, "is being written by another export (process 4242)")
    assert sorted(path.name for path in folder.iterdir()) == [LOCK_FILE]


def test_a_writer_killed_between_its_renames_loses_nothing(tmp_path):
    """The old version folder, moved aside just before the new one was renamed in, is put back by the next writer
    when the new one never arrived, and deleted only when it did."""
    import subprocess
    import sys

    from ganport.files import staged_entries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "generator"
    backup = folder / f".1.{dead.pid}-0123abcd.old"
    backup.mkdir(parents=True)
    (backup / MODEL_FILE).write_bytes(b"the old version")
    with pytest.raises(RuntimeError), staged_entries(folder, ["1"]):
        raise RuntimeError("this writer fails: nothing is published")
    assert (folder / "1" / MODEL_FILE).read_bytes() == b"the old version" and not backup.exists()

    backup.mkdir()
    (backup / MODEL_FILE).write_bytes(b"older")
    with staged_entries(folder, ["1"]) as staging:
        (staging / "1").mkdir()
        (staging / "1" / MODEL_FILE).write_bytes(b"new")
    assert (folder / "1" / MODEL_FILE).read_bytes() == b"new"
    assert sorted(path.name for path in folder.iterdir()) == ["1"]
