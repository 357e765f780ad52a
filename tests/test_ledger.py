"""The SQLite ledger: event ingestion, status transitions, idempotency, concurrency, dead runs, rebuild."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spx_data.core.outcomes import RUN_ID_ENV, write_event
from spx_data.core.paths import Layout
from spx_data.ledger import store as ledger_module
from spx_data.ledger.rebuild import rebuild_from_archive
from spx_data.ledger.store import STATUSES, DayRow, Ledger

DS = "quote"
EVIL = "'); DROP TABLE days;--"


def emit(outcomes: Path, run_id: str, kind: str, **fields: Any) -> Path:
    with mock.patch.dict(os.environ, {RUN_ID_ENV: run_id}):
        return write_event(outcomes, kind, **fields)


def emit_raw(outcomes: Path, event: dict[str, Any], name: str | None = None) -> Path:
    """An event file written by hand (a chosen `at`, or a malformed body)."""
    outcomes.mkdir(parents=True, exist_ok=True)
    path = outcomes / (name or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}.json")
    path.write_text(json.dumps(event))
    return path


def run_start(outcomes: Path, run_id: str, days: list[str], pid: int | None = None) -> None:
    emit(
        outcomes,
        run_id,
        "run_start",
        pid=pid or os.getpid(),
        host=socket.gethostname(),
        planned=[[DS, d] for d in days],
        argv=["spx-data", "run"],
    )


def fetch(
    outcomes: Path, run_id: str, day: str, status: str = "ok", expiration: str = "2024-01-19", **extra: Any
) -> None:
    fields = (
        dict(
            dataset=DS,
            day=day,
            symbol="SPXW",
            expiration=expiration,
            status=status,
            http_status=200,
            attempts=1,
            rows=10,
            bytes=1000,
            seconds=0.5,
            error_class=None,
            error=None,
        )
        | extra
    )
    emit(outcomes, run_id, "fetch", **fields)


def assemble(outcomes: Path, run_id: str, day: str, status: str = "success", **extra: Any) -> None:
    fields = (
        dict(
            dataset=DS,
            day=day,
            status=status,
            rows=30,
            bytes=4096,
            sha256="ab" * 32,
            seconds=1.5,
            error_class=None,
            error=None,
        )
        | extra
    )
    emit(outcomes, run_id, "assemble", **fields)


def statuses(led: Ledger) -> dict[str, str]:
    return {row.day: row.status for row in led.days(dataset=DS)}


@pytest.fixture
def outcomes(tmp_path: Path) -> Path:
    return tmp_path / "work" / "outcomes"


@pytest.fixture
def led(tmp_path: Path):
    with Ledger(tmp_path / "state" / "ledger.sqlite") as ledger:
        yield ledger


# -- schema -------------------------------------------------------------------------------------------


def test_new_ledger_creates_dir_wal_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"
    with Ledger(path) as led:
        assert led.days() == []
        assert led.counts() == {}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "runs", "days", "attempts", "requests", "events"} <= tables
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"days_by_status", "days_by_day"} <= indexes
    db.close()
    with Ledger(path) as again:  # reopening an existing ledger
        busy = again._db.execute("PRAGMA busy_timeout").fetchone()[0]
        assert busy == 60000


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(ledger_module.SpxDataError, match="schema version 99"):
        Ledger(path)


# -- transitions --------------------------------------------------------------------------------------


def test_run_start_queues_planned_days_except_success(led: Ledger, outcomes: Path) -> None:
    led.set_status(DS, "2024-01-02", "success", rows=5, bytes=50, sha256="cd" * 32)
    led.set_status(DS, "2024-01-03", "failed", error_class="RetriesExhausted", error="boom")
    run_start(outcomes, "r1", ["2024-01-02", "2024-01-03", "2024-01-04"])
    assert led.sync(outcomes) == 1
    assert statuses(led) == {"2024-01-02": "success", "2024-01-03": "queued", "2024-01-04": "queued"}
    assert led.day(DS, "2024-01-02").rows == 5
    (run,) = led.runs()
    assert (run["run_id"], run["status"], run["planned"], run["pid"]) == ("r1", "running", 3, os.getpid())
    assert run["argv"] == ["spx-data", "run"]
    assert run["finished"] is None
    assert not list(outcomes.glob("*.json"))


def test_fetch_then_assemble_success(led: Ledger, outcomes: Path) -> None:
    day = "2024-01-02"
    run_start(outcomes, "r1", [day])
    fetch(outcomes, "r1", day, expiration="2024-01-05")
    assert led.sync(outcomes) == 2
    row = led.day(DS, day)
    assert (row.status, row.attempts) == ("processing", 0)
    (request,) = led.requests(dataset=DS, day=day)
    assert (request["symbol"], request["expiration"], request["status"]) == ("SPXW", "2024-01-05", "ok")
    assert (request["http_status"], request["rows"], request["bytes"], request["seconds"]) == (
        200,
        10,
        1000,
        0.5,
    )

    fetch(outcomes, "r1", day, status="no_data", expiration="2024-01-12", http_status=472, rows=0)
    emit(outcomes, "r1", "assemble_start", dataset=DS, day=day)
    assemble(outcomes, "r1", day, rows=30, bytes=4096, seconds=1.5)
    emit(outcomes, "r1", "run_end", ok=True)
    assert led.sync(outcomes) == 4
    assert led.day(DS, day) == DayRow(
        DS, day, "success", 1, 30, 4096, 1.5, "ab" * 32, None, None, led.day(DS, day).updated
    )
    (attempt,) = led.attempts(DS, day)
    assert (attempt["status"], attempt["rows"], attempt["sha256"], attempt["run_id"]) == (
        "success",
        30,
        "ab" * 32,
        "r1",
    )
    assert attempt["started"] == led.requests(day=day)[0]["at"]  # the attempt began with the first fetch
    assert attempt["finished"] >= attempt["started"]
    assert len(led.requests(day=day)) == 2
    assert led.runs()[0]["status"] == "ok"


def test_failed_fetch_fails_the_day_once_and_keeps_first_error(led: Ledger, outcomes: Path) -> None:
    day = "2024-01-02"
    run_start(outcomes, "r1", [day])
    fetch(outcomes, "r1", day, expiration="2024-01-05")
    fetch(
        outcomes,
        "r1",
        day,
        status="failed",
        expiration="2024-01-12",
        error_class="RetriesExhausted",
        error="500 five times",
    )
    fetch(
        outcomes,
        "r1",
        day,
        status="failed",
        expiration="2024-01-19",
        error_class="BadResponse",
        error="torn line",
    )
    fetch(outcomes, "r1", day, expiration="2024-01-26")  # a later success does not reopen the day
    led.sync(outcomes)
    row = led.day(DS, day)
    assert (row.status, row.attempts, row.error_class, row.last_error) == (
        "failed",
        1,
        "RetriesExhausted",
        "500 five times",
    )
    (attempt,) = led.attempts(DS, day)
    assert (attempt["status"], attempt["error_class"]) == ("failed", "RetriesExhausted")
    assert len(led.requests(day=day)) == 4
    emit(outcomes, "r1", "run_end", ok=False)
    led.sync(outcomes)
    assert led.day(DS, day).error_class == "RetriesExhausted"  # failed is final: not "Interrupted"
    assert led.runs()[0]["status"] == "error"


def test_assemble_overrides_failed_fetch_of_same_run(led: Ledger, outcomes: Path) -> None:
    day = "2024-01-02"
    run_start(outcomes, "r1", [day])
    fetch(outcomes, "r1", day, status="failed", error_class="RetriesExhausted", error="429")
    fetch(outcomes, "r1", day)  # Snakemake's retry of that job succeeded
    emit(outcomes, "r1", "assemble_start", dataset=DS, day=day)
    led.sync(outcomes)
    assert led.day(DS, day).status == "failed"  # the assemble outcome decides, not its start
    assemble(outcomes, "r1", day)
    led.sync(outcomes)
    row = led.day(DS, day)
    assert (row.status, row.attempts, row.error_class, row.last_error) == ("success", 1, None, None)
    (attempt,) = led.attempts(DS, day)
    assert (attempt["status"], attempt["error_class"], attempt["stage"]) == ("success", None, "assemble")


def test_assemble_no_data_and_failed(led: Ledger, outcomes: Path) -> None:
    run_start(outcomes, "r1", ["2024-01-02", "2024-01-03"])
    assemble(outcomes, "r1", "2024-01-02", status="no_data", rows=0, bytes=900)
    assemble(
        outcomes,
        "r1",
        "2024-01-03",
        status="failed",
        rows=None,
        bytes=None,
        sha256=None,
        error_class="ValidationError",
        error="row count 7 != 8",
    )
    led.sync(outcomes)
    nodata, failed = led.day(DS, "2024-01-02"), led.day(DS, "2024-01-03")
    assert (nodata.status, nodata.rows, nodata.bytes, nodata.attempts, nodata.error_class) == (
        "no_data",
        0,
        900,
        1,
        None,
    )
    assert (failed.status, failed.attempts, failed.error_class, failed.last_error, failed.sha256) == (
        "failed",
        1,
        "ValidationError",
        "row count 7 != 8",
        None,
    )
    # a Snakemake retry of the assembly within the same run is a second attempt
    emit(outcomes, "r1", "assemble_start", dataset=DS, day="2024-01-03")
    led.sync(outcomes)
    assert led.day(DS, "2024-01-03").status == "processing"
    assemble(outcomes, "r1", "2024-01-03")
    led.sync(outcomes)
    assert (led.day(DS, "2024-01-03").status, led.day(DS, "2024-01-03").attempts) == ("success", 2)
    assert [a["status"] for a in led.attempts(DS, "2024-01-03")] == ["failed", "success"]


def test_run_end_interrupts_unfinished_days_and_next_run_retries(led: Ledger, outcomes: Path) -> None:
    days = ["2024-01-02", "2024-01-03", "2024-01-04"]
    run_start(outcomes, "r1", days)
    fetch(outcomes, "r1", days[0])
    assemble(outcomes, "r1", days[0])
    fetch(outcomes, "r1", days[1])
    emit(outcomes, "r1", "run_end", ok=False)
    assert led.sync(outcomes) == 5
    assert statuses(led) == {days[0]: "success", days[1]: "failed", days[2]: "failed"}
    for day, attempts in ((days[1], 1), (days[2], 0)):
        row = led.day(DS, day)
        assert (row.attempts, row.error_class, row.last_error) == (
            attempts,
            "Interrupted",
            "run ended before this day finished",
        )
    (attempt,) = led.attempts(DS, days[1])
    assert (attempt["status"], attempt["error_class"]) == ("failed", "Interrupted")
    assert led.attempts(DS, days[2]) == []  # it never started
    assert led.runs()[0]["status"] == "error"

    run_start(outcomes, "r2", days)
    led.sync(outcomes)
    assert statuses(led) == {days[0]: "success", days[1]: "queued", days[2]: "queued"}
    fetch(outcomes, "r2", days[1])
    assemble(outcomes, "r2", days[1])
    emit(outcomes, "r2", "run_end", ok=True)
    led.sync(outcomes)
    assert (led.day(DS, days[1]).status, led.day(DS, days[1]).attempts) == ("success", 2)
    assert [a["run_id"] for a in led.attempts(DS, days[1])] == ["r1", "r2"]
    assert led.day(DS, days[2]).status == "failed"
    assert [r["run_id"] for r in led.runs()] == ["r2", "r1"]
    assert [r["run_id"] for r in led.runs(limit=1)] == ["r2"]


def test_events_of_an_ended_run_never_make_a_day_processing(led: Ledger, outcomes: Path) -> None:
    run_start(outcomes, "r1", ["2024-01-02"])
    emit(outcomes, "r1", "run_end", ok=False)
    fetch(outcomes, "r1", "2024-01-02")  # an orphaned job still writing
    emit(outcomes, "r1", "assemble_start", dataset=DS, day="2024-01-02")
    led.sync(outcomes)
    assert led.day(DS, "2024-01-02").status == "failed"
    assemble(outcomes, "r1", "2024-01-02")  # its file is real: the outcome counts
    led.sync(outcomes)
    assert led.day(DS, "2024-01-02").status == "success"


def test_events_without_run_start_create_days(led: Ledger, outcomes: Path) -> None:
    fetch(outcomes, "manual", "2024-01-02")
    led.sync(outcomes)
    assert led.day(DS, "2024-01-02").status == "processing"
    assemble(outcomes, "manual", "2024-01-02")
    led.sync(outcomes)
    assert (led.day(DS, "2024-01-02").status, led.day(DS, "2024-01-02").attempts) == ("success", 1)
    assert led.runs() == []


# -- idempotency and robustness -----------------------------------------------------------------------


def test_a_late_failure_of_a_job_older_than_the_success_changes_only_history(
    led: Ledger, outcomes: Path
) -> None:
    """An orphaned job of a dead run fails after a newer run archived the day: the day stays success."""
    run_start(outcomes, "old", ["2024-01-02"], pid=_dead_pid())
    emit(outcomes, "old", "assemble_start", dataset=DS, day="2024-01-02")
    fetch(outcomes, "old", "2024-01-02")
    run_start(outcomes, "new", ["2024-01-02"])
    assemble(outcomes, "new", "2024-01-02", sha256="cd" * 32)
    # Both orphans started an hour ago, long before the new run's success.
    late = {"error": "late", "seconds": 3600}
    fetch(outcomes, "old", "2024-01-02", status="ok", **late)
    fetch(outcomes, "old", "2024-01-02", status="failed", error_class="ReadTimeout", **late)
    assemble(outcomes, "old", "2024-01-02", status="failed", error_class="OSError", **late)
    led.refresh(outcomes)
    row = led.day(DS, "2024-01-02")
    assert row is not None and (row.status, row.sha256, row.attempts) == ("success", "cd" * 32, 1)
    old = [a for a in led.attempts(DS, "2024-01-02") if a["run_id"] == "old"]
    assert [(a["status"], a["error_class"]) for a in old] == [("failed", "OSError")]

    # A job that starts after the success and fails is news: the day fails.
    assemble(outcomes, "new", "2024-01-02", status="failed", error_class="OSError", error="now", seconds=0.0)
    led.refresh(outcomes)
    assert led.day(DS, "2024-01-02").status == "failed"


def _snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    tables = ("runs", "days", "attempts", "requests", "events")
    snap = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables}
    db.close()
    return snap


def _some_events(outcomes: Path) -> None:
    run_start(outcomes, "r1", ["2024-01-02", "2024-01-03"])
    fetch(outcomes, "r1", "2024-01-02")
    fetch(outcomes, "r1", "2024-01-03", status="failed", error_class="BadResponse", error="x")
    assemble(outcomes, "r1", "2024-01-02")
    emit(outcomes, "r1", "run_end", ok=True)


def test_syncing_the_same_events_twice_changes_nothing(led: Ledger, outcomes: Path, tmp_path: Path) -> None:
    _some_events(outcomes)
    saved = tmp_path / "saved"
    shutil.copytree(outcomes, saved)
    assert led.sync(outcomes) == 5
    first = _snapshot(led.path)
    shutil.rmtree(outcomes)
    shutil.copytree(saved, outcomes)
    assert led.sync(outcomes) == 0
    assert _snapshot(led.path) == first
    assert not list(outcomes.glob("*.json"))
    assert led.day(DS, "2024-01-02").attempts == 1


def test_crash_after_commit_before_delete_does_not_double_count(
    tmp_path: Path, outcomes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.sqlite"
    _some_events(outcomes)

    def crash(self: Path, missing_ok: bool = False) -> None:
        raise KeyboardInterrupt("killed between commit and delete")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", crash)
        led = Ledger(path)
        with pytest.raises(KeyboardInterrupt):
            led.sync(outcomes)
        led.close()
    assert len(list(outcomes.glob("*.json"))) == 5  # the files survived the "crash"
    committed = _snapshot(path)
    assert len(committed["events"]) == 5
    with Ledger(path) as again:
        assert again.sync(outcomes) == 0
        assert _snapshot(path) == committed
        assert (again.day(DS, "2024-01-02").attempts, again.day(DS, "2024-01-03").attempts) == (1, 1)
        assert len(again.requests()) == 2
    assert not list(outcomes.glob("*.json"))


_HANG_IN_RENAME = """
import os, sys
from pathlib import Path
from spx_data.core import outcomes
os.replace = lambda *a: (print("written", flush=True), sys.stdin.read())  # killed before the rename
outcomes.write_event(Path(sys.argv[1]), "run_end", ok=True)
"""


def test_a_writer_killed_mid_event_leaves_a_temp_that_sync_sweeps_once_it_is_dead(
    led: Ledger, outcomes: Path
) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _HANG_IN_RENAME, str(outcomes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "written\n"
    [tmp] = outcomes.glob(".*.tmp")
    assert f".{writer.pid}@{socket.gethostname()}.tmp" in tmp.name
    led.sync(outcomes)
    assert tmp.exists()  # its writer lives: it may still rename it
    writer.kill()
    writer.wait()
    old = outcomes / f".20240102T000000000000-{uuid.uuid4().hex}.json.1@elsewhere.example.org.tmp"
    old.write_bytes(b"{")
    young = outcomes / f".20240102T000000000001-{uuid.uuid4().hex}.json.1@elsewhere.example.org.tmp"
    young.write_bytes(b"{")
    os.utime(old, (time.time() - 601, time.time() - 601))  # another host's: by age only
    emit(outcomes, "r1", "run_start", pid=1, host="h", planned=[[DS, "2024-01-02"]], argv=[])
    assert led.sync(outcomes) == 1
    assert not tmp.exists() and not old.exists() and young.exists()
    assert not list(outcomes.glob("*.json"))


def test_failure_inside_a_batch_commits_nothing(
    tmp_path: Path, outcomes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.sqlite"
    _some_events(outcomes)
    original = ledger_module._on_assemble

    def broken(cur: sqlite3.Cursor, event: dict[str, Any]) -> None:
        original(cur, event)
        raise sqlite3.OperationalError("disk I/O error")

    with Ledger(path) as led:
        monkeypatch.setitem(ledger_module._HANDLERS, "assemble", broken)
        with pytest.raises(sqlite3.OperationalError):
            led.sync(outcomes)
        assert led.days() == []  # the whole batch rolled back
        assert len(list(outcomes.glob("*.json"))) == 5
        monkeypatch.setitem(ledger_module._HANDLERS, "assemble", original)
        assert led.sync(outcomes) == 5


def test_malformed_events_are_skipped_and_kept(led: Ledger, outcomes: Path) -> None:
    at = dt.datetime.now(dt.UTC).isoformat()
    base = {"at": at, "run_id": "r1"}
    bad = [
        emit_raw(outcomes, base | {"id": "a1", "kind": "surprise"}),
        emit_raw(outcomes, base | {"id": "a2", "kind": "fetch", "dataset": DS, "status": "ok"}),  # no day
        emit_raw(
            outcomes,
            base | {"id": "a3", "kind": "assemble", "dataset": DS, "day": "2024-01-02", "status": "great"},
        ),
        emit_raw(
            outcomes,
            base
            | {
                "id": "a4",
                "kind": "fetch",
                "dataset": DS,
                "day": "2024-01-02",
                "status": "ok",
                "rows": {"n": 1},
            },
        ),
    ]
    (outcomes / "zz-not-json.json").write_text("{")
    fetch(outcomes, "r1", "2024-01-03")
    assert led.sync(outcomes) == 1
    assert all(p.exists() for p in bad)
    assert (outcomes / "zz-not-json.json").exists()
    assert [r["day"] for r in led.requests()] == ["2024-01-03"]
    assert statuses(led) == {"2024-01-03": "processing"}
    db = sqlite3.connect(led.path)
    assert db.execute("SELECT count(*) FROM events").fetchone() == (1,)
    db.close()


def test_sql_injection_looking_values_are_stored_verbatim(led: Ledger, outcomes: Path) -> None:
    led.set_status(DS, EVIL, "failed", error_class=EVIL, error=EVIL)
    run_start(outcomes, EVIL, ["2024-01-02"])
    fetch(outcomes, EVIL, EVIL, status="failed", symbol=EVIL, error_class="BadResponse", error=EVIL)
    assemble(outcomes, EVIL, "2024-01-02", status="failed", error_class="ValidationError", error=EVIL)
    emit(outcomes, EVIL, "run_end", ok=True)
    assert led.sync(outcomes) == 4
    row = led.day(DS, EVIL)
    assert (row.day, row.status, row.last_error) == (EVIL, "failed", EVIL)
    assert led.day(DS, "2024-01-02").last_error == EVIL
    assert led.requests(day=EVIL)[0]["symbol"] == EVIL
    assert led.runs()[0]["run_id"] == EVIL
    assert [r.day for r in led.days(until=EVIL)] == [EVIL]  # "'" sorts before digits
    assert len(led.days()) == 2
    assert led.counts() == {DS: {"queued": 0, "processing": 0, "success": 0, "failed": 2, "no_data": 0}}


# -- queries ------------------------------------------------------------------------------------------


def test_days_filters_counts_and_set_status(led: Ledger) -> None:
    for i, status in enumerate(["success", "success", "no_data", "failed", "queued"]):
        led.set_status(DS, f"2024-01-0{i + 2}", status)
    led.set_status("ohlc", "2024-01-02", "failed", error_class="PermissionDenied", error="471")
    assert [r.day for r in led.days(dataset=DS, status="success")] == ["2024-01-02", "2024-01-03"]
    assert [r.day for r in led.days(since="2024-01-04", until="2024-01-05")] == ["2024-01-04", "2024-01-05"]
    assert [(r.dataset, r.day) for r in led.days(status="failed")] == [
        ("ohlc", "2024-01-02"),
        (DS, "2024-01-05"),
    ]
    assert led.days(dataset="greeks_all") == []
    assert led.counts() == {
        "ohlc": {"queued": 0, "processing": 0, "success": 0, "failed": 1, "no_data": 0},
        DS: {"queued": 1, "processing": 0, "success": 2, "failed": 1, "no_data": 1},
    }
    assert led.day("ohlc", "2024-01-03") is None
    row = led.day("ohlc", "2024-01-02")
    assert (row.error_class, row.last_error, row.attempts) == ("PermissionDenied", "471", 0)
    assert dt.datetime.fromisoformat(row.updated).tzinfo == dt.UTC
    led.set_status("ohlc", "2024-01-02", "queued")  # operator's retry: the row is what was given
    assert (led.day("ohlc", "2024-01-02").status, led.day("ohlc", "2024-01-02").last_error) == (
        "queued",
        None,
    )
    with pytest.raises(ValueError, match="not one of"):
        led.set_status(DS, "2024-01-02", "done")
    assert set(STATUSES) == {"queued", "processing", "success", "failed", "no_data"}


def test_reads_are_fast_on_a_decade_of_sessions(led: Ledger, outcomes: Path) -> None:
    start = dt.date(2015, 1, 1)
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range(2500)]
    emit(
        outcomes,
        "r1",
        "run_start",
        pid=os.getpid(),
        host=socket.gethostname(),
        planned=[[ds, d] for ds in (DS, "ohlc") for d in days],
    )
    led.sync(outcomes)
    assert len(led.days()) == 5000 and led.counts()[DS]["queued"] == 2500
    assert len(led.days(dataset=DS, status="queued", since="2016-01-01", until="2016-12-31")) == 366
    # CPU time, best of 5: what the ledger costs, not how busy other test workers keep the 2 cores
    for read in (led.days, led.counts, lambda: led.days(dataset=DS, status="queued", since="2016-06-01")):
        best = min(_seconds(read) for _ in range(5))
        assert best < 0.1, best


def _seconds(fn: Any) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def test_sync_of_thousands_of_events_is_fast(led: Ledger, outcomes: Path) -> None:
    outcomes.mkdir(parents=True)
    at = dt.datetime.now(dt.UTC).isoformat()
    for i in range(3000):
        day = f"2020-{1 + i // 250 % 12:02d}-{1 + i % 28:02d}"
        event = {
            "id": f"e{i:05d}",
            "kind": "fetch",
            "at": at,
            "run_id": "r1",
            "dataset": DS,
            "day": day,
            "symbol": "SPXW",
            "expiration": "2020-12-18",
            "status": "ok",
            "rows": 100,
        }
        (outcomes / f"{i:08d}.json").write_text(json.dumps(event))
    t0 = time.perf_counter()
    assert led.sync(outcomes) == 3000
    elapsed = time.perf_counter() - t0
    assert len(led.requests()) == 3000 and not list(outcomes.iterdir())
    assert elapsed < 5.0, elapsed


def test_begin_retries_a_lock_the_busy_handler_gave_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    monkeypatch.setattr(ledger_module.time, "sleep", lambda s: None)
    assert ledger_module._retry_locked(flaky) == "ok" and len(calls) == 3
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        ledger_module._retry_locked(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("no such table")))


def test_a_writer_waits_for_another_connections_write_lock(led: Ledger) -> None:
    other = sqlite3.connect(led.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    timer.start()
    t0 = time.perf_counter()
    led.set_status(DS, "2024-01-02", "success")
    timer.join()
    other.close()
    assert time.perf_counter() - t0 >= 0.25
    assert led.day(DS, "2024-01-02").status == "success"


# -- concurrency --------------------------------------------------------------------------------------

WRITERS, DAYS_PER_WRITER, EXPIRATIONS = 8, 5, 3


def _writer(ledger_path: str, outcomes: str, index: int) -> None:
    out = Path(outcomes)
    run_id = f"run-{index}"
    days = [f"20{10 + index}-03-{d + 1:02d}" for d in range(DAYS_PER_WRITER)]
    with Ledger(Path(ledger_path)) as led:
        run_start(out, run_id, days)
        led.sync(out)
        for day in days:
            for e in range(EXPIRATIONS):
                fetch(out, run_id, day, expiration=f"2030-01-{e + 1:02d}")
            led.sync(out)
            emit(out, run_id, "assemble_start", dataset=DS, day=day)
            assemble(out, run_id, day)
            led.sync(out)
        emit(out, run_id, "run_end", ok=True)
        led.sync(out)


def _reader(ledger_path: str, outcomes: str, rounds: int) -> None:
    with Ledger(Path(ledger_path)) as led:
        for _ in range(rounds):
            led.refresh(Path(outcomes))
            led.days()
            led.counts()


def test_concurrent_writers_and_readers_lose_nothing(tmp_path: Path) -> None:
    path, outcomes = tmp_path / "ledger.sqlite", tmp_path / "outcomes"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), str(outcomes), i)) for i in range(WRITERS)]
    procs += [ctx.Process(target=_reader, args=(str(path), str(outcomes), 40)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)  # a "database is locked" would be exit 1
    with Ledger(path) as led:
        assert led.sync(outcomes) == 0  # every writer's last sync ingested its own events
        days = led.days()
        assert len(days) == WRITERS * DAYS_PER_WRITER
        assert {(r.status, r.attempts, r.rows) for r in days} == {("success", 1, 30)}
        assert len(led.requests()) == WRITERS * DAYS_PER_WRITER * EXPIRATIONS
        assert {r["status"] for r in led.runs(limit=100)} == {"ok"}
        db = sqlite3.connect(path)
        per_writer = 2 + DAYS_PER_WRITER * (EXPIRATIONS + 2)
        assert db.execute("SELECT count(*) FROM events").fetchone() == (WRITERS * per_writer,)
        assert db.execute("SELECT count(*) FROM attempts").fetchone() == (WRITERS * DAYS_PER_WRITER,)
        db.close()


# -- dead runs ----------------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid no longer exists
    return proc.pid


def test_dead_run_is_killed_and_leaves_nothing_processing(led: Ledger, outcomes: Path) -> None:
    run_start(outcomes, "dead", ["2024-01-02", "2024-01-03", "2024-01-04"], pid=_dead_pid())
    fetch(outcomes, "dead", "2024-01-02")
    emit(outcomes, "dead", "assemble_start", dataset=DS, day="2024-01-02")
    assemble(outcomes, "dead", "2024-01-03")
    run_start(outcomes, "alive", ["2024-02-01"])  # this process
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=8)).isoformat()
    for run_id, at, day in (("far-old", old, "2024-03-01"), ("far-new", None, "2024-04-01")):
        emit_raw(
            outcomes,
            {
                "id": run_id,
                "kind": "run_start",
                "at": at or dt.datetime.now(dt.UTC).isoformat(),
                "run_id": run_id,
                "pid": 1,
                "host": "some-other-node",
                "planned": [[DS, day]],
            },
        )
    led.sync(outcomes)
    assert led.day(DS, "2024-01-02").status == "processing"

    assert led.resolve_dead_runs() == 3  # two days of "dead", one of "far-old"
    assert {r["run_id"]: r["status"] for r in led.runs()} == {
        "dead": "killed",
        "alive": "running",
        "far-old": "killed",
        "far-new": "running",
    }
    assert statuses(led) == {
        "2024-01-02": "failed",
        "2024-01-03": "success",
        "2024-01-04": "failed",
        "2024-02-01": "queued",
        "2024-03-01": "failed",
        "2024-04-01": "queued",
    }
    killed = led.day(DS, "2024-01-02")
    assert (killed.error_class, killed.last_error, killed.attempts) == ("Interrupted", "run was killed", 1)
    assert led.attempts(DS, "2024-01-02")[0]["status"] == "failed"
    assert led.days(status="processing") == []
    assert led.resolve_dead_runs() == 0  # settled once


def test_refresh_settles_a_killed_run_for_the_next_reader(tmp_path: Path, outcomes: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    run_start(outcomes, "dead", ["2024-01-02"], pid=_dead_pid())
    fetch(outcomes, "dead", "2024-01-02")
    with Ledger(path) as led:
        led.refresh(outcomes)
        assert led.day(DS, "2024-01-02").status == "failed"
        assert led.days(status="processing") == []


# -- rebuild ------------------------------------------------------------------------------------------


def _write_day(
    archive: Path, day: str, table: pa.Table, footer: dict[str, str] | None, sidecar: bool
) -> Path:
    layout = Layout(archive, archive.parent / "work")
    path = layout.parquet(DS, day)
    path.parent.mkdir(parents=True)
    pq.write_table(table.replace_schema_metadata(footer), path)
    if sidecar:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        layout.sidecar(DS, day).write_text(f"{digest}  {path.name}\n")
    return path


def test_rebuild_from_archive_matches_the_ledger_built_from_events(tmp_path: Path, outcomes: Path) -> None:
    archive = tmp_path / "archive"
    layout = Layout(archive, tmp_path / "work")
    table = pa.table({"strike": pa.array([4000, 4005, 4010], pa.int64())})
    ok = _write_day(archive, "2024-01-02", table, {"spx_data.status": "success", "spx_data.rows": "3"}, True)
    empty = _write_day(
        archive, "2024-01-03", table.slice(0, 0), {"spx_data.status": "no_data", "spx_data.rows": "0"}, True
    )
    _write_day(archive, "2024-01-04", table, {"spx_data.status": "success"}, sidecar=False)  # crashed
    plain = _write_day(archive, "2024-01-05", table, None, True)  # no spx_data keys: num_rows
    torn = archive / DS / "date=2024-01-08" / f"spx-{DS}-2024-01-08.parquet"
    torn.parent.mkdir()
    torn.write_bytes(b"PAR1 not really")
    layout.legacy_sidecar(DS, "2024-01-08").write_text(f"{'0' * 64}  {torn.name}\n")
    (archive / DS / "date=2024-01-09").mkdir()  # an empty folder: nothing to say
    (archive / DS / "date=2024-01-10").mkdir()
    (archive / DS / "date=2024-01-10" / f".spx-{DS}-2024-01-10.parquet.tmp").write_bytes(b"x")

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    days = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]
    run_start(outcomes, "r1", days)
    assemble(outcomes, "r1", days[0], rows=3, bytes=ok.stat().st_size, sha256=sha(ok))
    assemble(outcomes, "r1", days[1], status="no_data", rows=0, bytes=empty.stat().st_size, sha256=sha(empty))
    emit(outcomes, "r1", "assemble_start", dataset=DS, day=days[2])
    assemble(outcomes, "r1", days[3], rows=3, bytes=plain.stat().st_size, sha256=sha(plain))
    assemble(outcomes, "r1", days[4], status="failed", error_class="ValidationError", error="torn")
    emit(outcomes, "r1", "run_end", ok=False)
    with Ledger(tmp_path / "events.sqlite") as from_events, Ledger(tmp_path / "rebuilt.sqlite") as rebuilt:
        from_events.sync(outcomes)
        assert rebuild_from_archive(rebuilt, layout, [DS]) == 5
        assert (
            statuses(rebuilt)
            == statuses(from_events)
            == {
                "2024-01-02": "success",
                "2024-01-03": "no_data",
                "2024-01-04": "failed",
                "2024-01-05": "success",
                "2024-01-08": "failed",
            }
        )
        for day in ("2024-01-02", "2024-01-03", "2024-01-05"):
            a, b = from_events.day(DS, day), rebuilt.day(DS, day)
            assert (a.rows, a.bytes, a.sha256) == (b.rows, b.bytes, b.sha256), day
        crashed = rebuilt.day(DS, "2024-01-04")
        assert (crashed.error_class, crashed.last_error) == ("IncompleteFile", "incomplete file in archive")
        assert rebuilt.day(DS, "2024-01-08").last_error == "incomplete file in archive"

        # rebuilding over a ledger that has history keeps its attempt counts
        assert rebuild_from_archive(from_events, layout, [DS]) == 5
        assert from_events.day(DS, "2024-01-02").attempts == 1
        assert from_events.day(DS, "2024-01-08").status == "failed"
        with pytest.raises(ValueError, match="not one of"):
            rebuild_from_archive(rebuilt, layout, ["../etc"])


def test_note_beside_the_status_and_an_older_ledger_gains_the_column(tmp_path: Path) -> None:
    db, outcomes = tmp_path / "ledger.sqlite", tmp_path / "outcomes"
    with sqlite3.connect(db) as con:  # a ledger written before the note column existed
        for statement in ledger_module._SCHEMA:
            con.execute(statement)  # version 1's statements: no note column
        con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        con.execute(
            "INSERT INTO days (dataset, day, status, updated) VALUES ('ohlc', '2024-01-02', 'success', 'x')"
        )
    with sqlite3.connect(db) as con:
        assert "note" not in {row[1] for row in con.execute("PRAGMA table_info(days)")}
    with Ledger(db) as led:
        assert led.day("ohlc", "2024-01-02").note is None  # type: ignore[union-attr]
        run_start(outcomes, "r1", ["2024-01-03", "2024-01-04"])
        assemble(outcomes, "r1", "2024-01-03", note="12 of 40 listed contracts not answered (no trades)")
        assemble(
            outcomes,
            "r1",
            "2024-01-04",
            status="no_data",
            rows=0,
            note="no data: the listing answered empty 200",
        )
        led.sync(outcomes)
        assert [row.note for row in led.days(dataset=DS)] == [
            "12 of 40 listed contracts not answered (no trades)",
            "no data: the listing answered empty 200",
        ]
    with Ledger(db) as again:  # opening twice adds nothing twice
        assert again.day(DS, "2024-01-04").status == "no_data"  # type: ignore[union-attr]
