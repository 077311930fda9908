"""What every command-line entry point of the package shares: one-line errors and exit statuses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
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
    """Run a CLI's body: an expected error becomes one line `prefix: message` on stderr and exit
    `status`, Ctrl-C one line and 130, SIGTERM/SIGHUP while Lava runs (sim/lifecycle.py) one line and
    128 + signal number; anything else is a bug and keeps its traceback."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prefix}: {interrupted}", file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"{prefix}: {stop}", file=sys.stderr)
        return int(stop.code)
    except errors as err:
        text = str(err.args[0] if isinstance(err, KeyError) and err.args else err).strip()
        print(f"{prefix}: {text.splitlines()[0] if text else type(err).__name__}", file=sys.stderr)
        return status
