"""TensorFlow's C++ log lines that are not the user's problem, kept out of ganport's output.

TensorFlow writes them straight to file descriptor 2, below Python, where TF_CPP_MIN_LOG_LEVEL does not reach all of
them (CUDA probing on a machine without a GPU, a grappler remapper that gives up on one fusion of a DCGAN's
gradients). No library filters a descriptor, so this does, line by line: every other line passes, real errors
included, and Python's own output (rich's progress bars) goes to the terminal directly, never through the filter.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

# Start-up notes and harmless optimizer messages, matched anywhere in a line.
NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub|cuda_platform|cuda_executor|cuInit|oneDNN custom|"
    r"rebuild TensorFlow with the appropriate|This TensorFlow binary is optimized|"
    r"remapper failed: INVALID_ARGUMENT: Mutation::Apply error"
)
# Seconds the forwarding thread may take to pass on the last lines once the filter ends.
DRAIN_SECONDS = 5


def _writes_to_descriptor_2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, ValueError, io.UnsupportedOperation):  # a test runner's capture, say
        return False


def _repoint_log_handlers(old: object, new: object) -> None:
    """Log handlers made inside the block (TensorFlow makes its own on its first Python warning) hold the block's
    stream: they get the lasting one, or every later warning would print a 'Logging error' traceback."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):  # a logging.PlaceHolder has none
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


@contextlib.contextmanager
def filtered_native_stderr(noise: re.Pattern[str] = NOISE) -> Iterator[None]:
    """While the block runs, lines written to descriptor 2 that match `noise` are dropped; the rest pass."""
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    python_stderr = sys.stderr
    if _writes_to_descriptor_2(python_stderr):  # Python's writes keep the terminal, unfiltered and unbuffered
        sys.stderr = open(os.dup(terminal), "w", buffering=1, encoding=python_stderr.encoding, errors="replace")  # noqa: SIM115

    def forward() -> None:
        with open(read_end, "rb") as lines:
            for line in lines:
                if not noise.search(line.decode(errors="replace")):
                    os.write(terminal, line)

    forwarder = threading.Thread(target=forward, name="native-stderr-filter", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        if sys.stderr is not python_stderr:
            _repoint_log_handlers(sys.stderr, python_stderr)
            sys.stderr.close()
            sys.stderr = python_stderr
        os.dup2(terminal, 2)  # the pipe's last writer closes: the forwarder reads to its end and stops
        forwarder.join(DRAIN_SECONDS)
        os.close(terminal)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow, and probe its devices (which logs CUDA errors on a machine without a GPU), filtered."""
    with filtered_native_stderr():
        import tensorflow

        tensorflow.config.list_physical_devices()
