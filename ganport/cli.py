"""The `ganport` command: a thin typer layer over plain functions. Heavy imports live inside each command."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

import ganport
from ganport.contract import MAX_SEED
from ganport.data import DATASETS
from ganport.errors import GanportError, MissingExtraError, UsageError
from ganport.evaluate import DEFAULT_SAMPLES, MAX_SAMPLES, MIN_SAMPLES
from ganport.export import DEFAULT_FORMAT, FORMATS, FULL_PRECISION, PRECISIONS
from ganport.extras import extra_providing
from ganport.files import describe_os_error
from ganport.host import DEVICES
from ganport.models import ARCHITECTURES
from ganport.native_logs import filtered_native_stderr, import_tensorflow_quietly
from ganport.parity import ATOL
from ganport.run import TRAIN_PRECISIONS, TrainConfig
from ganport.runtime import DEFAULT_BATCH
from ganport.serve.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_BATCH_ROWS,
    MAX_BODY_MB,
    MAX_DRAIN_SECONDS,
    MAX_QUEUE_ROWS,
    MAX_THREADS,
    MAX_WAIT_MS,
    MIN_BODY_MB,
    ServeSettings,
)
from ganport.stopping import exit_status, signal_name, stop_signals

app = typer.Typer(
    help="Train the classic Keras MNIST GAN fast, export it to ONNX and DL4J-ready HDF5, and sample it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, highlight=False, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        print(f"ganport {ganport.__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print ganport's version and exit."),
    ] = False,
) -> None:
    """Train the classic Keras MNIST GAN fast, export it to ONNX and DL4J-ready HDF5, and sample it."""


# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries ganport's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Usage mistakes exit 2, like a misspelt flag; failures exit 1.
USAGE_EXIT = 2
FAILURE_EXIT = 1
# A PNG grid beyond this many images is unreadable (and large): ask for .npy instead.
MAX_GRID_IMAGES = 10000
DEFAULTS = TrainConfig()
SERVE_SETTINGS = ServeSettings()
SCHEDULES = ", ".join(f"{item.name} {item.iterations}" for item in ARCHITECTURES.values())
NO_XLA = ", ".join(
    f"{item.name} in {precision}"
    for item in ARCHITECTURES.values()
    for precision in TRAIN_PRECISIONS
    if precision not in item.xla_precisions
)
# Set, an unexpected error shows its traceback instead of one line.
TRACEBACK_ENV = "GANPORT_TRACEBACK"


class _Stopped(BaseException):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C, so every temporary is deleted on the way out."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


def _stop(number: int, frame: object) -> None:
    raise _Stopped(number)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn ganport's errors, OS errors, memory exhaustion and stop signals into one red line and an exit code.

    Training installs its own handler for SIGINT and SIGTERM (stop at the next chunk, save a checkpoint).
    """
    try:
        with stop_signals(_stop):
            yield
    except (typer.Exit, typer.Abort):  # the command's own exit status
        raise
    except _Stopped as stopped:
        _fail(
            f"stopped by {signal_name(stopped.number)}; no file was left half-written.",
            exit_status(stopped.number),
            stopped,
        )
    except GanportError as error:
        _fail(str(error), USAGE_EXIT if isinstance(error, UsageError) else FAILURE_EXIT, error)
    except OSError as error:  # a write or read no ganport check foresaw: still one line that names the path
        _fail(describe_os_error(error), FAILURE_EXIT, error)
    except MemoryError as error:
        _fail("ran out of memory; ask for less at once (a smaller -n, --batch-size or model).", FAILURE_EXIT, error)
    except ModuleNotFoundError as error:
        extra = extra_providing(error.name or "")
        if extra is None:
            raise
        _fail(
            f"this command needs {error.name}, which comes with ganport's {extra} extra: "
            f"pip install 'ganport[{extra}]'.",
            FAILURE_EXIT,
            MissingExtraError(str(error)),
        )
    except Exception as error:  # a case no check foresaw: still one line, and the traceback on request
        if os.environ.get(TRACEBACK_ENV):
            raise
        reason = " ".join(str(error).split())[:300] or "no message"
        _fail(
            f"ganport failed unexpectedly ({type(error).__name__}: {reason}); please report it with the command "
            f"you ran ({TRACEBACK_ENV}=1 shows where it failed).",
            FAILURE_EXIT,
            error,
        )


