"""Shared fixtures: child-process counting (Lava cleanup tests), Ctrl-C delivered, and tiny videos in
each official dataset layout (PyAV), built once per session.

The helpers live in data/videofixtures.py (loaded by path: tests run with --import-mode=importlib, so
test folders are not packages); tests reach them through the `vf` fixture.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest

# ------------------------------------------------------------------------------------------- tiers
# Markers (pyproject.toml): `lava` starts Lava processes (5-17 s each), `slow` is a long end-to-end run
# or a battery of CLI subprocesses, `signals` interrupts Lava runs. The fast tier is
#   pytest -m "not lava and not slow and not signals"   (make test-fast); `make test` runs everything.
# A test that starts Lava asks for the `children` fixture (it must check that no process is left
# behind), so the fixture is what marks it.
LAVA_FIXTURES = frozenset({"children"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if LAVA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lava)


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_the_tests():
    """Ctrl-C as an interactive run gets it. A shell without job control starts background jobs with
    SIGINT ignored (`cmd &` in a script), Python then keeps it ignored, and the library rightly
    leaves an ignored SIGINT alone: the tests that press Ctrl-C would see nothing."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    """lava_children, to compare before/after a Lava run (no process may be left behind)."""
    return lava_children


def _load_videofixtures():
    name = "respike_tests_videofixtures"
    if name not in sys.modules:
        path = Path(__file__).parent / "data" / "videofixtures.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# helpers shared by test modules (tests/shared/): `from respike_tests_helpers import ...`
sys.path.insert(0, str(Path(__file__).parent / "shared"))


@pytest.fixture
def quiet_video_warnings():
    """VideoDataWarning (a skipped, missing or short video) silenced: for tests over deliberately broken
    video folders (use: pytestmark = pytest.mark.usefixtures("quiet_video_warnings"))."""
    import warnings

    from respike_neuro.data.video import VideoDataWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoDataWarning)
        yield


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
