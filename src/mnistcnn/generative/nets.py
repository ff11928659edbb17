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


def soft_labels(y: torch.Tensor, classes: int, dtype) -> torch.Tensor:
    """Digits (long, (B,)) as one-hot rows, or (B, classes) weights as they are (a blend of two digits)."""
    return y.to(dtype) if y.is_floating_point() else F.one_hot(y, classes).to(dtype)


class _Encoder(nn.Module):
    """28×28 → conv 4×4/2 (14×14) → conv 4×4/2 (7×7) → flatten → [one-hot digit] → hidden."""

    def __init__(self, width: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(2 * width * 49 + classes, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.conv(x)
        if self.classes:
            h = torch.cat([h, F.one_hot(y, self.classes).to(h.dtype)], 1)
        return self.fc(h)


class _Decoder(nn.Module):
    """[z, digit] → hidden → 7×7 map → convT 4×4/2 (14×14) → convT 4×4/2 (28×28) logits + a per-pixel bias
    (started at the logit of the mean training image: the first steps already draw the average digit)."""

    def __init__(self, latent: int, width: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.classes, self.width = classes, width
        self.fc = nn.Sequential(
            nn.Linear(latent + classes, hidden), nn.ReLU(), nn.Linear(hidden, 2 * width * 49), nn.ReLU()
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(width, 1, 4, 2, 1)
        )
        self.pixel_bias = nn.Parameter(torch.zeros(1, 1, 28, 28))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.classes:
            z = torch.cat([z, soft_labels(y, self.classes, z.dtype)], 1)
        return self.deconv(self.fc(z).view(-1, 2 * self.width, 7, 7)) + self.pixel_bias


class _Autoencoder(nn.Module):
    latent: int
    classes: int

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """Start the output bias at the logit of the training images' mean (pixels in [0, 1])."""
        p = x.float().mean(0, keepdim=True).clamp(1e-3, 1 - 1e-3).reshape(1, 1, 28, 28)
        self.dec.pixel_bias.copy_(torch.log(p) - torch.log1p(-p))


class AE(_Autoencoder):
    """The lecture's autoencoder: a conv encoder → z (latent) → a conv decoder, trained to give back its input."""

    def __init__(self, latent: int = 16, width: int = 16, hidden: int = 256) -> None:
        super().__init__()
        self.latent, self.classes = latent, 0
        self.enc = _Encoder(width, hidden, 0)
        self.head = nn.Linear(hidden, latent)
        self.dec = _Decoder(latent, width, hidden, 0)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.enc(x, None))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.dec(z, None)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x))


class VAE(_Autoencoder):
    """A convolutional VAE with a Bernoulli decoder (logits); `classes=10` conditions both halves on the digit
    (cvae): z then holds the style and the label the digit."""

    def __init__(self, latent: int = 32, classes: int = 0, width: int = 16, hidden: int = 256) -> None:
        super().__init__()
        self.latent, self.classes = latent, classes
        self.enc = _Encoder(width, hidden, classes)
        self.head = nn.Linear(hidden, 2 * latent)
        self.dec = _Decoder(latent, width, hidden, classes)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | x[, y])."""
        mu, logvar = self.head(self.enc(x, y)).chunk(2, 1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of p(x | z[, y]); `y`: digits (long), or (B, 10) label weights to blend digits."""
        return self.dec(z, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, eps: torch.Tensor | None = None):
        """(logits, mu, logvar); `eps` the reparameterisation noise (None: decode the mean)."""
        mu, logvar = self.encode(x, y)
        z = mu if eps is None else mu + eps * (0.5 * logvar).exp()
        return self.decode(z, y), mu, logvar


class Generator(nn.Module):
    """[z, embed(digit)] → linear → 64×7×7 → convT 4×4/2 (32×14×14) → convT 4×4/2 → sigmoid: pixels in [0, 1].
    No normalisation layers (BatchNorm collapsed each digit to one look in the tuning: FD 237 vs 74)."""

    def __init__(self, latent: int, classes: int, width: int = 64, emb: int = 32) -> None:
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(classes, emb)
        self.fc = nn.Linear(latent + emb, width * 7 * 7)
        self.up1 = nn.ConvTranspose2d(width, width // 2, 4, 2, 1)
        self.up2 = nn.ConvTranspose2d(width // 2, 1, 4, 2, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """`y`: digits (long), or (B, 10) weights blending the digits' embeddings (interpolation)."""
        e = (
            soft_labels(y, self.embed.num_embeddings, z.dtype) @ self.embed.weight
            if y.is_floating_point()
            else self.embed(y)
        )
        h = self.fc(torch.cat([z, e], 1)).view(-1, self.width, 7, 7)
        return torch.sigmoid(self.up2(F.relu(self.up1(F.relu(h)))))


class Discriminator(nn.Module):
    """Spectral norm on every layer, LeakyReLU 0.2, no BatchNorm (DDP). Two heads: real/fake given the digit
    (a projection discriminator) and the digit itself (10 logits, AC-GAN)."""

    def __init__(self, classes: int, width: int = 32) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.c1 = sn(nn.Conv2d(1, width, 4, 2, 1))
        self.c2 = sn(nn.Conv2d(width, 2 * width, 4, 2, 1))
        feat = 2 * width * 7 * 7
        self.adv = sn(nn.Linear(feat, 1))
        self.proj = sn(nn.Embedding(classes, feat))
        self.cls = sn(nn.Linear(feat, classes))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(real/fake score (B,), digit logits (B, 10)) of images in [0, 1] said to show digits y."""
        h = F.leaky_relu(self.c1(x * 2 - 1), 0.2)
        h = F.leaky_relu(self.c2(h), 0.2).flatten(1)
        return self.adv(h).squeeze(1) + (self.proj(y) * h).sum(1), self.cls(h)


class GAN(nn.Module):
    """A conditional GAN: generator `g`, discriminator `d` and `g_ema`, the moving average of g that samples."""

    AC_WEIGHT = (
        8.0  # the generator's digit loss: 1 or 3 gave 93-95 % class fidelity in the tuning, 8 gave 98 %
    )

    def __init__(self, latent: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.latent, self.classes = latent, classes
        self.g = Generator(latent, classes)
        self.d = Discriminator(classes)
        self.g_ema = copy.deepcopy(self.g).requires_grad_(False)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.g_ema.eval()
        return self.g_ema(z, y)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for e, p in zip(self.g_ema.parameters(), self.g.parameters()):
            e.lerp_(p, 1 - decay)
