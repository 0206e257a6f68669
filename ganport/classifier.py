"""The MNIST classifier behind `ganport eval`: a small CNN that ganport trains itself and ships as ONNX.

GAN papers without an Inception network score MNIST samples with such a classifier: its softmax gives the
classifier score and class histogram, its penultimate layer the features for the Fréchet distance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from ganport import onnx_io
from ganport.data import load_dataset
from ganport.export import to_onnx
from ganport.files import atomic_path
from ganport.images import from_uint8

FEATURES_LAYER = "features"
INPUT_NAME, PROBABILITIES, FEATURES = "image", "probabilities", "features"


@dataclass(frozen=True)
class ClassifierResult:
    path: Path
    test_accuracy: float
    onnx_max_abs_diff: float


def build_classifier() -> keras.Sequential:
    """Two conv/pool blocks, a 128-unit feature layer, softmax over 10 digits; input in [-1, 1] like the GAN's."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name=INPUT_NAME),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(128, activation="relu", name=FEATURES_LAYER),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ],
        name="mnist_classifier",
    )


def train_classifier(out: Path, epochs: int = 4, seed: int = 0, log: Callable[[str], None] = print) -> ClassifierResult:
    """Train deterministically on the 60k MNIST training images, check test accuracy, write ONNX to `out`."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    mnist = load_dataset("mnist")
    x_test, y_test = mnist.require_test()
    model = build_classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(from_uint8(mnist.x_train), mnist.y_train, batch_size=128, epochs=epochs, shuffle=True, verbose=2)
    _, accuracy = model.evaluate(from_uint8(x_test), y_test, batch_size=1000, verbose=0)
    log(f"classifier: test accuracy {accuracy:.4f} on {len(x_test)} MNIST test images")

    spec = tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)
    features = keras.Model(model.inputs, [model.get_layer(FEATURES_LAYER).output, model.outputs[0]])

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        feature_values, probabilities = features(images, training=False)
        return {FEATURES: feature_values, PROBABILITIES: probabilities}

    proto = to_onnx.convert_function(
        serve,
        [spec],
        {
            "test_accuracy": f"{accuracy:.4f}",
            "epochs": str(epochs),
            "seed": str(seed),
            "producer": "ganport classifier",
        },
    )
    probe = from_uint8(x_test[:256])
    with atomic_path(out) as temporary:
        to_onnx.save(proto, temporary)
        (onnx_probabilities,) = onnx_io.run(temporary, {INPUT_NAME: probe}, [PROBABILITIES])
        difference = float(np.abs(onnx_probabilities - model(probe, training=False).numpy()).max())
    return ClassifierResult(out, float(accuracy), difference)


if __name__ == "__main__":  # python -m ganport.classifier models/mnist-classifier.onnx
    import sys

    result = train_classifier(Path(sys.argv[1]))
    print(f"{result.path}: test accuracy {result.test_accuracy:.4f}, ONNX max abs diff {result.onnx_max_abs_diff:.2g}")
