#!/usr/bin/env python
"""Run a ReSpike spiking branch (NIR file) alone in Lava; see `run_lava.py --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    from respike_neuro.sim.cli import main  # noqa: E402
except KeyboardInterrupt:  # Ctrl-C while importing: the same one line and status as later on
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
