"""Signals and Lava's OS processes: why a Lava run here cannot leave processes or /dev/shm segments behind.

Lava 0.10 forks one OS process per ProcessModel plus a SharedMemoryManager server, gives every channel a
/dev/shm segment, and handles no signal. Left alone: SIGTERM to the main process kills only it (its
children then block forever on their channels, their segments stay); Ctrl-C during start-up lands inside
Lava's initialisation (a child forked but not yet registered, or a start-up queue never answered: the
main process hangs) and in every child (one traceback each).

What this module adds (LavaSpikingBranch uses it, so every entry point that starts Lava gets it):
- `import_lava_runtime()`, the one way in to Lava: every module that imports Lava calls it first, so
  Lava's `set_start_method('fork')` cannot fail on a start method fixed earlier;
- children forked while a runtime starts die with the thread that forked them (PR_SET_PDEATHSIG =
  SIGKILL: even a SIGKILLed parent takes them along; Python's resource tracker then unlinks the
  segments) and ignore SIGINT, SIGTERM and SIGHUP: the main process alone decides and kills them
  (a child that died of a group signal mid start-up would leave Lava's start-up waiting forever
  for its answer, and print a traceback on Ctrl-C);
- SIGINT, SIGTERM and SIGHUP are deferred across start-up (and a clean stop) and raised right after
  it, once the runtime is consistent enough to be torn down; a second one raises at once; a start-up
  that does not finish within its timeout raises StartupTimeout;
- while a runtime lives, SIGTERM and SIGHUP (where nobody else handles them) raise `Terminated` in
  the main thread, so the same cleanup as for Ctrl-C runs; a CLI then exits 128 + signal number;
- at interpreter exit every runtime still open is closed (multiprocessing's own exit handler would
  otherwise wait forever for Lava's non-daemon children).
Signal handlers can only be installed from the main thread; elsewhere only the child-side rules apply.
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import resource_tracker

DEFERRED = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
TERMINATING = tuple(s for s in DEFERRED if s != signal.SIGINT)
_PR_SET_PDEATHSIG = 1


class Terminated(SystemExit):
    """SIGTERM/SIGHUP arrived while Lava ran: raised in the main thread so that every `with`/`finally`
    cleanup runs; a SystemExit (status 128 + signal number), so scripts exit quietly with that status."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)

    def __str__(self) -> str:
        return f"terminated by {signal.Signals(self.signum).name}"


class StartupTimeout(TimeoutError):
    """Lava's processes did not all start within the start-up timeout (e.g. a child was killed)."""


def import_lava_runtime() -> None:
    """Import Lava's multiprocessing layer, which calls multiprocessing.set_start_method('fork').

    That call raises "context has already been set" once anything in this process has fixed the start
    method, even to 'fork' (e.g. a library calling multiprocessing.get_start_method()). A method fixed
    to 'fork' is unfixed first, so Lava's call restores the same one; any other method is an error
    that says what to do. Every module that imports Lava calls this first.
    """
    name = "lava.magma.runtime.message_infrastructure.multiprocessing"
    if name in sys.modules:
        return
    method = mp.get_start_method(allow_none=True)
    if method not in (None, "fork"):
        raise RuntimeError(
            f"Lava needs the 'fork' multiprocessing start method, but this process already uses "
            f"{method!r}; import respike_neuro.bridge (or Lava) before setting it"
        )
    if method == "fork":
        mp.set_start_method(None, force=True)
    __import__(name)


@dataclass
class _Forking:
    """Process-wide state read by the fork hooks (a forked child sees the parent's copy at fork time)."""

    active: int = 0  # start-ups in progress: forks now are Lava's
    parent: int = 0
    from_main: bool = False
    in_fork: bool = False  # in the parent, inside os.fork's hooks (an exception there is swallowed)


_forking = _Forking()
_hooks_installed = False
_live: weakref.WeakSet = weakref.WeakSet()  # open LavaSpikingBranch objects, closed at exit
_lifetime_users = 0
_saved_handlers: dict[int, object] = {}


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _before_fork() -> None:
    _forking.in_fork = True
    _forking.parent = os.getpid()
    _forking.from_main = threading.current_thread() is threading.main_thread()


