"""The `ganport` command: a thin typer layer over plain functions. Heavy imports live inside each command."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ganport.errors import GanportError

app = typer.Typer(
    help="Train the classic Keras MNIST GAN fast, export it to ONNX and DL4J-ready HDF5, and sample it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, highlight=False, soft_wrap=True)
# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries ganport's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Native start-up notes TensorFlow writes straight to file descriptor 2, whatever TF_CPP_MIN_LOG_LEVEL says.
_TENSORFLOW_NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub|cuda_platform|cuda_executor|cuInit|oneDNN custom|"
    r"rebuild TensorFlow with the appropriate|This TensorFlow binary is optimized"
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter filtered out of stderr; other lines pass through."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices()  # the first device query probes CUDA and logs cuInit errors
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not _TENSORFLOW_NOISE.search(line):
                    sys.stderr.write(line)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn ganport's errors into one red line and exit code 1, never a traceback."""
    try:
        yield
    except GanportError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="mnist or fashion-mnist.")] = "mnist",
    data: Annotated[Path | None, typer.Option(help="IDX folder or Keras-layout .npz instead of --dataset.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Iterations to train to [default: 30000].")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size (half real, half fake for D).")] = 32,
    save_interval: Annotated[int, typer.Option(help="Write a 5x5 sample grid every N iterations.")] = 200,
    checkpoint_interval: Annotated[int, typer.Option(help="Checkpoint every N iterations.")] = 1000,
    learning_rate: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 2e-4,
    beta1: Annotated[float, typer.Option(help="Adam beta_1.")] = 0.5,
    latent_dim: Annotated[int, typer.Option(help="Size of the generator's noise input.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed for weights, batches and noise: same seed, same run.")] = 0,
    xla: Annotated[bool, typer.Option(help="Compile the training step with XLA.")] = True,
    ema: Annotated[
        float, typer.Option(help="Keep an EMA of the generator with this decay (e.g. 0.999); 0: off.")
    ] = 0.0,
    label_smoothing: Annotated[float, typer.Option(help="One-sided: real label 1 - this (e.g. 0.1).")] = 0.0,
    out: Annotated[Path | None, typer.Option(help="Run folder [default: runs/<timestamp>].")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its last checkpoint, with its saved settings.")
    ] = False,
) -> None:
    """Train the lecture's GAN on real MNIST: progress, sample grids, metrics, checkpoints, resume."""
    with reported_errors():
        import_tensorflow_quietly()
        from ganport import train as training

        if resume:
            if out is None:
                raise GanportError("--resume needs --out RUN_FOLDER, the run to continue.")
            result = training.resume(out, iterations, console=console)
        else:
            config = training.TrainConfig(
                dataset=dataset,
                data_path=None if data is None else str(data),
                iterations=iterations or 30000,
                batch_size=batch_size,
                save_interval=save_interval,
                checkpoint_interval=checkpoint_interval,
                learning_rate=learning_rate,
                beta_1=beta1,
                latent_dim=latent_dim,
                seed=seed,
                jit_compile=xla,
                ema_decay=ema,
                label_smoothing=label_smoothing,
            )
            result = training.train(config, out, console=console)
        console.print(f"run folder: {result.run_dir} (iteration {result.iteration}, {result.seconds:.0f} s)")
        if result.interrupted:
            raise typer.Exit(130)


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="A run folder, or a .keras/.h5 model file.")],
    format: Annotated[str, typer.Option("--format", "-f", help="onnx, h5 (DL4J-ready) or keras.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output folder, or file when one model is exported.")] = None,
    precision: Annotated[str, typer.Option(help="ONNX only: fp32, fp16 (GPUs) or int8 (quality-gated).")] = "fp32",
    fold: Annotated[bool, typer.Option(help="ONNX only: fold each BatchNorm into the next Dense.")] = True,
    force: Annotated[bool, typer.Option(help="Write an fp16/int8 variant even if it fails the quality gate.")] = False,
) -> None:
    """Export, then validate each written file against the Keras model (fp32: max abs diff <= 1e-4)."""
    with reported_errors():
        import_tensorflow_quietly()
        from ganport.export import ExportOptions
        from ganport.export import export as export_models

        options = ExportOptions(precision=precision, fold_batch_norm=fold, force=force)
        log = lambda line: console.print(line, markup=False)  # noqa: E731
        for exported in export_models(source, format, out, log=log, options=options):
            print(exported.path)
            if exported.test_vectors is not None:
                print(exported.test_vectors)