def _fail(message: str, code: int, error: BaseException) -> None:
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code) from error


def _choice(names: Any) -> Any:
    """A Literal of the registry's names: typer lists them in --help and refuses others with exit 2."""
    return Literal[tuple(names)]


def _suffix(path: Path, allowed: tuple[str, ...], option: str) -> Path:
    if path.suffix.lower() not in allowed:
        raise UsageError(f"{option} must end in {' or '.join(allowed)}. Received: {path}")
    return path


def _sizes(text: str) -> tuple[int, ...]:
    """--input-shape H,W as positive integers."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() and int(part) > 0 for part in parts):
        raise UsageError(f"--input-shape takes positive sizes separated by commas, such as 256,256. Received: {text!r}")
    return tuple(int(part) for part in parts)


WeightsOption = Annotated[
    Path | None,
    typer.Option(
        help="With an architecture .json (model.to_json(), Keras-GAN's saved_model/NAME.json): its weights file "
        "[default: NAME_weights.hdf5 or NAME.weights.h5 beside it]."
    ),
]
CustomObjectsOption = Annotated[
    Path | None,
    typer.Option(
        help="A Python file defining the model's custom layers (and functions); it is imported, so it runs.",
    ),
]
TrustCodeOption = Annotated[
    bool,
    typer.Option(
        help="Run the Python code the file stores (Lambda layers) while loading it. Only for files you trust: "
        "that code can do anything your account can."
    ),
]
InferenceDeviceOption = Annotated[
    _choice(DEVICES), typer.Option("--device", help="auto: CUDA when onnxruntime has it; cuda never falls back.")
]
SeedOption = Annotated[
    int, typer.Option(min=0, max=MAX_SEED, help="Seed for noise (and for weights and batches when training).")
]


# train's options that set a run's TrainConfig field (by field name): with --resume, the run's own settings stand.
RUN_SETTINGS = {
    "model": "model",
    "dataset": "dataset",
    "data": "data_path",
    "batch_size": "batch_size",
    "save_interval": "save_interval",
    "checkpoint_interval": "checkpoint_interval",
    "learning_rate": "learning_rate",
    "beta1": "beta_1",
    "latent_dim": "latent_dim",
    "seed": "seed",
    "xla": "jit_compile",
    "ema": "ema_decay",
    "label_smoothing": "label_smoothing",
    "pretrain_discriminator": "pretrain_discriminator",
    "precision": "precision",
}


# train's options whose help takes more than a line.
IterationsOption = Annotated[
    int | None,
    typer.Option(
        min=1, help=f"Iterations to train to. Default: the authors' schedule ({SCHEDULES}); with --resume, the run's."
    ),
]
SaveIntervalOption = Annotated[
    int, typer.Option(min=1, help="Write a sample grid (one row per digit if conditional) every N iterations.")
]
XlaOption = Annotated[
    bool | None,
    typer.Option(help=f"Compile the training step with XLA. Default: on, except for {NO_XLA} (faster without)."),
]
PretrainOption = Annotated[
    int, typer.Option(min=0, help="Discriminator-only updates (real vs untrained fakes) before iteration 1.")
]
ResumeOption = Annotated[
    bool, typer.Option(help="Continue the run in --out from its last complete checkpoint, with its saved settings.")
]
TrainPrecisionOption = Annotated[
    _choice(TRAIN_PRECISIONS),
    typer.Option(
        help="bf16: bfloat16 mixed precision (float32 weights), opt-in, for CPUs with AVX512_BF16 or AMX and GPUs; "
        "saved models stay float32."
    ),
]
TrainDeviceOption = Annotated[
    _choice(DEVICES), typer.Option(help="auto: a GPU when TensorFlow sees one; cuda never falls back.")
]


@app.command()
def train(
    context: typer.Context,
    model: Annotated[
        _choice(ARCHITECTURES),
        typer.Option(help="; ".join(f"{item.name}: {item.summary}" for item in ARCHITECTURES.values()) + "."),
    ] = DEFAULTS.model,
    dataset: Annotated[_choice(DATASETS), typer.Option(help="Dataset to train on.")] = DEFAULTS.dataset,
    data: Annotated[Path | None, typer.Option(help="IDX folder or Keras-layout .npz instead of --dataset.")] = None,
    iterations: IterationsOption = None,
    batch_size: Annotated[int, typer.Option(min=2, help="Batch size (half real, half fake for D).")] = (
        DEFAULTS.batch_size
    ),
    save_interval: SaveIntervalOption = DEFAULTS.save_interval,
    checkpoint_interval: Annotated[
        int, typer.Option(min=1, help="Checkpoint every N iterations.")
    ] = DEFAULTS.checkpoint_interval,
    learning_rate: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = DEFAULTS.learning_rate,
    beta1: Annotated[float, typer.Option(help="Adam beta_1.")] = DEFAULTS.beta_1,
    latent_dim: Annotated[int, typer.Option(min=1, help="Size of the generator's noise input.")] = DEFAULTS.latent_dim,
    seed: SeedOption = DEFAULTS.seed,
    xla: XlaOption = None,
    ema: Annotated[float, typer.Option(help="Keep an EMA of the generator with this decay (e.g. 0.999); 0: off.")] = (
        DEFAULTS.ema_decay
    ),
    label_smoothing: Annotated[float, typer.Option(help="One-sided: real label 1 - this (e.g. 0.1).")] = (
        DEFAULTS.label_smoothing
    ),
    pretrain_discriminator: PretrainOption = DEFAULTS.pretrain_discriminator,
    out: Annotated[Path | None, typer.Option(help="Run folder [default: runs/<timestamp>].")] = None,
    resume: ResumeOption = False,
    precision: TrainPrecisionOption = DEFAULTS.precision,
    device: TrainDeviceOption = DEVICES[0],
) -> None:
    """Train the lecture's GAN, DCGAN or the conditional GAN on real MNIST: progress, grids, checkpoints, resume.

    SIGINT (Ctrl-C) and SIGTERM save a checkpoint and exit 130 / 143; --resume continues exactly.
    """
    with reported_errors():
        if resume and out is None:
            raise UsageError("--resume needs --out RUN_FOLDER, the run to continue.")
        # a TrainConfig field per option: all of them for a new run, those given on the command line for a resume
        settings = {field: _run_setting(name, context.params[name]) for name, field in RUN_SETTINGS.items()}
        given = {
            RUN_SETTINGS[name]: settings[RUN_SETTINGS[name]]
            for name in RUN_SETTINGS
            if getattr(context.get_parameter_source(name), "name", "") == "COMMANDLINE"  # typer vendors click
        }
        import_tensorflow_quietly()
        from ganport import train as training

        with filtered_native_stderr():  # grappler's C++ messages about fusions it skips are not the user's problem
            result = (
                training.resume(out, iterations, console=console, device=device, settings=given)
                if resume
                else training.train(TrainConfig(iterations=iterations, **settings), out, console=console, device=device)
            )
        console.print(f"run folder: {result.run_dir} (iteration {result.iteration}, {result.seconds:.0f} s)")
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _run_setting(name: str, value: Any) -> Any:
    """An option's value as its TrainConfig field holds it (a data path as text, so that run.json can hold it)."""
    return str(value) if name == "data" and value is not None else value


