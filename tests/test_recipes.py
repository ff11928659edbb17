"""The shipped recipes (mnistcnn.recipes): each loads and says why and how to run it; `--config NAME` finds them,
a path still works; `mnistcnn recipes` lists and prints them; config.json names the recipe a run started from;
the README's Recipes table and measured figures agree with the recipes' own."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnistcnn import config, recipes, rundir
from mnistcnn.cli import app
from mnistcnn.config import TrainConfig, load_config
from mnistcnn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "src" / "mnistcnn" / "recipes"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_the_names_are_the_toml_files_of_the_folder():
    assert recipes.names() == sorted(p.stem for p in FOLDER.glob("*.toml"))
    assert {"default", "fast", "fast-gpu", "lecture"} <= set(recipes.names())


@pytest.mark.parametrize("name", recipes.names())
def test_every_recipe_loads_and_says_why_and_how_to_run(name):
    text = recipes.text(name)
    assert text == (FOLDER / f"{name}.toml").read_text()
    cfg = load_config(name)
    assert cfg == load_config(FOLDER / f"{name}.toml")  # by name = by path
    head = recipes.header(name)
    assert text.startswith("# ") and 20 <= len(head["why"]) <= 100, head["why"]
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert f"# Run: mnistcnn train --config {name}" in "\n".join(comments)
    measured = [line for line in comments if line.startswith("# measured")]
    assert len(head["measured"]) == len(measured)  # every measured line parses
    figure = (  # MyNet's accuracy, or a generative kind's own figure (README "Generative models")
        r"\d+\.\d+ % test accuracy|NLL \d+\.\d+ nats|\d+\.\d+ % class fidelity|reconstruction loss \d+\.\d+ nats"
    )
    for m in head["measured"]:
        assert re.search(figure, m["figures"]) and re.search(r"\d s ", m["figures"] + " ")


def test_default_is_the_built_in_defaults_written_out():
    assert load_config("default") == TrainConfig() == load_config(None)
    values = config.tomllib.loads(recipes.text("default"))
    assert {"epochs", "batch_size", "lr", "optimizer", "schedule", "mean", "std", "seed"} <= set(values)


def test_recipes_list_only_what_differs_from_the_defaults():
    for name in set(recipes.names()) - {"default"}:
        values = config.tomllib.loads(recipes.text(name))
        same = [k for k, v in values.items() if getattr(TrainConfig(), k) == v]
        assert not same or name == "lecture", (name, same)  # the lecture's lists its recipe whole, on purpose


def test_a_name_finds_the_recipe_and_anything_else_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").write_text("epochs = 7\n")  # a file named like a recipe: the recipe wins
    (tmp_path / "mine").write_text("epochs = 3\n")  # a bare name that is no recipe: the file
    assert load_config("fast").epochs == 1 and recipes.shadowed("fast") and not recipes.shadowed("mine")
    assert load_config("./fast").epochs == 7 and load_config(Path("fast")).epochs == 7  # a Path is a file
    assert load_config("mine").epochs == 3 and load_config(str(tmp_path / "mine")).epochs == 3
    assert recipes.source("fast").label == "fast"
    assert recipes.source("./fast").label == str(tmp_path / "fast")  # absolute: config.json says which file


@pytest.mark.parametrize(
    "given, message",
    [
        (
            "nope",
            "no recipe or file named 'nope'; the recipes: ae, cvae, default, fast, fast-gpu, gan, lecture, vae",
        ),
        ("fsat", "no recipe or file named 'fsat' (did you mean 'fast'?)"),
        ("configs/fast.toml", "did you mean the shipped recipe: --config fast?"),
        ("x/y.toml", "config file x/y.toml does not exist; pass a recipe name (ae, cvae, default, fast"),
        (".", "config file . is a folder; pass a recipe name"),
    ],
)
def test_a_config_that_is_neither_is_one_line_listing_the_recipes(given, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(given)
    assert message in str(e.value) and "\n" not in str(e.value)
    result = invoke("train", "--config", given, "--device", "cpu")
    assert result.exit_code == 2 and result.output.strip() == f"error: {e.value}"
    assert not (tmp_path / "runs").exists()


def test_an_error_in_a_recipe_names_the_recipe():
    with pytest.raises(
        ConfigError, match=r"batch_size 32 is larger than train_limit 8: .* \(in recipe fast\)$"
    ):
        load_config("fast", {"train_limit": 8, "batch_size": None})


def test_recipes_lists_every_recipe_with_its_figures():
    result = invoke("recipes")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for row in config.catalog():
        line = next(ln for ln in lines if ln.startswith(row["name"] + " "))
        assert line.split()[:4] == [row["name"], row["model"], str(row["epochs"]), str(row["batch_size"])]
        assert row["model"] == load_config(row["name"]).model
        assert line.endswith(row["why"])
        for m in row["measured"]:
            assert f"measured on {m['machine']}: {m['figures']}" in result.output
    fast = next(r for r in config.catalog() if r["name"] == "fast")
    assert (fast["epochs"], fast["batch_size"]) == (1, 32) and len(fast["measured"]) == 2
    assert "not measured yet" in result.output  # fast-gpu is a candidate
    assert "mnistcnn recipes NAME > my.toml" in result.output


def test_recipes_name_prints_the_toml_verbatim_to_copy(tmp_path):
    result = invoke("recipes", "fast")
    assert result.exit_code == 0 and result.output == (FOLDER / "fast.toml").read_text()
    copy = tmp_path / "my.toml"
    copy.write_text(result.output)
    assert load_config(copy) == load_config("fast")


def test_recipes_unknown_name_is_one_line():
    result = invoke("recipes", "fsat")
    assert result.exit_code == 2
    assert (
        result.output
        == "error: no recipe named 'fsat'; the recipes: ae, cvae, default, fast, fast-gpu, gan, lecture, vae "
        "(mnistcnn recipes lists them)\n"
    )


def test_recipes_on_a_full_disk_is_one_line_and_imports_no_torch():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    code = (
        "import sys, runpy; sys.argv = ['mnistcnn', 'recipes']\n"
        "try: runpy.run_module('mnistcnn', run_name='__main__')\n"
        "except SystemExit: pass\nprint('TORCH', 'torch' in sys.modules)"
    )
    listing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "fast-gpu" in listing.stdout and "TORCH False" in listing.stdout, listing.stderr
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "mnistcnn", "recipes", "fast"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: cannot write to standard output: no space left on device; free some space or send the output "
        "elsewhere\n"
    )


@pytest.fixture
def tiny_train(mnist_root):
    """`tiny_train(folder, *flags)`: a one-epoch run on 64 fixture images into folder/run (CLI result)."""

    def run(folder: Path, *args):
        flags = ["--train-limit", 64, "--epochs", 1, "--device", "cpu", "--data-dir", mnist_root]
        return invoke("train", *args, *flags, "--run-dir", folder / "run")

    return run


def resume(run: Path, mnist_root: Path):
    return invoke("train", "--resume", run, "--epochs", 2, "--data-dir", mnist_root)


def saved(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_config_json_names_the_recipe_and_resume_keeps_it(tiny_train, mnist_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").write_text("this is not TOML")  # the recipe wins over this file, and says so
    result = tiny_train(tmp_path, "--config", "fast")
    assert result.exit_code == 0, result.output
    assert (
        "note: --config fast is the shipped recipe; for the file here write --config ./fast" in result.output
    )
    run = tmp_path / "run"
    assert saved(run)["recipe"] == "fast" and saved(run)["batch_size"] == 32
    result = resume(run, mnist_root)
    assert result.exit_code == 0, result.output
    assert saved(run)["recipe"] == "fast" and saved(run)["epochs"] == 2


def test_config_json_names_a_file_by_its_path_and_none_as_null(tiny_train, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.toml").write_text("batch_size = 16\n")
    assert tiny_train(tmp_path, "--config", "my.toml").exit_code == 0
    assert saved(tmp_path / "run")["recipe"] == str(tmp_path / "my.toml")
    other = tmp_path / "other"
    other.mkdir()
    assert tiny_train(other, "--batch-size", 32).exit_code == 0
    assert saved(other / "run")["recipe"] is None


def test_an_older_run_folder_without_the_field_resumes_without_it(tiny_train, mnist_root, tmp_path):
    assert tiny_train(tmp_path, "--config", "fast").exit_code == 0
    run = tmp_path / "run"
    old = {k: v for k, v in saved(run).items() if k != "recipe"}  # as mnistcnn <= 0.3 wrote it
    (run / "config.json").write_text(json.dumps(old))
    result = resume(run, mnist_root)
    assert result.exit_code == 0, result.output
    assert "recipe" not in saved(run) and saved(run)["run_id"] == old["run_id"]


def test_the_recipe_field_is_not_part_of_the_run_identity(tmp_path):
    # a checkpoint from before run ids is matched against the folder's config by recipe keys alone
    cfg = TrainConfig().to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "recipe": "default", "run_id": "a" * 32}))
    assert rundir.identity(tmp_path, {"config": cfg}) == "a" * 32
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "recipe": "default"}))
    assert len(rundir.identity(tmp_path, {"config": cfg})) == 32
    with pytest.raises(Exception, match="belongs to another run"):
        rundir.identity(tmp_path, {"config": {**cfg, "seed": 1}})
    assert rundir.started_from(tmp_path) == {"recipe": "default"}


# --- the README agrees with the recipes ---


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def recipes_table() -> str:
    """README's Recipes table, as the recipes' own data make it."""
    rows = ["| recipe | model | epochs | batch | why | measured |", "| --- | --- | --- | --- | --- | --- |"]
    for r in config.catalog():
        figures = "; ".join(f"on {m['machine']}: {m['figures']}" for m in r["measured"]) or "not measured yet"
        rows.append(
            f"| `{r['name']}` | {r['model']} | {r['epochs']} | {r['batch_size']} | {r['why']} | {figures} |"
        )
    return "\n".join(rows)


def test_the_readme_recipes_table_is_the_recipes_own():
    assert recipes_table() in readme_section("Recipes"), (
        "README's Recipes table should be:\n" + recipes_table()
    )


def test_every_measured_figure_is_in_the_readme_measured_results():
    rows = [ln for ln in readme_section("Measured results").splitlines() if ln.startswith("| ")]
    for r in config.catalog():
        pattern = r"\(defaults" if r["name"] == "default" else rf"--config {re.escape(r['name'])}(?![\w-])"
        mine = "\n".join(ln for ln in rows if re.search(pattern, ln))
        for m in r["measured"]:
            for figure in re.findall(r"\d[\d.,]* (?:%|s)(?!\w)", m["figures"]):
                assert figure in mine, (r["name"], figure, mine)
