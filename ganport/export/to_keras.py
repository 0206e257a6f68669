"""The "keras" format: native Keras 3 `.keras` files of the flat rebuilt model, reloaded and compared."""

from __future__ import annotations

import keras

from ganport.export.job import ExportedFile, Job
from ganport.files import atomic_path
from ganport.loading import predict
from ganport.parity import compare, require_all


def write(job: Job) -> ExportedFile:
    item, target = job.item, job.target
    with atomic_path(target) as temporary:
        item.build(keras).save(temporary)
        reloaded = keras.saving.load_model(temporary, compile=False)
        comparison = compare(item.stem, "keras", job.reference, predict(reloaded, job.inputs), job.atol)
        require_all([comparison])
    return ExportedFile(target, item.role.name, "keras", comparison)
