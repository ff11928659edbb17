"""Each kind's training step and evaluation: the Trainer's per-kind seam.

Usage: `task = for_kind(kinds.get("vae"), cfg, world)`; the Stepper calls `task.train_on(stepper, xb, yb, scale, step)`
for every step (MyNet's step stays the Stepper's own, CUDA-graph-captured); the Trainer calls
`task.evaluate(module, x, y, batch_size, world)`, `task.epoch_fields(...)` and `task.record(prefix, metrics)`.

Randomness: a step's noise (binarization, reparameterisation, GAN latents) comes from a generator seeded by
(seed, step), so exact resume still needs no RNG state. Under torchrun every rank draws the global batch's noise
and takes its own rows: the data-parallel run sees the noise one process would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnistcnn.distributed import World
from mnistcnn.engine import autocast

EVAL_SEED = 12345  # the test set is binarized once, the same way for every evaluation


def step_generator(seed: int, step: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + step) % 2**63)


class Noise:
    """The step's random numbers, drawn for the whole global batch; this rank keeps its rows."""

    def __init__(self, seed: int, step: int, n_local: int, world: World, scale, device) -> None:
        self.gen, self.world, self.device = step_generator(seed, step, device), world, device
        # scale = world size / global batch under torchrun (Stepper's rule), so the global batch is size / scale
        self.n = round(world.size / scale) if world.distributed and scale else n_local

    def _mine(self, t: torch.Tensor) -> torch.Tensor:
        return self.world.shard(t) if self.world.distributed else t

    def randn(self, *shape) -> torch.Tensor:
        return self._mine(torch.randn((self.n, *shape), generator=self.gen, device=self.device))

    def rand(self, *shape) -> torch.Tensor:
        return self._mine(torch.rand((self.n, *shape), generator=self.gen, device=self.device))

    def randint(self, high: int) -> torch.Tensor:
        return self._mine(torch.randint(0, high, (self.n,), generator=self.gen, device=self.device))


def binarize(x: torch.Tensor, noise_u: torch.Tensor) -> torch.Tensor:
    """Bernoulli(x) from uniform noise of x's shape: dynamically binarized MNIST."""
    return (noise_u < x).to(x.dtype)


