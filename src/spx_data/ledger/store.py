"""The SQLite ledger: each (dataset, day)'s current status, plus its attempts, requests and runs.

Jobs never open SQLite; they leave event files (outcomes.py) that `sync` mirrors here, idempotently on
the event id. Every reader calls `refresh` first, so a run that was killed leaves no day `processing`.

How a day moves within one run (attempt rows keep one try each; `stage` says which step wrote last):
- run_start queues every planned day not already `success`.
- The first fetch or assemble_start of a day opens an attempt and makes the day `processing`.
- A failed fetch closes the attempt as `failed`; later fetches of that run leave the day alone, but an
  assemble outcome of the same run still overrides it (updating that same attempt).
- An assemble outcome closes the attempt as success / no_data / failed.
- run_end (or a dead run found by `resolve_dead_runs`) fails whatever is still queued or processing.
A run that has ended never moves a day back to `processing` (orphaned jobs may still write events).
A fetch or a failed assembly whose job started before the day's success was recorded is an orphan's
late news (its run died, a newer run finished the day): it joins the history, the day stays as it is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import random
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from spx_data.core.errors import SpxDataError
from spx_data.core.outcomes import pid_alive, read_events, sweep_dead_temps
from spx_data.core.validate import choice

log = logging.getLogger(__name__)

STATUSES = ("queued", "processing", "success", "failed", "no_data")
SCHEMA_VERSION = 1

_BATCH = 1000  # events per transaction: big enough to be fast, short enough not to starve other writers
_BUSY_TIMEOUT_S = 60
_LOCK_RETRIES = 12  # only for locks the busy handler did not wait for
_OTHER_HOST_MAX_AGE = dt.timedelta(days=7)
_T = TypeVar("_T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, pid INTEGER, host TEXT, started TEXT, finished TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error', 'killed')),
        planned INTEGER, argv TEXT)""",
    """CREATE TABLE IF NOT EXISTS days (
        dataset TEXT NOT NULL, day TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'success', 'failed', 'no_data')),
        attempts INTEGER NOT NULL DEFAULT 0, rows INTEGER, bytes INTEGER, seconds REAL, sha256 TEXT,
        error_class TEXT, last_error TEXT, run_id TEXT, updated TEXT NOT NULL,
        PRIMARY KEY (dataset, day))""",
    """CREATE TABLE IF NOT EXISTS attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, dataset TEXT NOT NULL, day TEXT NOT NULL,
        status TEXT NOT NULL, started TEXT, finished TEXT, rows INTEGER, bytes INTEGER, seconds REAL,
        sha256 TEXT, error_class TEXT, error TEXT,
        stage TEXT NOT NULL CHECK (stage IN ('fetch', 'assemble', 'run')))""",
    """CREATE TABLE IF NOT EXISTS requests (
        event_id TEXT PRIMARY KEY, run_id TEXT, dataset TEXT, day TEXT, symbol TEXT, expiration TEXT,
        status TEXT, http_status INTEGER, attempts INTEGER, rows INTEGER, bytes INTEGER, seconds REAL,
        sha256 TEXT, error_class TEXT, error TEXT, at TEXT)""",
    "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, kind TEXT NOT NULL, at TEXT)",
    # Data quality metrics (archive/quality.py): one row per (dataset, day, metric); flag never blocks.
    """CREATE TABLE IF NOT EXISTS quality (
        dataset TEXT NOT NULL, day TEXT NOT NULL, metric TEXT NOT NULL, value REAL, threshold REAL,
        flag INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (dataset, day, metric))""",
    "CREATE INDEX IF NOT EXISTS days_by_status ON days (status, dataset, day)",
    "CREATE INDEX IF NOT EXISTS days_by_day ON days (day)",
    "CREATE INDEX IF NOT EXISTS days_by_run ON days (run_id, status)",
    "CREATE INDEX IF NOT EXISTS attempts_by_day ON attempts (dataset, day, run_id)",
    "CREATE INDEX IF NOT EXISTS attempts_open ON attempts (run_id) WHERE finished IS NULL",
    "CREATE INDEX IF NOT EXISTS requests_by_day ON requests (dataset, day)",
    "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status)",
)

