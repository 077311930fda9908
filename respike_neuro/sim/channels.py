"""Host <-> Lava messages: one send to an Injector, one receive from an Extractor, each bounded by a timeout.

Lava's own calls block forever when a ProcessModel died or a step is stuck; these poll instead, so a
run fails with a message (and `on_wait` can look for a dead process) rather than hanging.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def send(inj, msg: np.ndarray, timeout: float) -> None:
    """Send one message into an Injector once its channel has room (TimeoutError after `timeout` s)."""
    port = inj.in_port.external_pipe_csp_send_port
    deadline = time.monotonic() + timeout
    while not port.probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Lava did not accept input for {inj.name!r} within {timeout} s")
        time.sleep(2e-4)
    inj.send(msg)


def recv(ext, timeout: float, on_wait: Callable[[], None] | None = None) -> np.ndarray:
    """Receive one message from an Extractor; `on_wait` runs every 0.5 s of waiting (it may raise)."""
    port = ext.out_port.external_pipe_csp_recv_port
    q = port._queue
    deadline = time.monotonic() + timeout
    while True:
        with q.not_empty:
            wait = min(0.5, max(deadline - time.monotonic(), 0.0))
            ok = q.not_empty.wait_for(lambda: q._qsize() > 0, timeout=wait)
        if ok:
            return port.recv()
        if on_wait is not None:
            on_wait()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no output from {ext.name!r} within {timeout} s (Lava step stuck)")
