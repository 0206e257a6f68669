"""The objects a loader is handed besides the file: the user's --custom-objects, and inert stand-ins for custom
objects that act only while training (a WGAN's weight clip), which inference never runs and Keras cannot rebuild.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ganport.errors import ModelError, UsageError
from ganport.files import file_problem
from ganport.keras_files.community import community_objects
from ganport.keras_files.config import objects
from ganport.keras_files.safety import is_keras_module, training_only_kind


def user_custom_objects(module_path: Path | None) -> dict[str, Any]:
    """The classes and functions a --custom-objects Python file defines, by name (it is the user's own code, run as
    an import). Keras 3 classes are also registered, so a .keras file written with them reads back."""
    if module_path is None:
        return {}
    import keras

    problem = file_problem(module_path)
    if problem or module_path.suffix != ".py":
        raise UsageError(f"--custom-objects {module_path} {problem or 'is not a .py file'}; pass a Python file.")
    name = f"ganport_custom_objects_{module_path.stem}"
    spec = importlib.util.spec_from_file_location(name, module_path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # the user's code may raise anything, or call sys.exit()
        reason = f"exit({error.code})" if isinstance(error, SystemExit) else f"{type(error).__name__}: {error}"
        raise ModelError(f"--custom-objects {module_path} failed to import: {' '.join(reason.split())}") from None
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


def provided_names(user_objects: dict[str, Any]) -> frozenset[str]:
    """The class and function names a loader finds without importing anything: the user's --custom-objects, and
    what this process registered with Keras 3 or tf_keras (by registered name and by bare class name)."""
    import keras
    import tf_keras

    registered = {*keras.saving.get_custom_objects(), *tf_keras.saving.get_custom_objects()}
    return frozenset({*user_objects, *registered, *(name.rpartition(">")[2] for name in registered)})


def loader_objects(
    config: Any, module: ModuleType, user_objects: dict[str, Any], log: Callable[[str], None]
) -> dict[str, Any]:
    """What `module` (keras or tf_keras) is handed to read `config`: the user's objects, also under the registered
    names the file gives them (so tf_keras finds them without importing the module the file names), and stand-ins."""
    aliases = {
        item["registered_name"]: user_objects[item["class_name"]]
        for _, item, _ in objects(config)
        if isinstance(item.get("registered_name"), str) and item.get("class_name") in user_objects
    }
    names = {item["class_name"] for _, item, _ in objects(config) if isinstance(item.get("class_name"), str)}
    community = community_objects(module, names - set(user_objects))
    for name in community:
        log(f"{name}: read without its library, with its math (ganport/keras_files/community.py)")
    return {**stand_ins_for(config, module, log), **community, **aliases, **user_objects}


def stand_ins_for(config: Any, module: ModuleType, log: Callable[[str], None]) -> dict[str, Any]:
    """Inert stand-ins for the custom constraints, regularizers and initializers a config names, which `module`
    cannot rebuild and inference never runs; each said in `log`. An object naming a module outside Keras is stood in
    without asking Keras (which would import that module)."""
    stand_ins: dict[str, Any] = {}
    for key, value, _ in objects(config):
        kind = training_only_kind(key)
        name = value.get("class_name")
        if kind is None or not isinstance(name, str) or name in stand_ins:
            continue
        if is_keras_module(value.get("module")) and _known(module, kind, value):
            continue
        # Keras looks a class up by its registered name, a function by its own (a custom initializer function)
        function_name = value.get("config") if name == "function" and isinstance(value.get("config"), str) else name
        for alias in {function_name, value.get("registered_name") or function_name}:
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
    import tensorflow as tf

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
