"""Stream one clip through the hybrid ReSpike model: ANN + cross-attention + head on the host (torch),
spiking branch in Lava from the exported NIR file, exchanging fused features every timestep.

    respike-hybrid-demo ckpt.pt [--nir model.nir] [--video clip.mp4 | --index N]
                                [--mode float|fixed] [--plot out.png]     (or: python sim/hybrid_demo.py ...)

Prints the prediction beside PyTorch's, spike counts/rates per LIF layer and stage (Lava vs PyTorch),
timings (host per stage, Lava, bridge overhead) and host <-> chip traffic per timestep. Errors print
one line: exit 2 for a bad command line (checked before anything loads), 1 for a bad file or a failed
run, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from respike_neuro.cli import (
    ArgumentParser,
    UsageError,
    check_device,
    check_input_file,
    check_plot_file,
    guarded,
)
from respike_neuro.engines import BRIDGE_BACKENDS, MODES, backend_help


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="hybrid_demo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="training checkpoint (e.g. runs/default/best.pt)")
    p.add_argument(
        "--nir", type=Path, default=None, help="NIR export of the checkpoint (default: export now)"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", type=Path, default=None, help="video file to classify (decoded with PyAV)")
    src.add_argument("--index", type=int, default=0, help="built-in synthetic test clip index (default 0)")
    p.add_argument(
        "--mode", choices=MODES, default="float", help="Lava arithmetic (default float)"
    )
    p.add_argument(
        "--backend", choices=BRIDGE_BACKENDS, default="cpu", help=backend_help(BRIDGE_BACKENDS),
    )
    p.add_argument("--device", default=None, help="host torch device (default: cuda if available, else cpu)")
    p.add_argument("--stock-models", action="store_true", help="Lava's stock (slow) Conv models")
    p.add_argument(
        "--plot", type=Path, default=None, help="save a PNG: spike rates and logits, Lava vs PyTorch"
    )
    return p


class DemoError(Exception):
    """Bad user input: printed as one line, exit status 1."""


def load_video(path: Path, frames: int, resolution: int):
    """The test-protocol clip of a video: the centred clip of `frames` consecutive frames (a shorter
    video holds its last frame, as the datasets do), short side resized to `resolution`, centre crop,
    normalised. Returns (clip (T, 3, R, R), note about padding or "")."""
    from respike_neuro.data.video import (
        DECODE_ERRORS,
        ClipTransform,
        VideoReader,
        check_resize_budget,
        eval_indices,
    )

    if not path.is_file():
        raise DemoError(f"video {path}: no such file")
    try:
        with VideoReader(path) as reader:
            check_resize_budget(path, *reader.size, frames, resolution)  # before decoding anything
            n = reader.num_frames
            if n < 1:
                raise DemoError(f"video {path}: the stream has no frames")
            rgb, _ = reader.read(eval_indices(n, frames, 0, 1))
    except DECODE_ERRORS as err:
        raise DemoError(f"video {path}: cannot decode ({err})") from None
    note = f"{n} frame(s), the last held to {frames} as the datasets do" if n < frames else ""
    return ClipTransform(resolution, "test")(rgb), note


def builtin_clip(bridge, index: int):
    from respike_neuro.data.synthetic import SyntheticActions, trained_distribution

    if index < 0:
        raise DemoError(f"--index must be >= 0, got {index}")
    cfg = bridge.cfg
    ds = SyntheticActions(
        split="test",
        num_clips=index + 1,
        frames=cfg.frames,
        resolution=cfg.resolution,
        stride=cfg.stride,
        **trained_distribution(bridge.state.get("train_config")),
    )
    clip, label = ds[index]
    return clip, label, f"built-in synthetic test clip {index}"


def _name(names: list[str], i: int | None) -> str:
    if i is None:
        return "?"
    return names[i] if 0 <= i < len(names) else str(i)


def report(bridge, res, ref, label, source: str) -> list[str]:
    import numpy as np

    from respike_neuro.sim.runtime import describe_quantization

    names = bridge.class_names
    t, q = res.timings, res.traffic
    lines = [
        f"clip: {source}" + (f" (true class: {_name(names, label)})" if label is not None else ""),
        f"prediction  host+Lava ({bridge.mode}): {_name(names, res.prediction)}   "
        f"PyTorch: {_name(names, ref['prediction'])}   "
        f"({'same' if res.prediction == ref['prediction'] else 'DIFFERENT'}); "
        f"max |logit difference| {np.abs(res.logits - ref['logits']).max():.2e}",
    ]
    if bridge.pinned_formats:
        lines.append(
            "note: this NIR holds a spiking branch fine-tuned in Loihi 2 arithmetic (respike_neuro/qat.py);"
            " 'PyTorch' is the checkpoint's float model, which that branch was distilled from, not a copy"
        )
    lines += [
        "",
        f"{'LIF layer':<16} {'spikes Lava':>12} {'PyTorch':>9} {'rate Lava':>10} {'PyTorch':>8} {'agree':>8}",
    ]
    stage_tot: dict[str, list[int]] = {}
    for k, s in res.spikes.items():
        r = ref["spikes"][k]
        agree = float((s == r).mean())
        lines.append(
            f"{k:<16} {int(s.sum()):>12,} {int(r.sum()):>9,} {s.mean():>10.4f} {r.mean():>8.4f} {agree:>8.2%}"
        )
        st = stage_tot.setdefault(k.split(".")[0], [0, 0, 0])
        st[0] += int(s.sum())
        st[1] += int(r.sum())
        st[2] += s.size
    for st, (a, b, n) in stage_tot.items():
        lines.append(f"{st + ' total':<16} {a:>12,} {b:>9,} {a / n:>10.4f} {b / n:>8.4f}")
    fuse = t["host_fuse_s"]
    steps = res.spikes[next(iter(res.spikes))].shape[0]
    lines += [
        "",
        f"timings ({t['device']} host, Lava {bridge.backend}/{bridge.mode}, {steps} timesteps, "
        f"{t['lava_steps']} Lava steps, {t['lava_processes']} Lava processes):",
        f"  host ANN {1e3 * t['host_ann_s']:.1f} ms; cross-attention per stage "
        + ", ".join(f"{k}: {1e3 * v:.1f}" for k, v in fuse.items())
        + f" ms; head {1e3 * t['host_head_s']:.1f} ms",
        f"  Lava {1e3 * t['lava_s']:.0f} ms ({t['lava_ms_per_step']:.1f} ms/step; startup "
        f"{t['lava_startup_s']:.1f} s once); bridge overhead {1e3 * t['bridge_overhead_s']:.1f} ms; "
        f"total {1e3 * t['total_s']:.0f} ms",
        f"host <-> chip traffic per timestep: {q['values_in_per_step']:,} values in "
        f"({', '.join(f'{k} {v:,}' for k, v in q['ports_in'].items())}), {q['values_out_per_step']:,} out; "
        f"{q['loihi2_bytes_in_per_step']:,} B in + {q['loihi2_bytes_out_per_step']:,} B out at "
        f"{q['graded_bits']}-bit graded payloads (resource report: {q['report_bytes_in_per_step']:,} + "
        f"{q['report_bytes_out_per_step']:,} B); {q['sim_bytes_per_step']:,} B as float64 in this simulation",
    ]
    if res.quantization:
        cal = bridge.spiking.fixed.calibration
        lines.append(f"fixed point: calibration {cal}; {describe_quantization(res.quantization)}")
    return lines


def plot(path: Path, bridge, res, ref) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = list(res.spikes)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(layers))
    a.bar(x - 0.2, [res.spikes[k].mean() for k in layers], 0.4, label=f"Lava ({bridge.mode})")
    a.bar(x + 0.2, [ref["spikes"][k].mean() for k in layers], 0.4, label="PyTorch")
    a.set_xticks(x, layers, rotation=60, ha="right", fontsize=7)
    a.set_ylabel("spike rate (per neuron per timestep)")
    a.set_title("spike rate per LIF layer")
    a.legend(fontsize=8)
    k = np.arange(len(res.logits))
    b.bar(k - 0.2, res.logits, 0.4, label=f"host + Lava ({bridge.mode})")
    b.bar(k + 0.2, ref["logits"], 0.4, label="PyTorch")
    names = bridge.class_names if len(bridge.class_names) == len(k) else [str(i) for i in k]
    b.set_xticks(k, names, rotation=60, ha="right", fontsize=7)
    b.set_title(f"logits (prediction: {_name(bridge.class_names, res.prediction)})")
    b.legend(fontsize=8)
    fig.tight_layout()
    from respike_neuro.fileio import save_pyplot_figure

    save_pyplot_figure(fig, path, dpi=110)


def _run(args) -> int:
    from respike_neuro.bridge import HybridBridge  # imports Lava before torch (fork start method)

    check_input_file(args.checkpoint, "checkpoint")
    for option, path in (("--nir", args.nir), ("--video", args.video)):
        if path is not None:
            check_input_file(path, option)
    if args.plot is not None:
        if not args.plot.resolve().parent.is_dir():
            raise UsageError(f"--plot {args.plot}: folder {args.plot.resolve().parent} does not exist")
        check_plot_file(args.plot, inputs=(args.checkpoint, args.nir, args.video))
    if args.index < 0:
        raise UsageError(f"--index must be >= 0, got {args.index}")
    if args.device is not None:
        check_device(args.device, allow_auto=False)
    clip = label = None
    if args.video is not None:  # decode first: a bad video never starts Lava
        from respike_neuro.host import load_host_model

        cfg = load_host_model(args.checkpoint)[0].cfg
        clip, note = load_video(args.video, cfg.frames, cfg.resolution)
        source = f"{args.video} ({note})" if note else str(args.video)
    bridge = HybridBridge(
        args.checkpoint,
        args.nir,
        mode=args.mode,
        backend=args.backend,
        device=args.device,
        fast_models=not args.stock_models,
    )
    with bridge:
        cfg = bridge.cfg
        print(
            f"model: {cfg.architecture} (inputs {cfg.inputs}, attention {cfg.attention}), "
            f"{cfg.frames} frames {cfg.resolution}px, stride {cfg.stride}; spiking branch from "
            f"{args.nir or 'an on-the-fly NIR export'} ({bridge.spiking.n_processes} Lava processes)"
        )
        if clip is None:
            clip, label, source = builtin_clip(bridge, args.index)
        res = bridge.run_clip(clip)
        ref = bridge.reference(clip)
    for line in report(bridge, res, ref, label, source):
        print(line)
    if args.plot is not None:
        plot(args.plot, bridge, res, ref)
        print(f"plot: {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return guarded(
        lambda: _run(args), errors=(DemoError, ValueError, TypeError, RuntimeError, OSError, IndexError)
    )


if __name__ == "__main__":
    sys.exit(main())
