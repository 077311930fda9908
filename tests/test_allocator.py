"""allocator: the C heap a step runs on (glibc's or tcmalloc), and its free pages going back to the
system, at once or at module edges."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from respike_neuro import allocator
from respike_neuro.allocator import (
    allocated_mb,
    release_free_heap,
    release_heap_at,
    resident_mb,
)


def test_freed_heap_memory_leaves_the_process_after_a_trim():
    if allocator.heap_in_use() != "glibc":
        pytest.skip("not glibc's heap: malloc_trim's holes are glibc's")
    # 96 kB blocks stay below glibc's mmap threshold: they come from the heap, and freeing every
    # other one leaves holes the heap cannot give back by itself
    blocks = [np.ones(24_000, dtype=np.float32) for _ in range(3000)]  # ~275 MB, touched
    del blocks[::2]
    before = resident_mb()
    assert release_free_heap() is True
    after = resident_mb()
    assert before - after > 50, (before, after)
    assert sum(float(b[0]) for b in blocks) == len(blocks)  # what is live stays untouched


class _Fragmenting(torch.nn.Module):
    """Leaves ~140 MB of freed heap resident on every call (holes glibc cannot give back alone)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = [np.ones(24_000, dtype=np.float32) for _ in range(3000)]
        del blocks[::2]
        self.kept = blocks
        return x * 2


def test_release_heap_at_trims_after_forward_when_the_waste_is_large():
    if allocated_mb() is None or resident_mb() is None:
        pytest.skip("not glibc or no /proc: release_heap_at is a no-op here")
    module = _Fragmenting()
    with release_heap_at([module], waste_mb=32):
        outside = resident_mb() - allocated_mb()  # right after the entry trim
        module(torch.ones(3))
        waste = resident_mb() - allocated_mb() - outside
    assert waste < 32 + 16, waste  # the hook trimmed; ~140 MB would be left otherwise
    module.kept = None
    assert module._forward_hooks == {}  # removed on exit


def test_release_heap_at_also_checks_when_backward_reaches_each_module(monkeypatch):
    if allocated_mb() is None or resident_mb() is None:
        pytest.skip("not glibc or no /proc: release_heap_at is a no-op here")
    trims = []
    real = allocator.release_free_heap
    monkeypatch.setattr(allocator, "release_free_heap", lambda: trims.append(1) or real())
    first, second = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
    with release_heap_at([first, second], waste_mb=-1e9):  # any waste: trim at every edge
        loss = second(first(torch.ones(2, 4))).sum()
        assert len(trims) == 3  # entry, after first, after second
        loss.backward()
        assert len(trims) == 5  # backward reached second's output, then first's
    assert first.weight.grad is not None  # the hooks pass gradients through untouched


# -- the lean heap -------------------------------------------------------------------------------------


def test_lean_heap_env_keeps_the_users_other_tunables():
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536", "X": "1"}
    assert not allocator.lean_heap_active(env)
    lean = allocator.lean_heap_env(env)
    assert allocator.lean_heap_active(lean) and lean["X"] == "1"
    assert "glibc.malloc.arena_max=2" in lean["GLIBC_TUNABLES"].split(":")
    assert "glibc.malloc.mmap_threshold=65536" not in lean["GLIBC_TUNABLES"]  # ours replaces it
    assert env["GLIBC_TUNABLES"].startswith("glibc.malloc.arena_max")  # the input is left alone


@pytest.mark.parametrize(
    ("libc", "thp", "reason"),
    [
        ("glibc 2.36", "always [madvise] never\n", None),
        ("glibc 2.36", "[always] madvise never\n", None),
        ("glibc 2.36", "always madvise [never]\n", "switched off"),
        ("glibc 2.36", None, "unreadable"),
        ("glibc 2.31", "[madvise]", "2.35"),
        (None, "[madvise]", "not glibc"),
    ],
)
def test_lean_heap_unavailable_says_why(monkeypatch, tmp_path, libc, thp, reason):
    switch = tmp_path / "enabled"
    if thp is not None:
        switch.write_text(thp)
    monkeypatch.setattr(allocator, "_THP_SWITCH", str(switch))
    monkeypatch.setattr(allocator.os, "confstr", lambda _name: libc, raising=False)
    why = allocator.lean_heap_unavailable()
    assert why is None if reason is None else reason in why


