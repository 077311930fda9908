"""Shared helpers for the Lava-side tests (child-process counting is in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
