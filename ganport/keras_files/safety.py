"""The code gate: nothing a model file stores or names runs unless its user opted in, checked before Keras reads it.

What a Keras file can make its loader run, and what the gate does about each (every object of the config, whatever
the container: .h5, .keras from either Keras, architecture .json, SavedModel metadata):
- Python bytecode (a Lambda's function or output shape): refused unless --trust-code.
- A function named by module and name (`{"class_name": "function", "module": "tensorflow.io", "config":
  "write_graph"}`, or a Keras 2 Lambda's `function_type: "function"`): tf_keras imports that module and calls the
  function, so only the pure functions ganport knows pass (Keras activations, the TensorFlow ops it converts), and
  names the user's --custom-objects file defines; anything else needs --trust-code.
- A class from a module outside Keras: tf_keras imports that module to find it; it must come from --custom-objects
  (or be a training-only object that ganport stands in for), else --trust-code.
- A stored TensorFlow op (TFOpLambda, TensorFlowOpLayer): runs at every prediction; only ops on ganport's list.
- A SavedModel layer that tf_keras cannot rebuild from its config is revived from the TensorFlow graph the file
  stores, under the layer's own class name (a graph calling tf.io.write_file, named `Add`): refused after loading,
  before anything is called, whatever its name (`require_no_revived_layers`).

Keras's own safe modes are kept on as a second guard; this gate does not rely on them (tf_keras's does not look at
HDF5 files, nor at named functions).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ganport.errors import ModelError
from ganport.keras_files.config import layer_name, objects
from ganport.tf_ops import ALLOWED, TF_FUNCTIONS, is_python_lambda, resolve, stored_op

KERAS_PACKAGES = ("keras", "tf_keras")
# Keys under which Keras stores objects that act only while training (a WGAN's weight clip): a custom one is replaced
# by an inert stand-in on load (stand_ins.py), so its class is never looked up.
TRAINING_ONLY_SUFFIXES = {"_constraint": "constraints", "_regularizer": "regularizers", "_initializer": "initializers"}
# Where each Keras says its activation functions live; Keras 3 writes "builtins" for any named function.
_ACTIVATION_MODULES = (
    "builtins",
    "keras",
    "keras.activations",
    "keras.src.activations",
    "keras.src.activations.activations",
    "tf_keras",
    "tf_keras.activations",
    "tf_keras.src.activations",
)
# tf_keras's activation helpers that are not activations.
_NOT_ACTIVATIONS = frozenset({"get", "serialize", "deserialize"})
# tf_keras's SavedModel loader defines the classes of the layers it revives from stored graphs here.
_REVIVED_MODULES = ("tf_keras.src.saving.legacy.saved_model.load", "keras.src.saving.legacy.saved_model.load")


def is_keras_module(module: Any) -> bool:
    """A module named by one of the Keras packages (or none named: Keras 2 files name classes only)."""
    return module is None or (isinstance(module, str) and module.split(".")[0] in KERAS_PACKAGES)


def training_only_kind(key: str) -> str | None:
    """The kind of training-only object ("constraints", ...) stored under `key` (kernel_constraint ...), or None."""
    return next((kind for suffix, kind in TRAINING_ONLY_SUFFIXES.items() if key.endswith(suffix)), None)


@functools.cache
def allowed_functions() -> frozenset[tuple[str, str]]:
    """(module, name) of every function a file may name: Keras activations under each Keras's module names, and the
    TensorFlow ops ganport converts, under their public and their defining module."""
    import tf_keras
    from keras.src import activations

    names = set(activations.ALL_OBJECTS_DICT) | {
        name for name in dir(tf_keras.activations) if not name.startswith("_") and name not in _NOT_ACTIVATIONS
    }
    allowed = {(module, name) for module in _ACTIVATION_MODULES for name in names}
    for symbol in TF_FUNCTIONS:
        function = resolve(symbol)
        package, _, name = f"tensorflow.{symbol}".rpartition(".")
        allowed |= {(package, name), (function.__module__, function.__name__)}
    return frozenset(allowed)


def named_functions(layer: dict) -> list[tuple[str, str]]:
    """(module, name) of each function a serialized object names for its loader to look up: a function object
    anywhere (Keras 3 and tf_keras .keras files), or a Keras 2 Lambda's function or output shape stored by name."""
    if layer.get("class_name") == "function":
        return [(str(layer.get("module")), str(layer.get("config")))]
    config = layer.get("config")
    if layer.get("class_name") != "Lambda" or not isinstance(config, dict):
        return []
    found = []
    for value, kind, module in (("function", "function_type", "module"), ("output_shape", "output_shape_type", None)):
        if config.get(kind) == "function" and isinstance(config.get(value), str):
            found.append((str(config.get(module or "output_shape_module")), config[value]))
    return found


def require_safe(source: str | Path, config: Any, trust_code: bool, provided: Collection[str] = ()) -> None:
    """Refuse, before Keras reads it, a config that would make loading or predicting run code the user did not
    provide: see the module's docstring. `provided`: the names of the classes and functions the loader is handed
    (the user's --custom-objects); `trust_code` lets stored and named code run."""
    for key, item, owner in objects(config):
        if "class_name" not in item:
            continue
        name = layer_name(item) or owner or "?"
        op = stored_op(item)
        if op is not None and op[1] not in ALLOWED:
            raise ModelError(
                f"{source}: layer {name!r} calls {op[0]}, which is not one of the TensorFlow ops ganport converts "
                "(docs/export.md lists them); it was not loaded."
            )
        if trust_code:
            continue
        if is_python_lambda(item):
            raise ModelError(
                f"{source}: Lambda layer {name!r} stores Python code, which loading would run; it was not loaded. If "
                "you trust the file, pass --trust-code; else replace the Lambda with Keras layers."
            )
        for module, function in named_functions(item) if training_only_kind(key) is None else ():
            if (module, function) not in allowed_functions() and function not in provided:
                raise ModelError(
                    f"{source}: layer {name!r} names the function "
                    f"{module}.{function}, which loading would import and run; only Keras activations and the "
                    "TensorFlow ops ganport converts may be named. It was not loaded. If you trust the file, pass "
                    "--trust-code; if the function is yours, pass the file defining it with --custom-objects."
                )
        module, class_name = item.get("module"), item["class_name"]
        if class_name == "function" or is_keras_module(module) or training_only_kind(key) is not None:
            continue
        if class_name not in provided and item.get("registered_name") not in provided:
            raise ModelError(
                f"{source} uses the custom layer class {class_name}, whose code is not in the file (it names module "
                f"{module}, which loading would import): pass the Python file that defines it with --custom-objects."
            )


def revived_layers(model: Any) -> list[Any]:
    """The layers of a loaded model (nested models' included) that tf_keras revived from a SavedModel's stored graph
    rather than rebuilt from their config."""
    found, stack, seen = [], [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if type(layer).__module__ in _REVIVED_MODULES:
            found.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return found


def require_no_revived_layers(source: str | Path, model: Any) -> None:
    """Refuse a loaded model holding a layer revived from stored TensorFlow graphs: the graph would run at every
    prediction, and its class name (Add, Dense, ...) says nothing of what it does."""
    revived = revived_layers(model)
    if revived:
        layer = revived[0]
        raise ModelError(
            f"{source}: layer {layer.name!r} (saved as class {type(layer).__name__}) could not be rebuilt from its "
            "config, so tf_keras revived it from the TensorFlow graph the SavedModel stores; that graph can do "
            "anything, and ganport converts layers, not stored graphs. Pass the Python file defining its class with "
            "--custom-objects."
        )
