"""Give the memory the C allocator keeps back to the system during a CPU training step.

On Linux, PyTorch's CPU tensors come from glibc's malloc. Once a freed block is reused for a
smaller tensor, the heap around it cannot shrink, and freed activation memory stays resident:
at the reference config (1 x 16 x 224^2, ResNet-18, fp32) the peak RSS of a training step was
~330 MB above what was allocated at that moment (benchmarks/train_memory.py, mallinfo2), and the
peak came where the backward pass of the first SNN stage asks for tensors larger than any freed
hole. `malloc_trim(0)` returns every free page of the heap to the system.
- `release_free_heap()`: one trim (train.py runs it between forward and backward);
- `release_heap_at(modules)`: trims at the edges of the given modules, in the forward pass and
  again when backward reaches them, but only when the resident memory exceeds what is allocated
  by more than `waste_mb`: a trim costs page faults later, when the pages are used again.
No library exposes these (they are glibc's own calls); elsewhere (macOS, Windows, musl) both are
no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any


@functools.cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    return None if libc is None else libc.malloc_trim


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    libc = _libc()
    info = getattr(libc, "mallinfo2", None)  # glibc >= 2.33
    if info is not None:
        info.restype = _MallInfo2
    return info


def release_free_heap() -> bool:
    """Return the free pages of the C heap to the system; True if glibc did (False: not glibc)."""
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))


def allocated_mb() -> float | None:
    """What malloc has handed out and not taken back (heap and mmapped blocks), in MB; None: not glibc."""
    info = _mallinfo2()
    if info is None:
        return None
    m = info()
    return (m.uordblks + m.hblkhd) / 2**20


def resident_mb() -> float | None:
    """The process's resident memory (VmRSS) in MB; None where /proc is not there."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def release_heap_at(modules: Iterable[Any], *, waste_mb: float) -> Iterator[None]:
    """Within it, each of `modules` (torch modules) trims the heap after its forward call and when
    the backward pass reaches its output, if more than `waste_mb` of freed heap is resident.

    Waste is resident - allocated - what was resident outside the heap on entry (libraries, Python's
    own arenas; measured right after a trim). A no-op where glibc or /proc is missing."""
    if _malloc_trim() is None or allocated_mb() is None or resident_mb() is None:
        yield
        return
    release_free_heap()
    outside_heap = resident_mb() - allocated_mb()

    def check() -> None:
        if resident_mb() - allocated_mb() - outside_heap > waste_mb:
            release_free_heap()

    def after_forward(_module: Any, _inputs: Any, output: Any) -> None:
        check()
        if getattr(output, "requires_grad", False):
            output.register_hook(lambda _grad: check())

    handles = [m.register_forward_hook(after_forward) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
