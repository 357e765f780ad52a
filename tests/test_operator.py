"""The operator's day on fresh clones: the installed `spx-data` and plain `snakemake`, run in the project
folder with the shipped config (relative paths), against the simulator over a real socket."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import BIN, Clone, dry_run_jobs, spx_data

from spx_data.sim.server import Simulator

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # each runs the installed console script

TWO_DAYS = {"start_date": "2024-11-25", "end_date": "2024-11-26"}


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def counts(c: Clone, *args: str) -> dict[str, dict[str, int]]:
    status = json.loads(c.spx("status", "--json", *args, check=True).stdout)
    return {ds: {k: n for k, n in d["counts"].items() if n} for ds, d in status["datasets"].items()}


def test_each_clone_is_its_own_project(
    simulator: Callable[..., Simulator], clone: Callable[..., Clone], tmp_path: Path
) -> None:
    """Defect 11: two clones, one venv; the CLI and plain snakemake agree on each clone's own archive."""
    url = simulator(chain="tiny").url
    a = clone("a", **TWO_DAYS, terminal_url=url)
    b = clone("b", start_date="2024-11-21", end_date="2024-11-22", terminal_url=url)
    for c, start in ((a, "2024-11-25"), (b, "2024-11-21")):  # `config set` changed the clone's own file
        assert f'start_date: "{start}"' in (c.root / "config" / "config.yaml").read_text()  # quotes kept
    a.snakemake("--cores", "2", check=True)
    archived = digests(a.archive)
    assert len(archived) == 8  # 2 days × 2 datasets × (parquet + sidecar), under a's own data/

    assert counts(a) == {"quote": {"success": 2}, "greeks_first_order": {"success": 2}}
    assert dry_run_jobs(a.snakemake("-n", check=True).stdout) == {}
    assert json.loads(a.spx("gaps", "--json", check=True).stdout)["missing"] == []

    assert counts(b) == {"quote": {}, "greeks_first_order": {}}
    planned = dry_run_jobs(b.snakemake("-n", check=True).stdout)
    missing = json.loads(b.spx("gaps", "--json", check=True).stdout)["missing"]
    assert planned["assemble"] == len(missing) == 4
    assert not b.archive.exists()

    # Named with -d from elsewhere, as for snakemake; outside any project, one line and exit 2.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    named = spx_data("status", "--json", "-d", str(a.root), cwd=elsewhere)
    assert named.returncode == 0 and json.loads(named.stdout)["datasets"]["quote"]["counts"]["success"] == 2
    lost = spx_data("status", cwd=elsewhere)
    assert lost.returncode == 2 and lost.stderr.count("\n") == 1, lost.stderr
    assert lost.stderr.startswith(f"spx-data: no Snakefile in {elsewhere}")
    assert list(elsewhere.iterdir()) == []
    assert digests(a.archive) == archived


def ledger_states(c: Clone) -> dict[tuple[str, str], str]:
    with sqlite3.connect(c.ledger) as con:
        return {(ds, day): s for ds, day, s in con.execute("SELECT dataset, day, status FROM days")}


def test_retry_with_the_shipped_relative_config(
    simulator: Callable[..., Simulator], clone: Callable[..., Clone]
) -> None:
    """Defect 1: retry --all-failed / --no-data / DATE re-run exactly the failed day-files, through
    Snakemake targets spelled as the rules spell them; a refusal by Snakemake is shown with its reason."""
    bad = simulator(bad_data=("html@2024-11-25",), no_data_days=("2024-11-26",)).url
    clean = simulator().url
    c = clone(**TWO_DAYS, terminal_url=bad)
    assert c.spx("run", "--cores", "2", "--dataset", "quote").returncode == 1
    c.spx(
        "run", "--cores", "2", "--dataset", "greeks_first_order", "--set", f"terminal_url={clean}", check=True
    )
    q25, q26 = (c.archive / "quote" / f"date={d}" / f"spx-quote-{d}.parquet" for d in TWO_DAYS.values())
    greeks = (
        c.archive / "greeks_first_order" / "date=2024-11-25" / "spx-greeks_first_order-2024-11-25.parquet"
    )
    assert ledger_states(c) == {
        ("quote", "2024-11-25"): "failed", ("quote", "2024-11-26"): "no_data",
        ("greeks_first_order", "2024-11-25"): "success", ("greeks_first_order", "2024-11-26"): "no_data",
    }  # fmt: skip
    untouched = greeks.stat().st_ino, greeks.stat().st_mtime_ns

    retried = c.spx("retry", "--all-failed", "--set", f"terminal_url={clean}")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "1 day-files to archive" in retried.stdout  # quote 2024-11-25 only, not the whole day
    assert q25.exists() and (greeks.stat().st_ino, greeks.stat().st_mtime_ns) == untouched

    rechecked = c.spx("retry", "--no-data", "--set", f"terminal_url={clean}")
    assert rechecked.returncode == 0, rechecked.stdout + rechecked.stderr
    assert set(ledger_states(c).values()) == {"success"}  # nothing left queued

    good = q26.read_bytes()
    q26.unlink()
    again = c.spx("retry", "2024-11-26", "--set", f"terminal_url={clean}")
    assert again.returncode == 0 and "1 day-files to archive" in again.stdout, again.stdout + again.stderr
    assert q26.read_bytes() == good
    assert dry_run_jobs(c.snakemake("-n", check=True).stdout) == {}

    # When Snakemake itself refuses to run, the CLI says why.
    q26.unlink()
    snakefile = c.root / "Snakefile"
    snakefile.write_text(snakefile.read_text() + 'include: "rules/nowhere.smk"\n')
    refused = c.spx("retry", "2024-11-26", "--set", f"terminal_url={clean}")
    assert refused.returncode == 1
    assert "snakemake refused: " in refused.stdout and "nowhere.smk" in refused.stdout, refused.stdout


