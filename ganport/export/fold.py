"""Fold each inference-mode BatchNormalization into the Dense layer after it.

tf2onnx turns such a BatchNorm into Mul + Add, and onnxruntime never folds a Mul + Add that follows a LeakyRelu into
the next Gemm, so ganport folds it before conversion (no ONNX optimizer does this one either):
y = a * x + c with a = gamma / sqrt(var + eps), c = beta - mean * a, so Dense(y) = x @ (a[:, None] * W) + (c @ W + b).
"""

from __future__ import annotations

import numpy as np

from ganport.export.layers import LayerSpec


def batch_norm_affine(spec: LayerSpec) -> tuple[np.ndarray, np.ndarray]:
    """The per-feature scale a and shift c of an inference-mode BatchNormalization, in float64."""
    weights = [np.asarray(w, np.float64) for w in spec.weights]
    gamma = weights.pop(0) if spec.options["scale"] else None
    beta = weights.pop(0) if spec.options["center"] else None
    mean, variance = weights
    scale = (1.0 if gamma is None else gamma) / np.sqrt(variance + spec.options["epsilon"])
    shift = (0.0 if beta is None else beta) - mean * scale
    return np.broadcast_to(scale, mean.shape), shift


def fold_batch_norm(specs: list[LayerSpec]) -> list[LayerSpec]:
    """The same network with every BatchNormalization that directly precedes a Dense merged into that Dense."""
    folded: list[LayerSpec] = []
    index = 0
    while index < len(specs):
        spec = specs[index]
        following = specs[index + 1] if index + 1 < len(specs) else None
        if spec.kind == "BatchNormalization" and following is not None and following.kind == "Dense":
            scale, shift = batch_norm_affine(spec)
            kernel = np.asarray(following.weights[0], np.float64)
            bias = np.asarray(following.weights[1], np.float64) if following.options["use_bias"] else 0.0
            new_kernel = (scale[:, None] * kernel).astype(np.float32)
            new_bias = (shift @ kernel + bias).astype(np.float32)
            folded.append(
                LayerSpec("Dense", following.name, {**following.options, "use_bias": True}, [new_kernel, new_bias])
            )
            index += 2
            continue
        folded.append(spec)
        index += 1
    return folded
