"""The `spx-data` console script, run as a subprocess the way operators and scripts run it."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import REPO, Project, dry_run_jobs

from spx_data.sim.server import Simulator

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path, "http://127.0.0.1:9")  # nothing listens on the discard port
    p.write_config("2024-11-21", "2024-12-05")
    return p


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# (arguments, exit code, the start of the one line on stderr). {cfg} is the project's config file,
# {blocked} a path under a regular file (unwritable whoever runs the test).
BAD = [
    (["gaps", "--set", "start_date=2025-13-01"], 2, "spx-data: config: start_date 2025-13-01: not a date"),
    (
        ["gaps", "--set", "start_date=2024-12-09"],
        2,
        "spx-data: config: start_date 2024-12-09: after end_date",
    ),
    (
        ["gaps", "--set", "start_date=2011-01-03"],
        2,
        "spx-data: config: start_date 2011-01-03: before the history",
    ),
    (["gaps", "--set", "end_date=2030-01-02"], 2, "spx-data: config: end_date 2030-01-02: after the newest"),
    (["gaps", "--set", "datasets=[trades]"], 2, "spx-data: config: datasets trades: not one of quote"),
    (["gaps", "--set", "symbols=[SPY]"], 2, "spx-data: config: symbols SPY: not one of SPX, SPXW"),
    (["gaps", "--set", "interval=7m"], 2, "spx-data: config: interval 7m: not one of"),
    (["gaps", "--set", "api_concurrency=-4"], 2, "spx-data: config: api_concurrency -4: must be >= 1"),
    (
        ["gaps", "--set", "terminal_url=ftp://127.0.0.1:1"],
        2,
        "spx-data: config: terminal_url ftp://127.0.0.1:1: not an http(s) URL",
    ),
    (
        ["gaps", "--set", "terminal_url=http://8.8.8.8:25503"],
        2,
        "spx-data: config: terminal_url http://8.8.8.8:25503: host 8.8.8.8 is not loopback",
    ),
    (["gaps", "--set", "colour=blue"], 2, "spx-data: config: unknown key colour; allowed keys:"),
    (["gaps", "--set", "retry.max_attempts=0"], 2, "spx-data: config: retry.max_attempts 0: must be >= 1"),
    (["gaps", "--set", "archive_dir={blocked}"], 2, "spx-data: config: archive_dir "),
    (["gaps", "--set", "nokey"], 2, "--set nokey: expected KEY=VALUE"),
    (["gaps", "--dataset", "trades"], 2, "--dataset: dataset 'trades': not one of quote"),
    (["gaps", "--since", "2024-02-30"], 2, "spx-data gaps: argument --since: '2024-02-30': not a date"),
    (["list", "--status", "weird"], 2, "spx-data list: argument --status: invalid choice: 'weird'"),
    (["run", "--from", "tomorrow"], 2, "spx-data run: argument --from: 'tomorrow': not a date"),
    (["run", "--cores"], 2, "spx-data run: argument --cores: expected one argument"),
    (["retry"], 2, "spx-data retry: one of the arguments --all-failed --no-data dates is required"),
    (["frobnicate"], 2, "spx-data: argument command: invalid choice: 'frobnicate'"),
    (["config", "set", "start_date", "2025-13-01"], 2, "spx-data: config: start_date 2025-13-01: not a date"),
    (["config", "set", "api_concurrency", "-1"], 2, "spx-data: config: api_concurrency -1: must be >= 1"),
    (["config", "set", "interval", "7m"], 2, "spx-data: config: interval 7m: not one of"),
    (["config", "set", "bogus", "1"], 2, "spx-data: config: unknown key bogus; allowed keys:"),
    (
        ["config", "set", "retry.max_attempts", "lots"],
        2,
        "spx-data: config: retry.max_attempts lots: not an integer",
    ),
    (["config", "set", "start_date"], 2, "spx-data config set: needs KEY VALUE"),
    (["run"], 3, "spx-data: no terminal answers at http://127.0.0.1:9"),
]


@pytest.mark.parametrize(("argv", "code", "message"), BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_one_line_nonzero_nothing_changed(
    project: Project, argv: list[str], code: int, message: str
) -> None:
    blocker = project.root / "a-file"
    blocker.write_text("x")
    argv = [a.replace("{blocked}", str(blocker / "archive")) for a in argv]
    before = digest(project.config_file)
    proc = project.spx(*argv, "--config-file", str(project.config_file))
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(message), lines[0]
    assert digest(project.config_file) == before
    assert not (project.root / "data").exists()


def test_not_yaml_config_file(project: Project) -> None:
    project.config_file.write_text("start_date: [2024\n  - : :")
    proc = project.spx("gaps", "--config-file", str(project.config_file))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(
        f"spx-data: config: config file {project.config_file}: not valid YAML"
    )


def test_config_set_keeps_comments_and_validates(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    shutil.copy(REPO / "config" / "config.yaml", cfg)
    (tmp_path / "Snakefile").touch()  # a project folder
    proc = Project(tmp_path, "").spx("config", "set", "api_concurrency", "8", "--config-file", str(cfg))
    assert proc.returncode == 0, proc.stderr
    text = cfg.read_text()
    assert "api_concurrency: 8" in text
    assert "# Requests the terminal serves at once; your tier's limit" in text  # comments survive
    shown = Project(tmp_path, "").spx("config", "show", "--json", "--config-file", str(cfg))
    assert json.loads(shown.stdout)["api_concurrency"] == 8


def test_help_for_every_command(project: Project) -> None:
    for cmd in (
        "config",
        "doctor",
        "probe",
        "gaps",
        "run",
        "status",
        "list",
        "retry",
        "verify",
        "ledger",
        "demo",
        "sim",
    ):
        proc = project.spx(cmd, "--help")
        assert proc.returncode == 0 and "usage: spx-data" in proc.stdout, cmd


def test_doctor_against_the_simulator_and_without_a_terminal(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    project = Project(tmp_path, simulator(chain="tiny").url)
    project.write_config("2024-11-25", "2024-11-27")
    cfg = ["--config-file", str(project.config_file)]
    ok = project.spx("doctor", *cfg)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    *lines, pointer = ok.stdout.splitlines()
    assert all(line.startswith("✓ ") for line in lines) and len(lines) >= 7, ok.stdout
    assert "`spx-data probe`" in pointer
    assert any("CONNECTED" in line for line in lines) and any("quote" in line for line in lines)
    down = project.spx("doctor", *cfg, "--set", "terminal_url=http://127.0.0.1:9")
    assert down.returncode == 3, down.stdout + down.stderr
    assert any(line.startswith("✗ terminal reachable") and "→" in line for line in down.stdout.splitlines())


def _set(db: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        return set(con.execute("SELECT dataset, day FROM days WHERE status = 'failed'").fetchall())


def test_operator_session_against_the_simulator(simulator: Callable[..., Simulator], tmp_path: Path) -> None:
    """status, gaps (agreeing with snakemake -n), list --failed-only, retry --all-failed, verify --repair."""
    sim = simulator(chain="tiny", no_data_days=("2024-11-26",), fault_rates={"500": 0.2})
    project = Project(tmp_path, sim.url)
    # One attempt per request, so the seeded 500s fail some days for good in this run.
    project.write_config(
        "2024-11-21",
        "2024-11-29",
        datasets=["quote", "greeks_first_order"],
        retry={"max_attempts": 1, "starting_wait_min": 0.1, "starting_wait_max": 0.2},
    )
    cfg = ["--config-file", str(project.config_file)]
    first = project.spx("run", "--cores", "2", *cfg)
    failed = _set(project.ledger)
    assert first.returncode == (1 if failed else 0), first.stdout + first.stderr
    assert failed, "the seeded 500s should fail at least one day with a single attempt"

    listed = project.spx("list", "--failed-only", "--json", *cfg, check=True)
    assert {(r["dataset"], r["day"]) for r in json.loads(listed.stdout)} == failed

    with sqlite3.connect(project.ledger) as con:
        (deleted,) = con.execute("SELECT min(day) FROM days WHERE dataset = 'quote' AND status = 'success'")
    (project.archive / "quote" / f"date={deleted[0]}" / f"spx-quote-{deleted[0]}.parquet").unlink()
    gaps = json.loads(project.spx("gaps", "--json", *cfg, check=True).stdout)
    missing = {tuple(p) for p in gaps["missing"]}
    assert missing == failed | {("quote", deleted[0])}
    assert {("quote", d) for d in gaps["datasets"]["quote"]["no_data"]["days"]} == {("quote", "2024-11-26")}
    dry = project.snakemake("-n", "--quiet", "host").stdout  # one block per job
    planned = {
        tuple(part.split("=")[1] for part in line.split("wildcards: ")[1].split(", "))
        for line in dry.splitlines()
        if "wildcards: dataset=" in line and "expiration" not in line
    }
    assert planned == missing
    assert dry_run_jobs(dry)["assemble"] == len(missing)

    status = json.loads(project.spx("status", "--json", *cfg, check=True).stdout)
    assert status["datasets"]["quote"]["counts"].get("no_data") == 1
    grid = project.spx("status", "--calendar", *cfg, check=True).stdout
    assert "2024-11" in grid and "o" in grid

    # With the default number of attempts the same seeded 500s are survived: retry exactly the failed days.
    retry_cfg = project.config_file.read_text().replace("max_attempts: 1", "max_attempts: 8")
    project.config_file.write_text(retry_cfg)
    retried = project.spx("retry", "--all-failed", *cfg)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert _set(project.ledger) == set()

    # Flip one byte in one archived file: verify names it, --repair quarantines it, a run restores it.
    victim = (
        project.archive
        / "greeks_first_order"
        / "date=2024-11-22"
        / "spx-greeks_first_order-2024-11-22.parquet"
    )
    good = digest(victim)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = project.spx("verify", *cfg)
    assert bad.returncode == 1 and str(victim) in bad.stdout
    report = json.loads(project.spx("verify", "--json", *cfg).stdout)
    assert str(victim) in [p["path"] for p in report["problems"]] and report["quarantined"] == {}
    assert project.spx("verify", "--repair", *cfg).returncode == 0
    assert not victim.exists()
    project.spx("run", "--cores", "2", *cfg, check=True)
    assert digest(victim) == good
    assert project.spx("verify", *cfg).returncode == 0
