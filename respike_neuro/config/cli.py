"""Config from a command line: one `--section.key VALUE` flag per config field, plus `--set`.

`add_config_arguments` adds the generated flags (with each field's help and default) to a parser;
`config_from_args` turns the parsed namespace into a validated RunConfig. Values given on the command
line are parsed as YAML scalars/lists.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from respike_neuro.config import run
from respike_neuro.config.model import VARIANTS, ModelConfig


def _field_help(section: str, f: dataclasses.Field) -> str:
    text = f.metadata.get("help") or run.MODEL_HELP.get(f.name, "")
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return f"{text} (default: {default!r})"


def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--config, --set, the shorthands (--out, --resume, --threads, --device, --variant) and one
    --section.key flag per field of ModelConfig, DataConfig and TrainConfig; read back by config_from_args."""
    parser.add_argument(
        "--config", type=Path, default=run.DEFAULT_CONFIG,
        help=f"YAML config (default: {run.DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="SECTION.KEY=VALUE",
        action="extend",
        help="override config values, e.g. --set train.epochs=3 model.stride=2",
    )
    parser.add_argument("--out", help="output directory (= train.out)")
    parser.add_argument("--resume", help="auto, never or a checkpoint path (= train.resume)")
    parser.add_argument("--threads", help="torch CPU threads (= train.threads)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (= train.device)")
    parser.add_argument("--variant", help=f"ablation variant applied over the model keys: {sorted(VARIANTS)}")
    for section, cls in (("model", ModelConfig), ("data", run.DataConfig), ("train", run.TrainConfig)):
        group = parser.add_argument_group(f"{section} options")
        for f in dataclasses.fields(cls):
            group.add_argument(
                f"--{section}.{f.name}",
                dest=f"opt:{section}.{f.name}",
                metavar="V",
                default=None,
                help=_field_help(section, f),
            )
    return parser


def _parse_value(text: str, key: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise run.ConfigError(f"command line: cannot parse the value of {key}: {text!r}") from None


def config_from_args(args: argparse.Namespace) -> run.RunConfig:
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise run.ConfigError(f"command line: --set expects SECTION.KEY=VALUE, got {item!r}")
        overrides[key.strip()] = _parse_value(text, key)
    for name, text in vars(args).items():
        if name.startswith("opt:") and text is not None:
            overrides[name[4:]] = _parse_value(text, name[4:])
    for flag, key in (
        ("out", "train.out"),
        ("resume", "train.resume"),
        ("threads", "train.threads"),
        ("device", "train.device"),
        ("variant", "variant"),
    ):
        text = getattr(args, flag)
        if text is not None:
            overrides[key] = (
                text if flag in ("out", "resume", "variant", "device") else _parse_value(text, key)
            )
    return run.build_run_config(run.read_yaml(args.config), overrides, source=str(args.config))

