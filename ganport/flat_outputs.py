"""The contract of ganport's DL4J HDF5 files about image outputs: the h5 writer writes an output DL4J cannot reshape
flat ([batch, H*W*C], C order) and records its image shape in the file; every ganport reader of such a file restores
that shape. The writer (export/to_h5.py) and the loader (keras_files/load.py) share this module, so neither owns
the other's half."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ganport.errors import ModelError

# The HDF5 root attribute: {output name: its image shape without the batch axis}.
FLATTENED_OUTPUTS = "ganport_flattened_outputs"


def record_flat_outputs(archive: h5py.File, shapes: dict[str, list[int]]) -> None:
    """Record in a file being written which outputs it holds flat, with the image shape each stands for."""
    if shapes:
        archive.attrs[FLATTENED_OUTPUTS] = np.bytes_(json.dumps(shapes))


def with_image_outputs(path: Path, model: Any) -> Any:
    """`model`, read from the HDF5 file at `path`, with a Reshape after each output the file records as written flat
    (the model itself when it records none). A record that does not fit the model is a ModelError: the attribute is
    the file's, so it is checked like any other part of it."""
    with h5py.File(path, "r") as archive:
        recorded = archive.attrs.get(FLATTENED_OUTPUTS)
    if recorded is None:
        return model
    import keras

    shapes = _recorded_shapes(path, recorded, dict(zip(model.output_names, model.outputs, strict=True)))
    if isinstance(model, keras.Model):
        module = keras
    else:
        import tf_keras as module
    outputs = [
        module.layers.Reshape(shapes[name], name=f"{name}_image")(output) if name in shapes else output
        for name, output in zip(model.output_names, model.outputs, strict=True)
    ]
    return module.Model(model.inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)


def _recorded_shapes(path: Path, recorded: Any, outputs: dict[str, Any]) -> dict[str, list[int]]:
    """The record as {output name: image shape}, each naming an output of the model, with as many values as it has."""
    try:
        shapes = json.loads(recorded)
    except (ValueError, TypeError):
        shapes = None
    fits = isinstance(shapes, dict) and all(
        name in outputs
        and isinstance(shape, list)
        and shape
        and all(isinstance(side, int) and side > 0 for side in shape)
        and list(outputs[name].shape[1:]) == [math.prod(shape)]
        for name, shape in shapes.items()
    )
    if not fits:
        raise ModelError(
            f"{path} records outputs written flat ({FLATTENED_OUTPUTS}) that its model does not have with those sizes; "
            f"remove that attribute from the file (h5py: del f.attrs[{FLATTENED_OUTPUTS!r}]) to read the outputs as "
            "they are stored."
        )
    return shapes
