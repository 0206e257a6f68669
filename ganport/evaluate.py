"""Sample quality on MNIST, measured with ganport's own classifier on onnxruntime (TensorFlow only for Keras models).

- classifier score: exp(E_x KL(p(y|x) || p(y))), the Inception Score with an MNIST classifier (max 10);
- Fréchet distance between the classifier's 128-d penultimate features of the samples and of the MNIST test set;
- the predicted-class histogram, its KL divergence from uniform, and the classes covered (>= 1% of samples each);
- for a conditional generator, label accuracy: the share of samples the classifier reads as the digit asked for,
  overall and per digit (each digit asked for equally often). Real MNIST's is the classifier's test accuracy.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ganport.contract import CLASSES, GENERATOR, require_images, require_seed
from ganport.data import cache_dir, load_dataset
from ganport.errors import ModelError, UsageError
from ganport.files import atomic_path, write_text_atomically
from ganport.images import from_uint8
from ganport.runtime import SHIPPED_MODELS, Generator, noise_batches

CLASSIFIER_FILE = "mnist-classifier.onnx"
# real_baseline's output for the shipped classifier (scripts/package-classifier-stats.sh writes it)
SHIPPED_STATS_FILE = "mnist-classifier-mnist-stats.npz"
COVERAGE_SHARE = 0.01
BATCH = 2000
DEFAULT_SAMPLES = 10000
MIN_SAMPLES = 2


@dataclass(frozen=True)
class SampleMetrics:
    name: str
    n: int
    classifier_score: float
    frechet_distance: float
    kl_from_uniform: float
    classes_covered: int
    class_histogram: list[int]
    label_accuracy: float | None = None
    label_accuracy_per_class: list[float] | None = None


@dataclass(frozen=True)
class EvalReport:
    model: str
    seed: int
    classifier: str
    classifier_test_accuracy: str
    generated: SampleMetrics
    real: SampleMetrics

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def classifier_path(log: Callable[[str], None] = print) -> Path:
    """The classifier shipped in models/, else the one built in the cache on first use."""
    shipped = SHIPPED_MODELS / CLASSIFIER_FILE
    if shipped.is_file():
        return shipped
    built = cache_dir() / CLASSIFIER_FILE
    if not built.is_file():
        from ganport.classifier import train_classifier

        log(f"no shipped classifier in {SHIPPED_MODELS}; training one into {built} (a few minutes, once)")
        train_classifier(built, log=log)
    return built


class Classifier:
    """The ONNX classifier: images in [-1, 1] -> (features [N, 128], probabilities [N, 10])."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        self.path = path
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.test_accuracy = self.session.get_modelmeta().custom_metadata_map.get("test_accuracy", "unknown")

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, probabilities = [], []
        for start in range(0, len(images), BATCH):
            batch = np.ascontiguousarray(images[start : start + BATCH], dtype=np.float32)
            feature_batch, probability_batch = self.session.run(["features", "probabilities"], {"image": batch})
            features.append(feature_batch)
            probabilities.append(probability_batch)
        return np.concatenate(features), np.concatenate(probabilities)


