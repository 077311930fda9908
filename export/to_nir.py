#!/usr/bin/env python
"""Export the spiking branch of a ReSpike checkpoint to NIR; see `to_nir.py --help`.

    python export/to_nir.py ckpt.pt [-o model.nir] [--validate]

The command lives in respike_neuro.export.cli (installed as `respike-export`); this file keeps the
README's command working from a checkout.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from respike_neuro.export.cli import (  # noqa: E402, F401  (tests and callers use these names)
    ExportError,
    builtin_clip,
    load_model,
    main,
    sha256_of,
    validate,
    write_atomic,
)

if __name__ == "__main__":
    sys.exit(main())
