"""Configuration in one place: the model (`model.py`), the run's data/train sections and their YAML
loading (`run.py`), and the command-line flags generated from the fields (`cli.py`).

Everything is importable from `respike_neuro.config`; the submodules only keep each part short.
"""

from respike_neuro.config.cli import add_config_arguments, config_from_args
from respike_neuro.config.model import ARCHITECTURES, INPUTS, VARIANTS, ModelConfig, small
from respike_neuro.config.run import (
    DEFAULT_CONFIG,
    MODEL_HELP,
    SECTIONS,
    ConfigError,
    DataConfig,
    RunConfig,
    TrainConfig,
    build_run_config,
    read_yaml,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_CONFIG",
    "INPUTS",
    "MODEL_HELP",
    "SECTIONS",
    "VARIANTS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "add_config_arguments",
    "build_run_config",
    "config_from_args",
    "read_yaml",
    "small",
]