# export's options whose help takes more than a line.
ExportSourceArgument = Annotated[
    Path,
    typer.Argument(
        help="A run folder, a .keras/.h5 model file or an architecture .json (its weights beside it); for "
        + " or ".join(f"--format {name}" for name, item in FORMATS.items() if item.takes_onnx)
        + " also an .onnx file or a folder of generator*.onnx (a shipped model's)."
    ),
]
FormatOption = Annotated[
    _choice(FORMATS),
    typer.Option("--format", "-f", help="; ".join(f"{item.name}: {item.summary}" for item in FORMATS.values()) + "."),
]
ExportPrecisionOption = Annotated[
    _choice(PRECISIONS),
    typer.Option(
        help="ONNX and Triton: " + "; ".join(f"{item.name}: {item.summary}" for item in PRECISIONS.values()) + "."
    ),
]
InputShapeOption = Annotated[
    str | None,
    typer.Option(
        help="For a model that takes any height and width: the sizes to check it at and to write a DL4J file "
        "for, as H,W [default: checks at 64x64 and 96x80; no DL4J file].",
        show_default=False,
    ),
]
OverwriteOption = Annotated[
    bool,
    typer.Option(
        help="Replace files that exist already (a model file and its test vectors; for Triton, version 1 and "
        "config.pbtxt, while other versions and files stay); without it an export never replaces a file."
    ),
]


