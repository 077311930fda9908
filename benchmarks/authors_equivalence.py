"""Rung 0 of the correctness ladder: the authors' own code against ours with the same weights.

Their code is not part of this project. To run it beside ours:
    git clone https://github.com/GinnyXiao/ReSpike /tmp/authors
    .venv/bin/pip install --target /tmp/authors/deps --no-deps spikingjelly==0.0.0.0.14 einops
    .venv/bin/python benchmarks/authors_equivalence.py --authors-repo /tmp/authors --deps /tmp/authors/deps

It builds their CrossAttenFusion (downsample network) with random weights, saves its state_dict
as their scripts do, imports that file with `respike_neuro.import_authors`, and compares in
float64 on one random clip: eval logits, train-mode logits, SNN BatchNorm running statistics
after that forward, and every parameter's gradient. Beside the default model it runs the two
pre-2026-12 semantics (time-folded BN statistics; ATan alpha = 2 on our unscaled membrane) so
their effect stays measured.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import authors_code  # benchmarks/authors_code.py, beside this script
import torch

from respike_neuro.config import ModelConfig
from respike_neuro.import_authors import _rename, import_authors, module_map
from respike_neuro.models.hybrid import build_model


def _authors_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    CrossAttenFusion = authors_code.cross_atten_fusion(args)  # noqa: N806  (their class)
    torch.manual_seed(args.seed)
    model = CrossAttenFusion(backbone=args.backbone, key_frame_stride=args.stride, num_classes=num_classes,
                             downsample=1)
    with torch.no_grad():  # trained-looking weights: zero proj_out and fresh BN stats would hide paths
        for name, p in model.named_parameters():
            if "proj_out" in name:
                p.normal_(0.0, 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.1)
    return model.double()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-300))


def compare(theirs: torch.nn.Module, ours: torch.nn.Module, clip: torch.Tensor, labels: torch.Tensor) -> dict:
    """Eval logits, one train-mode forward/backward: relative differences (0 = identical)."""
    table = module_map(ours.cfg.snn_blocks)
    theirs_p = dict(theirs.named_parameters())
    out = {}
    theirs.eval(), ours.eval()
    with torch.no_grad():
        out["eval_logits"] = _rel(ours(clip), theirs(clip))
    theirs.train(), ours.train()
    for m in (theirs, ours):
        m.zero_grad(set_to_none=True)
    l_theirs, l_ours = theirs(clip), ours(clip)
    out["train_logits"] = _rel(l_ours, l_theirs)
    torch.nn.functional.cross_entropy(l_theirs, labels).backward()
    torch.nn.functional.cross_entropy(l_ours, labels).backward()
    stats, grads = [], {"snn": [], "ann": [], "fusion": [], "head": []}
    inverse = {v: k for k, v in table.items()}
    their_buffers = dict(theirs.named_buffers())
    for name, buf in ours.named_buffers():
        if name.startswith("snn.") and "running" in name:
            stats.append(_rel(buf, their_buffers[_rename(name, inverse)]))
    for name, p in ours.named_parameters():
        g_theirs = theirs_p[_rename(name, inverse)].grad
        kind = name.split(".")[0].replace("fusions", "fusion")
        grads[kind].append(((p.grad - g_theirs).norm() ** 2, g_theirs.norm() ** 2))
    out["snn_running_stats_max"] = max(stats)
    # per component: |g_ours - g_theirs| / |g_theirs| over all its parameters together
    out["grad_rel"] = {k: float((sum(d for d, _ in v) / sum(n for _, n in v)).sqrt())
                       for k, v in grads.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    authors_code.add_arguments(p)
    p.add_argument("--backbone", default="resnet18", choices=("resnet18", "resnet50"))
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    theirs = _authors_model(args, args.classes)
    torch.manual_seed(args.seed + 1)
    clip = torch.randn(args.batch, args.frames, 3, args.resolution, args.resolution, dtype=torch.float64)
    labels = torch.randint(0, args.classes, (args.batch,))
    results = {"config": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"synthetic-{args.backbone}-{args.stride}-0.0001-pretrained.pth"
        torch.save(theirs.state_dict(), src)
        ckpt = import_authors(src, Path(tmp) / "ours.pt", frames=args.frames, resolution=args.resolution)
    before = {k: v.clone() for k, v in theirs.state_dict().items()}
    variants = {
        "default": {},
        "folded_bn_stats": {"snn_bn_stats": "folded"},
        "alpha_2_on_membrane": {"surrogate_alpha": 2.0 / 0.75},
    }
    for label, change in variants.items():
        theirs.load_state_dict(before)
        cfg = ModelConfig.from_dict({**ckpt["model_config"], **change})
        ours = build_model(cfg).double()
        ours.load_state_dict(ckpt["model"])
        results[label] = compare(theirs, ours, clip, labels)
        print(f"{label:>20}: {json.dumps(results[label])}")


if __name__ == "__main__":
    main()
