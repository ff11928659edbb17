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

    def block(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """One conv block: convolution, then activation and max-pool 2.

        The lecture applies the activation, then pools. Every activation offered here is monotonic
        non-decreasing, so max-pool commutes with it: pooling first computes the same values and gradients and
        runs the elementwise op on 4x fewer numbers (it dominates the CPU step time otherwise)."""
        return ACTIVATIONS[self.activation](F.max_pool2d(conv(x), 2))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The feature maps after each conv block: (B, 32, 14, 14) and (B, 64, 6, 6)."""
        f1 = self.block(self.conv1, x)
        return f1, self.block(self.conv2, f1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.features(x)[1].flatten(1))  # (B, 2304) → (B, 10) logits


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
