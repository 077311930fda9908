"""A training run's files: which checkpoint to resume, earlier results set aside (never deleted), an
ann_weights file checked before work, and Ctrl-C turned into "save last.pt, then stop"."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from respike_neuro.config import ConfigError, ModelConfig, TrainConfig

RESULT_FILES = ("best.pt", "metrics.jsonl", "test_results.json", "confusion_test.png", "last.pt")


def resume_path(t: TrainConfig, out: Path) -> Path | None:
    if t.resume == "never":
        return None
    if t.resume == "auto":
        last = out / "last.pt"
        return last if last.is_file() else None
    path = Path(t.resume)
    if not path.is_file():
        raise ConfigError(f"train.resume: checkpoint {path} does not exist")
    return path


def set_aside_earlier_results(out: Path, t: TrainConfig, is_main: bool) -> None:
    """A fresh run never deletes another run's results: with resume 'auto' (and no last.pt) it refuses;
    with resume 'never' it moves them into <out>/previous-<time>/ and says so in one line."""
    found = [name for name in RESULT_FILES if (out / name).exists()]
    if not found:
        return
    if t.resume == "auto":
        raise ConfigError(
            f"train.out {out} holds another run's results ({', '.join(found)}) and no last.pt to resume; "
            "choose another --out, or --resume never to move them aside"
        )
    if not is_main:
        return
    aside = out / time.strftime("previous-%Y%m%d-%H%M%S")
    n = 1
    while aside.exists():
        aside = out / f"{time.strftime('previous-%Y%m%d-%H%M%S')}-{n}"
        n += 1
    aside.mkdir()
    for name in (*found, "config.yaml"):
        if (out / name).exists():
            os.replace(out / name, aside / name)
    print(f"moved the earlier run's results ({', '.join(found)}) to {aside}", file=sys.stderr)


class StopRequest:
    """Ctrl-C during training: finish the current step, write last.pt, then raise KeyboardInterrupt
    (a second Ctrl-C stops at once). Single process only: DDP ranks would stop at different steps."""

    def __init__(self, *, enabled: bool) -> None:
        self.requested = False
        self._previous: Any = None
        if enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step, saving last.pt (Ctrl-C again: stop now)", file=sys.stderr)

    def interrupt(self, message: str) -> None:
        print(message, file=sys.stderr)
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def check_ann_weights(model: ModelConfig) -> None:
    """ann_weights naming a file must name a torch file (random bytes gave a 38-line UnpicklingError)."""
    weights = model.ann_weights
    if not model.has_ann or weights in (None, "imagenet"):
        return
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"model.ann_weights: {path} is not a file")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"model.ann_weights: {path} is not a torch weights file (no zip archive inside)")
