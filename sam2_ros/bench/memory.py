"""Process and device memory: peak resident set size, CUDA allocations."""
from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (Linux); False where it cannot be reset, and the
    peak then covers the whole process lifetime."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since start or the last `reset_peak_rss`."""
    if _STATUS.is_file():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kB elsewhere


class CudaStepPeak:
    """Largest extra CUDA memory one step allocated on top of what was held before it: the
    working memory a runner needs per frame, apart from the weights and state of every model
    in the process."""

    def __init__(self, device: torch.device) -> None:
        self.enabled = device.type == "cuda"
        self.device = device
        self.peak = 0  # bytes allocated by a step beyond what was held before it
        self.total_peak = 0  # bytes allocated in the process at the peak of any step
        self._before = 0

    def __enter__(self) -> CudaStepPeak:
        if self.enabled:
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            top = torch.cuda.max_memory_allocated(self.device)
            self.peak = max(self.peak, top - self._before)
            self.total_peak = max(self.total_peak, top)
