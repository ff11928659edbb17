"""`mnistcnn eval` for the generative kinds: the test-set figures training recorded, a VAE's importance-weighted
NLL, and the judge's verdict (judge.report).

Usage: `m = evaluate_checkpoint("runs/vae/last.pt", judge="runs/mynet/last.pt", k=200)`.
"""

from __future__ import annotations

from mnistcnn.distributed import World

NLL_K = 200  # importance samples per image (Burda et al. report k = 5000; 200 is within ~0.1 nat of it here)


def evaluate_checkpoint(
    path,
    data_dir=None,
    device: str = "auto",
    judge=None,
    k: int = NLL_K,
    nll_images: int | None = None,
    log=lambda _: None,
    ckpt_model=None,
) -> dict:
    """Figures of one generative checkpoint on the verified test set: `loss` (and for a VAE `neg_elbo`, its
    `recon` and `kl`, and `nll` with `nll_k` samples on `nll_images` images), as train recorded them, plus the
    judge's (judge.report) when `judge` (a MyNet checkpoint path) is given."""
    from mnistcnn import checkpoint, data, kinds
    from mnistcnn.config import from_dict
    from mnistcnn.generative import judge as judging
    from mnistcnn.generative import tasks
    from mnistcnn.generative.tasks import eval_noise, iw_nll

    ckpt, module = ckpt_model or checkpoint.load_model(path, device, needs="latent", command="eval")
    kind = kinds.of_checkpoint(ckpt)
    referee = judging.Judge.load(judge, device) if judge is not None else None  # before the long work
    cfg = from_dict(ckpt["config"])
    root = data.resolve_data_dir(data_dir)
    images, labels = data.read_test_set(root, log)
    dev = next(module.parameters()).device
    x = data.to_device(images, dev, 0.0, 1.0)
    y = labels.to(dev)
    task = tasks.for_kind(kind, cfg, World.single())
    m = task.evaluate(module, x, y, cfg.eval_batch_size, World.single())
    out = {"kind": kind.name, "n": m["n"], "loss": m["loss"]}
    if kind.variational:
        out.update(neg_elbo=m["loss"], recon=m["recon"], kl=m["kl"])
        n = min(nll_images or len(x), len(x))
        log(f"importance-weighted NLL: k = {k} on {n:,} test images")
        xbin, _ = eval_noise(x, module.latent)
        nll = iw_nll(module, xbin[:n], y[:n] if kind.conditional else None, k)
        out.update(nll=float(nll.mean()), nll_k=k, nll_images=n)
    elif kind.family == "generator":
        out.update(d_real=m["d_real"], d_fake=m["d_fake"])
    if referee is not None:
        train_images, _ = data.load_split(root, train=True)
        out.update(
            judging.report(
                kind, module, referee, images.numpy(), labels.numpy(), train_images.numpy(), log=log
            )
        )
    return out