def classifier_score(probabilities: np.ndarray) -> float:
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    marginal = p.mean(axis=0)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1))))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = features.astype(np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(stats_a: tuple[np.ndarray, np.ndarray], stats_b: tuple[np.ndarray, np.ndarray]) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2).

    numpy only (no scipy): Tr((S_a S_b)^1/2) equals the sum of square roots of the eigenvalues of the symmetric
    S_a^1/2 S_b S_a^1/2, which eigh computes stably.
    """
    (mu_a, sigma_a), (mu_b, sigma_b) = stats_a, stats_b
    values, vectors = np.linalg.eigh(sigma_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = np.linalg.eigvalsh(root_a @ sigma_b @ root_a)
    trace_root = np.sum(np.sqrt(np.clip(product, 0, None)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_root)


def summarize(
    name: str,
    features: np.ndarray,
    probabilities: np.ndarray,
    reference: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray | None = None,
) -> SampleMetrics:
    """The metrics of one set of samples; with `labels` (the class each was meant to be) also label accuracy."""
    predicted = probabilities.argmax(axis=1)
    histogram = np.bincount(predicted, minlength=CLASSES)
    share = histogram / histogram.sum()
    kl = float(np.sum(np.where(share > 0, share * np.log(np.maximum(share, 1e-12) * CLASSES), 0.0)))
    accuracy, per_class = None, None
    if labels is not None:
        hits = predicted == labels
        accuracy = float(hits.mean())
        per_class = [float(hits[labels == digit].mean()) for digit in range(CLASSES)]
    return SampleMetrics(
        name,
        len(features),
        classifier_score(probabilities),
        frechet_distance(feature_statistics(features), reference),
        kl,
        int(np.sum(share >= COVERAGE_SHARE)),
        histogram.tolist(),
        accuracy,
        per_class,
    )


def real_baseline(classifier: Classifier) -> tuple[tuple[np.ndarray, np.ndarray], SampleMetrics]:
    """MNIST test-set feature statistics and the real-data metrics, cached per classifier file content.

    Score and histogram are those of the 10k test images; the Fréchet distance is that of 10k training images
    against the test set (the test set against itself would be 0).
    """
    digest = hashlib.sha256(classifier.path.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / f"mnist-test-stats-v2-{digest}.npz"  # v2: with label accuracy
    # The shipped classifier's statistics ship beside it, so an install without MNIST can score samples.
    for stored in (cached, SHIPPED_MODELS / SHIPPED_STATS_FILE):
        if stored.is_file():
            with np.load(stored, allow_pickle=False) as archive:
                if str(archive.get("classifier_digest", digest)) != digest:
                    continue
                stats = (archive["mu"], archive["sigma"])
                real = SampleMetrics(**json.loads(str(archive["real"])))
            return stats, real
    mnist = load_dataset("mnist")
    x_test, y_test = mnist.require_test()
    test_features, test_probabilities = classifier(from_uint8(x_test))
    stats = feature_statistics(test_features)
    train_sample = np.random.default_rng(0).choice(len(mnist.x_train), len(x_test), replace=False)
    train_features, _ = classifier(from_uint8(mnist.x_train[train_sample]))
    real = summarize("real MNIST", test_features, test_probabilities, stats, y_test.astype(np.int64))
    real = SampleMetrics(
        **{**asdict(real), "frechet_distance": frechet_distance(feature_statistics(train_features), stats)}
    )
    with atomic_path(cached) as temporary:
        np.savez(temporary, mu=stats[0], sigma=stats[1], real=json.dumps(asdict(real)), classifier_digest=digest)
    return stats, real


def generate(model: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """n images from an ONNX generator (onnxruntime) or a Keras one, from the same seeded noise stream, and for a
    conditional generator the labels asked for: 0, 1, ..., 9, 0, 1, ... (each digit equally often)."""
    if not model.is_file():
        raise ModelError(f"{model} does not exist; pass a generator .onnx, .keras or .h5 file.")
    labels = np.arange(n) % CLASSES
    if model.suffix == ".onnx":
        generator = Generator(model, device="auto")
        if generator.conditional and generator.classes != CLASSES:
            raise ModelError(
                f"{model} draws {generator.classes} classes; the MNIST classifier scores {CLASSES} digits."
            )
        images = generator.sample(n, seed=seed, labels=labels if generator.conditional else None)
        return images, labels if generator.conditional else None
    from ganport.loading import load_as, predict_all

    keras_model = load_as(model, GENERATOR)
    latent = int(keras_model.inputs[0].shape[-1])
    conditional = len(keras_model.inputs) > 1  # the noise comes first (load_as checked); then the class label
    batches = []
    for start, noise in zip(range(0, n, BATCH), noise_batches(n, latent, seed, BATCH), strict=True):
        extra = [labels[start : start + len(noise), None]] if conditional else []
        batches.append(predict_all(keras_model, [noise, *extra])[0])
    images = np.concatenate(batches)
    require_images(str(model), images)
    return images, labels if conditional else None


def evaluate(
    model: str | Path, n: int = DEFAULT_SAMPLES, seed: int = 0, log: Callable[[str], None] = print
) -> tuple[EvalReport, np.ndarray]:
    """Metrics of `n` samples of `model` and of real MNIST; returns the report and the samples."""
    if n < MIN_SAMPLES:
        raise UsageError(f"--n must be at least {MIN_SAMPLES} for the statistics. Received: {n}")
    require_seed(seed)
    classifier = Classifier(classifier_path(log))
    reference, real = real_baseline(classifier)
    samples, labels = generate(Path(model), n, seed)
    if samples.shape[1:] != (28, 28, 1):
        raise ModelError(
            f"{model} makes images of shape {list(samples.shape[1:])}; the MNIST classifier scores "
            "[28, 28, 1] images only."
        )
    features, probabilities = classifier(samples)
    generated = summarize(Path(model).name, features, probabilities, reference, labels)
    report = EvalReport(str(model), seed, str(classifier.path), classifier.test_accuracy, generated, real)
    return report, samples


def score_generator(
    model: Path, n: int = DEFAULT_SAMPLES, seed: int = 0, log: Callable[[str], None] = print
) -> SampleMetrics:
    """The generated-sample metrics alone, as the export's quality gate needs them."""
    return evaluate(model, n, seed, log)[0].generated


def save_report_png(report: EvalReport, samples: np.ndarray, path: Path) -> Path:
    """A 10x10 sample grid beside the predicted-class histograms of the samples and of real MNIST."""
    from PIL import Image, ImageDraw

    from ganport.images import grid, to_uint8

    tiles = grid(to_uint8(samples[:100]), columns=10)
    picture = Image.new("L", (tiles.shape[1] * 2 + 340, tiles.shape[0] * 2), 255)
    picture.paste(Image.fromarray(tiles).resize((tiles.shape[1] * 2, tiles.shape[0] * 2)), (0, 0))
    draw = ImageDraw.Draw(picture)
    left, bottom, height = tiles.shape[1] * 2 + 20, picture.height - 30, picture.height - 80
    draw.text(
        (left, 10), f"classes: generated (dark) vs real (light); score {report.generated.classifier_score:.2f}", fill=0
    )
    tallest = max(
        max(report.generated.class_histogram) / report.generated.n, max(report.real.class_histogram) / report.real.n
    )
    for digit in range(10):
        for offset, metrics, shade in ((0, report.generated, 40), (12, report.real, 170)):
            share = metrics.class_histogram[digit] / metrics.n
            top = bottom - math.ceil(height * share / tallest)
            x = left + digit * 30 + offset
            draw.rectangle((x, top, x + 10, bottom), fill=shade)
        draw.text((left + digit * 30 + 6, bottom + 6), str(digit), fill=0)
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")
    return path


def write_json(report: EvalReport, path: Path) -> Path:
    write_text_atomically(path, report.to_json())
    return path
