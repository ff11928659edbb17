"""The generative networks: a convolutional autoencoder, a (conditional) VAE and a conditional GAN, at 28×28.

Usage: `AE(16)`, `VAE(32)`, `VAE(16, classes=10)` (cvae), `GAN(64)`. Inputs are pixels/255 in [0, 1], shape
(B, 1, 28, 28); decoders return logits (sigmoid → pixels). No BatchNorm anywhere: the same code trains under
torchrun DDP and resumes bit-exactly.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def _encoder(channels: int = 1) -> nn.Sequential:
    """28×28 → 32×14×14 → 64×7×7 → flat 3136."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten()
    )


def _decoder() -> nn.Sequential:
    """64×7×7 → 32×14×14 → 1×28×28 logits."""
    return nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))


def soft_labels(y: torch.Tensor, classes: int, dtype) -> torch.Tensor:
    """Digits (long, (B,)) as one-hot rows, or (B, classes) weights as they are (a blend of two digits)."""
    return y.to(dtype) if y.is_floating_point() else F.one_hot(y, classes).to(dtype)


class AE(nn.Module):
    """The lecture's autoencoder: conv encoder → z (latent) → conv decoder, trained to give back its input."""

    def __init__(self, latent: int = 16) -> None:
        super().__init__()
        self.latent, self.classes = latent, 0
        self.enc = _encoder()
        self.to_z = nn.Linear(3136, latent)
        self.from_z = nn.Linear(latent, 3136)
        self.dec = _decoder()

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.to_z(self.enc(x))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.dec(self.from_z(z).view(-1, 64, 7, 7))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x))


class VAE(nn.Module):
    """A convolutional VAE with a Bernoulli decoder; `classes=10` conditions both halves on the digit (cvae):
    z then holds the style and the label the digit."""

    def __init__(self, latent: int = 32, classes: int = 0) -> None:
        super().__init__()
        self.latent, self.classes = latent, classes
        self.enc = _encoder(1 + (1 if classes else 0))
        self.label_map = nn.Embedding(classes, 28 * 28) if classes else None
        self.head = nn.Linear(3136, 2 * latent)
        self.from_z = nn.Linear(latent + classes, 3136)
        self.dec = _decoder()

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | x[, y])."""
        if self.classes:
            x = torch.cat([x, self.label_map(y).view(-1, 1, 28, 28)], 1)
        mu, logvar = self.head(self.enc(x)).chunk(2, 1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of p(x | z[, y]); `y`: digits (long), or (B, 10) label weights to blend digits."""
        if self.classes:
            z = torch.cat([z, soft_labels(y, self.classes, z.dtype)], 1)
        return self.dec(self.from_z(z).view(-1, 64, 7, 7))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, eps: torch.Tensor | None = None):
        """(logits, mu, logvar); `eps` the reparameterisation noise (zero: decode the mean)."""
        mu, logvar = self.encode(x, y)
        z = mu if eps is None else mu + eps * (0.5 * logvar).exp()
        return self.decode(z, y), mu, logvar


class Generator(nn.Module):
    def __init__(self, latent: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(classes, latent)
        self.fc = nn.Linear(2 * latent, 128 * 7 * 7)
        self.up = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 1, 4, 2, 1)
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1], (B, 1, 28, 28)."""
        e = soft_labels(y, self.embed.num_embeddings, z.dtype) @ self.embed.weight if y.is_floating_point() else self.embed(y)
        return torch.sigmoid(self.up(self.fc(torch.cat([z, e], 1)).view(-1, 128, 7, 7)))


class Discriminator(nn.Module):
    """Spectral-normalised conv net with two heads: real/fake (one logit) and the digit (ten, AC-GAN)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.body = nn.Sequential(
            sn(nn.Conv2d(1, 64, 4, 2, 1)), nn.LeakyReLU(0.2), sn(nn.Conv2d(64, 128, 4, 2, 1)), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.adv = sn(nn.Linear(128 * 7 * 7, 1))
        self.cls = nn.Linear(128 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x * 2 - 1)
        return self.adv(h).squeeze(1), self.cls(h)


class GAN(nn.Module):
    """A conditional GAN: generator `g`, discriminator `d` and `g_ema`, the moving average of g that samples."""

    def __init__(self, latent: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.latent, self.classes = latent, classes
        self.g = Generator(latent, classes)
        self.d = Discriminator(classes)
        self.g_ema = copy.deepcopy(self.g).requires_grad_(False)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        was = self.g_ema.training
        self.g_ema.eval()
        out = self.g_ema(z, y)
        self.g_ema.train(was)
        return out

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for e, p in zip(self.g_ema.parameters(), self.g.parameters()):
            e.lerp_(p, 1 - decay)
