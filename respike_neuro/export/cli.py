"""Export the spiking branch of a ReSpike checkpoint to NIR (HDF5), BN folded, with named host ports.

    respike-export ckpt.pt [-o model.nir] [--validate]     (or: python export/to_nir.py ...)

The file is written atomically (temporary file in the target folder, then rename), so an
interrupted or failed run never leaves a half-written graph. --validate reads the file back,
checks its structure and types, and runs one built-in clip through the graph with the numpy
reference executor and through the PyTorch model (float64 both), requiring identical spikes in
every LIF layer and timestep and stage outputs within 1e-6. Errors print one line: exit 2 for a bad
command line (missing checkpoint, output equal to the input or unwritable), 1 for a bad file or a failed
write, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from respike_neuro.cli import ArgumentParser, check_input_file, check_output_file, guarded

STAGE_TOLERANCE = 1e-6  # float64 on both sides; the observed difference is ~1e-15


class ExportError(Exception):
    """A problem with the user's input or environment: printed as one line, exit status 1."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The validated checkpoint dict (respike_neuro.checkpoint: weights_only, every failure named)."""
    from respike_neuro.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as err:
        raise ExportError(str(err)) from None


def load_model(path: Path):
    """(model in eval mode, ModelConfig) from a checkpoint; ExportError on any problem with it."""
    import torch

    from respike_neuro.config import ModelConfig
    from respike_neuro.models.hybrid import build_model

    if not path.exists():
        raise ExportError(f"{path}: no such file")
    if not path.is_file():
        raise ExportError(f"{path}: not a file")
    ckpt = _read_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(dict(ckpt["model_config"]), source=str(path))
    except (KeyError, TypeError, ValueError) as err:
        raise ExportError(f"{path}: invalid model_config ({err})") from None
    if not cfg.has_snn:
        raise ExportError(
            f"{path}: the model has no spiking branch (architecture={cfg.architecture!r}); "
            "only 'hybrid' and 'snn' checkpoints can be exported"
        )
    model = build_model(cfg.replace(ann_weights=None))  # the checkpoint carries every weight
    state = ckpt["model"]
    if not isinstance(state, dict):
        raise ExportError(f"{path}: 'model' is a {type(state).__name__}, not a state dict")
    bad = [
        k for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise ExportError(f"{path}: weights hold NaN or infinity (diverged training?): {bad[:4]}")
    expected = set(model.state_dict())
    unknown = sorted(k for k in state if k not in expected)
    if unknown:
        layers = sorted({k.rsplit(".", 1)[0] for k in unknown})
        raise ExportError(
            f"{path}: unsupported layer(s) {layers[:6]} (not part of the ReSpike "
            f"{cfg.architecture} model the exporter knows)"
        )
    missing = sorted(expected - set(state))
    if missing:
        raise ExportError(f"{path}: state dict lacks {len(missing)} tensor(s), e.g. {missing[:4]}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ExportError(
            f"{path}: weights do not fit the model ({str(err).splitlines()[1].strip()})"
        ) from None
    return model.eval(), cfg


def write_atomic(graph, out: Path) -> None:
    """nir.write to a temporary file next to `out`, then rename over it (never a half-written file)."""
    import nir

    from respike_neuro.export.nir_graph import graph_nbytes
    from respike_neuro.fileio import atomic_write

    out = out.resolve()
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; give an output file name")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent}: output folder does not exist")
    try:  # free space checked first: h5py crashes (segfault) on a full disk
        atomic_write(out, lambda tmp: nir.write(str(tmp), graph), need_bytes=graph_nbytes(graph))
    except Exception as err:  # h5py raises OSError, TypeError or ValueError; the target stays untouched
        raise ExportError(f"cannot write {out}: {getattr(err, 'strerror', None) or err}") from None


