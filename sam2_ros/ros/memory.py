"""Give freed memory back to the operating system after the model is dropped.

glibc raises its mmap threshold after large blocks are freed, so a second model loaded
in the same process lands on the heap, and freeing it leaves RSS high until the heap is
trimmed: `malloc_trim` returns those pages (cleanup then really frees the model's RAM).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_free_memory() -> None:
    """Collect garbage, then trim glibc's heaps (a no-op where glibc is absent)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
