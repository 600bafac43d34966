"""Memory readings: current RSS and available RAM (psutil, so macOS and Windows laptops get right
numbers), and the peak per stage: resident set size on CPU, device memory on GPU.

On Linux the kernel keeps the process's peak RSS (VmHWM) and lets a process reset it (write 5 to
/proc/self/clear_refs), which measures each stage exactly. Elsewhere, and for GPU memory, a
sampling thread records the highest value it sees (every 10 ms).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

GiB = 1 << 30
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": GiB, "GB": GiB,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": GiB, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def parse_bytes(text: str) -> int:
    """'8GB', '7.5 GiB', '512M', '1073741824' -> bytes (binary units: a laptop's '16 GB' GPU is 16 GiB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"cannot read '{text}' as a size; write e.g. 8GB or 512MB")
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(value: float) -> str:
    return f"{value / GiB:.2f} GiB" if value >= GiB / 4 else f"{value / (1 << 20):.0f} MiB"


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def available_ram() -> int:
    """What the OS can give this process now without swapping."""
    import psutil

    return int(psutil.virtual_memory().available)


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


class PeakMemory:
    """`with PeakMemory(read) as m: ...` then `m.peak` (bytes). `read=None` measures RSS."""

    def __init__(self, read=None, interval: float = 0.01):
        self.read, self.interval = read, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None
        self._kernel_peak = False

    def __enter__(self):
        if self.read is None and _reset_peak_rss():
            self._kernel_peak = True
            return self
        read = self.read or current_rss
        self.peak = read()

        def sample():
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, read())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._kernel_peak:
            self.peak = _status_kib("VmHWM") or current_rss()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, (self.read or current_rss)())
        return False