def test_plain_snakemake_keeps_to_api_concurrency(
    simulator: Callable[..., Simulator], clone: Callable[..., Clone]
) -> None:
    """Defect 2: one setting for the tier; FREE (1) never has two requests in flight under plain snakemake
    unless queued_requests sends them to wait in the terminal's own queue."""
    sim = simulator(tier=8)  # the terminal itself would take 8 at once
    c = clone(**TWO_DAYS, terminal_url=sim.url, api_concurrency=1, queued_requests=0)
    c.snakemake("--cores", "4", check=True)
    stats = sim.stats
    assert stats["peak_active"] == 1, stats
    queued = simulator(tier=8)
    c.configure(terminal_url=queued.url, queued_requests=1)
    shutil.rmtree(c.archive)
    c.snakemake("--cores", "4", check=True)
    assert queued.stats["peak_active"] == 2, queued.stats  # 1 served + 1 waiting, on a FREE terminal


def test_ctrl_c_stops_cleanly_and_plain_snakemake_resumes(
    simulator: Callable[..., Simulator], clone: Callable[..., Clone]
) -> None:
    """Defect 7: SIGINT to `spx-data run`'s process group: exit 130, one resume line, no "failed" line
    for days that never started; plain `snakemake --cores 4` then finishes the range without flags."""
    sim = simulator()
    c = clone(start_date="2024-11-21", end_date="2024-12-05", terminal_url=sim.url)
    run = subprocess.Popen(
        [str(BIN / "spx-data"), "run", "--cores", "2"], cwd=c.root, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not any(c.archive.glob("*/*/*.sha256")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # polling the archive for the first finished day-file
    assert run.poll() is None, "the run ended before it could be interrupted"
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("spx-data: interrupted after ") and "snakemake --cores 2" in last, err
    lines = (out + err).splitlines()
    assert not [x for x in lines if x.startswith(("failed:", "not archived:"))], out + err
    assert sum(1 for _ in c.archive.glob("*/*/*.sha256")) < 20

    resumed = c.snakemake("--cores", "4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sum(1 for _ in c.archive.glob("*/*/*.sha256")) == 20
    assert c.spx("verify", check=True).stdout.strip().endswith("verified 20 files: 0 problem(s)")


@pytest.mark.parametrize("cores", ["0", "-2", "two"])
def test_run_refuses_non_positive_cores(clone: Callable[..., Clone], cores: str) -> None:
    c = clone()
    proc = subprocess.run(
        [str(BIN / "spx-data"), "run", "--cores", cores],
        cwd=c.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"spx-data run: argument --cores: {cores!r}: must be a whole number >= 1 (see --help)\n"
    )


def test_sim_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = spx_data("sim", "--port", str(port), cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith(f"spx-data sim: cannot listen on 127.0.0.1:{port}: ")
        and proc.stderr.count("\n") == 1
    ), proc.stderr


def test_output_into_a_closed_pipe_ends_quietly(clone: Callable[..., Clone]) -> None:
    c = clone()
    proc = subprocess.Popen(
        [str(BIN / "spx-data"), "config", "show"], cwd=c.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # like `| head` that has already gone
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_full_disk_under_the_ledger_is_one_line(clone: Callable[..., Clone]) -> None:
    c = clone(**TWO_DAYS)
    data = c.root / "data"
    data.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(data)]
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(mount).returncode != 0:
        pytest.skip("cannot mount a small filesystem here")
    try:
        with contextlib.suppress(OSError), open(data / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        for command in ("status", "list", "gaps"):
            proc = c.spx(command)
            assert proc.returncode == 1 and proc.stderr.count("\n") == 1, (command, proc.stderr)
            assert proc.stderr.startswith("spx-data: ") and "Traceback" not in proc.stderr, proc.stderr
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)


def test_a_read_only_archive_can_be_inspected(
    simulator: Callable[..., Simulator], clone: Callable[..., Clone]
) -> None:
    """Defect 5: the data folder made read-only for real (a read-only bind mount: root's os.access then
    answers EROFS, where chmod would not stop root); inspection works, writing commands refuse in one line."""
    c = clone(**TWO_DAYS, terminal_url=simulator().url)
    c.snakemake("--cores", "2", check=True)
    data = c.root / "data"
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(data), str(data)]).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(data)], check=True)
        assert not os.access(data, os.W_OK)
        assert counts(c) == {"quote": {"success": 2}, "greeks_first_order": {"success": 2}}
        assert json.loads(c.spx("gaps", "--json", check=True).stdout)["missing"] == []
        assert len(c.spx("list", check=True).stdout.splitlines()) == 4
        assert c.spx("verify", check=True).stdout.strip().endswith("verified 4 files: 0 problem(s)")
        assert "Nothing to be done" in c.snakemake("-n", check=True).stdout + c.snakemake("-n").stderr
        for writing in (("run",), ("retry", "--all-failed"), ("verify", "--repair")):
            proc = c.spx(*writing)
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (writing, proc.stderr)
            assert proc.stderr.startswith("spx-data: config: ") and "not writable" in proc.stderr, proc.stderr
        plain = c.snakemake("--cores", "2", "--config", "end_date=2024-11-27")  # a gap: a real run
        assert plain.returncode != 0 and "not writable" in plain.stderr, plain.stderr[-2000:]
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)