def builtin_clip(cfg, seed: int = 0):
    """One normalised clip (1, T, 3, H, W) from the built-in synthetic test split."""
    from respike_neuro.data.synthetic import SyntheticActions

    ds = SyntheticActions(
        split="test", num_clips=1, frames=cfg.frames, resolution=cfg.resolution, stride=cfg.stride, seed=seed
    )
    return ds[0][0].unsqueeze(0), f"synthetic test clip (seed {seed})"


def validate(out: Path, model, cfg) -> list[str]:
    """Read `out` back, check structure/types, compare the reference executor with PyTorch."""
    import nir
    import numpy as np

    from respike_neuro.export.reference_executor import run_graph
    from respike_neuro.export.trace import record_snn_io

    graph = nir.read(out)
    graph.validate_structure()
    graph.infer_types()
    graph.check_types()
    clip, source = builtin_clip(cfg)
    ref_model = model.double()
    trace = record_snn_io(ref_model, clip.double())
    seg = trace["segments"][0]
    ports = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    t0 = time.perf_counter()
    res = run_graph(graph, {k: seg[k] for k in ports}, record=True, dtype=np.float64)
    elapsed = time.perf_counter() - t0
    lif = [k for k, n in graph.nodes.items() if isinstance(n, nir.LIF)]
    flips = {k: int((res.records[k] != seg[k]).sum()) for k in lif}
    worst = max(float(np.abs(res.outputs[k] - seg[k]).max()) for k in res.outputs)
    rates = np.mean([seg[k].mean() for k in lif])
    n_seg, same = len(trace["segments"]), sum(v == 0 for v in flips.values())
    lines = [
        f"validate: read back, structure and types OK; clip: {source}, segment 1 of {n_seg}, "
        f"{trace['timesteps']} timesteps",
        f"validate: reference executor {elapsed:.2f} s; spikes identical in {same}"
        f"/{len(lif)} LIF layers (mean spike rate {rates:.3f}); max stage output difference {worst:.2e}",
    ]
    bad = {k: v for k, v in flips.items() if v}
    if bad or worst > STAGE_TOLERANCE:
        raise ExportError(
            f"validation failed: spike mismatches {bad}, max stage output difference {worst:.3e}"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        prog="to_nir.py",
        description="Export the spiking branch of a ReSpike checkpoint to a NIR graph (HDF5): BN folded, "
        "residual adds as edges, named host ports (residual_in, stage{k}_out, stage{k}_in).",
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint written by training (torch.save dict)")
    p.add_argument("-o", "--output", type=Path, help="output .nir file (default: checkpoint path with .nir)")
    p.add_argument(
        "--validate",
        action="store_true",
        help="read the file back and check it against PyTorch with the reference executor",
    )
    p.add_argument("--float32", action="store_true", help="store parameters in float32 (default float64)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return guarded(lambda: _run(args), errors=(ExportError, OSError), status=1)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from respike_neuro.export.fold import UnsupportedLayerError
    from respike_neuro.export.nir_graph import build_nir_graph, summarize

    ckpt = check_input_file(args.checkpoint, "checkpoint")
    out = args.output or ckpt.with_suffix(".nir")
    if ckpt.suffix == ".nir" and args.output is None:
        out = ckpt.with_name(ckpt.name + ".nir")
    check_output_file(out, "-o", inputs=(ckpt,))
    model, cfg = load_model(ckpt)
    try:
        graph = build_nir_graph(
            model, checkpoint_sha256=sha256_of(ckpt), dtype=np.float32 if args.float32 else np.float64
        )
    except UnsupportedLayerError as err:
        raise ExportError(f"{ckpt}: unsupported layer: {err}") from None
    write_atomic(graph, out)
    graph.infer_types()
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) from {ckpt} "
        f"[{cfg.architecture}, inputs={cfg.inputs}, "
        f"{graph.metadata['timesteps_per_segment']} timesteps/segment]"
    )
    for line in summarize(graph).lines():
        print("  " + line)
    if args.validate:
        for line in validate(out, model, cfg):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
