"""MyNet, the lecture's network: two conv blocks and one linear layer (41,866 parameters).

Usage: `logits = MyNet()(images)` with images of shape (B, 1, 28, 28).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


class MyNet(nn.Module):
    """conv 1→32 3×3 pad 1, act, max-pool 2; conv 32→64 3×3, act, max-pool 2; flatten; linear 2304→10."""

    def __init__(self, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, stride=1)
        self.fc1 = nn.Linear(64 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        # The lecture applies the activation, then pools. Every activation offered here is monotonic
        # non-decreasing, so max-pool commutes with it: pooling first computes the same values and gradients
        # and runs the elementwise op on 4x fewer numbers (it dominates the CPU step time otherwise).
        x = act(F.max_pool2d(self.conv1(x), 2))  # (B, 32, 14, 14)
        x = act(F.max_pool2d(self.conv2(x), 2))  # (B, 64, 6, 6)
        return self.fc1(x.flatten(1))  # (B, 10) logits

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The feature maps after each conv block (activation and pooling applied), for the explain views."""
        act = ACTIVATIONS[self.activation]
        f1 = act(F.max_pool2d(self.conv1(x), 2))
        f2 = act(F.max_pool2d(self.conv2(f1), 2))
        return f1, f2


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
