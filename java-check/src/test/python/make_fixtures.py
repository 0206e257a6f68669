"""Make the models java-check's JUnit tests import: trained and exported by ganport itself, in this build.

    python make_fixtures.py OUT

OUT/exported/     generator.h5, discriminator.h5 and their *_inputs_and_outputs.h5 (ganport export --format h5)
OUT/perturbed/    generator.h5 with one kernel weight moved by 1e-2, and the untouched test vectors
OUT/keras3/       generator.h5 saved natively by Keras 3, which DL4J must refuse with its own reason
OUT/graphs/       DCGAN generator (Sequential -> MultiLayerNetwork), CGAN generator and ACGAN critic (functional ->
                  ComputationGraph), saved the lecture's tf_keras way and exported with `--format h5`
OUT/graphs-perturbed/  the CGAN generator with one embedding weight moved by 1e-2, and its untouched test vectors
OUT/perturbed-onnx/     exported/generator.onnx with one weight of its first kernel moved by 1e-2, and its vectors
OUT/fixed-length/       exported/generator.h5 with model_config a fixed-length byte string, as Keras 2.0-2.2 wrote it,
                        and an integer attribute
                        (ganport's writer stores a variable-length one), and the untouched test vectors
(exported/ and graphs/ also hold each model's ONNX export, for ONNX Runtime for Java)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The conversion tests' models (tests/zoo.py) are the ones java-check imports too.
TESTS = Path(__file__).resolve().parents[4] / "tests"


def main(out: Path) -> None:
    import ganport

    sys.path.insert(0, str(TESTS))
    sources = [*Path(ganport.__file__).parent.rglob("*.py"), TESTS / "zoo.py", Path(__file__)]
    marker = out / "complete"
    if marker.is_file() and all(source.stat().st_mtime <= marker.stat().st_mtime for source in sources):
        print(f"ganport fixtures in {out} are newer than ganport's sources; reusing them")
        return
    import h5py
    import keras
    import numpy as np
    import onnx
    import onnx.numpy_helper
    import zoo

    from ganport.export import export
    from ganport.run import TrainConfig
    from ganport.train import train

    shutil.rmtree(out, ignore_errors=True)
    run = train(TrainConfig(iterations=50, save_interval=50, checkpoint_interval=50, seed=11), out / "run").run_dir
    export(run, "h5", out / "exported")
    export(run, "onnx", out / "exported")

    perturbed = out / "perturbed"
    perturbed.mkdir()
    shutil.copy(out / "exported" / "generator.h5", perturbed / "generator.h5")
    shutil.copy(out / "exported" / "generator_inputs_and_outputs.h5", perturbed / "generator_inputs_and_outputs.h5")
    with h5py.File(perturbed / "generator.h5", "r+") as archive:
        kernels = []
        archive["model_weights"].visititems(
            lambda name, item: kernels.append(item) if name.endswith("kernel:0") else None
        )
        kernels[0][0, 0] += 1e-2

    native = out / "keras3"
    native.mkdir()
    keras.saving.load_model(run / "generator.keras").save(native / "generator.h5")
    shutil.copy(out / "exported" / "generator_inputs_and_outputs.h5", native / "generator_inputs_and_outputs.h5")
    graphs, lecture_files = out / "graphs", out / "lecture-files"
    lecture_files.mkdir()
    for name in ("dcgan_generator", "cgan_generator", "acgan_discriminator"):
        source = zoo.save_lecture_way(name, lecture_files)
        export(source, "h5", graphs)
        export(source, "onnx", graphs)
    moved = out / "graphs-perturbed"
    moved.mkdir()
    for suffix in (".h5", "_inputs_and_outputs.h5"):
        shutil.copy(graphs / f"cgan_generator{suffix}", moved / f"cgan_generator{suffix}")
    with h5py.File(moved / "cgan_generator.h5", "r+") as archive:
        embeddings = []
        archive["model_weights"].visititems(
            lambda name, item: embeddings.append(item) if name.endswith("embeddings:0") else None
        )
        embeddings[0][3, 0] += 1e-2
    moved_onnx = out / "perturbed-onnx"
    moved_onnx.mkdir()
    for suffix in (".onnx", "_inputs_and_outputs.h5"):
        shutil.copy(out / "exported" / f"generator{suffix}", moved_onnx / f"generator{suffix}")
    model = onnx.load(moved_onnx / "generator.onnx")
    kernel = next(tensor for tensor in model.graph.initializer if len(tensor.dims) == 2)
    weights = onnx.numpy_helper.to_array(kernel).copy()
    weights[0, 0] += 1e-2
    kernel.CopyFrom(onnx.numpy_helper.from_array(weights, kernel.name))
    onnx.save(model, moved_onnx / "generator.onnx")
    fixed_length = out / "fixed-length"
    fixed_length.mkdir()
    for suffix in (".h5", "_inputs_and_outputs.h5"):
        shutil.copy(out / "exported" / f"generator{suffix}", fixed_length / f"generator{suffix}")
    with h5py.File(fixed_length / "generator.h5", "r+") as archive:
        archive.attrs["model_config"] = np.bytes_(archive.attrs["model_config"].encode("utf8"))
        archive.attrs["not_a_string"] = np.int64(7)  # refused by name, never read as text
    (out / "complete").write_text("ok\n")
    print(f"ganport fixtures written to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
