"""What every command-line entry point of the package shares: one-line errors and exit statuses."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

from respike_neuro.sim.lifecycle import Terminated


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, `prog: error: message`, exit status 2 (argparse's
    default prints the whole usage block first, which buries the message in scripts' logs)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def guarded(
    body: Callable[[], int],
    *,
    errors: tuple[type[BaseException], ...],
    prefix: str = "error",
    status: int = 1,
    interrupted: str = "interrupted",
) -> int:
    """Run a CLI's body: a UsageError becomes one line and exit 2, an expected error one line
    `prefix: message` and exit `status`, running out of memory one line and 1, Ctrl-C one line and
    130, SIGTERM/SIGHUP while Lava runs (sim/lifecycle.py) one line and 128 + signal number;
    anything else is a bug and keeps its traceback."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prefix}: {interrupted}", file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"{prefix}: {stop}", file=sys.stderr)
        return int(stop.code)
    except UsageError as err:
        print(f"{prefix}: {one_line(err)}", file=sys.stderr)
        return 2
    except MemoryError as err:
        print(f"{prefix}: out of memory ({one_line(err)}); try smaller inputs or options", file=sys.stderr)
        return 1
    except errors as err:
        print(f"{prefix}: {one_line(err)}", file=sys.stderr)
        return status


def one_line(err: BaseException) -> str:
    """The first line of an exception's message (KeyError without its quotes), or its type name."""
    text = str(err.args[0] if isinstance(err, KeyError) and err.args else err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# -- validation before any work -----------------------------------------------------------------
# Every check raises UsageError (exit status 2) with one line naming the option and the problem, so a
# CLI refuses a bad command line before it trains, evaluates or exports anything.

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
MAX_MEMORY_FRACTION = 0.8  # a single array may use at most this share of the available memory


class UsageError(ValueError):
    """A bad command line (option value, input or output path): one line, exit status 2."""


def check_device(name: str, *, option: str = "--device", allow_auto: bool = True) -> str:
    """`name` if it is a device this machine has: auto, cpu, cuda or cuda:N (meta, tpu, ... refused)."""
    text = str(name).strip()
    if not DEVICE_PATTERN.match(text) or (text == "auto" and not allow_auto):
        choices = ("auto, " if allow_auto else "") + "cpu, cuda, cuda:N"
        raise UsageError(f"{option} {name!r}: not a device this tool runs on (choose {choices})")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            build = "CPU-only build" if not torch.version.cuda else "no GPU"
            raise UsageError(
                f"{option} {name!r}: CUDA is not available here (torch {torch.__version__}, {build})"
            )
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"{option} {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return text


def check_number(
    value: float | int | None,
    option: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> None:
    """Finite and within [minimum, maximum] (or > minimum); None (not given) passes."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{option} {value!r}: must be a finite number")
    low_bad = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    if low_bad or (maximum is not None and value > maximum):
        low = "" if minimum is None else (f"> {minimum}" if exclusive_minimum else f">= {minimum}")
        high = "" if maximum is None else f"<= {maximum}"
        raise UsageError(f"{option} {value!r}: must be {' and '.join(x for x in (low, high) if x)}")


def check_input_file(path: str | os.PathLike, option: str) -> Path:
    """An existing, readable regular file."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{option} {p}: no such file")
    if not p.is_file():
        raise UsageError(f"{option} {p}: not a file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{option} {p}: not readable (permissions)")
    return p


def _writable_folder(folder: Path, option: str, shown: Path) -> None:
    """`folder` exists (or could be created) and this process may create files in it."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"cannot write {option} {shown}: {probe} is not a folder")
    try:  # really create a file: permission bits say nothing for root or read-only mounts
        with tempfile.TemporaryFile(dir=probe, prefix=".respike-write-probe."):
            pass
    except OSError as err:
        raise UsageError(f"cannot write {option} {shown}: folder {probe} is not writable") from err


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_file(
    path: str | os.PathLike,
    option: str,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    suffixes: Iterable[str] | None = None,
) -> Path:
    """An output file that can be written and is none of `inputs` (resolved paths, hard links too)."""
    p = Path(path)
    if str(path).endswith(os.sep) or p.is_dir():
        raise UsageError(f"{option} {p}: is a folder; give a file name")
    if suffixes is not None:
        known = sorted({s.lower().lstrip(".") for s in suffixes})
        if p.suffix.lower().lstrip(".") not in known:
            raise UsageError(
                f"{option} {p}: unknown file type {p.suffix or '(no suffix)'!r}; use one of "
                + ", ".join("." + s for s in known)
            )
    for inp in inputs:
        if inp is not None and _same(p, Path(inp)):
            raise UsageError(f"{option} {p}: is also an input ({inp}); it would be overwritten")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{option} {p}: exists and is not writable")
    _writable_folder(p.resolve().parent, option, p)
    return p


def check_output_dir(
    path: str | os.PathLike, option: str, *, inputs: Iterable[str | os.PathLike | None] = ()
) -> Path:
    """An output folder that exists and is writable, or can be created; never an input file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {p}: exists and is not a folder")
    for inp in inputs:
        if inp is not None and _same(p, Path(inp)):
            raise UsageError(f"{option} {p}: is also an input ({inp})")
    _writable_folder(p.resolve(), option, p)
    return p


def plot_formats() -> list[str]:
    """File suffixes matplotlib can save (png, pdf, svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_plot_file(
    path: str | os.PathLike, option: str = "--plot", *, inputs: Iterable[str | os.PathLike | None] = ()
) -> Path:
    """An output image whose suffix matplotlib knows (no silent DIR -> DIR.png)."""
    return check_output_file(path, option, inputs=inputs, suffixes=plot_formats())


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(need_bytes: float, what: str) -> None:
    """Refuse (UsageError) an allocation that cannot fit instead of dying with MemoryError later."""
    free = available_memory()
    if free is not None and need_bytes > MAX_MEMORY_FRACTION * free:
        raise UsageError(
            f"{what} would need {need_bytes / 1e9:.2f} GB of memory; {free / 1e9:.2f} GB available"
        )
