"""Memory budgets: how many bytes one command may hold for the data it handles, decided before the work.

A small input must never take the machine's memory. The sizes a file declares (weights, tensors, datasets, test
vectors), the batches a command runs and the replies a server sends are checked against one budget here, in bytes
(rows differ in size by orders of magnitude between models), before anything of that size is allocated, and
refused in one line that names the size and the budget. The budget is a share of the machine's memory, or what
GANPORT_MEMORY_BUDGET says (bytes, or a number with KiB, MiB, GiB); it covers the data, not the libraries a command
loads (TensorFlow itself takes about 1 GB).

numpy-free and TensorFlow-free: the sampling and serving paths use it too.
"""

from __future__ import annotations

import os
import re

from ganport.errors import BudgetError, UsageError
from ganport.files import size_text

BUDGET_ENV = "GANPORT_MEMORY_BUDGET"
# The default budget: this share of the machine's memory, within the bounds below. Two commands (a server and an
# export, say) then fit beside each other and the rest of the machine.
MEMORY_SHARE = 1 / 8
MIN_BUDGET = 512 * 2**20
MAX_DEFAULT_BUDGET = 16 * 2**30
_UNITS = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def machine_memory() -> int:
    """The machine's physical memory in bytes (the cgroup's limit when one is set lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = int(open("/sys/fs/cgroup/memory.max").read().strip())  # noqa: SIM115 - one read
    except (OSError, ValueError):  # no cgroup v2 limit ("max"), or not Linux
        return total
    return min(total, limit)


def parse_size(text: str) -> int:
    """Bytes from "3GiB", "512 MiB", "1e9" or "2000000"; a usage error otherwise."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([KMGT]i?B|B)?\s*", text, re.IGNORECASE)
    if found is None:
        raise UsageError(f"{BUDGET_ENV} takes a size such as 2GiB or 512MiB. Received: {text!r}")
    return int(float(found.group(1)) * _UNITS[(found.group(2) or "").upper()])


def memory_budget() -> int:
    """The bytes of data one command may hold: GANPORT_MEMORY_BUDGET, else MEMORY_SHARE of the machine's memory."""
    text = os.environ.get(BUDGET_ENV)
    if text:
        budget = parse_size(text)
        if budget <= 0:
            raise UsageError(f"{BUDGET_ENV} must be positive. Received: {text!r}")
        return budget
    return int(min(MAX_DEFAULT_BUDGET, max(MIN_BUDGET, machine_memory() * MEMORY_SHARE)))


def describe_budget() -> str:
    source = f"{BUDGET_ENV}={os.environ[BUDGET_ENV]}" if os.environ.get(BUDGET_ENV) else "1/8 of this machine's memory"
    return f"{size_text(memory_budget())} ({source})"


def require_within_budget(what: str, needed: int, advice: str) -> None:
    """Refuse, before allocating, `what` that would take `needed` bytes beyond the budget; `advice` says what to do."""
    if needed > memory_budget():
        raise BudgetError(
            f"{what} would take {size_text(needed)}, more than ganport's memory budget of {describe_budget()}; {advice}"
        )


def rows_within_budget(bytes_per_row: int, wanted: int, share: float = 1.0) -> int:
    """How many of `wanted` rows, each `bytes_per_row`, fit in `share` of the budget (at least one)."""
    return max(1, min(wanted, int(memory_budget() * share) // max(1, bytes_per_row)))
