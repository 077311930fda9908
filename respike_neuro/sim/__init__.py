"""Lava side of respike-neuro: NIR graph -> Lava processes, delay matching, fast models, runtime.

Nothing in this package imports torch (Lava forks its ProcessModels; torch inside them hangs).
Heavy imports (Lava) happen only in the modules that need them, so importing the package is cheap;
every one of them calls `lifecycle.import_lava_runtime()` first.
"""

__all__ = ["LavaSpikingBranch", "SegmentResult", "build_plan"]


def __getattr__(name: str):
    if name in ("LavaSpikingBranch", "SegmentResult"):
        from respike_neuro.sim import runtime

        return getattr(runtime, name)
    if name == "build_plan":
        from respike_neuro.sim.plan import build_plan

        return build_plan
    raise AttributeError(name)
