"""Keras model files in, Keras models out: each read by the Keras that wrote it (tf_keras for Keras 2), after the
code gate and the memory budget, and checked against the inputs it declares; roles checked.

Shared by export, inspect, eval and verify, so a file is loaded, refused and named the same way everywhere.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import keras
import numpy as np
from keras.src.saving.serialization_lib import SafeModeScope

from ganport.contract import KERAS_SUFFIXES, Role, require_role
from ganport.errors import GanportError, ModelError, UsageError
from ganport.files import file_problem
from ganport.flat_outputs import with_image_outputs
from ganport.keras_files.config import (
    layer_name,
    model_layers,
    read_architecture_text,
    read_config,
    saved_keras_version,
    saved_model_objects,
)
from ganport.keras_files.run import shapes
from ganport.keras_files.safety import require_no_revived_layers, require_safe
from ganport.keras_files.sniff import require_readable_container, require_stored_within_budget, variables_within_budget
from ganport.keras_files.stand_ins import loader_objects, provided_names, user_custom_objects


@dataclass(frozen=True)
class LoadOptions:
    """What a model file needs from its user beyond what it holds."""

    weights: Path | None = None  # an architecture .json's weights, when they are not beside it
    custom_objects: Path | None = None  # a Python file defining the model's custom layers (and functions)
    trust_code: bool = False  # run the Python code a file stores (Lambda layers): only for files one trusts


def load_model_file(path: Path, options: LoadOptions | None = None, log: Callable[[str], None] | None = None) -> Any:
    """Load with the Keras that wrote the file (tf_keras for Keras 1-2 files, then Keras 3 if tf_keras cannot; Keras 3
    for the rest), refusing a load whose inputs differ from the shapes the file declares. Custom training-only
    objects are replaced by inert stand-ins, each said in `log`. A TF SavedModel folder (`model.save("dir")` in TF 2)
    is read by tf_keras, from the Keras metadata TF 2 writes into it. Nothing the file stores runs before it is
    checked: Python code only with `options.trust_code`, TensorFlow ops only those ganport converts."""
    options = options or LoadOptions()
    user_objects = user_custom_objects(options.custom_objects)
    if is_saved_model(path):
        return _load_saved_model(path, options, user_objects)
    problem = file_problem(path)
    if problem:
        raise ModelError(f"{path} {problem}; pass a run folder or a .keras/.h5 model file.")
    if path.suffix not in KERAS_SUFFIXES:
        raise ModelError(
            f"{path} is not a Keras model file ({', '.join(KERAS_SUFFIXES)}); pass a run folder or a saved Keras model."
        )
    if path.suffix == ".json":
        options = replace(options, weights=options.weights or _weights_beside(path))
        _require_weights_file(options.weights)
    elif options.weights is not None:
        raise UsageError(f"--weights goes with an architecture .json; {path} holds its own weights. Drop --weights.")
    else:
        require_readable_container(path)
    # The Keras that wrote a file reads it as written: Keras 3 loads many Keras 2 files wrongly (a Sequential without
    # an InputLayer gets an extra axis) or not at all, while tf_keras reads them as they were saved.
    loaders = _readers(saved_keras_version(path), path.suffix)
    config = read_config(path)  # read once: each loader's custom objects and the declared inputs come from it
    require_safe(path, config, options.trust_code, provided_names(user_objects))
    failures: list[ModelError] = []
    for load in loaders:
        notes: list[str] = []
        try:
            model = load(path, Reading(options, user_objects, config, notes.append))
            _require_declared_inputs(path, model, config)
            break
        except ModelError as error:
            failures.append(error)
    else:
        raise failures[0] from failures[0].__cause__
    for note in notes:
        (log or _silent)(note)
    return with_image_outputs(path, model) if path.suffix in (".h5", ".hdf5") else model


def _readers(version: str, suffix: str) -> tuple[Callable[..., Any], ...]:
    """The loaders to try, in order, for a file that says `version` wrote it ("" when it does not say)."""
    if version.startswith(("1.", "2.")):
        return (load_keras2, _load_keras3, _load_keras2_by_order) if suffix == ".keras" else (load_keras2, _load_keras3)
    if version or suffix == ".keras":
        return (_load_keras3,)
    return (_load_keras3, load_keras2)  # an HDF5 file that does not say: Keras 3, checked against declared inputs


# Each kind of source, the suffix it is read as, and where it says which Keras wrote it: docs/export.md's sources.
_SOURCES = (
    ("`.h5` / `.hdf5` (`model.save`)", ".h5", "the `keras_version` attribute"),
    ("`.keras` zip (Keras 3, or Keras 2.12-2.15's own)", ".keras", "`metadata.json`"),
    ("architecture `.json` + weights HDF5 (Keras-GAN's `saved_model/`)", ".json", "its `keras_version` field"),
)


def sources_table() -> str:
    """docs/export.md's table of the model files ganport reads and which Keras reads each, from the loader's rules."""
    names = {load_keras2: "tf_keras", _load_keras3: "Keras 3", _load_keras2_by_order: "tf_keras (weights by order)"}
    rows = [
        "| source | says which Keras wrote it in | written by Keras 1.x-2.x | by Keras 3.x | does not say |",
        "| --- | --- | --- | --- | --- |",
    ]
    for source, suffix, where in _SOURCES:
        readers = [", then ".join(names[load] for load in _readers(version, suffix)) for version in ("2.3", "3.8", "")]
        rows.append(f"| {source} | {where} | {' | '.join(readers)} |")
    rows.append('| TF 2 SavedModel folder (`model.save("dir")`) | `keras_metadata.pb` (TF 2.x) | tf_keras | — | — |')
    return "\n".join(rows) + "\n"


def is_saved_model(path: Path) -> bool:
    """A TensorFlow SavedModel folder."""
    return path.is_dir() and (path / "saved_model.pb").is_file()


def _load_saved_model(path: Path, options: LoadOptions, user_objects: dict[str, Any]) -> Any:
    if options.weights is not None:
        raise UsageError(f"--weights goes with an architecture .json; {path} is a SavedModel. Drop --weights.")
    if not (path / "keras_metadata.pb").is_file():
        raise ModelError(
            f"{path} is a TensorFlow SavedModel without Keras metadata (tf.saved_model.save, not model.save): its "
            f"layers are not recorded, so it cannot be read layer by layer; `ganport export {path} --format onnx` "
            "converts its serving signature as a graph, and model.save() keeps the layers for the other formats."
        )
    metadata = saved_model_objects(path)
    require_safe(path, metadata, options.trust_code, provided_names(user_objects))
    require_stored_within_budget(path)
    model = load_keras2(path, Reading(options, user_objects, metadata))
    require_no_revived_layers(path, model)
    return model


# The names an architecture's weights take beside it: Keras-GAN's save_model(), then Keras 2's and 3's habits.
WEIGHTS_BESIDE = ("{stem}_weights.hdf5", "{stem}_weights.h5", "{stem}.weights.h5", "{stem}.hdf5", "{stem}.h5")


def _weights_beside(architecture: Path) -> Path:
    candidates = [architecture.with_name(name.format(stem=architecture.stem)) for name in WEIGHTS_BESIDE]
    found = next((candidate for candidate in candidates if candidate.is_file()), None)
    if found is None:
        raise UsageError(
            f"{architecture} holds an architecture only, and none of {', '.join(item.name for item in candidates)} "
            "is beside it; pass its weights with --weights PATH."
        )
    return found


def _require_weights_file(weights: Path) -> None:
    problem = file_problem(weights)
    if problem:
        raise ModelError(f"--weights {weights} {problem}; pass the HDF5 file model.save_weights() wrote.")
    if not h5py.is_hdf5(weights):
        raise ModelError(f"--weights {weights} is not an HDF5 file; pass the file model.save_weights() wrote.")
    require_stored_within_budget(weights)


def _silent(line: str) -> None:
    pass


@dataclass(frozen=True)
class Reading:
    """What a loader is handed besides the path: the user's options and custom objects, the file's config (read
    once, None to read it), and where notes go."""

    options: LoadOptions = LoadOptions()
    user_objects: dict[str, Any] = field(default_factory=dict)
    config: dict | list | None = None
    log: Callable[[str], None] = _silent


def _load_keras3(path: Path, reading: Reading) -> Any:
    weights, trust_code = reading.options.weights, reading.options.trust_code
    custom = loader_objects(reading.config, keras, reading.user_objects, reading.log)
    try:
        with warnings.catch_warnings():
            # Keras 3 warns about each Keras 2 argument it reads from an old file (alpha, input_length): the file is
            # what it is, and the user can do nothing about it.
            warnings.filterwarnings("ignore", category=UserWarning, module="keras")
            with variables_within_budget(path):
                if weights is None:
                    return keras.saving.load_model(path, compile=False, custom_objects=custom, safe_mode=not trust_code)
                with SafeModeScope(not trust_code):  # not exported; model_from_json takes no flag
                    model = keras.models.model_from_json(read_architecture_text(path), custom_objects=custom)
            model.load_weights(weights)
            return model
    except GanportError:
        raise
    except Exception as error:  # Keras raises many types for corrupt or foreign files
        raise _load_failure(path, error, "as a Keras model") from error


def _load_failure(path: Path, error: Exception, how: str) -> ModelError:
    """One line for a load that failed: a custom layer named by its class, else Keras's reason, whole (its
    messages often put the cause on a later line), squeezed onto one line."""
    found = _UNKNOWN_LAYER.search(str(error))
    if found:
        return ModelError(
            f"{path} uses the custom layer class {found.group(1) or found.group(2)}, whose code is not in the file: "
            "pass the Python file that defines it with --custom-objects."
        )
    reason = " ".join(str(error).split()) or type(error).__name__
    return ModelError(f"Cannot load {path} {how} ({reason[:MAX_REASON]}{'...' if len(reason) > MAX_REASON else ''}).")


# The most of a Keras error message a one-line refusal quotes.
MAX_REASON = 400
# How Keras 3 and tf_keras say that a file names a layer class they do not have.
_UNKNOWN_LAYER = re.compile(r"Unknown layer: '([^']+)'|Could not locate class '([^']+)'")


def _config_input_shapes(config: dict) -> list[list] | None:
    """The input shapes (batch axis included) a model config declares, or None when it declares none the loader
    could be checked against (a subclassed model, a config without shapes, one written in a form not read here)."""
    layers = model_layers(config)
    if not layers:
        return None
    if config["class_name"] == "Sequential":
        return _declared_shape(layers[0])
    inner = config.get("config")
    entries = inner.get("input_layers") if isinstance(inner, dict) else None
    if not isinstance(entries, list):
        return None
    by_name = {layer_name(layer): layer for layer in layers}
    shapes = []
    for entry in entries:
        name = entry[0] if isinstance(entry, list) and entry else entry
        shape = _declared_shape(by_name.get(name, {})) if isinstance(name, str) else None
        if shape is None:
            return None
        shapes.extend(shape)
    return shapes or None


def _declared_shape(layer: dict) -> list[list] | None:
    """[the batch input shape] a layer's config declares, or None (a nested model, no shape, not a list)."""
    inner = layer.get("config")
    shape = (inner.get("batch_input_shape") or inner.get("batch_shape")) if isinstance(inner, dict) else None
    if not isinstance(shape, list) or not all(side is None or isinstance(side, int) for side in shape):
        return None
    return [list(shape)]


