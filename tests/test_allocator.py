"""allocator.release_free_heap: the free pages of glibc's heap go back to the system."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from respike_neuro.allocator import _malloc_trim, release_free_heap


def _rss_mb() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def test_freed_heap_memory_leaves_the_process_after_a_trim():
    if _malloc_trim() is None:
        pytest.skip("not glibc: release_free_heap is a no-op here")
    # 96 kB blocks stay below glibc's mmap threshold: they come from the heap, and freeing every
    # other one leaves holes the heap cannot give back by itself
    blocks = [np.ones(24_000, dtype=np.float32) for _ in range(3000)]  # ~275 MB, touched
    del blocks[::2]
    before = _rss_mb()
    assert release_free_heap() is True
    after = _rss_mb()
    assert before - after > 50, (before, after)
    assert sum(float(b[0]) for b in blocks) == len(blocks)  # what is live stays untouched
