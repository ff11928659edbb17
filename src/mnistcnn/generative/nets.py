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


class _Encoder(nn.Module):
    """28×28 → conv 4×4/2 (14×14) → conv 4×4/2 (7×7) → flatten → [one-hot digit] → hidden."""

    def __init__(self, width: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.ReLU(), nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(), nn.Flatten()
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
