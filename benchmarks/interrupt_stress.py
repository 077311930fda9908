#!/usr/bin/env python
"""Interrupt a Lava CLI at random moments and count what is left: does every run end within the limit,
with its documented exit status and no traceback, leaving no process and no /dev/shm segment behind?

Each try starts the command in its own session, waits a random 0..--max-delay s (covering imports,
Lava's process start-up and the run), sends one signal (SIGINT to the process group = Ctrl-C in a
terminal, or SIGINT/SIGTERM to the main PID only = `kill`, `timeout`, job schedulers) and then counts:
  ended    the main process exited within --timeout s of the signal (else it is killed, counted as hung)
  procs    processes of the command's session still alive 5 s after the main process ended
  shm      /dev/shm entries that appeared during the try and are mapped by no process outside that
           session once it ended (another user's live segments are not counted)
Leftovers are killed/unlinked after being counted, so each try starts clean.

    python benchmarks/interrupt_stress.py [--tries 20] [--signals INT,TERM] [--max-delay 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHM = Path("/dev/shm")
DEFAULT_CMD = [sys.executable, str(ROOT / "sim" / "run_lava.py"), "--demo", "--host-identity", "--segments",
               "150"]
# documented exit statuses (Popen: -N = killed by signal N before any handler was installed)
EXPECTED = {"INT": {130, -signal.SIGINT}, "TERM": {143, -signal.SIGTERM}, "KILL": {-signal.SIGKILL}}


def session_pids(sid: int) -> list[int]:
    """PIDs whose session id is `sid` (the command and everything it started, even re-parented)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == sid:
                    out.append(int(d))
            except OSError:
                continue
    return out


def shm_entries() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except OSError:
        return set()


def mapped_shm(exclude_sid: int | None = None) -> set[str]:
    """/dev/shm names mapped or open in any process outside session `exclude_sid`."""
    names: set[str] = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if exclude_sid is not None and os.getsid(int(d)) == exclude_sid:
                continue
            with open(f"/proc/{d}/maps") as f:
                for line in f:
                    i = line.find("/dev/shm/")
                    if i >= 0:
                        names.add(line[i + 9:].split()[0])
        except (OSError, ValueError):
            continue
    return names


def _send(p: subprocess.Popen, sig: str, target: str) -> bool:
    """SIG`sig` to the main PID ('pid') or its process group ('group'); False if it had already ended."""
    if p.poll() is not None:
        return False
    s = getattr(signal, f"SIG{sig}")
    try:
        os.killpg(p.pid, s) if target == "group" else os.kill(p.pid, s)
    except ProcessLookupError:
        return False
    return True


def _leftovers(sid: int, before: set[str], grace: float) -> tuple[list[int], list[str]]:
    """Processes of session `sid` still alive `grace` s after its main process ended, and /dev/shm entries
    new since `before` that no process outside the session maps; the processes are killed afterwards."""
    deadline = time.monotonic() + grace
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = session_pids(sid)
    elsewhere = mapped_shm(exclude_sid=sid)
    new_shm = sorted(n for n in shm_entries() - before if n not in elsewhere)
    for pid in left:  # clean up for the next try (counted above)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while left and session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left, new_shm


def _unlink_unmapped(names: list[str]) -> None:
    for n in names:
        if n not in mapped_shm():
            try:
                (SHM / n).unlink()
            except OSError:
                pass