@app.command()
def sample(
    model: Annotated[
        Path | None, typer.Argument(help="A generator .onnx file [default: the shipped models/mnist-gan one].")
    ] = None,
    n: Annotated[int, typer.Option("-n", help="Number of images.")] = 25,
    seed: Annotated[int, typer.Option(help="Noise seed: same seed, same images.")] = 0,
    out: Annotated[Path, typer.Option(help="grid.png for a picture, or .npy for the raw images.")] = Path("grid.png"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (cuda never falls back silently).")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Largest batch sent to onnxruntime.")] = 4096,
) -> None:
    """Generate images with onnxruntime (no TensorFlow on this path)."""
    with reported_errors():
        from ganport.files import atomic_path
        from ganport.images import save_grid, to_uint8
        from ganport.runtime import DEFAULT_GENERATOR, Generator

        if out.suffix not in (".png", ".npy"):
            raise GanportError(f"--out must end in .png or .npy. Received: {out}")
        generator = Generator(model or DEFAULT_GENERATOR, device=device)
        console.print(f"model: {generator.path}", markup=False)
        console.print(f"provider: {generator.provider}")
        started = time.perf_counter()
        images = generator.sample(n, seed=seed, batch_size=batch_size)
        seconds = time.perf_counter() - started
        if out.suffix == ".png":
            save_grid(to_uint8(images), out)
        else:
            import numpy as np

            with atomic_path(out) as temporary:
                np.save(temporary, images)
        console.print(f"{n} images in {seconds * 1000:.1f} ms ({n / seconds:,.0f}/s) -> {out}")


@app.command()
def verify(
    source: Annotated[Path, typer.Argument(help="A run folder (exported first if needed) or a folder of exports.")],
    dl4j: Annotated[bool, typer.Option(help="Also import the HDF5 files with real DL4J (needs Maven, JDK 17).")] = True,
    atol: Annotated[float, typer.Option(help="Largest allowed absolute difference.")] = 1e-5,
) -> None:
    """Check Keras vs onnxruntime vs tf_keras vs DL4J on the same fixed inputs; exit 1 on any failure."""
    with reported_errors():
        import_tensorflow_quietly()
        from rich.table import Table

        from ganport.verify import verify as verify_backends

        comparisons = verify_backends(source, dl4j=dl4j, atol=atol, log=lambda line: console.print(line, markup=False))
        table = Table(title=f"parity with Keras (atol {atol:g})")
        for column in ("model", "backend", "max abs diff", "max rel diff", "result", "note"):
            table.add_column(column, justify="right" if "diff" in column else "left")
        for item in comparisons:
            table.add_row(
                item.model,
                item.backend,
                f"{item.max_abs_diff:.3g}",
                f"{item.max_rel_diff:.3g}",
                "[green]pass[/green]" if item.passed else "[red]FAIL[/red]",
                escape(item.note),
            )
        Console().print(table)
        if not all(item.passed for item in comparisons):
            raise GanportError(
                f"{sum(not c.passed for c in comparisons)} backend(s) disagree with Keras beyond "
                f"{atol:g}; see the table above."
            )


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Argument(help="A generator: .onnx (onnxruntime) or .keras/.h5 (TensorFlow).")],
    n: Annotated[int, typer.Option("--n", "-n", help="Samples to score.")] = 10000,
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the metrics as JSON here.")] = None,
    png: Annotated[Path | None, typer.Option(help="Sample grid + class histogram [default: MODEL_eval.png].")] = None,
) -> None:
    """Score samples with ganport's MNIST classifier: classifier score, Fréchet distance, class coverage."""
    with reported_errors():
        from rich.table import Table

        if model.suffix != ".onnx":
            import_tensorflow_quietly()
        from ganport import evaluate as evaluation

        report, samples = evaluation.evaluate(model, n=n, seed=seed, log=lambda line: console.print(line, markup=False))
        table = Table(title=f"sample quality (classifier test accuracy {report.classifier_test_accuracy})")
        for column in ("samples", "n", "classifier score", "Fréchet distance", "KL from uniform", "classes"):
            table.add_column(column, justify="left" if column == "samples" else "right")
        for metrics in (report.generated, report.real):
            table.add_row(
                metrics.name,
                str(metrics.n),
                f"{metrics.classifier_score:.3f}",
                f"{metrics.frechet_distance:.3f}",
                f"{metrics.kl_from_uniform:.4f}",
                f"{metrics.classes_covered}/10",
            )
        Console().print(table)
        histogram = report.generated.class_histogram
        console.print("class histogram: " + " ".join(f"{digit}:{count}" for digit, count in enumerate(histogram)))
        png = png or model.with_name(f"{model.stem}_eval.png")
        console.print(f"picture: {evaluation.save_report_png(report, samples, png)}", markup=False)
        if json_path is not None:
            console.print(f"json: {evaluation.write_json(report, json_path)}", markup=False)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
