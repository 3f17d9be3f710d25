"""A tiny timm-shaped CNN for the CAM tests (support module: test_cam and test_camshard's torchrun workers)."""
from __future__ import annotations

import torch


class TinyNet(torch.nn.Module):
    """A timm-shaped tiny CNN (forward_features -> 4-D map), cheap enough for Score-CAM in tests."""

    def __init__(self, seed: int, num_classes: int = 5) -> None:
        super().__init__()
        self.num_classes = num_classes
        torch.manual_seed(seed)
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, 2, 1), torch.nn.ReLU())
        self.stage = torch.nn.Sequential(torch.nn.Conv2d(6, 10, 3, 2, 1), torch.nn.ReLU())
        self.head = torch.nn.Linear(10, num_classes)

    def forward_features(self, x):
        return self.stage(self.stem(x))

    def forward(self, x):
        return self.head(self.forward_features(x).mean((2, 3)))


TINY_CFG = dict(input_size=(3, 32, 32), crop_pct=0.875, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)


def load_tiny(name: str, fold: int, k: int = 5) -> tuple[TinyNet, dict]:
    """The CAM stage's ``load_model``: a TinyNet seeded by model name and fold, and its data config."""
    return TinyNet(seed=sum(map(ord, name)) * 10 + fold + 1, num_classes=k).eval(), dict(TINY_CFG)
