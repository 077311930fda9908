"""The authors' ReSpike code (github.com/GinnyXiao/ReSpike), imported offline for side-by-side benchmarks.

It is not part of this project: a checkout and its two dependencies live outside it (see the
docstrings of authors_equivalence.py and authors_train_step.py). Its ANN backbone asks torchvision for
ImageNet weights, a download; they are replaced by random ones, which neither speed nor the equivalence
checks depend on.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--authors-repo and --deps: where their checkout and its dependencies are."""
    p.add_argument("--authors-repo", required=True, help="checkout of GinnyXiao/ReSpike")
    p.add_argument("--deps", default=None, help="folder holding spikingjelly 0.0.0.0.14 and einops")


def cross_atten_fusion(args: argparse.Namespace) -> type:
    """Their CrossAttenFusion class, from the checkout named by `args`, with download-free backbones."""
    import torchvision

    sys.path[:0] = [args.authors_repo] + ([args.deps] if args.deps else [])
    for name in ("resnet18", "resnet50"):  # their backbone asks for weights='DEFAULT' (a download)
        original = getattr(torchvision.models.resnet, name)
        setattr(
            torchvision.models.resnet, name, lambda weights=None, _f=original, **kw: _f(weights=None, **kw)
        )
    from model.attention_snn import CrossAttenFusion  # noqa: E402  (their code)

    return CrossAttenFusion
