"""Lava side of respike-neuro: NIR graph -> Lava processes, delay matching, fast models, runtime.

Nothing in this package imports torch (Lava forks its ProcessModels; torch inside them hangs).
Heavy imports (Lava) happen only in the modules that need them, so importing the package is cheap.
"""

__all__ = ["LavaSpikingBranch", "SegmentResult", "build_plan", "import_lava_runtime"]


def import_lava_runtime() -> None:
    """Import Lava's multiprocessing layer, which calls multiprocessing.set_start_method('fork').

    That call raises "context has already been set" once anything in this process has fixed the start
    method, even to 'fork' (e.g. a library calling multiprocessing.get_start_method()). A method fixed
    to 'fork' is unfixed first, so Lava's call restores the same one; any other method is an error
    that says what to do. Every module that imports Lava calls this first.
    """
    import multiprocessing as mp
    import sys

    name = "lava.magma.runtime.message_infrastructure.multiprocessing"
    if name in sys.modules:
        return
    method = mp.get_start_method(allow_none=True)
    if method not in (None, "fork"):
        raise RuntimeError(
            f"Lava needs the 'fork' multiprocessing start method, but this process already uses "
            f"{method!r}; import respike_neuro.bridge (or Lava) before setting it"
        )
    if method == "fork":
        mp.set_start_method(None, force=True)
    __import__(name)


def __getattr__(name: str):
    if name in ("LavaSpikingBranch", "SegmentResult"):
        from respike_neuro.sim import runtime

        return getattr(runtime, name)
    if name == "build_plan":
        from respike_neuro.sim.plan import build_plan

        return build_plan
    raise AttributeError(name)
