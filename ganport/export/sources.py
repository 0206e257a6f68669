"""The models an export starts from: a run folder's generator and discriminator, or one model file, with roles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import ganport
from ganport.contract import DISCRIMINATOR, GENERATOR, Role
from ganport.errors import ModelError
from ganport.export.layers import LayerSpec, build_sequential, read_layers
from ganport.loading import load_as, load_model_file, predict, role_of
from ganport.parity import REFERENCE_BATCH, REFERENCE_SEED, reference_noise
from ganport.run import RunFolder


@dataclass(frozen=True)
class SourceModel:
    """A loaded model (Keras 3, or Keras 2 for files Keras 3 cannot read) and its flat, neutral layer list."""

    role: Role
    keras_model: Any  # the model exactly as loaded: exports are compared with it
    specs: list[LayerSpec]
    stem: str
    origin: Path
    iterations: int | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(side) for side in self.keras_model.inputs[0].shape[1:])

    def build(self, module: ModuleType) -> Any:
        """A flat Sequential of this model in keras (Keras 3) or tf_keras (Keras 2)."""
        return build_sequential(self.specs, self.input_shape, self.keras_model.name, module)


def source_model(model: Any, stem: str, origin: Path, iterations: int | None = None) -> SourceModel:
    return SourceModel(role_of(model), model, read_layers(model), stem, origin, iterations)


def load_sources(source: str | Path) -> list[SourceModel]:
    """A run folder gives its generator and discriminator, each checked for its role; a model file gives itself."""
    path = Path(source)
    if path.is_dir():
        run = RunFolder(path)
        if not run.generator.is_file():
            raise ModelError(
                f"{path} is not a ganport run folder (no {run.generator.name}); "
                "pass a run folder written by `ganport train` or a model file."
            )
        iterations = run.read_state().get("iteration")
        return [
            source_model(load_as(file, role), file.stem, file, iterations)
            for file, role in ((run.generator, GENERATOR), (run.discriminator, DISCRIMINATOR))
        ]
    return [source_model(load_model_file(path), path.stem, path)]


def reference_inputs(sources: list[SourceModel]) -> dict[str, np.ndarray]:
    """Fixed inputs per role: seeded noise for the generator; its images (or seeded uniform pixels) for the critic."""
    inputs: dict[str, np.ndarray] = {}
    generator = next((source for source in sources if source.role is GENERATOR), None)
    if generator is not None:
        inputs[GENERATOR.name] = reference_noise(generator.input_shape[-1])
    for source in sources:
        if source.role is DISCRIMINATOR:
            inputs[DISCRIMINATOR.name] = (
                predict(generator.keras_model, inputs[GENERATOR.name])
                if generator is not None
                else np.random.default_rng(REFERENCE_SEED)
                .uniform(-1, 1, (REFERENCE_BATCH, *source.input_shape))
                .astype(np.float32)
            )
    return inputs


def export_metadata(source: SourceModel) -> dict[str, str]:
    return {
        "producer": "ganport",
        "ganport_version": ganport.__version__,
        "role": source.role.name,
        "latent_dim": str(source.input_shape[-1]) if source.role is GENERATOR else "",
        "iterations": "" if source.iterations is None else str(source.iterations),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
