#!/usr/bin/env python
"""Stream one clip through the hybrid ReSpike model (host in torch, spiking branch in Lava); see
`hybrid_demo.py --help`.

    python sim/hybrid_demo.py ckpt.pt [--nir model.nir] [--video clip.mp4 | --index N]

The command lives in respike_neuro.hybrid_demo (installed as `respike-hybrid-demo`); this file keeps
the README's command working from a checkout.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from respike_neuro.hybrid_demo import load_video, main  # noqa: E402, F401  (tests use load_video)

if __name__ == "__main__":
    sys.exit(main())
