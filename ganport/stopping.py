"""One stop policy for every command: SIGINT (Ctrl-C) and SIGTERM (kill, systemd, docker stop, Slurm) both ask the
process to stop cleanly, and a process they stopped exits with 128 + the signal's number, as shells report it.

The command line unwinds at once (every temporary is deleted on the way out), training stops at its next chunk with
a checkpoint, and the server drains its requests in flight; each passes its own handler to `stop_signals`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(number: int) -> int:
    """The exit status of a process stopped by this signal: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + number


def signal_name(number: int) -> str:
    return signal.Signals(number).name


@contextlib.contextmanager
def stop_signals(handler: Callable[[int, FrameType | None], object]) -> Iterator[None]:
    """Send SIGINT and SIGTERM to `handler` while the block runs, then restore the handlers there were.

    Python sets signal handlers from the main thread only; elsewhere (a test's worker thread) the caller's stay.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, earlier in previous.items():
            signal.signal(number, earlier)
