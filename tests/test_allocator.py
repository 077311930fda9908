"""allocator: the free pages of glibc's heap go back to the system, at once or at module edges."""

from __future__ import annotations

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
