"""Keras model files in, Keras models out: each read by the Keras that wrote it (tf_keras for Keras 2); roles checked.

Shared by export, eval and verify, so a file is loaded, refused and named the same way everywhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf
from keras.src.saving.serialization_lib import SafeModeScope

from ganport.contract import KERAS_SUFFIXES, Role, require_role
from ganport.errors import ModelError, UsageError
from ganport.files import file_problem, size_text
from ganport.tf_ops import ALLOWED, is_python_lambda, layer_configs, stored_op

# The HDF5 root attribute (JSON, output layer -> image shape) naming outputs that ganport wrote flat for DL4J; the
# loader puts their Reshape back, so ganport reads its own files as the models they came from.
FLATTENED_OUTPUTS = "ganport_flattened_outputs"
# A Keras config is kilobytes; an archive entry that would inflate beyond this is damaged or hostile (a zip bomb).
MAX_CONFIG_BYTES = 64 * 2**20


def _require_small_configs(path: Path) -> None:
    """Refuse a .keras archive whose JSON entries would inflate past MAX_CONFIG_BYTES, before Keras reads them whole.
    The sizes are the archive's own; zipfile never inflates an entry beyond the size it declares."""
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            if entry.filename.endswith(".json") and entry.file_size > MAX_CONFIG_BYTES:
                raise ModelError(
                    f"{path}: its {entry.filename} would inflate to {size_text(entry.file_size)} (a Keras config is "
                    "kilobytes), so the archive is damaged or hostile; it was not read."
                )


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
        _require_readable_container(path)
    # The Keras that wrote a file reads it as written: Keras 3 loads many Keras 2 files wrongly (a Sequential without
    # an InputLayer gets an extra axis) or not at all, while tf_keras reads them as they were saved.
    loaders = _readers(saved_keras_version(path), path.suffix)
    config = saved_config(path)  # read once: each loader's custom objects and the declared inputs come from it
    require_safe_layers(path, config, options.trust_code)
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
    return _with_flattened_outputs_reshaped(path, model) if path.suffix in (".h5", ".hdf5") else model


def _readers(version: str, suffix: str) -> tuple[Callable[..., Any], ...]:
    """The loaders to try, in order, for a file that says `version` wrote it ("" when it does not say)."""
    if version.startswith(("1.", "2.")):
        return (load_keras2, _load_keras3)
    if version or suffix == ".keras":
        return (_load_keras3,)
    return (_load_keras3, load_keras2)  # an HDF5 file that does not say: Keras 3, checked against declared inputs


# Each kind of source, the suffix it is read as, and where it says which Keras wrote it: README's table of sources.
_SOURCES = (
    ("`.h5` / `.hdf5` (`model.save`)", ".h5", "the `keras_version` attribute"),
    ("`.keras` zip (Keras 3, or Keras 2.12-2.15's own)", ".keras", "`metadata.json`"),
    ("architecture `.json` + weights HDF5 (Keras-GAN's `saved_model/`)", ".json", "its `keras_version` field"),
)


def sources_table() -> str:
    """README's table of the model files ganport reads and which Keras reads each, from the loader's own rules."""
    names = {load_keras2: "tf_keras", _load_keras3: "Keras 3"}
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
            "layers are not recorded, so it cannot be converted layer by layer; save the Keras model with model.save()."
        )
    require_safe_layers(path, _saved_model_layers(path), options.trust_code)
    return load_keras2(path, Reading(options, user_objects))


def _saved_model_layers(path: Path) -> list[dict]:
    """The layer configs a SavedModel's Keras metadata records (one JSON entry per saved object)."""
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString((path / "keras_metadata.pb").read_bytes())
    layers = []
    for node in metadata.nodes:
        with contextlib.suppress(ValueError):
            entry = json.loads(node.metadata)
            if isinstance(entry, dict):
                layers.append(entry)
    return layers