def test_restart_with_lean_heap_execs_only_when_it_would_change_something(monkeypatch):
    execs = []
    monkeypatch.setattr(allocator.os, "execve", lambda *a: execs.append(a))
    monkeypatch.setattr(allocator, "lean_heap_unavailable", lambda: None)
    monkeypatch.setenv("GLIBC_TUNABLES", allocator.lean_heap_env({})["GLIBC_TUNABLES"])
    allocator.restart_with_lean_heap()  # already on
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setattr(allocator, "lean_heap_unavailable", lambda: "no huge pages")
    allocator.restart_with_lean_heap()  # the system cannot
    assert execs == []
    monkeypatch.setattr(allocator, "lean_heap_unavailable", lambda: None)
    allocator.restart_with_lean_heap()
    (path, argv, env), = execs
    assert path == sys.executable and argv[1:] == sys.orig_argv[1:] and allocator.lean_heap_active(env)


_HOLES = """
import numpy as np
from respike_neuro import allocator
allocator.restart_with_lean_heap() if {lean} else None
big = np.ones(2_000_000); del big  # a mapped block freed: glibc's threshold rises above 3 MB
blocks = [np.ones(400_000) for _ in range(100)]  # 100 x 3.2 MB, touched
del blocks[::2]  # holes in the middle: the heap cannot shrink past the live blocks
print(allocator.lean_heap_active(), allocator.resident_mb())
"""


def test_lean_heap_gives_freed_blocks_back_at_once():
    """The mechanism itself, in fresh processes: 50 freed 3.2 MB blocks between live ones stay resident
    with glibc's default heap and leave the process with the lean heap."""
    if allocator.lean_heap_unavailable() is not None or allocator.resident_mb() is None:
        pytest.skip(f"lean heap not available here: {allocator.lean_heap_unavailable()}")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    rss = {}
    for lean in (False, True):
        out = subprocess.run([sys.executable, "-c", _HOLES.format(lean=lean)], env=env, capture_output=True,
                             text=True, check=True, timeout=120).stdout.split()
        assert out[0] == str(lean)
        rss[lean] = float(out[1])
    assert rss[False] - rss[True] > 100, rss  # ~160 MB of holes


# -- tcmalloc ----------------------------------------------------------------------------------------


def test_tcmalloc_library_prefers_this_pythons_lib_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(allocator.sys, "prefix", str(tmp_path))
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert allocator.tcmalloc_library() is None
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libtcmalloc.so.4").write_bytes(b"")
    assert allocator.tcmalloc_library() == str(tmp_path / "lib" / "libtcmalloc.so.4")
    (tmp_path / "lib" / "libtcmalloc_minimal.so.4").write_bytes(b"")  # the small one first
    assert allocator.tcmalloc_library() == str(tmp_path / "lib" / "libtcmalloc_minimal.so.4")
    (tmp_path / "lib").rename(tmp_path / "elsewhere")
    found = {"tcmalloc_minimal": None, "tcmalloc": "libtcmalloc.so.4"}
    monkeypatch.setattr(allocator.ctypes.util, "find_library", found.get)
    assert allocator.tcmalloc_library() == "libtcmalloc.so.4"  # the loader's path: a bare soname