_DAY_COLUMNS = (
    "dataset, day, status, attempts, rows, bytes, seconds, sha256, error_class, last_error, updated, note"
)
# Columns added after schema version 1 (additive: an older ledger gains them when opened).
_ADDED_COLUMNS = (("days", "note", "TEXT"),)

_QUEUE = """
    INSERT INTO days (dataset, day, status, attempts, run_id, updated) VALUES (?, ?, 'queued', 0, ?, ?)
    ON CONFLICT (dataset, day) DO UPDATE SET status = 'queued', run_id = excluded.run_id,
        updated = excluded.updated
    WHERE days.status != 'success'"""
_PROCESSING = """
    INSERT INTO days (dataset, day, status, attempts, run_id, updated) VALUES (?, ?, 'processing', 0, ?, ?)
    ON CONFLICT (dataset, day) DO UPDATE SET status = 'processing', run_id = excluded.run_id,
        updated = excluded.updated"""
# A failed fetch: the day's file (if an older one exists) is untouched, so rows/bytes/sha256 stay.
_FETCH_FAILED = """
    INSERT INTO days (dataset, day, status, attempts, error_class, last_error, run_id, updated)
    VALUES (?, ?, 'failed', 1, ?, ?, ?, ?)
    ON CONFLICT (dataset, day) DO UPDATE SET status = 'failed', attempts = days.attempts + 1,
        error_class = excluded.error_class, last_error = excluded.last_error, run_id = excluded.run_id,
        updated = excluded.updated"""
# excluded.attempts carries the increment (0 when a failed fetch of this attempt already counted it).
_OUTCOME = """
    INSERT INTO days (dataset, day, status, attempts, rows, bytes, seconds, sha256, error_class, last_error,
        run_id, updated, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (dataset, day) DO UPDATE SET status = excluded.status,
        attempts = days.attempts + excluded.attempts, rows = excluded.rows, bytes = excluded.bytes,
        seconds = excluded.seconds, sha256 = excluded.sha256, error_class = excluded.error_class,
        last_error = excluded.last_error, run_id = excluded.run_id, updated = excluded.updated,
        note = excluded.note"""
_OPERATOR = """
    INSERT INTO days (dataset, day, status, attempts, rows, bytes, sha256, error_class, last_error, updated)
    VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (dataset, day) DO UPDATE SET status = excluded.status, rows = excluded.rows,
        bytes = excluded.bytes, sha256 = excluded.sha256, error_class = excluded.error_class,
        last_error = excluded.last_error, run_id = NULL, updated = excluded.updated"""
_REBUILT = _OPERATOR  # a rebuilt day is what its file says, owned by no run
_SET_QUALITY = """
    INSERT INTO quality (dataset, day, metric, value, threshold, flag) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (dataset, day, metric) DO UPDATE SET value = excluded.value,
        threshold = excluded.threshold, flag = excluded.flag"""
