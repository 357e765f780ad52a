"""envs/spx-data.yaml, the rules' conda environment, holds exactly pyproject.toml's runtime dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI ones
CONDA_TO_PYPI = {"snakemake-minimal": "snakemake", "matplotlib-base": "matplotlib"}


def requirements(specs: list[str]) -> dict[str, str]:
    """Canonical name → specifier set (as a comparable text) of each requirement."""
    out = {}
    for spec in specs:
        req = Requirement(spec)
        name = canonicalize_name(CONDA_TO_PYPI.get(req.name, req.name))
        out[name] = ",".join(sorted(str(s) for s in req.specifier))
    return out


def test_conda_env_lists_exactly_the_runtime_dependencies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs" / "spx-data.yaml").read_text())["dependencies"]
    conda = [d for d in env if isinstance(d, str) and d != "pip" and not d.startswith("python=")]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    assert requirements(conda) == requirements(pyproject)
    assert pip == ["-e ../"]  # the package itself, from this checkout
    assert next(d for d in env if isinstance(d, str) and d.startswith("python=")) == "python=3.11"
