"""Give the memory the C allocator keeps back to the system at the forward/backward boundary.

On Linux, PyTorch's CPU tensors come from glibc's malloc. Once a freed block is reused for a
smaller tensor, the heap around it cannot shrink, and freed activation memory stays resident:
at the reference config (1 x 16 x 224^2, ResNet-18, fp32) the peak RSS of a training step was
~330 MB above what was allocated at that moment (benchmarks/train_memory.py, mallinfo2).
`malloc_trim(0)` after the forward pass returns every free page of the heap to the system, so
the backward pass starts from what is actually live. It costs a walk of the heap and, later,
page faults for the pages the backward pass reuses (measured in the README's memory section).
No library exposes this (it is glibc's own call); elsewhere (macOS, Windows, musl) it is a no-op.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return the free pages of the C heap to the system; True if glibc did (False: not glibc)."""
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))
