"""Issue 10 end to end: the workflow against a simulator that behaves as a real v3 terminal.

Early closes are asked with end_time=13:15:00 (the terminal fills to 16:00 by itself); the unsettled
behaviours (no final newline, ohlc of traded contracts only, no data as an empty 200) archive the same
files as the documented ones; a terminal restart fails nothing; a terminal gone for good ends the run
with one line and exit 3; 476 is named as a host-string mix-up.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
import requests
from helpers import FAST_RETRY, Project

from spx_data.ledger.store import Ledger
from spx_data.sim.server import REAL_TERMINAL, Simulator

pytestmark = pytest.mark.slow

DATASETS = ["quote", "ohlc", "open_interest", "eod", "greeks_first_order"]
# Thanksgiving 11-28 (closed), the 11-29 early close, a vendor no-data day 12-02.
RANGE = ("2024-11-27", "2024-12-02")
NO_DATA_DAY = "2024-12-02"
EARLY = "2024-11-29"


def archive(project: Project) -> dict[str, dict[str, str]]:
    """dataset → relative path → sha256 of every archived file."""
    out: dict[str, dict[str, str]] = {}
    for path, digest in project.archive_digests().items():
        out.setdefault(path.split("/")[0], {})[path] = digest
    return out


def days(project: Project) -> dict[tuple[str, str], tuple[str, str | None]]:
    with Ledger(project.ledger) as led:
        return {(r.dataset, r.day): (r.status, r.note) for r in led.days()}


def test_real_terminal_preset_archives_the_same_files_as_the_documented_terminal(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    projects = {}
    for name, preset in (("real", REAL_TERMINAL), ("documented", {})):
        sim = simulator(chain="tiny", no_data_days=(NO_DATA_DAY,), **preset)
        projects[name] = project = Project(tmp_path / name, sim.url)
        project.root.mkdir()
        project.write_config(*RANGE, datasets=DATASETS)
        project.snakemake()
        ledger = days(project)
        assert {status for status, _ in ledger.values()} <= {"success", "no_data"}, ledger
        assert len(ledger) == 3 * len(DATASETS)  # 11-27, 11-29, 12-02 per dataset
        reason = "empty 200" if preset else "HTTP 472"
        for ds in DATASETS:
            assert ledger[(ds, NO_DATA_DAY)] == ("no_data", f"no data: the listing answered {reason}")
    real, documented = (archive(projects[n]) for n in ("real", "documented"))
    for ds in ("quote", "open_interest", "eod", "greeks_first_order"):
        assert real[ds] == documented[ds], ds

    # Early close: every interval file ends at 13:15:00 with 226 rows per contract.
    con = duckdb.connect()
    for ds in ("quote", "ohlc", "greeks_first_order"):
        path = projects["real"].archive / ds / f"date={EARLY}" / f"spx-{ds}-{EARLY}.parquet"
        last, per = con.execute(
            "SELECT max(strftime(timezone('America/New_York', timestamp), '%H:%M:%S')), "
            "list_distinct(list(n)) FROM (SELECT max(timestamp) OVER w AS timestamp, count(*) OVER w AS n "
            f"FROM '{path}' WINDOW w AS (PARTITION BY symbol, expiration, strike, \"right\"))"
        ).fetchone()
        assert (last, per) == ("13:15:00", [226]), ds

    # ohlc: the real terminal answered the traded contracts only; the ledger says how many it left out,
    # and what it answered is exactly the documented answer's rows of those contracts.
    notes = {day: note for (ds, day), (_, note) in days(projects["real"]).items() if ds == "ohlc"}
    for day in ("2024-11-27", EARLY):
        assert notes[day] is not None and notes[day].endswith("listed contracts not answered (no trades)")
    assert all(note is None for (ds, d), (_, note) in days(projects["documented"]).items() if ds == "ohlc"
               and d != NO_DATA_DAY)  # fmt: skip
    for day in ("2024-11-27", EARLY):
        files = [p.archive / "ohlc" / f"date={day}" / f"spx-ohlc-{day}.parquet" for p in projects.values()]
        only, extra = con.execute(
            f"SELECT (SELECT count(*) FROM (FROM '{files[0]}' EXCEPT FROM '{files[1]}')), "
            f"(SELECT count(*) FROM '{files[1]}') - (SELECT count(*) FROM '{files[0]}')"
        ).fetchone()
        assert only == 0 and extra > 0
    listed = projects["real"].spx(
        "list", "--dataset", "ohlc", "--config-file", str(projects["real"].config_file)
    )
    assert "listed contracts not answered (no trades)" in listed.stdout, listed.stdout + listed.stderr


# ------------------------------------------------------------------ a terminal that goes away


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_terminal(port: int) -> subprocess.Popen[bytes]:
    """`spx-data sim` on a fixed port, as a user runs the terminal; returns once it answers."""
    exe = Path(sys.executable).with_name("spx-data")
    proc = subprocess.Popen(
        [str(exe), "sim", "--chain", "tiny", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if (
                requests.get(f"http://127.0.0.1:{port}/v3/terminal/mdds/status", timeout=1).text
                == "CONNECTED"
            ):
                return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("spx-data sim did not start")


def fetched(project: Project) -> int:
    """Fetch outcomes written so far (ingested ones are gone; enough to see a run is under way)."""
    folder = project.work / "outcomes"
    return (
        sum(1 for p in folder.glob("*.json") if '"kind":"fetch"' in p.read_text()) if folder.is_dir() else 0
    )


@contextmanager
def terminal(port: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_terminal(port)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_until_fetching(project: Project, *args: str) -> tuple[subprocess.Popen[str], float]:
    exe = Path(sys.executable).with_name("spx-data")
    cmd = [str(exe), "run", "--cores", "2", "--config-file", str(project.config_file), *args]
    started = time.monotonic()
    run = subprocess.Popen(cmd, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while fetched(project) < 3:
        assert run.poll() is None, run.communicate()
        time.sleep(0.2)
    return run, started


def test_terminal_restart_20_s_into_a_run_fails_nothing(tmp_path: Path) -> None:
    port = free_port()
    project = Project(tmp_path, f"http://127.0.0.1:{port}")
    project.write_config("2024-11-25", "2024-11-27", datasets=["quote", "greeks_first_order"],
                         retry=FAST_RETRY | {"disconnected_max_wait": 90})  # fmt: skip
    with terminal(port) as procs:
        run, started = run_until_fetching(project)
        procs[0].send_signal(signal.SIGKILL)  # a crash: connections in flight are reset
        killed = time.monotonic()
        time.sleep(20)
        procs.append(start_terminal(port))
        back = time.monotonic()
        out, err = run.communicate(timeout=600)
        ended = time.monotonic()
    print(f"\nkilled {killed - started:.1f} s into the run, back after {back - killed:.1f} s, run ended "
          f"{ended - back:.1f} s later (total {ended - started:.1f} s)")  # fmt: skip
    assert run.returncode == 0, out + err
    ledger = days(project)
    assert len(ledger) == 6 and {s for s, _ in ledger.values()} == {"success"}, ledger


def test_terminal_gone_for_good_ends_the_run_with_one_line_and_exit_3(tmp_path: Path) -> None:
    port = free_port()
    bound = 20
    project = Project(tmp_path, f"http://127.0.0.1:{port}")
    project.write_config("2024-11-25", "2024-11-27", datasets=["quote", "greeks_first_order"],
                         retry=FAST_RETRY | {"disconnected_max_wait": bound})  # fmt: skip
    with terminal(port) as procs:
        run, started = run_until_fetching(project)
        procs[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        out, err = run.communicate(timeout=bound + 120)
        ended = time.monotonic()
    print(f"\nkilled {killed - started:.1f} s into the run; the run ended {ended - killed:.1f} s later "
          f"(bound {bound} s), exit {run.returncode}; stderr: {err.strip().splitlines()[-1]!r}")  # fmt: skip
    assert run.returncode == 3, out + err
    assert ended - killed <= bound + 60
    about = [line for line in err.splitlines() if "terminal" in line or line.startswith("failed:")]
    assert about == [
        f"spx-data: no terminal answers at {project.url} within retry.disconnected_max_wait ({bound} s): "
        "start ThetaTerminal (java -jar ThetaTerminalv3.jar) or fix terminal_url, then run again"
    ], err

    # The next run ignores this run's marker: with the terminal back it archives everything.
    with terminal(port):
        again = project.spx("run", "--cores", "2", "--config-file", str(project.config_file))
    assert again.returncode == 0, again.stdout + again.stderr
    assert {s for s, _ in days(project).values()} == {"success"}


# ------------------------------------------------------------------ 476: a host-string mix-up


class _WrongIp(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"WRONG_IP"
        self.send_response(476)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def wrong_ip() -> Iterator[str]:
    """A terminal that answers every request 476 (it saw another host string before)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WrongIp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"  # localhost alone is allowed
    server.shutdown()
    server.server_close()