@app.command()
def export(
    source: ExportSourceArgument,
    format: FormatOption = DEFAULT_FORMAT,
    out: Annotated[Path | None, typer.Option(help="Output folder, or file when one model is exported.")] = None,
    precision: ExportPrecisionOption = FULL_PRECISION,
    fold: Annotated[
        bool,
        typer.Option(
            help="ONNX and h5: fold each BatchNorm into a Dense or convolution beside it where that is exact "
            "(--no-fold keeps the layers, to train further in DL4J)."
        ),
    ] = True,
    force: Annotated[
        bool, typer.Option(help="Write an fp16/int8 variant even if it fails its quality or speed gate.")
    ] = False,
    gpu: Annotated[
        bool, typer.Option(help="Triton only: add a GPU instance group running under TensorRT in FP16.")
    ] = False,
    weights: WeightsOption = None,
    custom_objects: CustomObjectsOption = None,
    trust_code: TrustCodeOption = False,
    input_shape: InputShapeOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Export, then validate each written file against the Keras model (fp32: within ganport's float32 rule,
    docs/verify.md: Parity; fp16 and int8: quality-gated)."""
    with reported_errors():
        import_tensorflow_quietly()
        from ganport.evaluate import score_generator
        from ganport.export import ExportOptions
        from ganport.export import export as export_models
        from ganport.keras_files.load import LoadOptions

        log = functools.partial(console.print, markup=False)
        score = functools.partial(score_generator, log=log)
        options = ExportOptions(
            precision=precision,
            fold_batch_norm=fold,
            force=force,
            score=score,
            gpu=gpu,
            overwrite=overwrite,
            input_sizes=None if input_shape is None else _sizes(input_shape),
        )
        load = LoadOptions(weights, custom_objects, trust_code)
        for exported in export_models(source, format, out, log=log, options=options, load=load):
            print(exported.path)
            if exported.test_vectors is not None:
                print(exported.test_vectors)


@app.command()
def sample(
    model: Annotated[
        Path | None, typer.Argument(help="A generator .onnx file [default: the shipped models/mnist-gan one].")
    ] = None,
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Number of images (per label with --label).")] = 25,
    seed: SeedOption = 0,
    label: Annotated[
        str | None,
        typer.Option(help="Conditional generators: the digit(s) to draw, 7 or 0-9 or 3,5,8; one grid row each."),
    ] = None,
    out: Annotated[Path, typer.Option(help="grid.png for a picture, or .npy for the raw images.")] = Path("grid.png"),
    device: InferenceDeviceOption = DEVICES[0],
    batch_size: Annotated[int, typer.Option(min=1, help="Largest batch sent to onnxruntime.")] = DEFAULT_BATCH,
) -> None:
    """Generate images with onnxruntime (no TensorFlow on this path); .npy streams any -n in bounded memory."""
    with reported_errors():
        from ganport.files import ensure_writable, require_free_space
        from ganport.runtime import DEFAULT_GENERATOR, Generator

        _suffix(out, (".png", ".npy"), "--out")
        generator = Generator(model or DEFAULT_GENERATOR, device=device)
        classes = generator.labels_from_text(label) if label is not None else []
        total = n * max(1, len(classes))  # Python integers: checked below before anything is allocated
        if out.suffix == ".png" and total > MAX_GRID_IMAGES:
            raise UsageError(f"a PNG grid holds at most {MAX_GRID_IMAGES} images; use --out NAME.npy for {total}.")
        ensure_writable(out, "--out")
        require_free_space(out, total * math.prod(generator.image_shape) * 4)
        console.print(f"model: {generator.path}", markup=False)
        console.print(f"provider: {generator.provider}")
        labels = None
        if classes:
            import numpy as np

            labels = np.repeat(np.array(classes), n)
        elif generator.conditional:
            console.print(
                f"conditional model: labels drawn uniformly from 0-{generator.classes - 1} (seed {seed}); "
                "pass --label to choose",
                markup=False,
            )
        started = time.perf_counter()
        if out.suffix == ".png":
            from ganport.images import save_grid

            pictures = generator.sample(total, seed=seed, batch_size=batch_size, uint8=True, labels=labels)
            save_grid(pictures, out, columns=n if classes else None)
        else:
            _stream_npy(generator, total, seed, batch_size, out, labels)
        seconds = time.perf_counter() - started
        each = f" (labels {label}, {n} each)" if classes else ""
        console.print(f"{total} images{each} in {seconds * 1000:.1f} ms ({total / seconds:,.0f}/s) -> {out}")


@app.command()
def serve(
    models: Annotated[
        list[Path] | None,
        typer.Argument(
            help="ONNX models to serve [default: the shipped models/mnist-gan generator].", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The model's name when one is served [default: its file stem].")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server to the network.")] = (
        DEFAULT_HOST
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one.")] = DEFAULT_PORT,
    max_batch: Annotated[
        int, typer.Option(min=1, max=MAX_BATCH_ROWS, help="Most rows per onnxruntime call (and per request).")
    ] = SERVE_SETTINGS.max_batch,
    max_wait_ms: Annotated[
        float,
        typer.Option(min=0, max=MAX_WAIT_MS, help="How long the first queued request waits for others to batch with."),
    ] = SERVE_SETTINGS.max_wait_ms,
    max_queue: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_QUEUE_ROWS,
            help="Rows that may wait before requests get 503 [default: 8 batches, at least 2048].",
        ),
    ] = None,
    max_body_mb: Annotated[
        float, typer.Option(min=MIN_BODY_MB, max=MAX_BODY_MB, help="Largest request body (413 above it).")
    ] = SERVE_SETTINGS.max_body_mb,
    device: InferenceDeviceOption = DEVICES[0],
    threads: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_THREADS, help="onnxruntime threads per model [default: one per core]."),
    ] = None,
    drain_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            max=MAX_DRAIN_SECONDS,
            help="On SIGTERM, how long requests in flight may take before the rest are answered 503.",
        ),
    ] = SERVE_SETTINGS.drain_seconds,
) -> None:
    """Serve ONNX models over HTTP on the Open Inference Protocol (KServe V2, Triton's REST API with binary
    tensors), micro-batching requests into onnxruntime calls; a sample page at /, Prometheus metrics at /metrics."""
    with reported_errors():
        from ganport.runtime import DEFAULT_GENERATOR
        from ganport.serve import ServeSettings
        from ganport.serve import serve as serve_models

        settings = ServeSettings(max_batch, max_wait_ms, max_queue, max_body_mb, threads, drain_seconds)
        log = functools.partial(console.print, markup=False)
        code = serve_models(models or [DEFAULT_GENERATOR], name, host, port, device, settings, log=log)
    if code:
        raise typer.Exit(code)


def _stream_npy(generator: object, n: int, seed: int, batch_size: int, out: Path, labels: object) -> None:
    """Batches go straight to the file, with a progress bar when there are several: memory is one batch."""
    import numpy as np
    from rich.progress import Progress

    from ganport.files import npy_stream

    with (
        npy_stream(out, (n, *generator.image_shape), np.float32) as append,
        Progress(console=console, transient=True, disable=n <= batch_size) as progress,
    ):
        task = progress.add_task("sample", total=n)
        for batch in generator.batches(n, seed, batch_size, labels):
            append(batch)
            progress.advance(task, len(batch))


@app.command()
def verify(
    source: Annotated[Path, typer.Argument(help="A run folder (exported first if needed) or a folder of exports.")],
    jvm: Annotated[
        bool,
        typer.Option(
            "--jvm/--no-jvm",
            "--dl4j/--no-dl4j",
            help="Also run the exports on the JVM: DL4J on the HDF5 files, ONNX Runtime for Java on the ONNX files "
            "(needs Maven, JDK 17).",
        ),
    ] = True,
    atol: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help=f"A fixed bound per unit of output scale instead of ganport's float32 rule (atol {ATOL:g} plus the "
            "model's summation spread; docs/verify.md: Parity).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check Keras vs onnxruntime vs tf_keras vs DL4J on the same fixed inputs; exit 1 on any failure."""
    with reported_errors():
        import_tensorflow_quietly()
        from rich.table import Table

        from ganport.verify import verify as verify_backends

        comparisons = verify_backends(source, jvm=jvm, atol=atol, log=lambda line: console.print(line, markup=False))
        rule = "ganport's float32 rule" if atol is None else f"fixed atol {atol:g}"
        table = Table(title=f"parity with Keras ({rule}; bounds scale with max(1, |output|))")
        columns = ("model", "backend", "max abs diff", "bound", "result", "reference computed on", "note")
        for column in columns:
            table.add_column(column, justify="right" if column in ("max abs diff", "bound") else "left")
        for item in comparisons:
            table.add_row(
                item.model,
                item.backend,
                f"{item.max_abs_diff:.3g}",
                f"{item.bound:.3g}",
                "[green]pass[/green]" if item.passed else "[red]FAIL[/red]",
                escape(item.origin),
                escape(item.note),
            )
        print_table(table)
        failed = [item for item in comparisons if not item.passed]
        if failed:
            raise GanportError(
                f"{len(failed)} backend(s) disagree with Keras beyond their bound: "
                + "; ".join(item.line() for item in failed)
            )


def print_table(table: Any) -> None:
    """A rich table on stdout: fitted to a terminal, or, piped into a file or a CI log, as wide as its cells need, so
    no name or note is cut (`--json` stays the machine-readable form where a command has it)."""
    from rich.measure import Measurement

    out = Console()
    if not out.is_terminal:
        needed = Measurement.get(out, out.options.update_width(1_000_000), table).maximum
        out = Console(width=max(needed, out.width))
    out.print(table)


@app.command()
def inspect(
    model: Annotated[Path, typer.Argument(help="A .keras/.h5 model file, or an architecture .json.")],
    format: Annotated[
        _choice(FORMATS) | None,
        typer.Option("--format", "-f", help="The format the exit status is for [default: every format]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    weights: WeightsOption = None,
    custom_objects: CustomObjectsOption = None,
    trust_code: TrustCodeOption = False,
) -> None:
    """Report what each layer becomes in ONNX, DL4J and Keras, then one verdict per format; exit 1 if any asked-for
    format cannot be written."""
    with reported_errors():
        import_tensorflow_quietly()
        import json

        from ganport.compatibility import inspect_model
        from ganport.keras_files.load import LoadOptions

        load = LoadOptions(weights, custom_objects, trust_code)
        report = inspect_model(model, load, log=functools.partial(console.print, markup=False))
        wanted = [format] if format else list(FORMATS)
        if as_json:
            print(json.dumps(report.as_dict(), indent=2))
        else:
            print_table(_report_table(report))
            for name in wanted:
                reasons = report.verdicts[name]
                verdict = "ok" if not reasons else "cannot be written: " + "; ".join(reasons)
                Console(highlight=False).print(f"{name}: {escape(verdict)}")
        blocked = [name for name in wanted if report.verdicts[name]]
        if blocked:
            raise GanportError(
                f"{model} cannot be exported to {', '.join(blocked)}: "
                + "; ".join(dict.fromkeys(reason for name in blocked for reason in report.verdicts[name]))
            )


def _report_table(report: Any) -> Any:
    """inspect's table: a row per layer with each target's cell."""
    from rich.table import Table

    signature = ", ".join(f"{item['name']} {item['shape']} {item['dtype']}" for item in report.inputs)
    role = report.role or "not exportable"
    table = Table(title=f"{report.model}: {role} ({signature} -> {', '.join(report.outputs)})")
    for column in ("layer", "class", "output shape", "params", "ONNX", "DL4J", "Keras 3 file"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for layer in report.layers:
        cells = (layer.onnx, layer.dl4j, layer.keras)
        table.add_row(layer.name, layer.kind, str(layer.output_shape), str(layer.parameters), *map(escape, cells))
    return table


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Argument(help="A generator: .onnx (onnxruntime) or .keras/.h5 (TensorFlow).")],
    n: Annotated[
        int, typer.Option("--n", "-n", min=MIN_SAMPLES, max=MAX_SAMPLES, help="Samples to score.")
    ] = DEFAULT_SAMPLES,
    seed: SeedOption = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the metrics as JSON here.")] = None,
    png: Annotated[Path | None, typer.Option(help="Sample grid + class histogram [default: MODEL_eval.png].")] = None,
) -> None:
    """Score samples with ganport's MNIST classifier: classifier score, Fréchet distance, class coverage, and for a
    conditional generator label accuracy (overall and per digit)."""
    with reported_errors():
        from rich.table import Table

        from ganport.files import ensure_writable

        png = _suffix(png or model.with_name(f"{model.stem}_eval.png"), (".png",), "--png")
        ensure_writable(png, "--png")  # now, not after minutes of scoring
        if json_path is not None:
            ensure_writable(json_path, "--json")
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
        print_table(table)
        histogram = report.generated.class_histogram
        console.print("class histogram: " + " ".join(f"{digit}:{count}" for digit, count in enumerate(histogram)))
        if report.generated.label_accuracy is not None:
            per_digit = report.generated.label_accuracy_per_class
            console.print(
                f"label accuracy: {100 * report.generated.label_accuracy:.2f}% "
                f"(real MNIST: {100 * report.real.label_accuracy:.2f}%); per digit: "
                + " ".join(
                    f"{digit}:{'-' if share is None else f'{100 * share:.1f}%'}"
                    for digit, share in enumerate(per_digit)
                )
            )
        console.print(f"picture: {evaluation.save_report_png(report, samples, png)}", markup=False)
        if json_path is not None:
            console.print(f"json: {evaluation.write_json(report, json_path)}", markup=False)


def main() -> None:
    """The console entry point. typer draws usage errors in a multi-line box; here they are one line too, exit 2."""
    try:
        code = app(prog_name="ganport", standalone_mode=False)
    except typer.TyperException as error:
        context = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError":  # `ganport` alone: the help text is the answer
            error.show()
        else:
            command = context.command_path if context is not None else "ganport"
            message = error.format_message().rstrip(".")
            console.print(f"[red]error:[/red] {escape(message)}; see `{command} --help`.")
        sys.exit(error.exit_code)
    except typer.Abort:
        sys.exit(FAILURE_EXIT)
    sys.exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    main()
