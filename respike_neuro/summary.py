"""Model card: parameters, shapes, operation counts and energy of a ReSpike configuration.

    python -m respike_neuro.summary                        # the paper's reference network and clip
    python -m respike_neuro.summary --ann resnet50 --json  # machine-readable
    python -m respike_neuro.summary --checkpoint ckpt.pt --measure --clips 16

Counts are per clip (batch 1) and analytic (a forward pass on the meta device, see
`analysis.ops`); energy follows the paper's Appendix A (`analysis.energy`). SyOPs need spike
rates: ASSUMED (one rate for every LIF layer, --rate) unless --measure runs the checkpoint on
data and measures them per layer (`analysis.spike_rates`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from respike_neuro.cli import ArgumentParser
from respike_neuro.config import VARIANTS, ConfigError, ModelConfig, read_yaml
from respike_neuro.model_card import build_card, format_card, plot_energy

WEIGHT_KEYS = (
    "ann",
    "snn_width",
    "snn_blocks",
    "architecture",
    "attention",
    "num_classes",
    "attention_head_dim",
)
DEFAULT_RATE = 0.1


class CardError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class CardFileError(CardError):
    """A file named on the command line holds something unusable: one line, exit status 1."""


# -- configuration ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m respike_neuro.summary",
        description="ReSpike model card: parameters, shapes, MACs/SyOPs per layer, energy (paper App. A).",
    )
    src = p.add_argument_group("model (default: the paper's reference network, 16 x 224^2, stride 4)")
    src.add_argument("--config", type=Path, help="YAML file with a `model:` section of ModelConfig keys")
    src.add_argument("--checkpoint", type=Path, help="checkpoint file; its model config is used")
    src.add_argument("--variant", help=f"ablation variant of the paper's Table 4: {', '.join(VARIANTS)}")
    src.add_argument("--ann", help="ANN backbone (resnet18, resnet34, resnet50, resnet101, resnet152)")
    src.add_argument("--num-classes", type=int)
    src.add_argument("--stride", type=int, help="segment length s (one key frame + s-1 residuals)")
    src.add_argument("--frames", type=int, help="frames per clip")
    src.add_argument("--resolution", type=int, help="frame side in pixels (multiple of 32)")
    src.add_argument("--snn-width", type=int, help="SNN stem channels")
    src.add_argument("--architecture", help="hybrid, ann or snn")
    src.add_argument("--inputs", help="key+res, all, key or res")
    src.add_argument("--no-attention", action="store_true", help="fuse only at the head (variant E8)")
    rates = p.add_argument_group("spike rates")
    rates.add_argument(
        "--rate",
        type=float,
        default=None,
        help=f"ASSUMED spike rate of every LIF layer without --measure (default {DEFAULT_RATE})",
    )
    rates.add_argument(
        "--measure", action="store_true", help="measure per-layer spike rates of --checkpoint on data"
    )
    rates.add_argument("--data", default="synthetic", help="data for --measure (only: synthetic)")
    rates.add_argument("--split", default="val", help="synthetic split (train, val, test; default val)")
    rates.add_argument("--clips", type=int, default=8, help="clips to measure on (default 8)")
    rates.add_argument("--batch-size", type=int, default=2)
    rates.add_argument("--seed", type=int, default=None, help="data seed (default: the checkpoint's)")
    energy = p.add_argument_group("energy (45 nm, pJ per operation)")
    energy.add_argument("--e-mac", type=float, default=4.6, help="pJ per real multiply-accumulate (4.6)")
    energy.add_argument("--e-ac", type=float, default=0.9, help="pJ per add / synaptic op (0.9)")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the card as JSON (with every layer)")
    out.add_argument("--layers", action="store_true", help="also print the per-layer table")
    out.add_argument("--plot", type=Path, help="write an energy-breakdown bar chart (PNG)")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "ann": args.ann,
        "num_classes": args.num_classes,
        "stride": args.stride,
        "frames": args.frames,
        "resolution": args.resolution,
        "snn_width": args.snn_width,
        "architecture": args.architecture,
        "inputs": args.inputs,
    }
    out = {k: v for k, v in pairs.items() if v is not None}
    if args.no_attention:
        out["attention"] = False
    return out


def load_yaml_model_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """The `model:` section (and the optional `variant:`) of a training YAML config."""
    if not path.is_file():
        raise CardError(f"--config {path}: no such file")
    try:
        data = read_yaml(path)
    except ConfigError as err:
        raise CardError(f"--config: {err}") from None
    if not ("model" in data or "variant" in data):
        raise CardError(f"--config {path}: expected a mapping with a `model:` section of ModelConfig keys")
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise CardError(f"--config {path}: the `model:` section must be a mapping of ModelConfig keys")
    variant = data.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise CardError(f"--config {path}: `variant:` must be a name like E9, got {variant!r}")
    return model, variant


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """Checkpoint dict with "model_config" and "model" (read by respike_neuro.checkpoint)."""
    from respike_neuro.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as e:
        raise CardFileError(str(e)) from e


def _config_dict(value: Any, source: str) -> dict[str, Any]:
    if isinstance(value, ModelConfig):
        return value.to_dict()
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise CardError(f"{source}: model_config is a {type(value).__name__}, expected a mapping")
    return dict(value)


def resolve_config(args: argparse.Namespace) -> tuple[ModelConfig, dict[str, Any] | None]:
    """Defaults <- --config or --checkpoint <- --variant <- explicit flags; returns (cfg, checkpoint)."""
    from respike_neuro.models.ann import ANN_BACKBONES

    if args.config is not None and args.checkpoint is not None:
        raise CardError("give --config or --checkpoint, not both")
    values: dict[str, Any] = {}
    ckpt = None
    variant = args.variant
    if args.config is not None:
        values, file_variant = load_yaml_model_config(args.config)
        variant = variant or file_variant
        source = f"--config {args.config}"
    elif args.checkpoint is not None:
        ckpt = load_checkpoint_file(args.checkpoint)
        values = _config_dict(ckpt["model_config"], f"--checkpoint {args.checkpoint}")
        source = f"--checkpoint {args.checkpoint}"
    else:
        source = "options"
    overrides = _overrides(args)
    if variant is not None:
        if variant not in VARIANTS:
            raise CardError(f"--variant {variant!r} is unknown; choose one of {', '.join(VARIANTS)}")
        overrides = {**VARIANTS[variant], **overrides}
    if ckpt is not None:  # weights fix the architecture: only the clip geometry may change
        for key in WEIGHT_KEYS:
            if key in overrides and key in values and overrides[key] != values[key]:
                who = f"--variant {variant}" if key not in _overrides(args) else "--" + key.replace("_", "-")
                raise CardError(
                    f"{who} sets {key}={overrides[key]!r}, but the checkpoint was trained with "
                    f"{key}={values[key]!r}"
                )
    values = {**values, **overrides}
    if "ann" in values and values["ann"] not in ANN_BACKBONES:
        raise CardError(f"unknown ANN backbone {values['ann']!r}; available: {', '.join(ANN_BACKBONES)}")
    try:
        cfg = ModelConfig.from_dict(values, source=source)
    except KeyError as e:
        raise CardError(str(e.args[0])) from e
    except (ValueError, TypeError) as e:
        raise CardError(f"{source}: {e}") from e
    return cfg, ckpt


# -- measurement ---------------------------------------------------------------------------------
def measure(cfg: ModelConfig, ckpt: dict[str, Any], args: argparse.Namespace) -> tuple[dict[str, float], str]:
    """Per-layer spike rates of the checkpoint's model on built-in synthetic clips."""
    from torch.utils.data import DataLoader

    from respike_neuro.analysis.spike_rates import measure_spike_rates
    from respike_neuro.data.synthetic import SyntheticActions, trained_distribution
    from respike_neuro.models.hybrid import build_model

    if args.data != "synthetic":
        raise CardError(f"--data {args.data!r}: only the built-in 'synthetic' data is supported here")
    if not cfg.has_snn:
        raise CardError(f"--measure needs a spiking branch; architecture={cfg.architecture!r} has none")
    if args.clips < 1 or args.batch_size < 1:
        raise CardError(f"--clips and --batch-size must be >= 1, got {args.clips} and {args.batch_size}")
    from respike_neuro.checkpoint import CheckpointError, check_state_dict

    model = build_model(cfg.replace(ann_weights=None))  # the checkpoint's weights replace them
    try:
        check_state_dict(model, ckpt["model"], source=f"--checkpoint {args.checkpoint}")
        model.load_state_dict(ckpt["model"])
    except CheckpointError as e:
        raise CardError(str(e)) from e
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CardError(
            f"--checkpoint {args.checkpoint}: weights do not fit its model config ({first})"
        ) from e
    from respike_neuro.checkpoint import train_config_of

    try:
        distribution = trained_distribution(train_config_of(ckpt, args.checkpoint))
    except CheckpointError as e:
        raise CardFileError(str(e)) from e
    if args.seed is not None:
        distribution["seed"] = args.seed
    try:
        data = SyntheticActions(
            split=args.split,
            num_clips=args.clips,
            frames=cfg.frames,
            resolution=cfg.resolution,
            stride=cfg.stride,
            **distribution,
        )
    except (ValueError, TypeError) as e:
        raise CardError(f"synthetic data: {e}") from e
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False, num_workers=0)
    rates = measure_spike_rates(model, loader, progress=sys.stderr.isatty())
    seed = distribution.get("seed", 0)
    return rates, f"MEASURED on {args.clips} synthetic {args.split} clips (seed {seed})"


