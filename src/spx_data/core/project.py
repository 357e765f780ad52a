"""The project folder `spx-data` acts on, and the workflow files the package carries.

A project is a folder holding a Snakefile (a clone of this repository, or what `spx-data demo`
writes): it is Snakemake's workdir, so the CLI resolves relative config paths against it exactly as
plain `snakemake` run there does. The package carries the workflow (Snakefile, rules, config and its
schema, profiles, envs) as package data, `spx_data/workflow/` (symlinks to the repository's own
files, so there is one copy), read with importlib.resources so that a wheel install works anywhere.
"""

from __future__ import annotations

import shutil
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from spx_data.core.errors import ConfigError

SNAKEFILE = "Snakefile"
CONFIG_FILE = Path("config") / "config.yaml"
WORKFLOW_FILES = (SNAKEFILE, "rules", "config", "profiles", "envs", "scripts", "report")


class NotAProject(ConfigError):
    """The folder has no Snakefile."""


def find(directory: Path | None) -> Path:
    """The project folder: `directory` (default: the current one), which must hold a Snakefile."""
    root = Path(directory or Path.cwd()).absolute()
    if not (root / SNAKEFILE).is_file():
        raise NotAProject(
            f"no {SNAKEFILE} in {root}: run spx-data in a project folder (a clone of the workflow) "
            "or name one with -d DIR; `spx-data demo` makes one"
        )
    return root


def packaged() -> Traversable:
    """The workflow folder inside the installed package."""
    return resources.files("spx_data") / "workflow"


def schema_text() -> str:
    return (packaged() / "config" / "config.schema.yaml").read_text()


def install_workflow(dest: Path) -> None:
    """Write the packaged workflow files into `dest` (replacing older copies; data is never touched)."""
    for name in WORKFLOW_FILES:
        target = dest / name
        if target.is_dir():
            shutil.rmtree(target)
        _copy(packaged() / name, target)


def _copy(src: Traversable, dest: Path) -> None:
    if src.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        for child in src.iterdir():
            if child.name != "__pycache__":
                _copy(child, dest / child.name)
    else:
        dest.write_bytes(src.read_bytes())
