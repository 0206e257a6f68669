"""Make the models java-check's JUnit tests import: trained and exported by ganport itself, in this build.

    python make_fixtures.py OUT

OUT/exported/     generator.h5, discriminator.h5 and their *_inputs_and_outputs.h5 (ganport export --format h5)
OUT/perturbed/    generator.h5 with one kernel weight moved by 1e-2, and the untouched test vectors
OUT/keras3/       generator.h5 saved natively by Keras 3, which DL4J must refuse with its own reason
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(out: Path) -> None:
    import ganport

    sources = Path(ganport.__file__).parent.rglob("*.py")
    marker = out / "complete"
    if marker.is_file() and all(source.stat().st_mtime <= marker.stat().st_mtime for source in sources):
        print(f"ganport fixtures in {out} are newer than ganport's sources; reusing them")
        return
    import h5py
    import keras

    from ganport.export import export
    from ganport.run import TrainConfig
    from ganport.train import train

    shutil.rmtree(out, ignore_errors=True)
    run = train(TrainConfig(iterations=50, save_interval=50, checkpoint_interval=50, seed=11), out / "run").run_dir
    export(run, "h5", out / "exported")

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
    (out / "complete").write_text("ok\n")
    print(f"ganport fixtures written to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