@pytest.mark.parametrize(
    ("choice", "device", "lean_heap", "library", "heap", "why"),
    [
        ("auto", "cpu", False, "/x/libtcmalloc_minimal.so.4", "tcmalloc", "/x/libtcmalloc_minimal.so.4"),
        ("auto", "cpu", False, None, "glibc", "apt install libtcmalloc-minimal4"),
        ("auto", "cuda", False, "/x/libtcmalloc.so", "glibc", "not measured"),
        ("auto", "arm", False, "/x/libtcmalloc.so", "glibc", "auto on an aarch64 CPU: tcmalloc not measured"),
        ("auto", "cpu", True, "/x/libtcmalloc.so", "glibc", "lean_heap"),
        ("glibc", "cpu", False, "/x/libtcmalloc.so", "glibc", "asked for"),
        ("tcmalloc", "cuda", False, "/x/libtcmalloc.so", "tcmalloc", "/x/libtcmalloc.so"),
        ("tcmalloc", "arm", False, "/x/libtcmalloc.so", "tcmalloc", "/x/libtcmalloc.so"),
        ("tcmalloc", "cpu", False, None, RuntimeError, "train.allocator tcmalloc: tcmalloc not found"),
        ("jemalloc", "cpu", False, None, ValueError, "train.allocator must be one of"),
    ],
)
def test_allocator_for_picks_tcmalloc_only_where_it_is_and_helps(
    monkeypatch, choice, device, lean_heap, library, heap, why
):
    machine = "aarch64" if device == "arm" else "x86_64"
    device = "cpu" if device == "arm" else device
    monkeypatch.setattr(allocator, "_tcmalloc", lambda: None)
    monkeypatch.setattr(allocator, "_malloc_trim", lambda: print)  # a glibc process
    monkeypatch.setattr(allocator, "tcmalloc_library", lambda: library)
    if isinstance(heap, type):
        with pytest.raises(heap, match=why):
            allocator.allocator_for(choice, device, lean_heap=lean_heap, machine=machine)
        return
    got, reason = allocator.allocator_for(choice, device, lean_heap=lean_heap, machine=machine)
    assert got == heap and why in reason


def test_allocator_for_keeps_a_preloaded_tcmalloc(monkeypatch):
    monkeypatch.setattr(allocator, "_tcmalloc", lambda: object())
    monkeypatch.setenv("LD_PRELOAD", "/y/libmine.so /x/libtcmalloc.so.4")
    assert allocator.allocator_for("glibc", "cpu") == ("tcmalloc", "/x/libtcmalloc.so.4 preloaded")


def test_restart_with_tcmalloc_preloads_it_first_and_never_loops(monkeypatch):
    execs = []
    monkeypatch.setattr(allocator.os, "execve", lambda *a: execs.append(a))
    monkeypatch.setattr(allocator, "_tcmalloc", lambda: object())
    allocator.restart_with_tcmalloc("/x/libtcmalloc.so")  # in use already
    assert execs == []
    monkeypatch.setattr(allocator, "_tcmalloc", lambda: None)
    monkeypatch.setenv("LD_PRELOAD", "/y/libmine.so:/z/libother.so")
    allocator.restart_with_tcmalloc("/x/libtcmalloc.so")
    (path, argv, env), = execs
    assert path == sys.executable and argv[1:] == sys.orig_argv[1:]
    assert env["LD_PRELOAD"] == "/x/libtcmalloc.so /y/libmine.so /z/libother.so"  # the user's kept, after it
    monkeypatch.setenv("LD_PRELOAD", env["LD_PRELOAD"])  # restarted, yet still glibc's malloc
    with pytest.raises(RuntimeError, match="loader refused"):
        allocator.restart_with_tcmalloc("/x/libtcmalloc.so")
    assert len(execs) == 1


_TCMALLOC = """
import os
import numpy as np
from respike_neuro import allocator
heap, where = allocator.allocator_for("auto", "cpu")
if heap == "tcmalloc":
    allocator.restart_with_tcmalloc(where)
base = allocator.allocated_mb()
big = np.ones(50_000_000)  # 400 MB, touched
grown = allocator.allocated_mb() - base
del big
held = allocator.resident_mb()
released = allocator.release_free_heap()
print(os.getpid(), allocator.heap_in_use(), grown, released, held - allocator.resident_mb())
"""


def test_a_command_restarts_itself_on_tcmalloc_and_gives_freed_memory_back():
    """In a fresh process: auto finds tcmalloc, the command re-executes itself with it preloaded (same
    PID), tcmalloc serves the tensors (its own count sees 400 MB), and a release returns freed spans."""
    if allocator.tcmalloc_library() is None:
        pytest.skip(f"tcmalloc not on this system ({allocator.TCMALLOC_HINT})")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    proc = subprocess.Popen([sys.executable, "-c", _TCMALLOC], env=env, stdout=subprocess.PIPE, text=True)
    out = proc.communicate(timeout=120)[0].split()
    assert proc.returncode == 0
    pid, heap, grown, released, returned = out
    assert int(pid) == proc.pid and heap == "tcmalloc"
    assert 380 < float(grown) < 420 and released == "True"
    assert float(returned) > 300, out  # tcmalloc keeps a freed 400 MB span until told