def _require_declared_inputs(path: Path, model: Any, config: dict | None) -> None:
    """Refuse a model whose inputs do not have the shapes its file's `config` declares (a loader that misread it)."""
    declared = None if config is None else _config_input_shapes(config)
    loaded = [list(tensor.shape) for tensor in model.inputs]
    if declared is None or len(declared) != len(loaded):
        return
    for want, got in zip(declared, loaded, strict=True):
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want[1:], got[1:], strict=True)):
            reader = f"Keras {keras.__version__}" if isinstance(model, keras.Model) else "tf_keras"
            raise ModelError(
                f"{path} declares inputs {declared}, but {reader} read {loaded}; the file may be damaged, or written "
                "by a Keras that neither Keras 3 nor tf_keras reads as written."
            )


def tf_keras() -> ModuleType:
    """Keras 2 (tf_keras): the last Keras whose HDF5 files DL4J imports."""
    import tf_keras as module

    return module


def load_keras2(path: Path, reading: Reading | None = None) -> Any:
    """A Keras 2 model file, or an architecture .json and its weights, read by tf_keras. tf_keras runs a Lambda's
    stored code in HDF5 files without asking (its safe_mode guards .keras files only), so the file is checked first."""
    reading = reading or Reading()
    weights, trust_code = reading.options.weights, reading.options.trust_code
    config = reading.config if reading.config is not None else read_config(path)
    require_safe(path, config, trust_code, provided_names(reading.user_objects))
    custom = loader_objects(config, tf_keras(), reading.user_objects, reading.log)
    # not exported; model_from_json takes no flag, and in HDF5 files tf_keras checks the scope, not its argument
    from tf_keras.src.saving.serialization_lib import SafeModeScope as Keras2SafeModeScope

    try:
        with Keras2SafeModeScope(not trust_code), variables_within_budget(path):
            if weights is None:
                return tf_keras().models.load_model(path, compile=False, custom_objects=custom)
            model = tf_keras().models.model_from_json(read_architecture_text(path), custom_objects=custom)
        model.load_weights(weights)
        return model
    except GanportError:
        raise
    except Exception as error:  # tf_keras raises many types for unreadable files
        raise _load_failure(path, error, "with tf_keras") from error


