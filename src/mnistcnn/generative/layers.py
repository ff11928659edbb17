"""`mnistcnn summary --model KIND` for the generative kinds: each network's layers, output shapes, parameters.

Usage: `for part, rows, total in layers(kind, module): ...` with rows (layer, output shape, parameters).
"""

from __future__ import annotations

import torch
from torch import nn

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding, nn.ReLU, nn.LeakyReLU, nn.Flatten)


def _describe(name: str, m: nn.Module) -> str:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        k, s = m.kernel_size[0], m.stride[0]
        what = "convT" if isinstance(m, nn.ConvTranspose2d) else "conv"
        sn = " (spectral norm)" if hasattr(m, "parametrizations") else ""
        return f"{name}: {what} {k}×{k} /{s}, {m.in_channels}→{m.out_channels}{sn}"
    if isinstance(m, nn.Linear):
        sn = " (spectral norm)" if hasattr(m, "parametrizations") else ""
        return f"{name}: linear {m.in_features}→{m.out_features}{sn}"
    if isinstance(m, nn.Embedding):
        return f"{name}: embedding {m.num_embeddings}×{m.embedding_dim}"
    return f"{name}: {type(m).__name__.lower()}"


@torch.no_grad()
def _trace(net: nn.Module, run) -> list[tuple[str, tuple, int]]:
    rows, hooks = [], []
    for name, m in net.named_modules():
        if isinstance(m, LAYERS):
            params = sum(p.numel() for p in m.parameters())
            hooks.append(
                m.register_forward_hook(
                    lambda mod, i, o, n=name, p=params: rows.append(
                        (_describe(n, mod), tuple(o.shape[1:]), p)
                    )
                )
            )
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return rows


def layers(kind, module) -> list[tuple[str, list, int]]:
    """(part, rows, its parameters) per network: the autoencoders' one, the GAN's generator and discriminator."""
    module.eval()
    x = torch.zeros(1, 1, 28, 28)
    y = torch.zeros(1, dtype=torch.long)
    z = torch.zeros(1, module.latent)
    total = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    if kind.family == "generator":
        return [
            (
                f"generator (z: {module.latent} + digit → 28×28)",
                _trace(module.g, lambda: module.g(z, y)),
                total(module.g),
            ),
            (
                "discriminator (28×28 → real/fake + digit)",
                _trace(module.d, lambda: module.d(x, y)),
                total(module.d),
            ),
        ]

    def run():
        return module(x, y if kind.conditional else None, z) if kind.variational else module(x)

    what = f"encoder → z ({module.latent}{' + digit' if kind.conditional else ''}) → decoder"
    return [(what, _trace(module, run), total(module))]
