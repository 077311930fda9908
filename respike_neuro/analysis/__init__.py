"""Model analysis: operation counts (MACs, SyOPs), the paper's energy model, measured spike rates.

Torch-side only (the Lava side in `respike_neuro.sim` reports spike rates in the same per-layer
format, keyed by NIR node names, so `ops.count_ops` can price a Lava run without importing this).
"""
