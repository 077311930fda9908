"""Where a mapped Lava network runs: Lava's CPU simulation, Intel's Loihi 2, or no Lava at all.

"cpu" and "emulator" always work here; "loihi2" needs Intel's proprietary lava-loihi extension,
so it is checked for before anything is built and otherwise refused with `BackendUnavailable`.
"""

from __future__ import annotations

from respike_neuro.engines import ENGINES, RUNTIME_BACKENDS

BACKENDS = RUNTIME_BACKENDS  # the engines table (respike_neuro/engines.py) says which


class BackendUnavailable(RuntimeError):
    """The requested Lava backend is not installed."""


def loihi2_backend_available() -> bool:
    """True when Intel's lava-loihi extension (NeuroCore process models, Loihi 2 compiler) is importable."""
    try:
        from lava.utils import loihi

        return loihi.is_installed() and loihi.is_installed("lava.magma.core.model.nc")
    except Exception:
        return False


def loihi2_run_cfg(net):
    """Loihi2HwCfg: NeuroCore models for Conv/LIFReset (lava-loihi), host-side models for the host ports
    and the graded helper processes (they have no NeuroCore model in public Lava)."""
    from lava.magma.core.run_configs import Loihi2HwCfg
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIFReset

    keep = {p: m for p, m in net.model_map.items() if not isinstance(p, (Conv, LIFReset))}
    return Loihi2HwCfg(select_tag="fixed_pt", exception_proc_model_map=keep)


def check_backend(backend: str, mode: str) -> None:
    """Refuse an unknown backend, one this process cannot run, or an arithmetic it does not run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "loihi2" and not loihi2_backend_available():
        raise BackendUnavailable(
            "backend 'loihi2' needs Intel's proprietary Lava Loihi extension (lava-loihi) "
            "and a Loihi 2 system; it is not installed here. Use backend='cpu'."
        )
    if mode not in ENGINES[backend].modes:  # loihi2: integer arithmetic only
        raise ValueError(f"backend {backend!r} runs fixed point only: use mode='fixed'")
