"""Make lava-nc 0.10 and a CUDA-linked torchvision wheel importable beside CPU torch on Python 3.11.

Idempotent: every patch checks whether it is still needed. Run by scripts/setup.sh with the
venv's interpreter. Why each patch exists: see ../shared/notes/environment.md and README.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path


def _site_file(module: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _imports(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def patch_lava_dataclass_defaults() -> str:
    """Python 3.11 rejects `x: ByteEncoder = ByteEncoder()` (mutable dataclass default)."""
    path = _site_file("lava", "magma/compiler/var_model.py")
    if path is None:
        return "lava not installed"
    text = path.read_text()
    pattern = re.compile(r"^(\s+\w+: ByteEncoder) = ByteEncoder\(\)$", re.MULTILINE)
    if not pattern.search(text):
        return "lava var_model already fine"
    text = pattern.sub(r"\1 = field(default_factory=ByteEncoder)", text)
    text = text.replace(
        "from dataclasses import dataclass, InitVar",
        "from dataclasses import dataclass, InitVar, field",
    )
    path.write_text(text)
    return "lava var_model patched (dataclass default_factory)"


def patch_torchvision_meta_ops() -> str:
    """A CUDA-linked torchvision beside CPU torch has no C++ ops; skip their fake kernels."""
    if _imports("torchvision"):
        return "torchvision imports"
    path = _site_file("torchvision", "_meta_registrations.py")
    if path is None:
        return "torchvision not installed"
    text = path.read_text()
    for op in ("nms", "qnms"):
        text = text.replace(
            f'@torch.library.register_fake("torchvision::{op}")',
            f'@(torch.library.register_fake("torchvision::{op}") '
            f'if hasattr(torch.ops.torchvision, "{op}") else (lambda fn: fn))',
        )
    path.write_text(text)
    if not _imports("torchvision"):
        raise SystemExit(f"torchvision still fails to import after patching {path}")
    return "torchvision meta registrations guarded"


def remove_stray_tests_package() -> str:
    """The lava wheels install a top-level `tests` package that shadows the project's tests."""
    spec = importlib.util.find_spec("tests")
    if spec is None or not spec.submodule_search_locations:
        return "no stray tests package"
    location = Path(next(iter(spec.submodule_search_locations)))
    if "site-packages" not in location.parts:
        return "no stray tests package"
    shutil.rmtree(location)
    return f"removed stray {location}"


if __name__ == "__main__":
    for step in (patch_lava_dataclass_defaults, patch_torchvision_meta_ops, remove_stray_tests_package):
        print(f"  {step.__name__}: {step()}")
