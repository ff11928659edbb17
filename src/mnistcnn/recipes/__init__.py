"""The shipped recipes: one TOML file per recipe in this folder, found by name (`mnistcnn train --config fast`).

Usage: `names()`; `text("fast")` (the file, verbatim); `header("fast")` (its why and measured figures);
`source("fast")` / `source("my.toml")` (what a `--config` value means).

Adding a recipe is dropping NAME.toml here (NAME: lower-case letters, digits and dashes); the wheel ships every
*.toml of this folder. The file lists only what differs from the defaults, under a header of comments:
  line 1                              `# ` and the one-line why (what `mnistcnn recipes` lists)
  `# measured on MACHINE: FIGURES`    none or more: figures measured with the command, as the README reports them
  `# Run: mnistcnn train --config NAME ...`   how to run it
tests/test_recipes.py holds every shipped recipe to that header and to loading cleanly.
Imports nothing heavy (no pydantic): `config.load_config` and `config.catalog` validate the keys.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mnistcnn.errors import ConfigError

NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
MEASURED = re.compile(r"#\s*measured on (?P<machine>.+?):\s+(?P<figures>\S.*)")


def names() -> list[str]:
    """The shipped recipes' names, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(
        f.name[: -len(".toml")] for f in files if f.name.endswith(".toml") and NAME.fullmatch(f.name[:-5])
    )


def unknown(name: str) -> str:
    """The one line for a name that is no recipe."""
    return f"no recipe named {name!r}; the recipes: {', '.join(names())} (mnistcnn recipes lists them)"


def text(name: str) -> str:
    """A shipped recipe's TOML, verbatim. Raises ConfigError for a name that is no recipe."""
    if name not in names():
        raise ConfigError(unknown(name))
    return resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")


def header(name: str) -> dict:
    """What a recipe's leading comments say: {"why": line 1, "measured": [{"machine", "figures"}, ...]}."""
    comments = []
    for line in text(name).splitlines():
        if not line.startswith("#"):
            break
        comments.append(line)
    why = comments[0].lstrip("#").strip() if comments else ""
    measured = [m.groupdict() for line in comments if (m := MEASURED.fullmatch(line.strip()))]
    return {"why": why, "measured": measured}


@dataclass(frozen=True)
class Source:
    """What a `--config` value names: a shipped recipe (`name`) or a TOML file (`path`)."""

    name: str | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        """How config.json records it: the recipe's name, or the file's absolute path."""
        return self.name if self.name is not None else str(Path(os.path.abspath(self.path)))

    @property
    def origin(self) -> str:
        """How an error names it: `recipe fast` or the path as given."""
        return f"recipe {self.name}" if self.name is not None else str(self.path)


def source(config: str | os.PathLike) -> Source:
    """A str that is a shipped recipe's name means that recipe, whatever the current folder holds (a file named
    like a recipe is read as `./fast`); any other str, and any Path object, is a path to a TOML file."""
    if isinstance(config, str) and config in names():
        return Source(name=config)
    return Source(path=Path(config))


def shadowed(config: str) -> bool:
    """Whether `config` names a recipe and also a file or folder in the current folder (the recipe wins)."""
    return source(config).name is not None and os.path.lexists(config)