def _after_in_parent() -> None:
    _forking.in_fork = False


def _in_child() -> None:
    """After fork, in the child: Lava's children die with their parent and leave signals to it."""
    _forking.in_fork = False
    if not _forking.active:
        return
    _forking.active = 0
    try:
        for s in DEFERRED:
            signal.signal(s, signal.SIG_IGN)
        # the death signal fires when the forking *thread* ends: only safe for forks from the main thread
        prctl = _prctl() if _forking.from_main and sys.platform.startswith("linux") else None
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != _forking.parent:  # the parent died before prctl: follow it now
                os.kill(os.getpid(), signal.SIGKILL)
    except Exception:  # never let a hook break Lava's fork
        pass


def _close_all_at_exit() -> None:
    for br in list(_live):
        try:
            br.close()
        except BaseException:
            pass


def _install_hooks() -> None:
    global _hooks_installed
    if not _hooks_installed:
        os.register_at_fork(before=_before_fork, after_in_parent=_after_in_parent, after_in_child=_in_child)
        # registered after multiprocessing's own exit handler, so it runs before that one joins children
        atexit.register(_close_all_at_exit)
        _hooks_installed = True


def track(branch) -> None:
    """Close `branch` at interpreter exit if it is still open then."""
    _install_hooks()
    _live.add(branch)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _terminate_handler(signum, frame) -> None:
    raise Terminated(signum)


def acquire_lifetime() -> None:
    """A Lava runtime now exists: SIGTERM/SIGHUP raise Terminated (where their action is the default)."""
    global _lifetime_users
    if not _in_main_thread():
        return
    if _lifetime_users == 0:
        for s in TERMINATING:
            if signal.getsignal(s) is signal.SIG_DFL:
                _saved_handlers[s] = signal.signal(s, _terminate_handler)
    _lifetime_users += 1


def release_lifetime() -> None:
    """The runtime is gone: give SIGTERM/SIGHUP their previous action back when no runtime is left."""
    global _lifetime_users
    if not _in_main_thread() or _lifetime_users == 0:
        return
    _lifetime_users -= 1
    if _lifetime_users == 0:
        for s, h in list(_saved_handlers.items()):
            if signal.getsignal(s) is _terminate_handler:
                signal.signal(s, h)
        _saved_handlers.clear()


def child_pids() -> set[int]:
    """PIDs of this process's children (Linux /proc; empty elsewhere), except Python's resource
    tracker, which outlives every runtime and unlinks what a killed child leaves."""
    me, pids = os.getpid(), set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for d in entries:
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        pids.add(int(d))
            except (OSError, ValueError, IndexError):
                continue
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    return pids - {tracker}