def _load_keras2_by_order(path: Path, reading: Reading) -> Any:
    """A Keras 2.12-2.15 .keras archive whose weights file names its layers otherwise than its config does (Keras
    2.13 on Windows wrote `_layer_checkpoint_dependencies\\dense` for the config's `dense_1`), so that neither Keras
    finds them: the model built from its config by tf_keras, and each layer given the first weight group, in the
    file's order, whose arrays have its weights' shapes; refused unless every layer and every group pair up."""
    import io

    config = reading.config if reading.config is not None else read_config(path)
    custom = loader_objects(config, tf_keras(), reading.user_objects, reading.log)
    from tf_keras.src.saving.serialization_lib import SafeModeScope as Keras2SafeModeScope

    try:
        with Keras2SafeModeScope(not reading.options.trust_code), variables_within_budget(path):
            model = tf_keras().saving.deserialize_keras_object(config, custom_objects=custom)
        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as stored:
            groups = _weight_groups(stored)
    except GanportError:
        raise
    except Exception as error:  # tf_keras raises many types for configs it cannot build
        raise _load_failure(path, error, "with tf_keras") from error
    for layer in (layer for layer in model.layers if layer.weights):
        shapes = [tuple(weight.shape) for weight in layer.weights]
        match = next((name for name, arrays in groups.items() if [array.shape for array in arrays] == shapes), None)
        if match is None:
            raise ModelError(
                f"Cannot load {path}: its weights file holds no unused arrays of layer {layer.name!r}'s shapes "
                f"{shapes}; the archive does not hold this model's weights."
            )
        layer.set_weights(groups.pop(match))
    if groups:
        raise ModelError(f"Cannot load {path}: its weights file holds arrays no layer takes ({', '.join(groups)}).")
    reading.log(f"{path}: weights matched to layers by order and shape (the archive names them otherwise)")
    return model


