"""respike-neuro: ReSpike hybrid ANN+SNN action recognition, deployed through NIR onto Lava.

Kept import-free on purpose: `respike_neuro.sim` runs inside Lava's forked processes, which
must never import torch.
"""

__version__ = "0.1.0"
