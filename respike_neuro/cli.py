"""What every command-line entry point of the package shares."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, `prog: error: message`, exit status 2 (argparse's
    default prints the whole usage block first, which buries the message in scripts' logs)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)