_INSERT_ATTEMPT = """
    INSERT INTO attempts (run_id, dataset, day, started, status, finished, rows, bytes, seconds, sha256,
        error_class, error, stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_CLOSE_ATTEMPT = """
    UPDATE attempts SET status = ?, finished = ?, rows = ?, bytes = ?, seconds = ?, sha256 = ?,
        error_class = ?, error = ?, stage = ? WHERE id = ?"""
_INSERT_REQUEST = """
    INSERT OR IGNORE INTO requests (event_id, run_id, dataset, day, symbol, expiration, status, http_status,
        attempts, rows, bytes, seconds, sha256, error_class, error, at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""

# A malformed event (missing field, wrong type, bad status) is skipped and its file kept for a look.
_MALFORMED = (KeyError, TypeError, ValueError, OverflowError, sqlite3.IntegrityError)


@dataclass(frozen=True)
class DayRow:
    dataset: str
    day: str
    status: str
    attempts: int
    rows: int | None
    bytes: int | None
    seconds: float | None
    sha256: str | None
    error_class: str | None
    last_error: str | None
    updated: str  # UTC ISO
    # Beside the status: why a day has no data (472 or empty 200), or the contracts a trade-derived
    # answer left out (not traded)
    note: str | None = None


class Ledger:
    def __init__(self, path: Path, archive: Path | None = None, read_only: bool = False) -> None:
        """Open (or create) the ledger; with `archive`, it must index that archive (the first writer
        records it), so another archive's outcomes never mix into this one."""
        self.path = Path(path)
        if read_only:  # a read-only share or backup: no WAL or lock files can be made, nobody writes it
            uri = f"{self.path.absolute().as_uri()}?mode=ro&immutable=1"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            _retry_locked(self._setup)
            if archive is not None:
                self._claim(archive)
        except BaseException:
            self._db.close()
            raise

    def _claim(self, archive: Path) -> None:
        key = _archive_key(self.path, archive)
        with self._transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('archive', ?)", (key,))
            indexed = cur.execute("SELECT value FROM meta WHERE key = 'archive'").fetchone()[0]
        _check_indexed(self.path, indexed, archive)

    def _setup(self) -> None:
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise SpxDataError(f"ledger {self.path}: cannot use WAL mode here (got {mode!r})")
        # FULL: a committed batch survives power loss, since its event files are deleted right after.
        self._db.execute("PRAGMA synchronous = FULL")
        if self._schema_version() != SCHEMA_VERSION:
            with self._transaction() as cur:
                for statement in _SCHEMA:
                    cur.execute(statement)
                cur.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            if (version := self._schema_version()) != SCHEMA_VERSION:
                raise SpxDataError(
                    f"ledger {self.path}: schema version {version}, this spx-data knows {SCHEMA_VERSION}"
                )
        self._add_columns()

    def _add_columns(self) -> None:
        for table, column, kind in _ADDED_COLUMNS:
            if column in {row[1] for row in self._query(f"PRAGMA table_info({table})")}:
                continue
            with self._transaction() as cur:
                if column not in {row[1] for row in cur.execute(f"PRAGMA table_info({table})")}:
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _schema_version(self) -> int | None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" not in str(e):
                raise
            return None
        return int(row[0]) if row else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        _retry_locked(lambda: self._db.execute("BEGIN IMMEDIATE"))
        try:
            yield self._db.cursor()
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return _retry_locked(lambda: self._db.execute(sql, tuple(params)).fetchall())

    def _dicts(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cursor = _retry_locked(lambda: self._db.execute(sql, tuple(params)))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- writing --------------------------------------------------------------------------------------

    def sync(self, outcomes_dir: Path) -> int:
        """Ingest event files in order, a transaction per batch, then delete them; returns events applied.
        Temp files of writers killed mid-write go too (they never held a whole event)."""
        sweep_dead_temps(Path(outcomes_dir))
        applied = 0
        batch: list[tuple[Path, dict[str, Any]]] = []
        for item in read_events(Path(outcomes_dir)):
            batch.append(item)
            if len(batch) >= _BATCH:
                applied += self._ingest(batch)
                batch = []
        if batch:
            applied += self._ingest(batch)
        return applied

    def _ingest(self, batch: list[tuple[Path, dict[str, Any]]]) -> int:
        applied = 0
        done: list[Path] = []
        with self._transaction() as cur:
            for path, event in batch:
                cur.execute("SAVEPOINT event")
                try:
                    if _apply(cur, event):
                        applied += 1
                except _MALFORMED as e:
                    cur.execute("ROLLBACK TO event")
                    log.warning("skipping malformed event file %s: %s: %s", path, type(e).__name__, e)
                else:
                    done.append(path)
                cur.execute("RELEASE event")
        # Only after commit: a crash before this point leaves files whose ids are already ingested.
        for path in done:
            path.unlink(missing_ok=True)
        return applied

    def resolve_dead_runs(self) -> int:
        """Mark runs whose process is gone as killed and fail their unfinished days; returns days failed."""
        running = self._query("SELECT run_id, pid, host, started FROM runs WHERE status = 'running'")
        dead = [run_id for run_id, pid, host, started in running if not _alive(pid, host, started)]
        if not dead:
            return 0
        now = _now()
        resolved = 0
        with self._transaction() as cur:
            for run_id in dead:
                cur.execute(
                    "UPDATE runs SET status = 'killed', finished = ? WHERE run_id = ? AND status = 'running'",
                    (now, run_id),
                )
                if cur.rowcount:
                    resolved += _interrupt(cur, run_id, now, "run was killed")
        return resolved

    def refresh(self, outcomes_dir: Path) -> None:
        """What every reader calls first: mirror pending events, then settle runs that died."""
        self.sync(outcomes_dir)
        self.resolve_dead_runs()

    def set_status(
        self,
        dataset: str,
        day: str,
        status: str,
        *,
        error_class: str | None = None,
        error: str | None = None,
        rows: int | None = None,
        bytes: int | None = None,
        sha256: str | None = None,
    ) -> None:
        """An operator's verdict (verify --repair, retry): the row becomes exactly what is given."""
        choice("status", status, STATUSES)
        with self._transaction() as cur:
            cur.execute(_OPERATOR, (dataset, day, status, rows, bytes, sha256, error_class, error, _now()))

    def set_archived(self, rows: Iterable[tuple[Any, ...]], gone: Iterable[tuple[str, str]] = ()) -> None:
        """Days as their archived files show them (ledger.rebuild), and days whose file is gone."""
        now = _now()
        with self._transaction() as cur:
            cur.executemany(_REBUILT, [(*row, now) for row in rows])
            cur.executemany("DELETE FROM days WHERE dataset = ? AND day = ?", gone)

    def set_quality(self, rows: Iterable[tuple[str, str, str, float | None, float | None, bool]]) -> None:
        """(dataset, day, metric, value, threshold, flag) rows, replacing the same metric's older row."""
        with self._transaction() as cur:
            cur.executemany(_SET_QUALITY, rows)

    def quality(
        self, *, dataset: str | None = None, since: str | None = None, flagged: bool = False
    ) -> list[dict[str, Any]]:
        """Quality rows of archived days (success or no_data) by dataset, day, metric."""
        filters = (("q.dataset = ?", dataset), ("q.day >= ?", since))
        used = [(clause, value) for clause, value in filters if value is not None]
        where = "".join(f" AND {clause}" for clause, _ in used) + (" AND q.flag" if flagged else "")
        sql = (
            "SELECT q.dataset, q.day, q.metric, q.value, q.threshold, q.flag FROM quality q JOIN days d"
            " ON d.dataset = q.dataset AND d.day = q.day WHERE d.status IN ('success', 'no_data')"
            f"{where} ORDER BY q.dataset, q.day, q.metric"
        )
        return self._dicts(sql, (value for _, value in used))

    def flagged_days(self) -> int:
        """Archived (dataset, day)s with at least one flagged quality metric."""
        sql = (
            "SELECT COUNT(*) FROM (SELECT DISTINCT q.dataset, q.day FROM quality q JOIN days d"
            " ON d.dataset = q.dataset AND d.day = q.day WHERE q.flag AND d.status IN ('success', 'no_data'))"
        )
        return int(self._query(sql)[0][0])

    # -- reading --------------------------------------------------------------------------------------

    def days(
        self,
        *,
        dataset: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[DayRow]:
        filters = (("dataset = ?", dataset), ("status = ?", status), ("day >= ?", since), ("day <= ?", until))
        used = [(clause, value) for clause, value in filters if value is not None]
        where = " WHERE " + " AND ".join(clause for clause, _ in used) if used else ""
        sql = f"SELECT {_DAY_COLUMNS} FROM days{where} ORDER BY dataset, day"
        return [DayRow(*row) for row in self._query(sql, (value for _, value in used))]

    def day(self, dataset: str, day: str) -> DayRow | None:
        rows = self._query(f"SELECT {_DAY_COLUMNS} FROM days WHERE dataset = ? AND day = ?", (dataset, day))
        return DayRow(*rows[0]) if rows else None

    def counts(self) -> dict[str, dict[str, int]]:
        """dataset -> status -> number of days, every status present (0 when none)."""
        result: dict[str, dict[str, int]] = {}
        for dataset, status, n in self._query(
            "SELECT dataset, status, count(*) FROM days GROUP BY dataset, status ORDER BY dataset"
        ):
            result.setdefault(dataset, dict.fromkeys(STATUSES, 0))[status] = n
        return result

    def attempts(self, dataset: str, day: str) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM attempts WHERE dataset = ? AND day = ? ORDER BY id", (dataset, day))

    def requests(self, *, dataset: str | None = None, day: str | None = None) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT * FROM requests WHERE (?1 IS NULL OR dataset = ?1) AND (?2 IS NULL OR day = ?2)"
            " ORDER BY at, event_id",
            (dataset, day),
        )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Most recent first, with the days and rows each archived; argv decoded to a list."""
        runs = self._dicts(
            "SELECT r.*, (SELECT count(*) FROM attempts a WHERE a.run_id = r.run_id AND a.status IN "
            "('success', 'no_data')) AS days_archived, (SELECT coalesce(sum(a.rows), 0) FROM attempts a "
            "WHERE a.run_id = r.run_id AND a.status = 'success') AS rows_archived "
            "FROM runs r ORDER BY started DESC, run_id LIMIT ?",
            (limit,),
        )
        for run in runs:
            run["argv"] = json.loads(run["argv"]) if run["argv"] else None
        return runs


# -- event handlers (inside the batch transaction) -------------------------------------------------------


def _apply(cur: sqlite3.Cursor, event: dict[str, Any]) -> bool:
    """Apply one event unless its id was ingested before; returns whether it was applied."""
    handler = _HANDLERS.get(event["kind"])
    if handler is None:
        raise ValueError(f"unknown event kind {event['kind']!r}")
    event_row = (_text(event["id"]), event["kind"], event["at"])
    cur.execute("INSERT OR IGNORE INTO events (id, kind, at) VALUES (?, ?, ?)", event_row)
    if cur.rowcount == 0:
        return False
    handler(cur, event)
    return True


def _on_run_start(cur: sqlite3.Cursor, event: dict[str, Any]) -> None:
    run_id, at = _text(event["run_id"]), _text(event["at"])
    planned = [(_text(dataset), _text(day)) for dataset, day in event["planned"]]
    argv = json.dumps(event.get("argv"))
    cur.execute(
        "INSERT OR IGNORE INTO runs (run_id, pid, host, started, status, planned, argv)"
        " VALUES (?, ?, ?, ?, 'running', ?, ?)",
        (run_id, _opt(event, "pid"), _opt(event, "host"), at, len(planned), argv),
    )
    cur.executemany(_QUEUE, [(dataset, day, run_id, at) for dataset, day in planned])


def _on_run_end(cur: sqlite3.Cursor, event: dict[str, Any]) -> None:
    run_id, at = _text(event["run_id"]), _text(event["at"])
    status = "ok" if event["ok"] is True else "error"
    cur.execute("UPDATE runs SET status = ?, finished = ? WHERE run_id = ?", (status, at, run_id))
    _interrupt(cur, run_id, at, "run ended before this day finished")


def _on_fetch(cur: sqlite3.Cursor, event: dict[str, Any]) -> None:
    run_id, dataset, day, at = _day_keys(event)
    # no_permission: an index symbol the subscription lacks (471), archived without its rows
    status = choice("status", event["status"], ("ok", "no_data", "no_permission", "failed"))
    error_class, error, seconds = _opt(event, "error_class"), _opt(event, "error"), _opt(event, "seconds")
    request = (_opt(event, "symbol"), _opt(event, "expiration"), status, _opt(event, "http_status"))
    sizes = (
        _opt(event, "attempts"),
        _opt(event, "rows"),
        _opt(event, "bytes"),
        seconds,
        _opt(event, "sha256"),
    )
    cur.execute(
        _INSERT_REQUEST, (_text(event["id"]), run_id, dataset, day, *request, *sizes, error_class, error, at)
    )
    attempt_id, state = _attempt_state(cur, run_id, dataset, day)
    stale = _older_than_success(cur, dataset, day, at, seconds)
    if status != "failed":
        if state == "none" and _run_open(cur, run_id) and not stale:
            cur.execute(_INSERT_ATTEMPT, (run_id, dataset, day, at, "processing", *[None] * 7, "fetch"))
            cur.execute(_PROCESSING, (dataset, day, run_id, at))
        return
    error_class = error_class or "FetchFailed"
    closing = ("failed", at, None, None, seconds, None, error_class, error, "fetch")
    if state == "none":
        cur.execute(_INSERT_ATTEMPT, (run_id, dataset, day, at, *closing))
    elif state == "open":
        cur.execute(_CLOSE_ATTEMPT, (*closing, attempt_id))
    else:
        return  # already failed (first error kept) or assembled in this run
    if not stale:
        cur.execute(_FETCH_FAILED, (dataset, day, error_class, error, run_id, at))


def _on_assemble_start(cur: sqlite3.Cursor, event: dict[str, Any]) -> None:
    run_id, dataset, day, at = _day_keys(event)
    _, state = _attempt_state(cur, run_id, dataset, day)
    # "closed" (a failed fetch or an interruption) waits for the assemble outcome to decide.
    if state in ("none", "assembled") and _run_open(cur, run_id):
        cur.execute(_INSERT_ATTEMPT, (run_id, dataset, day, at, "processing", *[None] * 7, "assemble"))
        cur.execute(_PROCESSING, (dataset, day, run_id, at))
    elif state == "open":
        cur.execute(_PROCESSING, (dataset, day, run_id, at))


def _on_assemble(cur: sqlite3.Cursor, event: dict[str, Any]) -> None:
    run_id, dataset, day, at = _day_keys(event)
    status = choice("status", event["status"], ("success", "no_data", "failed"))
    failed = status == "failed"
    error_class = (_opt(event, "error_class") or "AssembleFailed") if failed else None
    error = _opt(event, "error") if failed else None
    result = (_opt(event, "rows"), _opt(event, "bytes"), _opt(event, "seconds"), _opt(event, "sha256"))
    attempt_id, state = _attempt_state(cur, run_id, dataset, day)
    counted = state == "closed"  # a failed fetch or an interruption already counted this attempt
    closing = (status, at, *result, error_class, error, "assemble")
    if state in ("open", "closed"):
        cur.execute(_CLOSE_ATTEMPT, (*closing, attempt_id))
    else:
        cur.execute(_INSERT_ATTEMPT, (run_id, dataset, day, at, *closing))
    note = _opt(event, "note")
    if failed and _older_than_success(cur, dataset, day, at, result[2]):
        return
    cur.execute(
        _OUTCOME, (dataset, day, status, 0 if counted else 1, *result, error_class, error, run_id, at, note)
    )
    if not failed:  # [dataset, metric, value, threshold, flag]: the file's metrics and its pair's
        rows = [(str(d), day, str(m), v, t, bool(f)) for d, m, v, t, f in event.get("quality") or ()]
        cur.executemany(_SET_QUALITY, rows)


_HANDLERS: dict[str, Callable[[sqlite3.Cursor, dict[str, Any]], None]] = {
    "run_start": _on_run_start,
    "run_end": _on_run_end,
    "fetch": _on_fetch,
    "assemble_start": _on_assemble_start,
    "assemble": _on_assemble,
}


def _interrupt(cur: sqlite3.Cursor, run_id: str, at: str, message: str) -> int:
    """Fail the run's open attempts and its days still queued or processing; returns days failed."""
    cur.execute(
        "UPDATE days SET attempts = attempts + 1 WHERE run_id = ?1 AND status = 'processing'"
        " AND (dataset, day) IN (SELECT dataset, day FROM attempts WHERE run_id = ?1 AND finished IS NULL)",
        (run_id,),
    )
    cur.execute(
        "UPDATE attempts SET status = 'failed', finished = ?, error_class = 'Interrupted', error = ?,"
        " stage = 'run' WHERE run_id = ? AND finished IS NULL",
        (at, message, run_id),
    )
    cur.execute(
        "UPDATE days SET status = 'failed', error_class = 'Interrupted', last_error = ?, updated = ?"
        " WHERE run_id = ? AND status IN ('queued', 'processing')",
        (message, at, run_id),
    )
    return cur.rowcount


def _attempt_state(cur: sqlite3.Cursor, run_id: str, dataset: str, day: str) -> tuple[int | None, str]:
    """The latest attempt of this day in this run: none, open, closed (not by assembly) or assembled."""
    row = cur.execute(
        "SELECT id, finished, stage FROM attempts WHERE dataset = ? AND day = ? AND run_id = ?"
        " ORDER BY id DESC LIMIT 1",
        (dataset, day, run_id),
    ).fetchone()
    if row is None:
        return None, "none"
    attempt_id, finished, stage = row
    if finished is None:
        return attempt_id, "open"
    return attempt_id, "assembled" if stage == "assemble" else "closed"


def _older_than_success(cur: sqlite3.Cursor, dataset: str, day: str, at: str, seconds: Any) -> bool:
    """Whether the job behind an event (ended `at`, ran `seconds`) started before the day's success."""
    sql = "SELECT status, updated FROM days WHERE dataset = ? AND day = ?"
    row = cur.execute(sql, (dataset, day)).fetchone()
    if row is None or row[0] not in ("success", "no_data"):
        return False
    return _utc(row[1]) > _utc(at) - dt.timedelta(seconds=float(seconds or 0))


def _utc(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _run_open(cur: sqlite3.Cursor, run_id: str) -> bool:
    """A run without run_start (a manual Snakemake call) counts as open."""
    row = cur.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return row is None or row[0] == "running"


def _day_keys(event: dict[str, Any]) -> tuple[str, str, str, str]:
    return _text(event["run_id"]), _text(event["dataset"]), _text(event["day"]), _text(event["at"])


def _opt(event: dict[str, Any], key: str) -> str | int | float | None:
    """An optional scalar field; anything else makes the event malformed."""
    value = event.get(key)
    if value is not None and not isinstance(value, str | int | float):
        raise TypeError(f"{key}: expected a scalar, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


# -- helpers ------------------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _retry_locked(fn: Callable[[], _T]) -> _T:
    """Last resort for the lock errors SQLite returns without waiting (e.g. deadlock avoidance).

    A call that already waited out the busy timeout is not retried: the lock holder is stuck.
    """
    for attempt in range(_LOCK_RETRIES):
        started = time.monotonic()
        try:
            return fn()
        except sqlite3.OperationalError as e:
            message = str(e)
            waited = time.monotonic() - started >= _BUSY_TIMEOUT_S / 2
            if ("locked" not in message and "busy" not in message) or waited or attempt == _LOCK_RETRIES - 1:
                raise
            time.sleep(min(1.0, 0.005 * 2**attempt) * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


def _alive(pid: int | None, host: str | None, started: str | None) -> bool:
    """A run on this host is alive while its pid is; elsewhere we cannot look, so trust it for 7 days."""
    if pid and host == socket.gethostname():
        return pid_alive(pid)
    try:
        since = dt.datetime.fromisoformat(started) if started else None
    except ValueError:
        since = None
    if since is None:
        return True
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC) - since < _OTHER_HOST_MAX_AGE


def bytes_per_row(path: Path) -> dict[str, float]:
    """Archive bytes per row of each dataset's successful days, read without creating or locking a ledger."""
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT dataset, SUM(bytes), SUM(rows) FROM days WHERE status='success' AND rows > 0 "
                "GROUP BY dataset"
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {ds: b / r for ds, b, r in rows if r}


def _archive_key(ledger: Path, archive: Path) -> str:
    """The archive as seen from the ledger's folder: a project moved or copied whole keeps its key."""
    return os.path.relpath(Path(archive).absolute(), ledger.absolute().parent)


def _check_indexed(ledger: Path, indexed: str | None, archive: Path) -> None:
    if indexed is not None and indexed != _archive_key(ledger, archive):
        where = os.path.normpath(ledger.absolute().parent / indexed)
        raise SpxDataError(
            f"ledger {ledger} indexes the archive {where}, not {archive}: give this archive its own "
            "ledger_path (e.g. --set ledger_path=...), or set archive_dir back"
        )


def read_days(ledger: Path) -> list[DayRow]:
    """Every day's row, read without writing anything (a dry run); [] without a readable ledger."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
            return [DayRow(*row) for row in db.execute(f"SELECT {_DAY_COLUMNS} FROM days")]
    except sqlite3.Error:
        return []


def check_archive(ledger: Path, archive: Path) -> None:
    """Refuse a ledger that indexes another archive, without writing anything (no ledger: nothing to do)."""
    if not ledger.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'archive'").fetchone()
    except sqlite3.Error:
        return  # unreadable here: the run's own ledger open reports it
    _check_indexed(ledger, row[0] if row else None, archive)
