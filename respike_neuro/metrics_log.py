"""metrics.jsonl: one JSON object per line (kind "step", "epoch", "test"), written by the main rank;
after a resume the lines past the checkpoint are dropped, so a step or epoch is never repeated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from respike_neuro.fileio import write_text_atomic


class JsonlLog:
    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")



def truncate_metrics(path: Path, *, step: int, epoch: int) -> None:
    """After a resume from `step`: drop the lines written after that checkpoint (they are redone), so
    metrics.jsonl never repeats a step; a 'test' line is written again if the run finishes."""
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1  # a line cut short by a kill
            continue
        kind = record.get("kind") if isinstance(record, dict) else None
        if (kind == "step" and record.get("step", 0) <= step) or (
            kind == "epoch" and record.get("epoch", 0) <= epoch
        ):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        write_text_atomic(path, "".join(x + "\n" for x in kept))