def test_476_is_named_as_a_host_mix_up_by_run_and_doctor(wrong_ip: str, tmp_path: Path) -> None:
    project = Project(tmp_path, wrong_ip)
    project.write_config("2024-11-25", "2024-11-27")
    cfg = ["--config-file", str(project.config_file)]
    run = project.spx("run", *cfg)
    assert run.returncode == 1 and run.stderr.startswith("spx-data: HTTP 476 for "), run.stderr
    assert "host string mix-up" in run.stderr and "no terminal answers" not in run.stderr
    doctor = project.spx("doctor", *cfg)
    assert "✓ host string: terminal_url uses localhost" in doctor.stdout
    [status] = [line for line in doctor.stdout.splitlines() if "mdds/status" in line]
    assert status.startswith("✗ mdds/status: HTTP 476") and "host string mix-up" in status, doctor.stdout
    assert "creds.txt" not in doctor.stdout

    # A plain Snakemake run: the listing's 476 and the listing log reach the ledger, `list` and `gaps`.
    project.snakemake(check=False)
    [log] = (project.work / "logs").glob("list_contracts-*.log")
    listed = project.spx("list", "--failed-only", *cfg, check=True).stdout.splitlines()
    assert len(listed) == 6  # quote and greeks_first_order on 3 sessions
    for line in listed:
        assert "the listing failed: FatalRequestError: HTTP 476 for " in line, line
        assert "host string mix-up" in line and f"(listing log: {log})" in line, line
    gaps = project.spx("gaps", *cfg, check=True).stdout
    assert gaps.count("HTTP 476") == 2 and gaps.count(str(log)) == 2, gaps  # a range per dataset
