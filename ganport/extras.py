"""The pip extras and the modules each brings: the one place to add one. The base install runs ONNX generators only."""

from __future__ import annotations

EXTRAS: dict[str, tuple[str, ...]] = {
    "keras": ("tensorflow", "tf_keras", "keras", "tf2onnx", "onnxconverter_common", "h5py", "tritonclient"),
}


def extra_providing(module: str) -> str | None:
    """The extra that installs `module` (a dotted name is looked up by its top-level package), if any does."""
    top = module.split(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)
