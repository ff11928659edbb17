"""Model kinds: the one registry that builds any kind, says what its checkpoint holds and how it trains.

Usage: `kind = kinds.get("vae")`; `args = kind.args_of(cfg_dict)`; `module = kind.build(args)`;
`task = generative.tasks.for_kind(kind, cfg, world)` (the Trainer's per-kind seam: the step, the metrics, the
score; this module stays free of it, so the checkpoint code that builds models never imports the training code).

A checkpoint stores `kind` and `model_args`; its schema is the built module's own state_dict (schema.py builds
it on the meta device). Adding a kind = its networks, its task and one line in KINDS.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from mnistcnn.errors import MnistcnnError

NAMES = ("mynet", "ae", "vae", "cvae", "gan")


@dataclass(frozen=True)
class Kind:
    name: str
    what: str  # one line, for errors and `summary --model`
    family: str  # "classifier", "autoencoder" (ae, vae, cvae) or "generator" (gan)
    conditional: bool = False  # takes a digit: generate --digit, --style
    variational: bool = False  # has a prior to sample from, an ELBO and an NLL
    default_latent: int | None = None

    @property
    def samples(self) -> bool:
        """Draws new digits (mnistcnn generate): every kind but MyNet and the plain autoencoder."""
        return self.variational or self.family == "generator"

    def args_of(self, config: dict) -> dict:
        """The constructor arguments a config asks for (a checkpoint stores them as model_args)."""
        if self.name == "mynet":
            return {"activation": config.get("activation", "relu")}
        latent = config.get("latent") or self.default_latent
        return {"latent": latent, **({"classes": 10} if self.conditional else {})}

    def build(self, args: dict):
        """A fresh module of this kind (weights drawn from torch's global RNG)."""
        from mnistcnn.generative import nets
        from mnistcnn.model import MyNet

        make = {"mynet": MyNet, "ae": nets.AE, "vae": nets.VAE, "cvae": nets.VAE, "gan": nets.GAN}[self.name]
        return make(**args)

    def param_groups(self, module, cfg=None) -> list[dict]:
        """The optimizer's parameter groups: one for every kind but the GAN (generator, then discriminator, whose
        LR is the generator's × cfg.d_lr_ratio: stepper.set_lr applies `lr_ratio`)."""
        if self.name == "gan":
            ratio = cfg.d_lr_ratio if cfg is not None else 1.0
            d = {"params": list(module.d.parameters()), "lr_ratio": ratio}
            return [{"params": list(module.g.parameters())}, d]
        return [{"params": list(module.parameters())}]


KINDS = {
    k.name: k
    for k in (
        Kind("mynet", "MyNet, the lecture's classifier", "classifier"),
        Kind("ae", "a convolutional autoencoder", "autoencoder", default_latent=16),
        Kind("vae", "a convolutional VAE", "autoencoder", variational=True, default_latent=32),
        Kind(
            "cvae", "a conditional VAE", "autoencoder", conditional=True, variational=True, default_latent=16
        ),
        Kind("gan", "a conditional GAN", "generator", conditional=True, default_latent=64),
    )
}


def get(name) -> Kind:
    if name not in KINDS:
        raise MnistcnnError(f"unknown model kind {name!r}; the kinds: {', '.join(NAMES)}")
    return KINDS[name]


def of_checkpoint(ckpt: dict) -> Kind:
    """The kind a checkpoint holds (checkpoints before 0.5 hold MyNet and say nothing)."""
    return KINDS[ckpt.get("kind", "mynet")]


def require(ckpt: dict, path, needs: str, command: str) -> Kind:
    """The checkpoint's kind when it is one `command` can use (`needs`: "mynet", "autoencoder" — ae, vae,
    cvae —, "samples" — vae, cvae, gan —, "conditional"), else one MnistcnnError naming both."""
    kind = of_checkpoint(ckpt)
    fits = {
        "mynet": kind.name == "mynet",
        "autoencoder": kind.family == "autoencoder",
        "samples": kind.samples,
        "conditional": kind.conditional,
        "latent": kind.name != "mynet",
    }[needs]
    if not fits:
        wanted = {
            "mynet": "a MyNet classifier checkpoint (mnistcnn train)",
            "autoencoder": "an ae, vae or cvae checkpoint (mnistcnn train --model vae)",
            "samples": "a vae, cvae or gan checkpoint (mnistcnn train --model gan)",
            "conditional": "a cvae or gan checkpoint (they take a digit)",
            "latent": "an ae, vae, cvae or gan checkpoint",
        }[needs]
        from mnistcnn.safeio import shown

        raise MnistcnnError(f"{shown(path)} holds {kind.what} ({kind.name}); {command} needs {wanted}")
    return kind


@functools.lru_cache(maxsize=16)
def _meta_shapes(name: str, args_json: str) -> tuple[dict, list[list[tuple]]]:
    import torch

    kind = KINDS[name]
    with torch.device("meta"):
        module = kind.build(json.loads(args_json))
    state = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    groups = [[tuple(p.shape) for p in g["params"]] for g in kind.param_groups(module)]
    return state, groups


def expected_shapes(name: str, args: dict) -> tuple[dict, list[list[tuple]]]:
    """(state_dict name → shape, per optimizer group the parameter shapes) of a kind built with `args`."""
    return _meta_shapes(name, json.dumps(args, sort_keys=True))
