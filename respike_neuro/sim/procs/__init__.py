"""Custom Lava Processes and ProcessModels (imported by Lava's compiler: keep these modules cheap)."""
