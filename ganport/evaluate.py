"""Sample quality on MNIST, measured with ganport's own classifier on onnxruntime (TensorFlow only for Keras models).

- classifier score: exp(E_x KL(p(y|x) || p(y))), the Inception Score with an MNIST classifier (max 10);
- Fréchet distance between the classifier's 128-d penultimate features of the samples and of the MNIST test set;
- the predicted-class histogram, its KL divergence from uniform, and the classes covered (>= 1% of samples each);
- for a conditional generator, label accuracy: the share of samples the classifier reads as the digit asked for,
  overall and per digit (each digit asked for equally often). Real MNIST's is the classifier's test accuracy.

Samples are generated, classified and added to running sums batch by batch, so memory is a batch whatever --n is.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganport.contract import CLASSES, GENERATOR, SCORED_IMAGE_SHAPE, require_images, require_seed
from ganport.data import cache_dir, load_dataset
from ganport.errors import ModelError, UsageError
from ganport.files import atomic_path, file_problem, write_text_atomically
from ganport.images import from_uint8
from ganport.onnx_io import open_session
from ganport.runtime import SHIPPED_MODELS, Generator, noise_batches

CLASSIFIER_FILE = "mnist-classifier.onnx"
# real_baseline's output for the shipped classifier (scripts/package-classifier-stats.sh writes it)
SHIPPED_STATS_FILE = "mnist-classifier-mnist-stats.npz"
COVERAGE_SHARE = 0.01
BATCH = 2000
DEFAULT_SAMPLES = 10000
MIN_SAMPLES = 2
# Fréchet distances are reported on 10k-50k samples; a million takes an hour on a CPU, and more helps nobody.
MAX_SAMPLES = 1_000_000
# Samples kept for the report's picture (a 10 x 10 grid).
PREVIEW = 100


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
    label_accuracy_per_class: list[float | None] | None = None


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
        self.path = path
        self.session = open_session(path, "cpu")
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


class RunningMetrics:
    """The sums every metric needs, added batch by batch (memory: the sums, whatever the number of samples).

    The classifier score needs no second pass: E_x KL(p || m) = E_x sum p log p - sum m log m, with m = E_x p.
    """

    def __init__(self) -> None:
        self.n = 0
        self.feature_sum: np.ndarray | None = None
        self.feature_products: np.ndarray | None = None
        self.entropy_sum = 0.0  # sum over samples of sum_y p log p
        self.probability_sum = np.zeros(CLASSES)
        self.histogram = np.zeros(CLASSES, np.int64)
        self.asked = np.zeros(CLASSES, np.int64)
        self.hits = np.zeros(CLASSES, np.int64)

    def add(self, features: np.ndarray, probabilities: np.ndarray, labels: np.ndarray | None = None) -> None:
        features = features.astype(np.float64)
        p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
        if self.feature_sum is None:
            self.feature_sum = np.zeros(features.shape[1])
            self.feature_products = np.zeros((features.shape[1], features.shape[1]))
        self.n += len(features)
        self.feature_sum += features.sum(axis=0)
        self.feature_products += features.T @ features
        self.entropy_sum += float(np.sum(p * np.log(p)))
        self.probability_sum += p.sum(axis=0)
        predicted = probabilities.argmax(axis=1)
        self.histogram += np.bincount(predicted, minlength=CLASSES)
        if labels is not None:
            self.asked += np.bincount(labels, minlength=CLASSES)
            self.hits += np.bincount(labels[predicted == labels], minlength=CLASSES)

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (unbiased) covariance of the features, as feature_statistics gives them."""
        mean = self.feature_sum / self.n
        return mean, (self.feature_products - self.n * np.outer(mean, mean)) / (self.n - 1)

    def metrics(self, name: str, reference: tuple[np.ndarray, np.ndarray], labelled: bool = False) -> SampleMetrics:
        """The metrics of the samples added; `labelled`: they came with the labels asked for (label accuracy)."""
        marginal = self.probability_sum / self.n
        score = float(np.exp(self.entropy_sum / self.n - np.sum(marginal * np.log(marginal))))
        share = self.histogram / self.n
        kl = float(np.sum(np.where(share > 0, share * np.log(np.maximum(share, 1e-12) * CLASSES), 0.0)))
        accuracy, per_class = None, None
        if labelled:
            accuracy = float(self.hits.sum() / self.asked.sum())
            per_class = [
                float(hits / asked) if asked else None  # fewer samples than classes: not every digit was asked for
                for hits, asked in zip(self.hits, self.asked, strict=True)
            ]
        return SampleMetrics(
            name,
            self.n,
            score,
            frechet_distance(self.statistics(), reference),
            kl,
            int(np.sum(share >= COVERAGE_SHARE)),
            self.histogram.tolist(),
            accuracy,
            per_class,
        )


