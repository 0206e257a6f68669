"""The machine numbers are computed on: its CPU and vector ISA, oneDNN's settings; the devices a command may ask for.

Recorded with test vectors (where a reference was computed) and shown at training (what it trains on); kept free of
TensorFlow and onnxruntime, which read the same facts their own way.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# What --device takes in every command: auto picks a GPU when the library sees one; cuda never falls back.
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_ONEDNN = "oneDNN default ISA"


def provenance(frameworks: dict[str, str]) -> dict[str, str]:
    """Where numbers are being computed: the CPU and its vector ISA, oneDNN's settings, threads, library versions.

    Stored with test vectors and shown by `ganport verify`, so a difference can be traced to the kernels that made it.
    """
    return {
        "cpu": _cpu_name(),
        "isa": _vector_isa(),
        "onednn": _onednn_setting(),
        "threads": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        **frameworks,
    }


def describe_provenance(record: dict[str, str] | None) -> str:
    """One short line for a table, e.g. `AMD EPYC, AVX2, 2 threads, TF 2.21.0` (oneDNN named when not its default)."""
    if not record:
        return "not recorded"
    parts = [record.get("cpu", "?"), record.get("isa", "?")]
    parts += [] if record.get("onednn") == DEFAULT_ONEDNN else [record.get("onednn", "?")]
    parts += [f"{record.get('threads', '?')} threads", f"TF {record.get('tensorflow', '?')}"]
    return ", ".join(parts)


# oneDNN's ISA levels (ONEDNN_MAX_CPU_ISA) that compute bfloat16 natively; below them oneDNN has no bfloat16 kernels.
_BFLOAT16_ISA_LEVELS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "ALL", "DEFAULT")


def native_bfloat16() -> bool:
    """Whether oneDNN computes bfloat16 natively here: a CPU with AVX512_BF16 or AMX, not capped below them by
    ONEDNN_MAX_CPU_ISA (where a bfloat16 product then aborts the process)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags_and_name()[0]) and cap.startswith(_BFLOAT16_ISA_LEVELS)


def describe_cpu() -> str:
    """This CPU and the vector ISA its kernels use, e.g. `AMD EPYC, AVX-512 + VNNI + BF16`."""
    return f"{_cpu_name()}, {_vector_isa()}"


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    return _cpu_flags_and_name()[0]


def _cpu_flags_and_name() -> tuple[set[str], str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return set(), platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return set(fields.get("flags", "").split()), fields.get("model name", platform.machine())


def _cpu_name() -> str:
    return _cpu_flags_and_name()[1]


def _vector_isa() -> str:
    """The widest vector ISA this CPU offers oneDNN, with the extensions that change its float32 kernels."""
    flags, _ = _cpu_flags_and_name()
    if "avx512f" in flags:
        extras = [
            name
            for flag, name in (("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16"), ("amx_tile", "AMX"))
            if flag in flags
        ]
        return "AVX-512" + "".join(f" + {name}" for name in extras)
    for flag, name in (("avx2", "AVX2"), ("avx", "AVX"), ("sse4_1", "SSE4.1")):
        if flag in flags:
            return name
    return platform.machine()


def _onednn_setting() -> str:
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        return "oneDNN off"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"oneDNN ISA capped at {cap}" if cap else DEFAULT_ONEDNN