def kill_and_reap(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL a child and wait (at most `timeout` s) until it is reaped."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() > deadline:
                return
        except ChildProcessError:  # reaped already (or not ours)
            return
        time.sleep(0.01)


def raise_if_a_process_died(rt) -> None:
    """A ProcessModel that raised leaves its OS process dead while the others wait: report it."""
    infra = getattr(rt, "_messaging_infrastructure", None)
    for a in list(getattr(infra, "actors", []) or []):
        try:
            dead = not a.is_alive()
        except ValueError:  # already closed
            continue
        if dead:
            exc = a.exception
            detail = f": {exc[0]!r}" if exc else ""
            raise RuntimeError(f"a Lava process ({a.name}) died during the run{detail}")


@dataclass
class Deferred:
    """What happened inside `deferred_signals`: signals received, children forked there."""

    received: list[int] = field(default_factory=list)
    timed_out: bool = False
    children: list = field(default_factory=list)  # multiprocessing.Process objects started inside
    # forked inside but unknown to multiprocessing: a signal landed between os.fork and the
    # bookkeeping of Process.start, so nobody else would ever kill or reap them
    stray_pids: list[int] = field(default_factory=list)


@contextmanager
def deferred_signals(timeout: float | None = None, *, forks: bool = False) -> Iterator[Deferred]:
    """Hold SIGINT/SIGTERM/SIGHUP while the body runs (Lava's start-up or stop, which an exception in
    the middle leaves half-built) and raise the first one on exit (KeyboardInterrupt or Terminated);
    a second signal raises at once (an escape from a stuck body). `timeout`: raise StartupTimeout in
    the body when it runs longer. `forks`: the body forks Lava's children (apply the child rules)."""
    state = Deferred()
    main = _in_main_thread()
    before = set(mp.active_children()) if forks else set()
    before_pids = child_pids() if forks else set()
    saved: dict[int, object] = {}
    main_ident = threading.get_ident()
    timer = None

    done = threading.Event()

    def handler(signum, frame) -> None:
        if signum == signal.SIGINT and state.timed_out:
            if _forking.in_fork:  # would be swallowed by os.fork's hooks: the timer sends another
                return
            raise StartupTimeout(f"Lava's processes did not start within {timeout:g} s")
        state.received.append(signum)
        if len(state.received) > 1:
            _raise_for(state.received[0])

    if main:
        for s in DEFERRED:
            if signal.getsignal(s) is not signal.SIG_IGN:
                saved[s] = signal.signal(s, handler)
        if timeout is not None and signal.SIGINT in saved:

            def expire() -> None:
                if done.wait(timeout):
                    return
                state.timed_out = True
                while not done.is_set():  # again until it lands where an exception propagates
                    signal.pthread_kill(main_ident, signal.SIGINT)
                    done.wait(0.5)

            timer = threading.Thread(target=expire, daemon=True, name="lava-startup-timeout")
            timer.start()
    if forks:
        _install_hooks()
        _forking.active += 1
    try:
        yield state
    finally:
        if forks:
            _forking.active -= 1
            state.children = [p for p in mp.active_children() if p not in before]
            known = {p.pid for p in state.children}
            state.stray_pids = sorted(child_pids() - before_pids - known)
        done.set()
        if timer is not None:
            timer.join()
        for s, h in saved.items():
            signal.signal(s, h)
    if state.timed_out:
        raise StartupTimeout(f"Lava's processes did not start within {timeout:g} s")
    if state.received:
        _raise_for(state.received[0])


class ClosedOnExit:
    """`with obj:` closes it on leaving, and so does garbage collection (errors there are swallowed: the
    interpreter may be shutting down). Subclasses define an idempotent close()."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def kill_runtime(rt, startup: Deferred | None = None) -> None:
    """Terminate Lava's processes, shut its shared-memory manager down (it unlinks the /dev/shm
    segments), unlink any segment it could not, and reap every child the start-up forked (a child
    forked but not yet registered with Lava would make multiprocessing's exit handler wait forever)."""
    infra = getattr(rt, "_messaging_infrastructure", None)
    actors = list(getattr(infra, "actors", []) or [])
    for a in actors:  # SIGKILL: they ignore SIGTERM (this module) and hold nothing worth flushing
        try:
            if a.is_alive():
                a.kill()
        except Exception:
            pass
    for a in actors:  # reap them (Lava's SystemProcess.join takes no timeout: use Process.join)
        try:
            mp.Process.join(a, 5)
        except Exception:
            pass
    smm = getattr(infra, "smm", None)
    handles = list(getattr(smm, "_shared_memory_handles", []) or [])
    if smm is not None:
        try:
            smm.shutdown()
        except Exception:
            pass
    for h in handles:  # a manager that died first (or never answered) unlinked nothing
        try:
            h.unlink()
        except Exception:
            pass
    for p in startup.children if startup is not None else ():
        try:
            if p.is_alive():
                p.kill()
            mp.Process.join(p, 5)
        except Exception:
            pass
    for pid in startup.stray_pids if startup is not None else ():
        kill_and_reap(pid)
    if rt is None:
        return
    try:
        rt._is_started = False
        rt._is_running = False
    except Exception:
        pass
