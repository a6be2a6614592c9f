"""What the CPU offers for low precision, and what torch and onnxruntime report they use.

    info = detect()                 # read once from /proc/cpuinfo (Linux); nothing native elsewhere
    info.bf16_isa                   # 'AMX-BF16', 'AVX512-BF16', 'ARM-BF16' or None
    info.int8_isa                   # 'AMX-INT8', 'AVX512-VNNI', 'AVX-VNNI', 'ARM-I8MM' or None

``parse_cpuinfo`` is a pure function of the file's text, so tests simulate any machine. Importing this
module imports neither torch nor onnxruntime; ``report()`` does.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The flags (as /proc/cpuinfo spells them) that decide precision, best first.
BF16_FLAGS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("bf16", "ARM-BF16"))
INT8_FLAGS = (
    ("amx_int8", "AMX-INT8"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("i8mm", "ARM-I8MM"),
)
SHOWN_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "bf16",
    "i8mm",
)


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def bf16_isa(self) -> str | None:
        """The native bf16 instructions (AMX tiles, AVX512-BF16 dot products, Arm BF16), or None."""
        return next((isa for flag, isa in BF16_FLAGS if flag in self.flags), None)

    @property
    def int8_isa(self) -> str | None:
        return next((isa for flag, isa in INT8_FLAGS if flag in self.flags), None)

    @property
    def native_bf16(self) -> bool:
        return self.bf16_isa is not None

    def shown_flags(self) -> list[str]:
        return [f for f in SHOWN_FLAGS if f in self.flags]

    def summary(self) -> str:
        """One line for run output and benchmark tables, e.g. 'AMD EPYC (avx512_bf16 avx512_vnni; no AMX)'."""
        amx = "" if any(f.startswith("amx") for f in self.flags) else "; no AMX"
        return f"{self.model} ({' '.join(self.shown_flags()) or 'no bf16/int8 flags'}{amx})"


def parse_cpuinfo(text: str, fallback_model: str = "unknown CPU") -> CpuInfo:
    """The first processor's model name and flags from /proc/cpuinfo (x86 'flags', Arm 'Features')."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep:
            continue
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or fallback_model, flags)


@functools.cache
def detect() -> CpuInfo:
    """This machine's CPU; where /proc/cpuinfo is missing (macOS, Windows) no native bf16 is assumed."""
    fallback = platform.processor() or platform.machine() or "unknown CPU"
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(), fallback)
    except OSError:
        return CpuInfo(fallback, frozenset())


def report() -> dict[str, Any]:
    """CPU, ISA and the libraries' view of it: for ``zoo info`` and the benchmarks."""
    info = detect()
    out: dict[str, Any] = {
        "cpu": info.model,
        "flags": info.shown_flags(),
        "bf16_isa": info.bf16_isa,
        "int8_isa": info.int8_isa,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    try:
        import torch

        out["torch"] = {
            "version": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        }
    except ImportError:
        out["torch"] = None
    try:
        import onnxruntime as ort

        out["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        out["onnxruntime"] = None
    return out
