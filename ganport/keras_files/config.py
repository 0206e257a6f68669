"""A Keras model file's config: read whole or refused, checked in shape, and walked one way by every reader.

Keras writes a model's architecture as JSON: an HDF5 file's `model_config` attribute, a .keras archive's
config.json, an architecture .json, a SavedModel's keras_metadata.pb (one JSON entry per saved object). Every
ganport reader of a config (the code gate, the stand-ins, the declared inputs) walks it with `objects` here, so a
shape that real files hold is met by all of them alike: Keras 2.0-2.2 wrote a Sequential's `config` as a plain list
of layers, also inside a Model; later Keras writes `{"name": ..., "layers": [...]}`.

Nothing here runs what a config names: it is JSON read as data. What cannot be read is refused (ModelError), never
passed on as "no config", so a check that depends on the config fails closed.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py

from ganport.errors import ModelError, reason_of
from ganport.files import size_text

# A Keras config is kilobytes; one that would inflate beyond this is damaged or hostile (a zip bomb).
MAX_CONFIG_BYTES = 64 * 2**20
# Real configs nest a dozen levels (corpus files: at most 11); Keras reads them recursively, and a config nested
# thousands deep ends Python's recursion in a traceback. Generous for models inside models, far from that limit.
MAX_NESTING = 64
# The model classes whose config lists layers (Functional is Keras 3's name for a functional Model).
MODEL_CLASSES = frozenset({"Sequential", "Model", "Functional"})
KERAS_METADATA = "keras_metadata.pb"


def parse(text: str | bytes, source: str) -> dict:
    """A model config from its JSON text: an object with a `class_name`, nested at most MAX_NESTING deep, every
    model in it listing its layers as objects; anything else is a one-line ModelError naming `source`."""
    try:
        config = json.loads(text)
    except RecursionError:
        raise ModelError(_too_deep(source)) from None
    except ValueError as error:
        raise ModelError(f"{source} holds a model config that is not JSON ({error}); the file is damaged.") from None
    if nesting(config) > MAX_NESTING:
        raise ModelError(_too_deep(source))
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        found = type(config).__name__ if not isinstance(config, dict) else "an object without a class_name"
        raise ModelError(
            f"{source} holds a model config that is {_article(found)}, not a Keras model's; the file is damaged or "
            "was not written by Keras."
        )
    require_layer_lists(config, source)
    return config


def _too_deep(source: str) -> str:
    return (
        f"{source} holds a model config nested more than {MAX_NESTING} levels deep (real ones nest about a dozen); "
        "the file is damaged or hostile, and was not read further."
    )


def _article(name: str) -> str:
    names = {"list": "a JSON array", "str": "a JSON string", "int": "a number", "float": "a number"}
    return names.get(name, {"NoneType": "null", "bool": "a boolean"}.get(name, name))


def nesting(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (1 for a flat one), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_NESTING:  # deeper is refused anyway; no need to count on
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def objects(config: Any) -> Iterator[tuple[str, dict, str]]:
    """Every object anywhere in a config, parents before children, with the key it is under (a list's items take
    the list's key) and the name of the nearest layer or model holding it ("" at the top)."""
    stack: list[tuple[str, Any, str]] = [("", config, "")]
    while stack:
        key, item, owner = stack.pop()
        if isinstance(item, dict):
            yield key, item, owner
            inner = item.get("config")
            name = inner.get("name") if "class_name" in item and isinstance(inner, dict) else None
            owner = name if isinstance(name, str) else owner
            stack.extend(reversed([(child_key, value, owner) for child_key, value in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(key, value, owner) for value in item]))


def serialized(config: Any) -> Iterator[dict]:
    """Every serialized Keras object in a config (a dict naming a `class_name`): layers, models, initializers,
    activations, functions, dtype policies."""
    return (item for _, item, _ in objects(config) if "class_name" in item)


def model_layers(model_config: dict) -> list | None:
    """The layer list of a model's config, whether Keras wrote it under `layers` or, before Keras 2.2.3, as the
    Sequential's whole `config`; None for an object that is not a model."""
    if model_config.get("class_name") not in MODEL_CLASSES:
        return None
    inner = model_config.get("config")
    return inner if isinstance(inner, list) else (inner or {}).get("layers") if isinstance(inner, dict) else None


def require_layer_lists(config: dict, source: str) -> None:
    """Refuse a config in which a model's layers are not a list of layer objects (a string, say): Keras would
    iterate it and name each character as an unknown layer class."""
    for item in serialized(config):
        if not isinstance(item["class_name"], str):
            raise ModelError(
                f"{source} names a class that is not a string ({json.dumps(item['class_name'])[:60]}); the file is "
                "damaged."
            )
        if item["class_name"] not in MODEL_CLASSES:
            continue
        layers = model_layers(item)
        if not isinstance(layers, list):
            found = _article(type(layers).__name__)
        elif not all(isinstance(layer, dict) and isinstance(layer.get("class_name"), str) for layer in layers):
            found = "a list holding something other than layer objects"
        else:
            continue
        raise ModelError(
            f"{source}: model {layer_name(item) or '?'!r} does not list its layers as objects (found {found}); the "
            "file is damaged or was not written by Keras."
        )


def layer_name(item: dict) -> str | None:
    """The name a serialized layer or model's config gives it, as text; None where it gives none."""
    inner = item.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    return None if name is None else str(name)


def read_config(path: Path) -> dict:
    """The model config a file holds: an HDF5 file's `model_config`, a .keras archive's config.json, an architecture
    .json. A file without one, or with one that cannot be read, is refused (ModelError)."""
    try:
        if path.suffix == ".json":
            return parse(read_architecture_text(path), str(path))
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                return parse(_archive_entry(archive, "config.json", path), str(path))
        with h5py.File(path, "r") as archive:
            if "model_config" not in archive.attrs:
                raise ModelError(f"{path} holds no model config (model_config); it is not a saved Keras model.")
            size = archive.attrs.get_id("model_config").get_storage_size()
            if size > MAX_CONFIG_BYTES:
                raise ModelError(_too_large(path, "model_config attribute", size))
            text = archive.attrs["model_config"]
    except (OSError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as error:
        reason = reason_of(error)
        raise ModelError(f"{path}: its model config cannot be read ({reason}); is the file damaged?") from None
    return parse(text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text), str(path))


def read_architecture_text(path: Path) -> str:
    """An architecture .json's text, refused when it is far larger than any Keras architecture."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ModelError(f"{path} is {size_text(size)}; a Keras architecture is kilobytes. Is it one?")
    return path.read_text(encoding="utf-8", errors="replace")


def _archive_entry(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """One JSON entry of a .keras archive, refused before inflating when it declares more than MAX_CONFIG_BYTES
    (zipfile never inflates an entry beyond the size it declares)."""
    try:
        entry = archive.getinfo(name)
    except KeyError:
        raise ModelError(f"{path} is a zip archive without {name}, so not a saved Keras model.") from None
    if entry.file_size > MAX_CONFIG_BYTES:
        raise ModelError(_too_large(path, name, entry.file_size, "would inflate to"))
    return archive.read(entry)


def _too_large(path: Path, what: str, size: int, verb: str = "would take") -> str:
    return (
        f"{path}: its {what} {verb} {size_text(size)} (a Keras config is kilobytes), so the file is damaged or "
        "hostile; it was not read."
    )


def saved_keras_version(path: Path) -> str:
    """The Keras version a model file says wrote it ("" when it does not say or cannot be read): HDF5's
    `keras_version` attribute, a .keras archive's metadata.json, or an architecture .json's own field."""
    try:
        if path.suffix == ".json":
            found = json.loads(read_architecture_text(path)).get("keras_version", "")
        elif path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                found = json.loads(_archive_entry(archive, "metadata.json", path)).get("keras_version", "")
        else:
            with h5py.File(path, "r") as archive:
                found = archive.attrs.get("keras_version", b"")
    except (OSError, KeyError, ValueError, AttributeError, RecursionError, zipfile.BadZipFile, ModelError):
        return ""
    return found.decode("utf-8", "replace") if isinstance(found, bytes) else str(found)


def saved_model_objects(folder: Path) -> list[dict]:
    """The objects a SavedModel's Keras metadata records (one JSON entry per saved layer, model or metric), each
    read as `parse` reads a config; an entry that cannot be read refuses the folder."""
    from tf_keras.protobuf import saved_metadata_pb2

    metadata_file = folder / KERAS_METADATA
    size = metadata_file.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ModelError(_too_large(folder, KERAS_METADATA, size))
    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        metadata.ParseFromString(metadata_file.read_bytes())
    except Exception as error:  # protobuf's DecodeError, or a RecursionError on nested messages
        raise ModelError(f"{metadata_file} cannot be read ({reason_of(error)}); the SavedModel is damaged.") from None
    found = []
    for node in metadata.nodes:
        source = f"{folder} ({node.node_path or 'an object'} in {KERAS_METADATA})"
        try:
            entry = json.loads(node.metadata)
        except RecursionError:
            raise ModelError(_too_deep(source)) from None
        except ValueError as error:
            raise ModelError(f"{source} is not JSON ({error}); the SavedModel is damaged.") from None
        if not isinstance(entry, dict) or nesting(entry) > MAX_NESTING:
            raise ModelError(_too_deep(source) if isinstance(entry, dict) else f"{source} is not a Keras object.")
        require_layer_lists(entry, source)
        found.append(entry)
    return found
