"""The "keras" format: native Keras 3 `.keras` files of the rebuilt model, reloaded and compared.

A chain is rebuilt as a flat Sequential, anything else as a functional graph, nested models opened up.
"""

from __future__ import annotations

import keras

from ganport.errors import UnsupportedLayerError
from ganport.export.job import ExportedFile, Job
from ganport.export.layers.verdicts import refusals
from ganport.files import atomic_path
from ganport.keras_files.run import predict_all


def write(job: Job) -> ExportedFile:
    item, target = job.item, job.target
    foreign = refusals(item.graph, "keras")
    if foreign:
        raise UnsupportedLayerError(
            f"{item.origin} cannot be written as a .keras file that reloads by itself: {'; '.join(foreign)}. "
            "Export it to ONNX."
        )
    with atomic_path(target) as temporary:
        item.build(keras).save(temporary)
        reloaded = keras.saving.load_model(temporary, compile=False)
        comparison = job.compare_everywhere("keras", lambda inputs: predict_all(reloaded, list(inputs.values())))
    return ExportedFile(target, item.role.name, "keras", comparison)
