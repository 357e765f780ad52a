"""Install: a built wheel (not the checkout) carries its schema and workflow; `spx-data demo` runs from
an unrelated folder. The fresh venv reuses the test venv's dependencies instead of downloading them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow


def test_wheel_install_runs_the_demo_from_anywhere(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy of the tracked tree: building must not write into the checkout
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in listed.stdout.splitlines():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name, follow_symlinks=False)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)], check=True
    )
    (wheel,) = wheels.glob("spx_data-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for carried in ("Snakefile", "rules/common.smk", "config/config.yaml", "config/config.schema.yaml",
                    "profiles/default/config.yaml", "envs/spx-data.yaml"):  # fmt: skip
        assert f"spx_data/workflow/{carried}" in names, carried

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "-q", "install", "--no-deps", "--no-index", str(wheel)], check=True)
    # The dependencies from the test venv, after the venv's own site-packages (so the wheel's spx_data wins).
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [str(py), "-c", "import spx_data; print(spx_data.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(site), where.stdout

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    demo = subprocess.run(
        [str(venv / "bin" / "spx-data"), "demo", "--cores", "2", "--set", "terminal_url=http://127.0.0.1:9"],
        cwd=elsewhere, capture_output=True, text=True,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "20/20 day-files archived" in demo.stdout and "sha256sum -c failed in 0" in demo.stdout, (
        demo.stdout
    )
    # The demo folder is a project of its own: the CLI works there.
    status = subprocess.run(
        [str(venv / "bin" / "spx-data"), "status"], cwd=elsewhere / "demo", capture_output=True, text=True
    )
    assert status.returncode == 0 and "quote: " in status.stdout and "success 10" in status.stdout, status
