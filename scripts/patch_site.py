"""Make lava-nc 0.10 and a CUDA-linked torchvision wheel importable beside CPU torch on Python 3.11.

Idempotent: every patch checks whether it is still needed. Run by scripts/setup.sh with the
venv's interpreter. Why each patch exists: see ../shared/notes/environment.md and README.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import re
import shutil
from pathlib import Path


def _site_file(module: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _rewrite(path: Path, text: str) -> None:
    """Replace the file, not its contents: uv hard-links files from its cache, so writing through the
    link would patch the cache (and every other venv made from it). Bytecode is compiled afresh:
    with PYTHONDONTWRITEBYTECODE set, a stale .pyc would be recompiled at every import."""
    tmp = path.with_name(path.name + ".respike-tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    py_compile.compile(str(path), doraise=True)


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
    _rewrite(path, text)
    return "lava var_model patched (dataclass default_factory)"


def patch_torchvision_meta_ops() -> str:
    """A CUDA-linked torchvision beside CPU torch has no C++ ops; skip their fake kernels.

    The guard is a no-op where the ops exist, so it is applied without first importing torchvision
    (a 3-4 s probe); scripts/check_env.py then imports it."""
    path = _site_file("torchvision", "_meta_registrations.py")
    if path is None:
        return "torchvision not installed"
    text = path.read_text()
    guarded = text
    for op in ("nms", "qnms"):
        guarded = guarded.replace(
            f'@torch.library.register_fake("torchvision::{op}")',
            f'@(torch.library.register_fake("torchvision::{op}") '
            f'if hasattr(torch.ops.torchvision, "{op}") else (lambda fn: fn))',
        )
    if guarded == text:
        return "torchvision meta registrations already guarded (or absent)"
    _rewrite(path, guarded)
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
