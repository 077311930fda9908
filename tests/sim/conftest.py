"""Shared helpers for the Lava-side tests: child-process counting and small contract graphs."""

from __future__ import annotations

import os

import numpy as np
import pytest


def lava_children() -> list[int]:
    """PIDs of this process's children, ignoring Python's resource_tracker (lives for the whole run)."""
    me, pids = os.getpid(), []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != me:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if b"resource_tracker" in f.read():
                    continue
        except (OSError, ValueError, IndexError):
            continue
        pids.append(int(d))
    return pids


@pytest.fixture
def children():
    return lava_children


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
