"""ANN branch: a torchvision ResNet cut into a stem and four stages (a backbone is a name).

ImageNet weights are never downloaded at run time: `weights` names a local file, or "imagenet"
to take torchvision's file from the torch hub cache if it is already there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

ANN_BACKBONES: dict[str, Callable[..., torchvision.models.ResNet]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
    "resnet152": torchvision.models.resnet152,
}
_IMAGENET = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V1,
    "resnet152": torchvision.models.ResNet152_Weights.IMAGENET1K_V1,
}


def _load_imagenet_state(name: str, weights: str) -> dict[str, torch.Tensor]:
    if weights == "imagenet":
        url = _IMAGENET[name].url
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if not path.is_file():
            raise FileNotFoundError(
                f"ImageNet weights for {name} are not in the torch hub cache ({path}). Nothing is "
                f"downloaded at run time: fetch {url} on a connected machine and copy it there, or pass "
                f"the file's path as ann_weights."
            )
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"ann_weights file {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"ann_weights file {path} does not hold a state dict")
    return state


class ResNetStages(nn.Module):
    """stem (conv-bn-relu-maxpool) + layer1..layer4; forward returns the four stage outputs."""

    def __init__(self, name: str = "resnet18", *, weights: str | None = None) -> None:
        super().__init__()
        if name not in ANN_BACKBONES:
            raise ValueError(f"unknown ANN backbone {name!r}; available: {sorted(ANN_BACKBONES)}")
        net = ANN_BACKBONES[name](weights=None)
        if weights is not None:
            state = _load_imagenet_state(name, weights)
            missing, unexpected = net.load_state_dict(state, strict=False)
            if [k for k in missing if not k.startswith("fc.")] or unexpected:
                raise ValueError(
                    f"ann_weights do not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
                )
        self.name = name
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = tuple(_stage_channels(stage) for stage in self.stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _stage_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
