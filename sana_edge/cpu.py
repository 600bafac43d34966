"""What this CPU offers the ONNX Runtime kernels, and the precision that runs fastest on it.

int8 wins on CPUs with 8-bit dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX): there the
W8A8 transformer step ran at 0.5-0.6x fp32 time. On AVX2 without VNNI the same graphs ran at
1.26-1.28x fp32 time (FIELD_NOTES.md; benchmarks/results/ has this machine's figures), so there
fp32 is the faster choice and int8/int4 only buy size and memory.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

# (cpuinfo flag, name shown to users)
_NAMED = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"), ("avx_vnni", "AVX-VNNI"),
          ("avx512_bf16", "AVX-512 BF16"), ("amx_int8", "AMX-INT8"), ("amx_bf16", "AMX-BF16"))


@dataclass(frozen=True)
class CpuFeatures:
    flags: frozenset
    known: bool = True  # False where the flags could not be read (not Linux)

    @property
    def int8_dot(self) -> bool:
        """8-bit dot products in hardware (what makes int8 GEMMs faster than fp32)."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def bf16(self) -> bool:
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    def describe(self) -> str:
        if not self.known:
            return f"unknown ({platform.machine()})"
        found = [name for flag, name in _NAMED if flag in self.flags]
        return ", ".join(found) or "no AVX2"


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return CpuFeatures(frozenset(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return CpuFeatures(frozenset(), known=False)


def fastest_precision(features: CpuFeatures | None = None) -> str:
    """The export precision that runs fastest on this CPU with ONNX Runtime."""
    features = features or cpu_features()
    return "int8" if features.int8_dot else "fp32"


def precision_advice(precision: str, features: CpuFeatures | None = None) -> str | None:
    """A note when an export's precision is slower here than another would be, else None."""
    features = features or cpu_features()
    if precision in ("int8", "int4") and features.known and not features.int8_dot:
        return (f"this CPU ({features.describe()}) has no 8-bit dot-product instructions (VNNI/AMX): "
                f"{precision} graphs run at about fp32 speed or slower here; they save memory, not time")
    return None
