"""The generative kinds (ae, vae, cvae, gan): training on the fixture, their checkpoints and schema, exact resume,
`generate`, `eval` with the MyNet judge, the pictures, `summary --model`, and the judge's Fréchet distance."""

from __future__ import annotations

import json
import shlex
import signal

import numpy as np
import pytest
import torch
from test_resume import batch_steps, cli, interrupt_at, weights_hash
from typer.testing import CliRunner

from mnistcnn import checkpoint, kinds, rundir
from mnistcnn.cli import app
from mnistcnn.errors import CheckpointError
from mnistcnn.generative import judge, sample, tasks

KINDS = ("ae", "vae", "cvae", "gan")
PHOTO = "tests/data/photos/single-000.jpg"  # a phone photo of a 3 on paper
runner = CliRunner()


@pytest.fixture(scope="session")
def runs(train_run, tmp_path_factory):
    """One tiny run of each kind (and a MyNet judge) on the fixture: 2 epochs of 8 batches, a validation split."""
    base = tmp_path_factory.mktemp("generative")
    made = {"mynet": train_run(base / "judge", epochs=1, batch_size=64)}
    for kind in KINDS:
        made[kind] = train_run(
            base / kind, model=kind, epochs=2, batch_size=32, train_limit=256, val_split=200
        )
    return made


