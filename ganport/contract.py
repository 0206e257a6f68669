"""What role a model plays, read from its shapes and checked the same way by sample, eval, export, verify and serve.

Roles describe; they do not gate. A generator maps float noise [batch, latent] (and, if conditional, integer class
labels [batch, 1]) to images [batch, height, width, channels] in [-1, 1] (tanh); a discriminator maps images to
scores [batch, k] (a validity, or classes); an image-to-image model maps images to images (super-resolution,
translation); any other model (tabular, several inputs) is a model. The first two get ganport's tensor names (z,
label, image, validity); the others keep their own. numpy only: the ONNX path (no TensorFlow) uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ganport.errors import ModelError, UsageError

# Seeds feed numpy's and TensorFlow's generators; both take unsigned 32-bit seeds.
MAX_SEED = 2**32 - 1
# File names of saved Keras models: what loading accepts and what sampling (ONNX only) refuses with advice.
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5", ".json")  # .json: an architecture whose weights are beside it
# tanh can round to a hair outside [-1, 1] after quantization; anything further is not a generator's image.
IMAGE_RANGE_SLACK = 1e-3
# The images ganport's MNIST classifier scores (eval, and the quality gate of reduced-precision generators).
SCORED_IMAGE_SHAPE = (28, 28, 1)


@dataclass(frozen=True)
class Role:
    """What a model is, and the tensor names its exports use."""

    name: str
    input_name: str
    output_name: str
    summary: str


GENERATOR = Role("generator", "z", "image", "noise [batch, latent] -> images [batch, height, width, channels]")
DISCRIMINATOR = Role(
    "discriminator", "image", "validity", "images [batch, height, width(, channels)] -> scores [batch, k]"
)
# Roles whose tensors keep the model's own names (input_name and output_name are empty).
IMAGE_TO_IMAGE = Role("image-to-image", "", "", "images [batch, height, width, channels] -> images")
MODEL = Role("model", "", "", "any tensors with a batch axis first")
ROLES = (GENERATOR, DISCRIMINATOR)  # the roles a file name can claim (generator.h5, discriminator_int8.onnx)
# A conditional model's class input (integer, [batch, 1]) and an auxiliary classifier's second output (ACGAN).
LABEL_INPUT = "label"
# The classes of MNIST and Fashion-MNIST: what conditional models embed and ganport's classifier tells apart, and
# what a conditional ONNX generator without a `classes` entry in its metadata is taken to know.
CLASSES = 10
CLASS_OUTPUT = "class_probabilities"
# A critic's single k-way output (k > 1: logits or probabilities, no validity).
SCORES_OUTPUT = "scores"


def role_from_shapes(input_shape: Sequence, output_shape: Sequence) -> Role:
    """The role these shapes (batch axis included) of a model's main input and first output describe."""
    if len(input_shape) == 2 and _is_image_shape(output_shape):
        return GENERATOR
    if _is_image_shape(input_shape) and len(output_shape) == 2:
        return DISCRIMINATOR
    if len(input_shape) == 4 and len(output_shape) == 4:
        return IMAGE_TO_IMAGE
    return MODEL


def role_named_by(stem: str) -> Role | None:
    """The role a file name claims (generator.h5, discriminator_int8.onnx, ...), if any."""
    return next((role for role in ROLES if stem.startswith(role.name)), None)


def _is_image_shape(shape: Sequence) -> bool:
    """[batch, height, width, channels] or [batch, height, width]."""
    return len(shape) in (3, 4)


def describe(input_shape: Sequence, output_shape: Sequence) -> str:
    return f"{_shape(input_shape)} -> {_shape(output_shape)}"


def _shape(shape: Sequence) -> str:
    return "[" + ", ".join("batch" if index == 0 else str(side) for index, side in enumerate(shape)) + "]"


def require_role(source: str, role: Role, input_shape: Sequence, output_shape: Sequence) -> None:
    """Raise a ModelError unless the shapes fit `role`'s contract."""
    found = role_from_shapes(input_shape, output_shape)
    if found is role:
        return
    what = {IMAGE_TO_IMAGE: "an image-to-image model", MODEL: "neither a generator nor a discriminator"}.get(
        found, f"a {found.name}"
    )
    raise ModelError(
        f"{source} maps {describe(input_shape, output_shape)}, so it is {what}; "
        f"a {role.name} maps {role.summary}. Pass a {role.name}."
    )


def require_generator_signature(
    source: str, inputs: Sequence[tuple[str, str, Sequence]], outputs: Sequence[tuple[str, str, Sequence]]
) -> None:
    """ONNX-level check: one float noise input [batch, latent], for a conditional generator also an integer `label`
    input [batch, 1], and a first output that is a float image batch."""
    expected = (
        f"a generator takes one float input [batch, latent] (and, if conditional, an integer {LABEL_INPUT!r} input "
        f"[batch, 1]) and gives float images ({GENERATOR.summary})"
    )
    received = "; ".join(
        f"{kind} {name} {type_} {list(shape)}"
        for kind, items in (("input", inputs), ("output", outputs))
        for name, type_, shape in items
    )
    noise = [item for item in inputs if item[0] != LABEL_INPUT]
    labels = [item for item in inputs if item[0] == LABEL_INPUT]
    if len(noise) != 1 or not outputs:
        raise ModelError(
            f"{source} has {len(inputs)} inputs and {len(outputs)} outputs; {expected}. Received: {received}"
        )
    (_, input_type, input_shape), (_, output_type, output_shape) = noise[0], outputs[0]
    latent_ok = len(input_shape) == 2 and isinstance(input_shape[1], int) and input_shape[1] > 0
    image_ok = _is_image_shape(output_shape) and all(isinstance(side, int) and side > 0 for side in output_shape[1:])
    labels_ok = all(type_.startswith("tensor(int") and list(shape[1:]) == [1] for _, type_, shape in labels)
    if not (latent_ok and image_ok and labels_ok and input_type == output_type == "tensor(float)"):
        raise ModelError(f"{source} is not a generator: {expected}. Received: {received}")


def require_images(source: str, images: np.ndarray) -> None:
    """Generated images must be finite and in the tanh range [-1, 1]."""
    if not np.all(np.isfinite(images)):
        raise ModelError(f"{source} produced NaN or Inf; the model is broken (re-export it, or retrain).")
    low, high = float(images.min()), float(images.max())
    if low < -1 - IMAGE_RANGE_SLACK or high > 1 + IMAGE_RANGE_SLACK:
        raise ModelError(
            f"{source} produced values in [{low:.3g}, {high:.3g}]; a generator's images lie in [-1, 1] (tanh). "
            "Is it a generator?"
        )


def require_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed must be between 0 and {MAX_SEED}. Received: seed={seed}")
    return seed