def trial(
    cmd: list[str],
    sig: str,
    target: str,
    delay: float,
    *,
    after_line: str | None = None,
    timeout: float = 30.0,
    grace: float = 5.0,
    cwd: Path = ROOT,
) -> dict:
    """One try: start `cmd` in its own session, wait `delay` s (after a stdout line starting with
    `after_line`, if given), send SIG`sig` to the main PID (target 'pid') or its group ('group'), count."""
    before = shm_entries()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, start_new_session=True,
            # a shell's background job inherits SIGINT ignored, which Python keeps: give the run a real one
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        t_start = time.monotonic()
        out_lines: list[str] = []
        seen = threading.Event()

        def drain() -> None:  # a thread: orphaned children may hold the pipe open after the main exits
            for raw in p.stdout:
                out_lines.append(raw.decode(errors="replace"))
                if after_line is not None and out_lines[-1].startswith(after_line):
                    seen.set()
            seen.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        if after_line is not None:
            seen.wait(timeout)
        time.sleep(delay)
        t_sig = time.monotonic()
        sent = _send(p, sig, target)
        hung = False
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            p.kill()
            p.wait()
        ended_s = time.monotonic() - t_sig
        left, new_shm = _leftovers(p.pid, before, grace)
        reader.join(5)
        p.stdout.close()
        _unlink_unmapped(new_shm)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return {
        "signal": sig,
        "target": target,
        "delay_s": round(t_sig - t_start, 2) if sent else None,
        "sent": sent,
        "returncode": p.returncode,
        "ended": not hung,
        "ended_s": round(ended_s, 2),
        "expected_status": (p.returncode in EXPECTED[sig]) if sent else p.returncode == 0,
        "tracebacks": stderr.count("Traceback"),
        "stderr_lines": len(stderr.splitlines()),
        "stderr": stderr,
        "stdout": "".join(out_lines),
        "leftover_processes": len(left),
        "leftover_shm": len(new_shm),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--signals", default="INT,TERM", help="comma list of INT, TERM, KILL (picked at random)")
    ap.add_argument("--targets", default="pid,group", help="comma list of pid, group (picked at random)")
    ap.add_argument("--max-delay", type=float, default=10.0, help="signal at a random moment 0..this s")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds the run may take to end after it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write every try as JSON")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="command to run (default: sim/run_lava.py --demo)")
    args = ap.parse_args(argv)
    sigs = args.signals.split(",")
    targets = args.targets.split(",")
    if args.tries < 1 or args.max_delay < 0 or args.timeout <= 0:
        ap.error("--tries must be >= 1, --max-delay >= 0, --timeout > 0")
    for s in sigs:
        if s not in EXPECTED:
            ap.error(f"--signals: unknown signal {s!r} (INT, TERM, KILL)")
    if not set(targets) <= {"pid", "group"}:
        ap.error(f"--targets: {args.targets!r} (pid, group)")
    cmd = [c for c in args.cmd if c != "--"] or DEFAULT_CMD
    rng = random.Random(args.seed)
    print(f"machine: {platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"command: {' '.join(cmd)}")
    print(f"{'try':>3} {'signal':>6} {'to':>5} {'at s':>5} {'rc':>4} {'ended s':>7} {'tb':>3} "
          f"{'err lines':>9} {'procs':>5} {'shm':>4}")
    rows = []
    for i in range(args.tries):
        sig, target = rng.choice(sigs), rng.choice(targets)
        r = trial(cmd, sig, target, rng.uniform(0, args.max_delay), timeout=args.timeout)
        rows.append(r)
        print(f"{i:>3} {sig:>6} {target:>5} {r['delay_s'] if r['sent'] else 'done':>5} {r['returncode']:>4} "
              f"{r['ended_s'] if r['ended'] else 'HUNG':>7} {r['tracebacks']:>3} {r['stderr_lines']:>9} "
              f"{r['leftover_processes']:>5} {r['leftover_shm']:>4}", flush=True)
    sent = [r for r in rows if r["sent"]]
    print(
        f"totals over {len(rows)} tries ({len(sent)} signalled, {len(rows) - len(sent)} finished first): "
        f"ended within {args.timeout:g} s {sum(r['ended'] for r in rows)}/{len(rows)}; "
        f"documented exit status {sum(r['expected_status'] for r in rows)}/{len(rows)}; "
        f"with tracebacks {sum(r['tracebacks'] > 0 for r in rows)}; "
        f"with leftover processes {sum(r['leftover_processes'] > 0 for r in rows)} "
        f"({sum(r['leftover_processes'] for r in rows)} processes); "
        f"with leftover shm {sum(r['leftover_shm'] > 0 for r in rows)} "
        f"({sum(r['leftover_shm'] for r in rows)} segments)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
