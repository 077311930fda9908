"""allocator: the free pages of glibc's heap go back to the system, at once or at module edges."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from respike_neuro import allocator
from respike_neuro.allocator import (
    _malloc_trim,
    allocated_mb,
    release_free_heap,
    release_heap_at,
    resident_mb,
)


def test_freed_heap_memory_leaves_the_process_after_a_trim():
    if _malloc_trim() is None:
        pytest.skip("not glibc: release_free_heap is a no-op here")
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
