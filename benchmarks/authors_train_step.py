"""Time per training step and peak memory of the AUTHORS' ReSpike code, for comparison.

Their code is not part of this project. To run it beside ours:
    git clone https://github.com/GinnyXiao/ReSpike /tmp/authors
    .venv/bin/pip install --target /tmp/authors/deps --no-deps spikingjelly==0.0.0.0.14 einops
    .venv/bin/python benchmarks/authors_train_step.py --authors-repo /tmp/authors --deps /tmp/authors/deps

Same step as benchmarks/train_step.py (SGD momentum 0.9, wd 1e-4, cross-entropy, random clip):
their CrossAttenFusion (downsample variant, the one both published commands use), ImageNet
weights replaced by random ones (nothing downloads; speed and memory do not depend on them).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import authors_code  # benchmarks/authors_code.py, beside this script
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    authors_code.add_arguments(p)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    CrossAttenFusion = authors_code.cross_atten_fusion(args)  # noqa: N806  (their class)

    model = CrossAttenFusion(key_frame_stride=args.stride, num_classes=101, downsample=1).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    clip = torch.randn(args.batch, args.frames, 3, args.resolution, args.resolution)
    labels = torch.randint(0, 101, (args.batch,))
    times = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(clip), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    result = {
        "config": vars(args),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "params": sum(q.numel() for q in model.parameters()),
        "s_per_step": sum(times) / len(times),
        "clips_per_s": args.batch / (sum(times) / len(times)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"authors' code: {result['s_per_step']:.3f} s/step, {result['clips_per_s']:.2f} clips/s, "
            f"peak RSS {result['peak_rss_mb']:.0f} MB, {result['params']:,} params  [{result['machine']}]"
        )


if __name__ == "__main__":
    main()
