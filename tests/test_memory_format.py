"""train.memory_format auto lays the model out channels-last only on an x86-64 CPU and says so in one
line (a bad value in a config: tests/test_train.py::test_config_errors_name_the_key)."""

from __future__ import annotations

import pytest
import torch

from respike_neuro.config import ConfigError
from respike_neuro.devices import memory_format_for

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("device", "machine", "layout"),
    [
        (CPU, "x86_64", torch.channels_last),
        (CPU, "AMD64", torch.channels_last),
        (CPU, "aarch64", torch.contiguous_format),
        (CUDA, "x86_64", torch.contiguous_format),
    ],
)
def test_auto_is_channels_last_only_on_an_x86_cpu(device, machine, layout):
    lines = []
    assert memory_format_for("auto", device, machine=machine, log=lines.append) == layout
    assert len(lines) == (device.type == "cpu")
    if lines:
        assert lines[0].startswith("train.memory_format auto: ") and "\n" not in lines[0]


@pytest.mark.parametrize("device", [CPU, CUDA])
def test_explicit_choices_are_honoured_silently(device):
    lines = []
    pick = lambda choice, machine: memory_format_for(choice, device, machine=machine, log=lines.append)  # noqa: E731
    assert pick("channels_last", "aarch64") == torch.channels_last
    assert pick("contiguous", "x86_64") == torch.contiguous_format
    assert lines == []


def test_a_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="train.memory_format"):
        memory_format_for("nhwc", CPU)
