"""The generative recipes' quality on the full MNIST (slow: each recipe trains once per session; skipped when
../shared/data is absent), judged by the fast recipe's MyNet: vae NLL <= 92 nats, gan class fidelity >= 95 %,
cvae style transfer (ten digits in the style of a test digit, judged) >= 90 %. The README's goals are tighter
(vae <= 89, gan >= 97 %); these bounds leave room for another machine's roundings and seed."""

from __future__ import annotations

import pytest
import torch
from conftest import recipe_run, shared_mnist

from mnistcnn import checkpoint, data, kinds
from mnistcnn.generative import judge, sample
from mnistcnn.generative.evaluation import evaluate_checkpoint


@pytest.fixture
def full_root(monkeypatch):
    root = shared_mnist()
    if root is None:
        pytest.skip("full MNIST not found at ../shared/data")
    monkeypatch.delenv(data.ENV_SUMS, raising=False)
    return root


def test_vae_recipe_reaches_its_likelihood(tmp_path_factory, full_root):
    run, result = recipe_run(tmp_path_factory, "vae")
    # k = 50 gives a looser bound than the README's k = 200 (a higher NLL), on all 10,000 test images
    m = evaluate_checkpoint(run / "last.pt", full_root, "cpu", k=50, nll_images=10_000)
    assert m["nll"] <= 92.0, m
    assert m["nll"] < m["neg_elbo"] == pytest.approx(result["test_loss"], rel=1e-6)


def test_gan_recipe_draws_the_digits_asked_for(tmp_path_factory, fast_recipe_run, full_root):
    run, _ = recipe_run(tmp_path_factory, "gan")
    referee = judge.Judge.load(fast_recipe_run[0] / "last.pt")
    ckpt, module = checkpoint.load_model(run / "last.pt", needs=None)
    digits = sample.draw(kinds.of_checkpoint(ckpt), module, 10_000, seed=0)
    _, probs = referee.look(digits)
    fidelity = judge.accuracy(probs, sample.labels_for(10_000, None, "cpu"))
    assert fidelity >= 0.95


def test_cvae_recipe_writes_any_style_as_every_digit(tmp_path_factory, fast_recipe_run, full_root):
    run, _ = recipe_run(tmp_path_factory, "cvae")
    referee = judge.Judge.load(fast_recipe_run[0] / "last.pt")
    _, module = checkpoint.load_model(run / "last.pt", needs=None)
    images, _ = data.load_split(full_root, train=False)
    x = images[:1000].float().div(255).unsqueeze(1)
    z, _ = sample.style_of(module, x)
    ys = torch.arange(10).repeat_interleave(1000)
    with torch.inference_mode():
        digits = sample.to_uint8(torch.sigmoid(module.decode(z.repeat(10, 1), ys)))
    _, probs = referee.look(digits)
    assert judge.accuracy(probs, ys) >= 0.90