def summarize(
    name: str,
    features: np.ndarray,
    probabilities: np.ndarray,
    reference: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray | None = None,
) -> SampleMetrics:
    """The metrics of one set of samples; with `labels` (the class each was meant to be) also label accuracy."""
    running = RunningMetrics()
    running.add(features, probabilities, labels)
    return running.metrics(name, reference, labelled=labels is not None)


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


def generate(model: Path, n: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """n images from an ONNX generator (onnxruntime) or a Keras one, from the same seeded noise stream, in batches
    of at most BATCH, each with, for a conditional generator, the labels asked for: 0, 1, ..., 9, 0, 1, ... (each
    digit equally often). The model is opened and checked now; each batch is valid until the next is drawn."""
    problem = file_problem(model)
    if problem:
        raise ModelError(f"{model} {problem}; pass a generator .onnx, .keras or .h5 file.")
    if model.suffix == ".onnx":
        generator = Generator(model, device="auto")
        if generator.conditional and generator.classes != CLASSES:
            raise ModelError(
                f"{model} draws {generator.classes} classes; the MNIST classifier scores {CLASSES} digits."
            )
        return _onnx_batches(generator, n, seed)
    from ganport.keras_files.load import load_as

    return _keras_batches(load_as(model, GENERATOR), str(model), n, seed)


def _asked(start: int, count: int) -> np.ndarray:
    """The labels asked for samples start .. start + count - 1: 0, 1, ..., 9, 0, 1, ... (made per batch: memory is a
    batch whatever n is)."""
    return np.arange(start, start + count) % CLASSES


def _onnx_batches(generator: Generator, n: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    batch_size = min(BATCH, generator.max_rows)
    noise = noise_batches(n, generator.latent_dim, seed, batch_size)  # the stream Generator.sample draws from
    for start, batch in zip(range(0, n, batch_size), noise, strict=True):
        asked = _asked(start, len(batch)) if generator.conditional else None
        yield generator.generate(batch, labels=asked), asked


def _keras_batches(keras_model: Any, name: str, n: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    from ganport.keras_files.run import predict_all

    latent = int(keras_model.inputs[0].shape[-1])
    conditional = len(keras_model.inputs) > 1  # the noise comes first (load_as checked); then the class label
    for start, noise in zip(range(0, n, BATCH), noise_batches(n, latent, seed, BATCH), strict=True):
        asked = _asked(start, len(noise))
        images = predict_all(keras_model, [noise, *([asked[:, None]] if conditional else [])])[0]
        require_images(name, images)
        yield images, asked if conditional else None


def evaluate(
    model: str | Path, n: int = DEFAULT_SAMPLES, seed: int = 0, log: Callable[[str], None] = print
) -> tuple[EvalReport, np.ndarray]:
    """Metrics of `n` samples of `model` and of real MNIST; returns the report and the first PREVIEW samples."""
    if not MIN_SAMPLES <= n <= MAX_SAMPLES:
        raise UsageError(f"--n must be from {MIN_SAMPLES} (for the statistics) to {MAX_SAMPLES:,}. Received: {n}")
    require_seed(seed)
    classifier = Classifier(classifier_path(log))
    reference, real = real_baseline(classifier)
    running, preview, labelled = RunningMetrics(), [], False
    for images, labels in generate(Path(model), n, seed):
        if images.shape[1:] != SCORED_IMAGE_SHAPE:
            raise ModelError(
                f"{model} makes images of shape {list(images.shape[1:])}; the MNIST classifier scores "
                f"{list(SCORED_IMAGE_SHAPE)} images only."
            )
        if running.n < PREVIEW:
            preview.append(images[: PREVIEW - running.n].copy())
        running.add(*classifier(images), labels)
        labelled = labels is not None
    generated = running.metrics(Path(model).name, reference, labelled)
    report = EvalReport(str(model), seed, str(classifier.path), classifier.test_accuracy, generated, real)
    return report, np.concatenate(preview)


def score_generator(
    model: Path, n: int = DEFAULT_SAMPLES, seed: int = 0, log: Callable[[str], None] = print
) -> SampleMetrics:
    """The generated-sample metrics alone, as the export's quality gate needs them."""
    return evaluate(model, n, seed, log)[0].generated


def save_report_png(report: EvalReport, samples: np.ndarray, path: Path) -> Path:
    """A 10x10 sample grid beside the predicted-class histograms of the samples and of real MNIST."""
    from PIL import Image, ImageDraw

    from ganport.images import grid, to_uint8

    tiles = grid(to_uint8(samples[:PREVIEW]), columns=10)
    # at least a full grid's height: the histograms need it even when fewer than 100 samples were scored
    picture = Image.new("L", (tiles.shape[1] * 2 + 340, max(tiles.shape[0], 28 * 10) * 2), 255)
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
