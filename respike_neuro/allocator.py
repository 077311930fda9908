"""Which C heap a CPU training step runs on, and giving its freed memory back to the system.

On Linux, PyTorch's CPU tensors come from the C library's malloc. glibc's heap cannot shrink
around a freed block once a smaller tensor reuses part of it, so freed activations stay resident:
at the reference config (1 x 16 x 224^2, ResNet-18, fp32) a step's peak RSS was ~330 MB above
what was allocated at that moment (benchmarks/train_memory.py), and in the backward pass of the
first SNN stage ~500 MB. gperftools' tcmalloc reuses freed spans of a size for the next request
of that size and gives whole free spans back on request, so the same step peaked 20 % lower and
ran ~20 % faster (README); it is a system library (Debian/Ubuntu: libtcmalloc-minimal4, conda:
gperftools) that must be preloaded before the process's first malloc.
- `allocator_for` / `restart_with_tcmalloc`: train.allocator, a process-wide choice made at start
  (the command re-executes itself with tcmalloc in LD_PRELOAD);
- `release_free_heap()`: every free page back to the system (glibc's malloc_trim(0), tcmalloc's
  ReleaseFreeMemory); train.py runs it between forward and backward on glibc's heap (on tcmalloc
  a release there raised the peak: returned spans come back as new pages);
- `release_heap_at(modules)`: releases at the edges of the given modules, in the forward pass and
  again when backward reaches them, but only when the resident memory exceeds what is allocated
  by more than `waste_mb`: a release costs page faults later, when the pages are used again.
- the lean heap (`restart_with_lean_heap`, end of this file): glibc's tunables for mapping large
  blocks on their own, so that freed activations do not stay resident.
No library exposes these (they are the allocators' own calls and tunables); elsewhere (macOS,
Windows, musl) all are no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from respike_neuro.config.run import ALLOCATORS


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


# -- tcmalloc: which heap is in use, where to find it, and switching to it at start ---------------

TCMALLOC_NAMES = ("tcmalloc_minimal", "tcmalloc")  # gperftools' libraries, the small one first
TCMALLOC_HINT = "Debian/Ubuntu: apt install libtcmalloc-minimal4; conda: conda install gperftools"


@functools.cache
def _tcmalloc() -> Any:
    """This process's tcmalloc, where it is the malloc in use (preloaded), else None. Only loaded
    (dlopen, not preloaded), it serves nothing: the global `malloc` is then glibc's."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        everything = ctypes.CDLL(None)
        in_use = ctypes.cast(everything.malloc, ctypes.c_void_p).value
        tc_malloc = ctypes.cast(everything.tc_malloc, ctypes.c_void_p).value  # malloc's alias in tcmalloc
        everything.MallocExtension_GetNumericProperty.argtypes = [
            ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)
        ]
        everything.MallocExtension_ReleaseFreeMemory.argtypes = []
    except (OSError, AttributeError):
        return None
    return everything if in_use == tc_malloc else None


def heap_in_use() -> str:
    """The C heap behind this process's CPU tensors: "tcmalloc", "glibc" or "other" (macOS, musl...)."""
    if _tcmalloc() is not None:
        return "tcmalloc"
    return "glibc" if _malloc_trim() is not None else "other"


def tcmalloc_library() -> str | None:
    """gperftools' tcmalloc on this system, for LD_PRELOAD: in this Python's or conda's lib folder,
    else the loader's own search path (a bare soname, which LD_PRELOAD looks up there); or None."""
    if not sys.platform.startswith("linux"):
        return None
    for prefix in dict.fromkeys(filter(None, (sys.prefix, os.environ.get("CONDA_PREFIX")))):
        for name in TCMALLOC_NAMES:
            found = sorted(Path(prefix, "lib").glob(f"lib{name}.so*"))
            if found:
                return str(found[0])
    for name in TCMALLOC_NAMES:
        soname = ctypes.util.find_library(name)
        if soname is not None:
            return soname
    return None


def allocator_for(
    choice: str, device_type: str, *, lean_heap: bool = False, machine: str | None = None
) -> tuple[str, str]:
    """(heap, why) for train.allocator on a device of `device_type` (`machine`: platform.machine(),
    for tests): heap is "tcmalloc" (why: its library) or what the process has (glibc's on Linux).

    auto: tcmalloc for a step on an x86-64 CPU where the system has it, unless train.lean_heap
    (glibc's tunables) is asked for; elsewhere the process's own heap (CUDA, ARM: not measured).
    An explicit tcmalloc that the system lacks is an error (RuntimeError) that says how to install it.
    """
    if choice not in ALLOCATORS:
        raise ValueError(f"train.allocator must be one of {list(ALLOCATORS)}, got {choice!r}")
    own = "glibc" if _malloc_trim() is not None else "the system's malloc"
    if _tcmalloc() is not None:
        named = [p for p in _preloads(os.environ) if "tcmalloc" in p]
        return "tcmalloc", f"{named[0]} preloaded" if named else "preloaded"
    if choice == "glibc":
        return own, "asked for"
    machine = machine or platform.machine()
    if choice == "auto" and device_type != "cpu":
        return own, f"auto on {device_type}: tcmalloc not measured there"
    if choice == "auto" and machine.lower() not in ("x86_64", "amd64"):
        return own, f"auto on an {machine} CPU: tcmalloc not measured there"
    if choice == "auto" and lean_heap:
        return own, "train.lean_heap is glibc's heap"
    library = tcmalloc_library()
    if library is None:
        why = f"tcmalloc not found on this system ({TCMALLOC_HINT})"
        if choice == "tcmalloc":
            raise RuntimeError(f"train.allocator tcmalloc: {why}")
        return own, why
    return "tcmalloc", library