def _check_args(args: argparse.Namespace) -> None:
    """Numbers and paths before any work (a bad --plot used to fail after the whole card)."""
    from respike_neuro.cli import UsageError, check_input_file, check_number, check_plot_file

    try:
        for option, value, low in (("--rate", args.rate, 0.0), ("--clips", args.clips, 1),
                                   ("--batch-size", args.batch_size, 1)):
            check_number(value, option, minimum=low)
        for option, value in (("--e-mac", args.e_mac), ("--e-ac", args.e_ac)):
            check_number(value, option)  # finite; the energy model names the range
        for option, path in (("--config", args.config), ("--checkpoint", args.checkpoint)):
            if path is not None:
                check_input_file(path, option)
        if args.plot is not None:
            check_plot_file(args.plot, inputs=(args.config, args.checkpoint))
    except UsageError as e:
        raise CardError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _check_args(args)
        cfg, ckpt = resolve_config(args)
        if args.measure:
            if ckpt is None:
                raise CardError(
                    "--measure needs --checkpoint (spike rates of untrained weights mean nothing)"
                )
            if args.rate is not None:
                raise CardError("--rate is the assumed rate without --measure; give one or the other")
            rates, note = measure(cfg, ckpt, args)
        else:
            rates = DEFAULT_RATE if args.rate is None else args.rate
            if not 0.0 <= rates <= 1.0:
                raise CardError(f"--rate {rates} must be in [0, 1] (spikes per neuron per timestep)")
            note = (
                "the paper reports no rates; --rate sets it, --measure measures them"
                if args.rate is None
                else "set by --rate"
            )
        try:
            card = build_card(cfg, rates, note, args.e_mac, args.e_ac)
        except (ValueError, TypeError) as e:
            raise CardError(str(e)) from e
        if args.plot is not None:
            try:
                plot_energy(card, args.plot)
            except OSError as e:
                raise CardFileError(f"cannot write --plot {args.plot}: {e.strerror or e}") from e
    except CardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, CardFileError) else 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(card, indent=1))
    else:
        print(format_card(card, layers=args.layers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
