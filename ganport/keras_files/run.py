"""Running a loaded Keras 2 or 3 model: its shapes, what one sample takes in memory, and inference-mode outputs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ganport.errors import ModelError


@dataclass(frozen=True)
class SampleBytes:
    """What one sample takes in a model, float32: every tensor (inputs and each layer's outputs, nested models'
    included, all held at once where every activation is kept, as in the DL4J test vectors), and the largest
    convolution's unfolded input (the im2col buffer CPU kernels build: output positions x kernel taps x channels)."""

    activations: int
    workspace: int


def sample_bytes(model: Any) -> SampleBytes | None:
    """What one sample takes in `model` (SampleBytes); None when a size other than the batch is unknown (dynamic
    height and width)."""
    tensors, workspace = [*model.inputs], 0
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "layers", []) or [])
        outputs = getattr(layer, "output", None)
        outputs = outputs if isinstance(outputs, list | tuple) else [] if outputs is None else [outputs]
        tensors.extend(outputs)
        kernels = [weight for weight in layer.weights if len(weight.shape) >= 3]
        if kernels and outputs and None not in list(outputs[0].shape)[1:]:
            positions = math.prod(list(outputs[0].shape)[1:-1])
            workspace = max(workspace, positions * math.prod(kernels[0].shape[:-1]) * 4)
    sides = [list(tensor.shape)[1:] for tensor in tensors]
    if any(side is None for shape in sides for side in shape):
        return None
    return SampleBytes(sum(math.prod(shape) * 4 for shape in sides), workspace)


def shapes(model: Any) -> tuple[list[list], list[list]]:
    """Every input's and every output's shape, batch axis included (as None)."""
    return [list(tensor.shape) for tensor in model.inputs], [list(tensor.shape) for tensor in model.outputs]


def call(model: Any, tensors: list[Any]) -> list[Any]:
    """A Keras 2 or 3 model in inference mode on tensors in its input order, each cast to its input's dtype (test
    vectors store class labels as floats, as DL4J reads them; ONNX feeds them as int64); every output, as a list."""
    cast = [tf.cast(tensor, keras_input.dtype) for tensor, keras_input in zip(tensors, model.inputs, strict=True)]
    outputs = model(cast if len(cast) > 1 else cast[0], training=False)
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def predict(model: Any, inputs: np.ndarray) -> np.ndarray:
    """Inference-mode output of a single-input, single-output Keras 2 or Keras 3 model."""
    return predict_all(model, [inputs])[0]


def predict_all(model: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Inference-mode outputs of a Keras 2 or 3 model with inputs in its own order."""
    return [np.asarray(output) for output in call(model, [tf.constant(array) for array in inputs])]


def reference_outputs(model: Any, inputs: list[np.ndarray], origin: Path) -> list[np.ndarray]:
    """predict_all, where a model whose own layers cannot run on inputs of its declared shapes (a file whose layer
    settings disagree with them) is refused in one line."""
    try:
        return predict_all(model, inputs)
    except tf.errors.OpError as error:  # a kernel's refusal; a ValueError (inputs of the wrong shape) is ganport's
        raise ModelError(
            f"{origin} does not run on inputs of its own shapes ({_reason(error)}); its layers' settings disagree "
            "with them. Fix the model in Keras and save it again."
        ) from error


def _reason(error: Exception) -> str:
    """Keras's message in one short line: without its terminal colours, the arguments it lists, or line breaks."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split("Arguments received")[0]
    text = " ".join(text.replace("Exception encountered when calling", "").split())
    return text if len(text) <= 200 else text[:199] + "…"


def framework_versions() -> dict[str, str]:
    """The versions whose kernels compute a Keras reference, for the provenance stored with test vectors."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__}
