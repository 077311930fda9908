"""Export of the spiking branch to NIR and the third-party-free consumers that check it.

Nothing is imported here on purpose: `reference_executor` is numpy-only, the exporter needs torch.
"""