def require_safe_layers(path: Path, config: Any, trust_code: bool) -> None:
    """Refuse, before Keras reads it, a file whose layers would run Python code it stores (unless trusted) or a
    TensorFlow op ganport does not convert: tf_keras runs both while loading or predicting."""
    for layer in layer_configs(config):
        name = (layer.get("config") or {}).get("name", "?")
        op = stored_op(layer)
        if op is not None and op[1] not in ALLOWED:
            raise ModelError(
                f"{path}: layer {name!r} calls {op[0]}, which is not one of the TensorFlow ops ganport converts "
                "(README lists them); it was not loaded."
            )
        if is_python_lambda(layer) and not trust_code:
            raise ModelError(
                f"{path}: Lambda layer {name!r} stores Python code, which loading would run; it was not loaded. If "
                "you trust the file, pass --trust-code; else replace the Lambda with Keras layers."
            )


def user_custom_objects(module_path: Path | None) -> dict[str, Any]:
    """The classes and functions a --custom-objects Python file defines, by name (it is the user's own code, run as
    an import). Keras 3 classes are also registered, so a .keras file written with them reads back."""
    if module_path is None:
        return {}
    problem = file_problem(module_path)
    if problem or module_path.suffix != ".py":
        raise UsageError(f"--custom-objects {module_path} {problem or 'is not a .py file'}; pass a Python file.")
    name = f"ganport_custom_objects_{module_path.stem}"
    spec = importlib.util.spec_from_file_location(name, module_path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's code may raise anything
        raise ModelError(
            f"--custom-objects {module_path} failed to import: {type(error).__name__}: {' '.join(str(error).split())}"
        ) from error
    found = {
        key: value
        for key, value in vars(module).items()
        if not key.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == name
    }
    if not found:
        raise UsageError(f"--custom-objects {module_path} defines no class or function; pass the file that does.")
    keras.saving.get_custom_objects().update(
        {key: value for key, value in found.items() if inspect.isclass(value) and issubclass(value, keras.layers.Layer)}
    )
    return found


def _require_readable_container(path: Path) -> None:
    container = "a zip archive" if path.suffix == ".keras" else "an HDF5 file"
    readable = zipfile.is_zipfile(path) if path.suffix == ".keras" else h5py.is_hdf5(path)
    if not readable:
        raise ModelError(f"{path} is not {container}, so not a saved Keras model; is it damaged or misnamed?")
    if path.suffix == ".keras":
        _require_small_configs(path)
    elif _holds_weights_only(path):
        raise UsageError(
            f"{path} holds weights only, no architecture: pass the architecture's .json (model.to_json(); Keras-GAN "
            f"writes it as saved_model/NAME.json) with --weights {path}."
        )


def _holds_weights_only(path: Path) -> bool:
    """An HDF5 file written by save_weights(): layer weights without the model_config attribute."""
    with contextlib.suppress(OSError), h5py.File(path, "r") as archive:
        return "model_config" not in archive.attrs and ("layer_names" in archive.attrs or "layers" in archive)
    return False


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


def _silent(line: str) -> None:
    pass


@dataclass(frozen=True)
class Reading:
    """What a loader is handed besides the path: the user's options and custom objects, the file's config (read
    once, None to read it), and where notes go."""

    options: LoadOptions = LoadOptions()
    user_objects: dict[str, Any] = field(default_factory=dict)
    config: dict | None = None
    log: Callable[[str], None] = _silent


def _load_keras3(path: Path, reading: Reading) -> Any:
    weights, trust_code = reading.options.weights, reading.options.trust_code
    custom = {**custom_objects_for(reading.config, keras, reading.log), **reading.user_objects}
    try:
        with warnings.catch_warnings():
            # Keras 3 warns about each Keras 2 argument it reads from an old file (alpha, input_length): the file is
            # what it is, and the user can do nothing about it.
            warnings.filterwarnings("ignore", category=UserWarning, module="keras")
            if weights is None:
                return keras.saving.load_model(path, compile=False, custom_objects=custom, safe_mode=not trust_code)
            with SafeModeScope(not trust_code):  # not exported; model_from_json takes no flag
                model = keras.models.model_from_json(_architecture_text(path), custom_objects=custom)
            model.load_weights(weights)
            return model
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


def _architecture_text(path: Path) -> str:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{path} is {size_text(path.stat().st_size)}; a Keras architecture is kilobytes. Is it one?")
    return path.read_text(encoding="utf-8", errors="replace")


def saved_keras_version(path: Path) -> str:
    """The Keras version a model file says wrote it ("" when it does not say): HDF5's `keras_version` attribute, a
    .keras archive's metadata.json, or an architecture .json's own field."""
    try:
        if path.suffix == ".json":
            return str(json.loads(_architecture_text(path)).get("keras_version", ""))
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
        with h5py.File(path, "r") as archive:
            version = archive.attrs.get("keras_version", b"")
    except (OSError, KeyError, ValueError, AttributeError, zipfile.BadZipFile, ModelError):
        return ""
    return version.decode() if isinstance(version, bytes) else str(version)


def saved_config(path: Path) -> dict | None:
    """The model config a file holds (HDF5's model_config, a .keras archive's config.json, an architecture .json),
    or None when it holds none that can be read."""
    try:
        if path.suffix == ".json":
            config = json.loads(_architecture_text(path))
        elif path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
        else:
            with h5py.File(path, "r") as archive:
                config = json.loads(archive.attrs["model_config"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, ModelError):
        return None
    return config if isinstance(config, dict) else None


# Arguments whose objects act only while training: a missing custom one is replaced by an inert stand-in on load.
_TRAINING_ONLY = {"_constraint": "constraints", "_regularizer": "regularizers", "_initializer": "initializers"}
# The most of a Keras error message a one-line refusal quotes.
MAX_REASON = 400
# How Keras 3 and tf_keras say that a file names a layer class they do not have.
_UNKNOWN_LAYER = re.compile(r"Unknown layer: '([^']+)'|Could not locate class '([^']+)'")


def _walk(config: Any, key: str = "") -> Iterator[tuple[str, dict]]:
    """Every dict anywhere in a config, with the key it is under (a list's items take the list's key)."""
    if isinstance(config, dict):
        if key:
            yield key, config
        for child_key, value in config.items():
            yield from _walk(value, child_key)
    elif isinstance(config, list):
        for item in config:
            yield from _walk(item, key)


def custom_objects_for(config: dict | None, module: ModuleType, log: Callable[[str], None]) -> dict[str, Any]:
    """Inert stand-ins for the custom constraints, regularizers and initializers a config names (a WGAN's weight
    clip, say), which `module` (keras or tf_keras) cannot rebuild and inference never runs; each said in `log`."""
    if config is None:
        return {}
    stand_ins: dict[str, Any] = {}
    for key, value in _walk(config):
        kind = next((kind for suffix, kind in _TRAINING_ONLY.items() if key.endswith(suffix)), None)
        name = value.get("class_name")
        if kind is None or not isinstance(name, str) or name in stand_ins or _known(module, kind, value):
            continue
        for alias in {name, value.get("registered_name") or name}:
            stand_ins[alias] = _inert(module, kind)
        log(f"dropped on load: {kind[:-1]} {name} ({key}); it acts only while training, so the outputs are the same")
    return stand_ins


def _known(module: ModuleType, kind: str, value: dict) -> bool:
    try:
        rebuilt = getattr(module, kind).deserialize(value)
    except Exception:  # Keras raises ValueError or TypeError for classes it does not know
        return False
    return isinstance(rebuilt, _base(module, kind))  # tf_keras hands back the bare name of a class it lacks


def _base(module: ModuleType, kind: str) -> type:
    return {"constraints": module.constraints.Constraint, "regularizers": module.regularizers.Regularizer}.get(
        kind, module.initializers.Initializer
    )


def _inert(module: ModuleType, kind: str) -> type:
    """A stand-in class for a custom object of `kind` that takes any config and does nothing."""

    class Inert(_base(module, kind)):  # type: ignore[misc, valid-type]
        def __init__(self, **config: Any) -> None:
            self.config = config

        def __call__(self, value: Any, *args: Any, **kwargs: Any) -> Any:
            if kind == "constraints":
                return value
            if kind == "regularizers":
                return 0.0
            return tf.zeros(value, dtype=kwargs.get("dtype") or (args[0] if args else None) or tf.float32)

        def get_config(self) -> dict:
            return self.config

    return Inert


def _config_input_shapes(config: dict) -> list[list] | None:
    """The input shapes (batch axis included) a model config declares, or None when it declares none the loader
    could be checked against (a subclassed model, a config without shapes)."""
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else inner
    if not isinstance(layers, list) or not layers:
        return None
    if config.get("class_name") == "Sequential":
        first = layers[0].get("config", {})
        shape = first.get("batch_input_shape") or first.get("batch_shape")
        return [list(shape)] if shape else None
    by_name = {layer.get("config", {}).get("name"): layer for layer in layers}
    shapes = []
    for entry in inner.get("input_layers", []):
        name = entry[0] if isinstance(entry, list) else entry
        layer_config = by_name.get(name, {}).get("config", {})
        shape = layer_config.get("batch_input_shape") or layer_config.get("batch_shape")
        if not shape:
            return None
        shapes.append(list(shape))
    return shapes or None


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


def _with_flattened_outputs_reshaped(path: Path, model: Any) -> Any:
    """`model` with a Reshape after each output that ganport's HDF5 writer flattened for DL4J (FLATTENED_OUTPUTS)."""
    with h5py.File(path, "r") as archive:
        recorded = archive.attrs.get(FLATTENED_OUTPUTS)
    if recorded is None:
        return model
    shapes = json.loads(recorded)
    module = keras if isinstance(model, keras.Model) else tf_keras()
    outputs = [
        module.layers.Reshape(shapes[name], name=f"{name}_image")(output) if name in shapes else output
        for name, output in zip(model.output_names, model.outputs, strict=True)
    ]
    return module.Model(model.inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)


def tf_keras() -> ModuleType:
    """Keras 2 (tf_keras): the last Keras whose HDF5 files DL4J imports."""
    import tf_keras as module

    return module


def load_keras2(path: Path, reading: Reading | None = None) -> Any:
    """A Keras 2 model file, or an architecture .json and its weights, read by tf_keras. tf_keras runs a Lambda's
    stored code in HDF5 files without asking (its safe_mode guards .keras files only), so the file is checked first."""
    reading = reading or Reading()
    weights, trust_code = reading.options.weights, reading.options.trust_code
    config = reading.config if reading.config is not None else saved_config(path)
    require_safe_layers(path, config, trust_code)
    custom = {**custom_objects_for(config, tf_keras(), reading.log), **reading.user_objects}
    # not exported; model_from_json takes no flag, and in HDF5 files tf_keras checks the scope, not its argument
    from tf_keras.src.saving.serialization_lib import SafeModeScope as Keras2SafeModeScope

    try:
        with Keras2SafeModeScope(not trust_code):
            if weights is None:
                return tf_keras().models.load_model(path, compile=False, custom_objects=custom)
            model = tf_keras().models.model_from_json(_architecture_text(path), custom_objects=custom)
        model.load_weights(weights)
        return model
    except ModelError:
        raise
    except Exception as error:  # tf_keras raises many types for unreadable files
        raise _load_failure(path, error, "with tf_keras") from error


def shapes(model: Any) -> tuple[list[list], list[list]]:
    """Every input's and every output's shape, batch axis included (as None)."""
    return [list(tensor.shape) for tensor in model.inputs], [list(tensor.shape) for tensor in model.outputs]


def load_as(path: Path, role: Role) -> Any:
    """Load `path` and refuse it unless it plays `role` (a discriminator saved as generator.keras, say)."""
    model = load_model_file(path)
    require_role(str(path), role, *(found[0] for found in shapes(model)))
    return model


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


def framework_versions() -> dict[str, str]:
    """The versions whose kernels compute a Keras reference, for the provenance stored with test vectors."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


if __name__ == "__main__":  # python -m ganport.loading > the table README holds
    print(sources_table(), end="")