def invoke(*args, cwd=None):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_writes_a_whole_run_folder(runs, kind):
    run = runs[kind]
    for name in ("config.json", "env.json", "metrics.jsonl", "last.pt", "best.pt", "loss.png"):
        assert (run / name).is_file(), name
    ckpt = checkpoint.load(run / "last.pt", resume=True)
    assert ckpt["kind"] == kind and ckpt["model_args"] == kinds.get(kind).args_of(ckpt["config"])
    records, skipped = rundir.read_metrics(run / "metrics.jsonl")
    assert skipped == 0
    batches = [r for r in records if r["type"] == "batch"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(batches) == 16 and [r["epoch"] for r in epochs] == [1, 2]
    assert all("val_loss" in r for r in epochs) and records[-1]["type"] == "test"
    if kind == "gan":
        assert all("g_loss" in b for b in batches) and "train_g_loss" in epochs[0]
        assert sorted(p.name for p in (run / "progress").iterdir()) == ["epoch-001.png", "epoch-002.png"]
    if kinds.get(kind).variational:
        assert records[-1]["test_loss"] == pytest.approx(records[-1]["test_recon"] + records[-1]["test_kl"])
    model = checkpoint.model_from_checkpoint(ckpt)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_schema_is_the_built_modules_own(runs, tmp_path):
    ckpt = checkpoint.load(runs["vae"] / "last.pt")
    shapes, groups = kinds.expected_shapes("vae", ckpt["model_args"])
    assert shapes == {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    assert len(groups) == 1 and len(kinds.expected_shapes("gan", {"latent": 64, "classes": 10})[1]) == 2
    for bad, words in [
        ({**ckpt, "kind": "gan"}, "kind is 'gan' but the config trains 'vae'"),
        ({**ckpt, "kind": "unet"}, "kind must be one of"),
        ({**ckpt, "model_args": {"latent": 7}}, "model_args must be"),
        ({**ckpt, "model": {k: v for k, v in ckpt["model"].items() if k != "head.bias"}}, "has no head.bias"),
    ]:
        path = tmp_path / "x.pt"
        torch.save(bad, path)
        with pytest.raises(CheckpointError, match=words):
            checkpoint.load(path)


@pytest.mark.parametrize(
    ("command", "kind", "words"),
    [
        ("predict", "gan", "predict needs a MyNet classifier checkpoint"),
        ("failures", "vae", "failures needs a MyNet classifier checkpoint"),
        ("export", "cvae", "export needs a MyNet"),
        ("generate", "ae", "generate needs a vae, cvae or gan checkpoint"),
        ("generate-digit", "vae", "generate --digit needs a cvae or gan checkpoint"),
        ("reconstructions", "gan", "show reconstructions needs an ae, vae or cvae checkpoint"),
        ("eval-judge", "vae", "--judge needs a MyNet classifier checkpoint"),
        ("failures-gan", "gan", "failures needs a MyNet classifier checkpoint"),
    ],
)
def test_a_checkpoint_of_the_wrong_kind_is_one_line(runs, tmp_path, command, kind, words):
    ckpt = runs[kind] / "last.pt"
    out = tmp_path / "out.png"
    args = {
        "predict": ["predict", ckpt, PHOTO],
        "failures": ["failures", ckpt, "--out", out],
        "failures-gan": ["failures", ckpt, "--out", out],
        "export": ["export", ckpt, "--out", tmp_path / "m.onnx"],
        "generate": ["generate", ckpt, "--out", out],
        "generate-digit": ["generate", ckpt, "--digit", 3, "--out", out],
        "reconstructions": ["show", "reconstructions", ckpt, "--out", out],
        "eval-judge": ["eval", ckpt, "--judge", runs["cvae"] / "last.pt"],
    }[command]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.output
    assert not out.exists() and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("kind", ["vae", "cvae", "gan"])
def test_generate_writes_png_and_npy_and_the_same_seed_draws_the_same(runs, tmp_path, kind):
    ckpt = runs[kind] / "last.pt"
    for name, seed in (("a.npy", 5), ("b.npy", 5), ("c.npy", 6)):
        assert invoke("generate", ckpt, "--n", 12, "--seed", seed, "--out", tmp_path / name).exit_code == 0
    a, b, c = (np.load(tmp_path / n, allow_pickle=False) for n in ("a.npy", "b.npy", "c.npy"))
    assert a.dtype == np.uint8 and a.shape == (12, 28, 28)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    result = invoke("generate", ckpt, "--n", 20, "--out", tmp_path / "grid")
    assert result.exit_code == 0 and (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
    if kinds.get(kind).conditional:
        assert invoke("generate", ckpt, "--digit", 7, "--n", 4, "--out", tmp_path / "d.npy").exit_code == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--digit", "10"], "--digit must be 0..9"),
        (["--n", "0"], "--n must be 1..100,000"),
        (["--n", "10000000"], "--n must be 1..100,000"),
        (["--seed", "-1"], "--seed must be"),
        (["--out", "x.jpg.exe"], "unknown extension '.exe'"),
        (["--style", PHOTO, "--digit", "3"], "--style writes all ten digits"),
    ],
)
def test_generate_refuses_mistakes_before_writing(runs, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    result = invoke("generate", runs["cvae"] / "last.pt", "--out", "s.png", *args)
    assert result.exit_code == 2 and words in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_generate_never_writes_over_its_inputs_or_a_run_file(runs, tmp_path):
    run = runs["gan"]
    before = (run / "last.pt").read_bytes()
    for out in (run / "last.pt", run / "metrics.jsonl"):
        result = invoke("generate", run / "last.pt", "--out", out, "--force")
        assert result.exit_code == 2, result.output
    assert (run / "last.pt").read_bytes() == before
    style = tmp_path / "mine.png"
    style.write_bytes(b"not an image at all")
    result = invoke("generate", runs["cvae"] / "last.pt", "--style", style, "--out", tmp_path / "s.png")
    assert result.exit_code == 2 and "mine.png" in result.output and not (tmp_path / "s.png").exists()


def test_style_writes_the_ten_digits_in_order(runs, tmp_path):
    result = invoke("generate", runs["cvae"] / "last.pt", "--style", PHOTO, "--out", tmp_path / "s.npy")
    assert result.exit_code == 0, result.output
    digits = np.load(tmp_path / "s.npy")
    assert digits.shape == (10, 28, 28)
    ckpt, module = checkpoint.load_model(runs["cvae"] / "last.pt", needs=None)
    ten = sample.in_style(module, np.zeros((28, 28), np.float32))
    assert (
        ten.shape == (10, 28, 28) and len({d.tobytes() for d in ten}) == 10
    )  # one image per digit, all different


def test_eval_reports_nll_and_the_judges_figures(runs, mnist_root):
    data = ("--data-dir", mnist_root)
    result = invoke(
        "eval",
        runs["vae"] / "last.pt",
        "--judge",
        runs["mynet"] / "last.pt",
        "--k",
        8,
        "--nll-images",
        100,
        "--json",
        *data,
    )
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout.strip().splitlines()[-1])
    assert m["kind"] == "vae" and m["nll_k"] == 8 and m["nll_images"] == 100
    # the importance-weighted bound is tighter than the ELBO; the test record is what eval recomputes
    assert m["nll"] < m["neg_elbo"]
    test = rundir.read_metrics(runs["vae"] / "metrics.jsonl")[0][-1]
    assert m["neg_elbo"] == pytest.approx(test["test_loss"], rel=1e-6)
    assert {"fd", "fd_floor", "judge_confidence", "recon_accuracy"} <= set(m) and m["fd"] > m["fd_floor"] > 0
    gan = json.loads(
        invoke("eval", runs["gan"] / "last.pt", "--judge", runs["mynet"] / "last.pt", "--json", *data)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert 0 <= gan["class_fidelity"] <= 1 and gan["fd"] > 0
    text = invoke("eval", runs["ae"] / "last.pt", "--judge", runs["mynet"] / "last.pt", *data).output
    assert "reconstruction loss" in text and "reconstructions as their digit" in text


def test_eval_without_a_judge_finds_the_newest_mynet_run_or_says_how(runs, tmp_path, monkeypatch, mnist_root):
    monkeypatch.chdir(tmp_path)
    result = invoke("eval", runs["ae"] / "last.pt", "--data-dir", mnist_root)
    assert (
        result.exit_code == 2
        and "no MyNet run under runs/" in result.output
        and "mnistcnn train" in result.output
    )
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "m").symlink_to(runs["mynet"])
    result = invoke("eval", runs["ae"] / "last.pt", "--data-dir", mnist_root)
    assert result.exit_code == 0 and "judge: runs/m/last.pt" in result.output, result.output


@pytest.mark.parametrize(
    ("kind", "picture", "extra"),
    [
        ("vae", "reconstructions", []),
        ("cvae", "interpolate", ["--index", "3", "4"]),
        ("gan", "interpolate", ["--digits", "1", "7"]),
        ("ae", "arithmetic", ["--index", "5"]),
        ("cvae", "arithmetic", []),
        ("gan", "arithmetic", []),
        ("vae", "manifold", ["--size", "5"]),
        ("cvae", "manifold", ["--digit", "4", "--size", "4"]),
        ("gan", "manifold", ["--size", "4"]),
        ("vae", "latent", []),
    ],
)
def test_each_picture_is_written(runs, tmp_path, mnist_root, kind, picture, extra):
    out = tmp_path / "p.png"
    result = invoke("show", picture, runs[kind] / "last.pt", "--out", out, "--data-dir", mnist_root, *extra)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 5000


def test_progress_draws_a_film_strip_and_an_animation(runs, tmp_path):
    for name, magic in (("p.png", b"\x89PNG"), ("p.gif", b"GIF8"), ("p.webp", b"RIFF")):
        result = invoke("show", "progress", runs["gan"], "--out", tmp_path / name)
        assert result.exit_code == 0 and "2 epochs" in result.output, result.output
        assert (tmp_path / name).read_bytes().startswith(magic)
    result = invoke("show", "progress", runs["vae"], "--out", tmp_path / "q.png")
    assert result.exit_code == 2 and "is it a GAN run folder" in result.output


@pytest.mark.parametrize("kind", KINDS)
def test_summary_counts_each_kinds_layers(kind):
    result = invoke("summary", "--model", kind)
    assert result.exit_code == 0
    module = kinds.get(kind).build(kinds.get(kind).args_of({}))
    trained = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert f"{trained:,} trained parameters" in result.output.replace("\n", " ")


def test_frechet_distance_matches_the_closed_form():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn((20000, 3), generator=gen, dtype=torch.float64)
    assert judge.frechet(a, a) == pytest.approx(0, abs=1e-9)
    # N(0, I) vs N(m, 4 I): |m|² + tr(I + 4I - 2·2I) = |m|² + 3
    b = torch.randn((20000, 3), generator=gen, dtype=torch.float64) * 2 + torch.tensor(
        [1.0, 2.0, 0.0], dtype=torch.float64
    )
    assert judge.frechet(a, b) == pytest.approx(5 + 3, rel=0.03)


def test_step_noise_is_a_function_of_seed_and_step_and_shards_like_the_data():
    from mnistcnn.distributed import World

    one = tasks.Noise(3, 17, 10, World.single(), None, "cpu").randn(4)
    again = tasks.Noise(3, 17, 10, World.single(), None, "cpu").randn(4)
    assert torch.equal(one, again) and not torch.equal(
        one, tasks.Noise(3, 18, 10, World.single(), None, "cpu").randn(4)
    )
    parts = [tasks.Noise(3, 17, 5, World(r, r, 2), 2 / 10, "cpu").randn(4) for r in range(2)]
    assert torch.equal(torch.cat(parts), one)  # two ranks together draw what one process draws


GEN_ARGS = "--epochs 2 --batch-size 16 --train-limit 320 --lr 2e-3 --device cpu --precision fp32 --deterministic --log-every 1"


@pytest.mark.parametrize(
    ("kind", "at_step", "sig"),
    [("vae", 7, signal.SIGINT), ("cvae", 20, signal.SIGTERM), ("gan", 13, signal.SIGINT)],
)
def test_interrupted_generative_runs_resume_bit_identical(mnist_root, tmp_path, kind, at_step, sig):
    """Every step's noise comes from (seed, step) and the GAN's two optimizer halves and its EMA are in the
    checkpoint: a stopped and resumed run ends with the weights of one that never stopped."""
    args = shlex.split(f"--model {kind} {GEN_ARGS}")
    reference = tmp_path / "reference"
    proc = cli(*args, "--run-dir", reference, mnist_root=mnist_root)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    stopped = interrupt_at(mnist_root, run, at_step, sig, args)
    assert stopped.returncode == 128 + sig, stopped.stdout + stopped.stderr
    assert at_step <= checkpoint.load(run / "last.pt")["step"] < 40
    resumed = cli("--resume", run, mnist_root=mnist_root)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert weights_hash(run) == weights_hash(reference)
    assert batch_steps(run) == list(range(1, 41))


def test_the_film_strip_spreads_its_epochs_and_keeps_the_first_and_last():
    from mnistcnn.generative.pictures import film_picks

    assert film_picks(4, 10) == [0, 1, 2, 3]  # fewer epochs than room: every one
    many = film_picks(25, 10)
    assert len(many) == 10 and many[0] == 0 and many[-1] == 24 and many == sorted(set(many))
    assert film_picks(1, 10) == [0]


def test_a_gans_negative_g_loss_is_a_valid_partial_epoch():
    """The hinge G loss is below zero now and then (4 of 3,752 steps of the gan recipe): a checkpoint saved
    mid-epoch after such a step must resume; a plain loss below zero is still damage."""
    from mnistcnn import schema

    schema.check_partial({"losses": [[1.2, -0.38], [0.9, 0.4]], "sums": [], "seconds": 1.0}, 2)
    with pytest.raises(schema.Bad, match="partial.losses"):
        schema.check_partial({"losses": [-0.38], "seconds": 1.0}, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_on_the_bf16_cpu_path(train_run, tmp_path, monkeypatch, kind):
    """What `--precision auto` picks on an AMX / AVX512-BF16 CPU, forced here on any CPU: every kind trains in
    bf16 autocast, its checkpoint loads whole, and its test figure (always fp32) is finite."""
    from mnistcnn.engine import ENV_CPU_BF16

    monkeypatch.setenv(ENV_CPU_BF16, "1")
    run = train_run(tmp_path / kind, model=kind, epochs=1, batch_size=32, train_limit=64, precision="auto")
    assert json.loads((run / "env.json").read_text())["precision"] == "bf16"
    ckpt = checkpoint.load(run / "last.pt", resume=True)
    test = rundir.read_metrics(run / "metrics.jsonl")[0][-1]
    assert ckpt["kind"] == kind and test["type"] == "test" and np.isfinite(test["test_loss"])
