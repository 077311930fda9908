"""Import the whole stack in one process, Lava first (it sets the fork start method)."""

import av
import lava.magma.core.run_configs  # noqa: F401  (first: Lava sets mp start method)
import nir
import norse
import numpy
import snntorch
import torch
import torchvision
from lava.lib.dl import netx, slayer  # noqa: F401
from lava.proc.conv.process import Conv  # noqa: F401
from lava.proc.io.extractor import Extractor  # noqa: F401
from lava.proc.io.injector import Injector  # noqa: F401
from lava.proc.lif.process import LIF  # noqa: F401

print(
    "  environment ok:",
    f"torch {torch.__version__} (cuda {torch.cuda.is_available()}),",
    f"torchvision {torchvision.__version__}, numpy {numpy.__version__},",
    f"snntorch {snntorch.__version__}, norse {norse.__version__ if hasattr(norse, '__version__') else '?'},",
    f"nir {nir.__version__ if hasattr(nir, '__version__') else '?'}, av {av.__version__}, lava ok",
)