def bce_per_image(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (
        F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none").flatten(1).sum(1)
    )


def kl_per_image(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)


def _count(n: int, device) -> torch.Tensor:
    return torch.tensor(float(n), dtype=torch.float64, device=device)


def _reduce(per_image: torch.Tensor, scale) -> torch.Tensor:
    return per_image.mean() if scale is None else per_image.sum() * scale


def backward_step(stepper, loss: torch.Tensor) -> None:
    opt = stepper.optimizer
    opt.zero_grad(set_to_none=True)
    if stepper.scaler is not None:
        stepper.scaler.scale(loss).backward()
        stepper.scaler.step(opt)
        stepper.scaler.update()
    else:
        loss.backward()
        opt.step()


class Task:
    """The classifier's task (MyNet): the Stepper's built-in step; cross-entropy and accuracy."""

    batch_keys: tuple[str, ...] = ("loss",)  # per-step losses in the batch records
    stat_keys: tuple[str, ...] = ("correct",)  # per-epoch sums
    higher_is_better = True  # the score of the best checkpoint: val accuracy

    def __init__(self, kind, cfg, world: World) -> None:
        self.kind, self.cfg, self.world = kind, cfg, world
        self.seed = cfg.seed

    def wrap(self, module, forward):
        """What the Stepper calls: the (compiled, DDP-wrapped) module."""
        return forward

    train_on = None  # the Stepper's own step

    def evaluate(self, module, x, y, batch_size: int, world: World) -> dict:
        from mnistcnn.evaluate import evaluate

        return evaluate(module, x, y, batch_size, "fp32", world)

    def epoch_fields(self, sums: list[float], n: int) -> dict:
        return {"train_acc": sums[0] / n}

    def record(self, prefix: str, m: dict) -> dict:
        out = {f"{prefix}_loss": m["loss"], f"{prefix}_acc": m["accuracy"]}
        if prefix == "test":
            out.update(per_class=m["per_class"], n=m["n"])
        return out

    def score(self, record: dict, epoch: int) -> float:
        """Higher is better: the validation accuracy, or the epoch when there is no validation split."""
        return record.get("val_acc", epoch)


class AutoencoderTask(Task):
    """ae: BCE between the grey input and its reconstruction's logits, summed per image (nats)."""

    stat_keys = ()
    higher_is_better = False

    def train_on(self, stepper, xb, yb, scale, step: int):
        with autocast(stepper.device, stepper.precision):
            logits = stepper.model(xb)
        loss = _reduce(bce_per_image(logits, xb), scale)
        backward_step(stepper, loss)
        return loss.detach().float(), torch.zeros(0, device=xb.device)

    @torch.inference_mode()
    def evaluate(self, module, x, y, batch_size: int, world: World) -> dict:
        was = module.training
        module.eval()
        if world.distributed:
            x = world.shard(x)
        total = torch.zeros(2, dtype=torch.float64, device=x.device)
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            total += torch.stack([bce_per_image(module(xb), xb).sum().double(), _count(len(xb), x.device)])
        module.train(was)
        world.all_reduce_(total)
        total = total.cpu()
        return {"loss": float(total[0] / total[1]), "n": int(total[1])}

    def epoch_fields(self, sums, n) -> dict:
        return {}

    def record(self, prefix: str, m: dict) -> dict:
        return {f"{prefix}_loss": m["loss"], **({"n": m["n"]} if prefix == "test" else {})}

    def score(self, record: dict, epoch: int) -> float:
        return -record["val_loss"] if "val_loss" in record else epoch


class VAETask(AutoencoderTask):
    """vae, cvae: the negative ELBO on dynamically binarized MNIST (Bernoulli decoder), nats per image."""

    stat_keys = ("recon", "kl")

    def train_on(self, stepper, xb, yb, scale, step: int):
        module = stepper.model
        noise = Noise(self.seed, step, len(xb), self.world, scale, xb.device)
        xbin = binarize(xb, noise.rand(*xb.shape[1:]))
        eps = noise.randn(self.kind_latent(module))
        y = yb if self.kind.conditional else None
        with autocast(stepper.device, stepper.precision):
            logits, mu, logvar = module(xbin, y, eps)
        rec, kl = bce_per_image(logits, xbin), kl_per_image(mu, logvar)
        loss = _reduce(rec + kl, scale)
        backward_step(stepper, loss)
        return loss.detach().float(), torch.stack([rec.sum(), kl.sum()]).detach()

    def kind_latent(self, module) -> int:
        inner = getattr(module, "module", module)  # DDP
        inner = getattr(inner, "_orig_mod", inner)  # torch.compile
        return inner.latent

    @torch.inference_mode()
    def evaluate(self, module, x, y, batch_size: int, world: World) -> dict:
        """neg_elbo (one fixed draw of z per image), its reconstruction and KL parts, on the set binarized once."""
        xbin, eps = eval_noise(x, module.latent)
        y = y if self.kind.conditional else None
        was = module.training
        module.eval()
        if world.distributed:
            xbin, eps = world.shard(xbin), world.shard(eps)
            y = world.shard(y) if y is not None else None
        total = torch.zeros(3, dtype=torch.float64, device=x.device)
        for i in range(0, len(xbin), batch_size):
            sl = slice(i, i + batch_size)
            logits, mu, logvar = module(xbin[sl], None if y is None else y[sl], eps[sl])
            rec, kl = bce_per_image(logits, xbin[sl]), kl_per_image(mu, logvar)
            total += torch.stack([rec.sum().double(), kl.sum().double(), _count(len(rec), x.device)])
        module.train(was)
        world.all_reduce_(total)
        rec, kl, n = total.cpu().tolist()
        return {"loss": (rec + kl) / n, "recon": rec / n, "kl": kl / n, "n": int(n)}

    def epoch_fields(self, sums, n) -> dict:
        return {"train_recon": sums[0] / n, "train_kl": sums[1] / n}

    def record(self, prefix: str, m: dict) -> dict:
        out = {f"{prefix}_loss": m["loss"], f"{prefix}_recon": m["recon"], f"{prefix}_kl": m["kl"]}
        return {**out, **({"n": m["n"]} if prefix == "test" else {})}


def eval_noise(x: torch.Tensor, latent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation's fixed binarization of the whole set and one fixed z-noise per image."""
    gen = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
    xbin = binarize(x, torch.rand(x.shape, generator=gen, device=x.device))
    return xbin, torch.randn((len(x), latent), generator=gen, device=x.device)


@torch.inference_mode()
def iw_nll(
    module, xbin: torch.Tensor, y, k: int, batch_size: int = 100, seed: int = EVAL_SEED
) -> torch.Tensor:
    """-log p(x) per image (nats) by importance sampling with k draws from q(z|x) (Burda et al.)."""
    module.eval()
    gen = torch.Generator(device=xbin.device).manual_seed(seed + 1)
    out = []
    log2pi = math.log(2 * math.pi)
    for i in range(0, len(xbin), batch_size):
        xb = xbin[i : i + batch_size]
        yb = None if y is None else y[i : i + batch_size]
        mu, logvar = module.encode(xb, yb)
        b, d = mu.shape
        eps = torch.randn((k, b, d), generator=gen, device=xb.device)
        z = mu + eps * (0.5 * logvar).exp()  # (k, b, d)
        logits = module.decode(z.reshape(k * b, d), None if yb is None else yb.repeat(k))
        log_px = -bce_per_image(logits, xb.repeat(k, 1, 1, 1)).view(k, b)
        log_pz = -0.5 * (z.square() + log2pi).sum(2)
        log_qz = -0.5 * (eps.square() + log2pi + logvar).sum(2)
        out.append(-(torch.logsumexp(log_px + log_pz - log_qz, 0) - math.log(k)))
    return torch.cat(out)


class GANTask(Task):
    """gan: one discriminator step then one generator step (hinge loss + AC-GAN digit heads), then the
    moving average of the generator. One Adam holds both as two groups: a step whose other half has no
    gradients (None) leaves that half alone. Batch records carry the D loss (`loss`) and the G loss."""

    batch_keys = ("loss", "g_loss")
    stat_keys = ()
    higher_is_better = False

    def wrap(self, module, forward):
        from mnistcnn import distributed

        device = next(module.parameters()).device
        self.g = distributed.wrap(module.g, self.world, device)
        self.d = distributed.wrap(module.d, self.world, device)
        self.gan = module
        return module

    def train_on(self, stepper, xb, yb, scale, step: int):
        """Hinge loss; D also learns the digits of real images (AC), G is pushed towards the asked digit (× 8).
        Fakes are of uniformly drawn digits, from fresh noise for each half of the step."""
        gan, opt = self.gan, stepper.optimizer
        noise = Noise(self.seed, step, len(xb), self.world, scale, xb.device)
        n = len(xb)
        z, yf = noise.randn(gan.latent), noise.randint(gan.classes)
        with torch.no_grad(), autocast(stepper.device, stepper.precision):
            fake = gan.g(z, yf)  # no gradient: the D step leaves G's grads None, so Adam skips G
        with autocast(stepper.device, stepper.precision):
            score, cls = self.d(torch.cat([xb, fake]), torch.cat([yb, yf]))
        score, cls = score.float(), cls.float()
        d_loss = F.relu(1 - score[:n]).mean() + F.relu(1 + score[n:]).mean() + F.cross_entropy(cls[:n], yb)
        backward_step(stepper, d_loss)
        z, yf = noise.randn(gan.latent), noise.randint(gan.classes)
        with autocast(stepper.device, stepper.precision):
            score, cls = self.d(self.g(z, yf), yf)
        g_loss = -score.float().mean() + gan.AC_WEIGHT * F.cross_entropy(cls.float(), yf)
        opt.zero_grad(set_to_none=True)
        g_loss.backward()
        for p in gan.d.parameters():
            p.grad = None  # the G step moves G only
        opt.step()
        gan.update_ema(self.cfg.ema)
        return torch.stack([d_loss, g_loss]).detach(), torch.zeros(0, device=xb.device)

    @torch.inference_mode()
    def evaluate(self, module, x, y, batch_size: int, world: World) -> dict:
        """The discriminator on the set (how real it finds held-out digits: sigmoid of its score) and on as many
        EMA samples of the same digits; `loss`: its hinge loss on both."""
        gen = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
        z = torch.randn((len(x), module.latent), generator=gen, device=x.device)
        if world.distributed:
            x, y, z = world.shard(x), world.shard(y), world.shard(z)
        was = module.training
        module.eval()
        total = torch.zeros(4, dtype=torch.float64, device=x.device)
        for i in range(0, len(x), batch_size):
            sl = slice(i, i + batch_size)
            real, _ = module.d(x[sl], y[sl])
            fake, _ = module.d(module.g_ema(z[sl], y[sl]), y[sl])
            total += torch.stack(
                [
                    (F.relu(1 - real).sum() + F.relu(1 + fake).sum()).double(),
                    torch.sigmoid(real).sum().double(),
                    torch.sigmoid(fake).sum().double(),
                    _count(len(real), x.device),
                ]
            )
        module.train(was)
        world.all_reduce_(total)
        loss, real, fake, n = total.cpu().tolist()
        return {"loss": loss / n, "d_real": real / n, "d_fake": fake / n, "n": int(n)}

    def epoch_fields(self, sums, n) -> dict:
        return {}

    def record(self, prefix: str, m: dict) -> dict:
        out = {f"{prefix}_loss": m["loss"], f"{prefix}_d_real": m["d_real"], f"{prefix}_d_fake": m["d_fake"]}
        return {**out, **({"n": m["n"]} if prefix == "test" else {})}

    def score(self, record: dict, epoch: int) -> float:
        return epoch  # no held-out loss says which generator is best: the newest


def for_kind(kind, cfg, world: World) -> Task:
    return {"mynet": Task, "ae": AutoencoderTask, "vae": VAETask, "cvae": VAETask, "gan": GANTask}[kind.name](
        kind, cfg, world
    )