def _weight_groups(stored: Any) -> dict[str, list[np.ndarray]]:
    """Each group of a Keras 2.12+ weights file that holds a layer's `vars`, by path in the file's order (natural:
    dense_2 before dense_10), with its arrays in their order (vars/0, vars/1, ...); a compiled model's optimizer
    and metrics state is not a layer's."""
    found: dict[str, list[np.ndarray]] = {}

    def visit(name: str, item: Any) -> None:
        if name.split("/")[0] in _TRAINING_STATE:
            return
        if isinstance(item, h5py.Group) and name.endswith("vars") and len(item):
            found[name.removesuffix("/vars") or "/"] = [item[key][()] for key in sorted(item, key=_natural)]

    stored.visititems(visit)
    return {name: found[name] for name in sorted(found, key=_natural)}


# What a compiled model's .keras weights file holds beside its layers' weights.
_TRAINING_STATE = frozenset({"optimizer", "metrics", "compile_metrics", "loss"})


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def load_as(path: Path, role: Role) -> Any:
    """Load `path` and refuse it unless it plays `role` (a discriminator saved as generator.keras, say)."""
    model = load_model_file(path)
    require_role(str(path), role, *(found[0] for found in shapes(model)))
    return model


if __name__ == "__main__":  # python -m ganport.keras_files.load > the table docs/export.md holds
    print(sources_table(), end="")