def restart_with_tcmalloc(library: str) -> None:
    """Re-execute this command (same interpreter, arguments and PID) with `library` first in
    LD_PRELOAD, unless tcmalloc is this process's heap already; then return. A process whose
    LD_PRELOAD names the library already but runs without it (the loader refused it) is not
    restarted again: RuntimeError."""
    if _tcmalloc() is not None:
        return
    if library in _preloads(os.environ):
        raise RuntimeError(f"LD_PRELOAD names {library}, yet malloc is not tcmalloc's (loader refused it?)")
    _restart(preload_env(library))


def preload_env(library: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with `library` first in LD_PRELOAD, the others kept after it."""
    env = dict(os.environ) if env is None else dict(env)
    env["LD_PRELOAD"] = " ".join([library, *_preloads(env)])
    return env


def _preloads(env: Mapping[str, str]) -> list[str]:
    return env.get("LD_PRELOAD", "").replace(":", " ").split()  # ld.so: separated by spaces or colons


def _restart(env: dict[str, str]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def release_free_heap() -> bool:
    """Return the free pages of the C heap to the system; True if the heap is glibc's (and it gave
    something back) or tcmalloc's, False elsewhere."""
    tcmalloc = _tcmalloc()
    if tcmalloc is not None:
        tcmalloc.MallocExtension_ReleaseFreeMemory()
        return True
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))


def allocated_mb() -> float | None:
    """What malloc has handed out and not taken back (heap and mmapped blocks), in MB; None: neither
    glibc's heap nor tcmalloc."""
    tcmalloc = _tcmalloc()
    if tcmalloc is not None:
        value = ctypes.c_size_t()
        tcmalloc.MallocExtension_GetNumericProperty(b"generic.current_allocated_bytes", ctypes.byref(value))
        return value.value / 2**20
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


# -- the lean heap: large blocks mapped on their own, in transparent huge pages ---------------------
#
# glibc serves blocks below its mmap threshold from the heap and raises that threshold (up to 32 MB)
# each time a mapped block is freed, so after the first step every activation lives in the heap,
# whose holes stay resident (the ~330 MB above). With the threshold fixed at 2 MB, each block of
# 2 MB or more is its own mapping and goes back to the system the moment torch frees it; with
# `hugetlb=1` glibc asks for transparent huge pages for those mappings, so a new block costs one
# page fault per 2 MB instead of one per 4 kB (without it the same threshold made steps 1.2x slower).
# Both are glibc tunables, read once when a process starts: a running process cannot switch, so
# `restart_with_lean_heap` re-executes the command with them set.

LEAN_HEAP_TUNABLES = {"glibc.malloc.hugetlb": "1", "glibc.malloc.mmap_threshold": str(2 * 2**20)}
_THP_SWITCH = "/sys/kernel/mm/transparent_hugepage/enabled"


def lean_heap_unavailable() -> str | None:
    """Why the lean heap cannot work in this process's system, or None where it can."""
    version = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    try:
        major, minor = (int(v) for v in (version or "").removeprefix("glibc ").split(".")[:2])
    except ValueError:
        return f"the C library is not glibc ({version or sys.platform})"
    if (major, minor) < (2, 35):
        return f"glibc {major}.{minor} has no hugetlb tunable (2.35+)"
    try:
        with open(_THP_SWITCH) as f:
            mode = f.read()
    except OSError:
        return f"no transparent huge pages ({_THP_SWITCH} unreadable)"
    if "[never]" in mode:
        return "transparent huge pages are switched off (never)"
    return None


def _tunables(env: dict[str, str]) -> dict[str, str]:
    pairs = (item.partition("=") for item in env.get("GLIBC_TUNABLES", "").split(":") if item)
    return {key: value for key, _, value in pairs}


def lean_heap_active(env: dict[str, str] | None = None) -> bool:
    """Whether this process (or `env`) runs with the lean heap's tunables."""
    tunables = _tunables(dict(os.environ) if env is None else env)
    return all(tunables.get(key) == value for key, value in LEAN_HEAP_TUNABLES.items())


def lean_heap_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the lean heap's tunables added to its other tunables."""
    env = dict(os.environ) if env is None else dict(env)
    tunables = _tunables(env) | LEAN_HEAP_TUNABLES
    env["GLIBC_TUNABLES"] = ":".join(f"{key}={value}" for key, value in tunables.items())
    return env


def restart_with_lean_heap() -> None:
    """Re-execute this command (same interpreter, arguments and PID) with the lean heap, unless it
    runs with it already or the system cannot give it (`lean_heap_unavailable`); then return."""
    if lean_heap_active() or lean_heap_unavailable() is not None:
        return
    _restart(lean_heap_env())
