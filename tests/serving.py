"""A real `ganport serve` process for tests: started on a free port, its URL read from its own output, stopped with
SIGTERM; and plain HTTP calls to it (urllib: the raw bytes a client sends, nothing smoothed over)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
READY = re.compile(r"serving on (http://\S+?)/? ")
START_SECONDS = 60


@dataclass
class RunningServer:
    process: subprocess.Popen
    url: str
    output: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """host:port, as tritonclient takes it."""
        return self.url.removeprefix("http://")

    def stop(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextlib.contextmanager
def running_server(*args: object, python: str | Path = sys.executable, cwd: Path = ROOT) -> Iterator[RunningServer]:
    """`ganport serve ARGS --port 0` in its own process (run by `python`, in `cwd`); yields once it listens; SIGTERM
    afterwards."""
    command = [str(python), "-m", "ganport.cli", "serve", *map(str, args), "--port", "0"]
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ}
    )
    output: list[str] = []
    found: list[str] = []

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            match = READY.search(line)
            if match and not found:
                found.append(match.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + START_SECONDS
    while not found and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not found:
        process.kill()
        process.wait()
        reader.join(5)
        raise AssertionError(f"ganport serve did not start: {''.join(output)}")
    server = RunningServer(process, found[0], output)
    try:
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(5)


def call(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request; 4xx and 5xx answers are returned, not raised. A body goes as JSON
    unless `headers` say otherwise (urllib's own default is a web form's type, which the server refuses)."""
    headers = {"Content-Type": "application/json", **(headers or {})} if body is not None else headers or {}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(url: str, payload: object) -> tuple[int, dict]:
    status, _, body = call(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)
