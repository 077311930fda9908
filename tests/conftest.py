"""Shared fixtures: tiny videos in each official dataset layout (PyAV), built once per session.

The helpers live in data/videofixtures.py (loaded by path: tests run with --import-mode=importlib, so
test folders are not packages); tests reach them through the `vf` fixture.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_videofixtures():
    name = "respike_tests_videofixtures"
    if name not in sys.modules:
        path = Path(__file__).parent / "data" / "videofixtures.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def vf():
    """The videofixtures module (writers, layout builders, expected names)."""
    return _load_videofixtures()


@pytest.fixture(scope="session")
def ucf_root(tmp_path_factory, vf) -> Path:
    return vf.make_ucf101(tmp_path_factory.mktemp("ucf101"))


@pytest.fixture(scope="session")
def hmdb_root(tmp_path_factory, vf) -> Path:
    return vf.make_hmdb51(tmp_path_factory.mktemp("hmdb51"))


@pytest.fixture(scope="session")
def kinetics_root(tmp_path_factory, vf) -> Path:
    return vf.make_kinetics(tmp_path_factory.mktemp("kinetics400"))
