"""Signals at any moment of a Lava run (sim/lifecycle.py): the run ends promptly with its documented exit
status and one line, and leaves no process and no /dev/shm segment behind. One Lava start per case;
the subprocess cases drive the CLI through benchmarks/interrupt_stress.py's `trial` (the same counting
as the 20-try stress run). Run them alone with `pytest -m signals`."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from respike_neuro.sim import lifecycle
from respike_neuro.sim.demo_graphs import build_contract_graph
from respike_neuro.sim.runtime import LavaSpikingBranch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.signals,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux"),
]
# a run of ~10 s: long enough that a signal 3 s after start-up begins lands in the run itself
CMD = [sys.executable, str(ROOT / "sim" / "run_lava.py"), "--demo", "--host-identity", "--segments", "400"]
T = 3


@pytest.fixture(scope="module")
def stress():
    path = ROOT / "benchmarks" / "interrupt_stress.py"
    spec = importlib.util.spec_from_file_location("interrupt_stress", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# "graph:" is printed just before Lava compiles and forks (start-up takes >= 1 s): +0.3 s is inside it
@pytest.mark.parametrize(
    "sig, target, delay, status, line",
    [
        ("INT", "group", 0.3, 130, "error: interrupted"),  # Ctrl-C in a terminal during start-up
        ("INT", "pid", 0.3, 130, "error: interrupted"),  # to the main process only: was swallowed
        ("TERM", "pid", 0.3, 143, "error: terminated by SIGTERM"),
        ("TERM", "pid", 3.0, 143, "error: terminated by SIGTERM"),  # during the run
    ],
    ids=["ctrl-c-startup", "sigint-pid-startup", "sigterm-startup", "sigterm-run"],
)
def test_signal_ends_cli_run_leaving_nothing(stress, sig, target, delay, status, line):
    r = stress.trial(CMD, sig, target, delay, after_line="graph:", timeout=30.0)
    assert r["sent"], "the run finished before the signal"
    assert r["ended"], f"still running 30 s after SIG{sig}"
    assert r["returncode"] == status, r["stderr"]
    assert r["stderr"].strip() == line  # one line, no traceback (neither ours nor a child's)
    assert r["leftover_processes"] == 0
    assert r["leftover_shm"] == 0


def test_sigkill_of_main_process_takes_lava_along(stress):
    # nothing can run in a SIGKILLed process: its children die with it (PR_SET_PDEATHSIG) and Python's
    # resource tracker unlinks the segments once they are gone
    r = stress.trial(CMD, "KILL", "pid", 3.0, after_line="graph:", timeout=30.0)
    assert r["sent"] and r["returncode"] == -signal.SIGKILL
    assert r["leftover_processes"] == 0
    assert r["leftover_shm"] == 0


def _graph():
    return build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True)


def test_sigterm_in_library_run_raises_terminated_and_cleans_up(children):
    """A notebook or script using the library: SIGTERM mid-run stops Lava and raises Terminated
    (a SystemExit with status 143), and SIGTERM's default action is back afterwards."""
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def host(stage, t, feat):
        if t == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return feat

    br = LavaSpikingBranch(_graph())
    with pytest.raises(lifecycle.Terminated) as info:
        br.run_segment(np.zeros((T, 3, 16, 16)), host=host)
    assert info.value.code == 143 and str(info.value) == "terminated by SIGTERM"
    assert children() == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    br.close()


def test_sigint_during_startup_is_held_then_raised(children):
    """Ctrl-C while Lava forks is acted on once the runtime is built: KeyboardInterrupt, nothing left."""
    br = LavaSpikingBranch(_graph())
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            br.start()
    finally:
        timer.join()
    assert children() == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(RuntimeError, match="closed"):
        br.start()


def test_startup_timeout_stops_everything(children):
    br = LavaSpikingBranch(_graph(), startup_timeout=0.2)
    with pytest.raises(lifecycle.StartupTimeout, match="did not start within 0.2 s"):
        br.start()
    assert children() == []
    with pytest.raises(ValueError, match="startup_timeout"):
        LavaSpikingBranch(_graph(), startup_timeout=0)


def test_child_forked_behind_multiprocessings_back_is_killed_and_reaped(children):
    """A signal between os.fork and Process.start's bookkeeping leaves a child multiprocessing does not
    know (seen on a slow CI machine after a start-up timeout): the start-up records it, _kill reaps it."""
    with lifecycle.deferred_signals(forks=True) as startup:
        pid = os.fork()
        if pid == 0:  # the child: wait to be killed
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
            while True:
                signal.pause()
    assert startup.stray_pids == [pid] and startup.children == []
    LavaSpikingBranch._kill(None, startup)
    assert children() == []
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_closed_runtime_gives_signals_back(children):
    with LavaSpikingBranch(_graph()) as br:
        br.run_segment(np.zeros((T, 3, 16, 16)), host=lambda s, t, f: f)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert children() == []
