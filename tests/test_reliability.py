"""Issue 5, reliability: a damaged archive is found and repaired byte-identically; a full disk leaves no
partial file and a `failed` day; values that become path parts or SQL values are handled safely."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from helpers import FAST_RETRY, Project, dry_run_jobs

from spx_data.core import config as config_mod
from spx_data.core import outcomes
from spx_data.core.errors import ConfigError
from spx_data.core.paths import Layout, check_dataset, check_date, check_symbol
from spx_data.fetch import client
from spx_data.fetch.client import ThetaClient
from spx_data.fetch.retry import RetryPolicy
from spx_data.ledger.store import Ledger
from spx_data.ops import jobs
from spx_data.plan import listing
from spx_data.sim.server import Simulator

ENOSPC_TEXT = os.strerror(errno.ENOSPC)  # "No space left on device"


def ledger_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


# ----------------------------------------------------------------- a. corruption and repair

CORRUPTION_RANGE = ("2024-11-25", "2024-11-29")  # 4 sessions (Thanksgiving closed, 11-29 closes 13:15)


def _flip_byte(parquet: Path, sidecar: Path, rng: random.Random) -> Path:
    data = bytearray(parquet.read_bytes())
    at = rng.randrange(len(data) // 4, 3 * len(data) // 4)
    data[at] ^= 1 << rng.randrange(8)
    parquet.write_bytes(bytes(data))
    return parquet


def _truncate(parquet: Path, sidecar: Path, rng: random.Random) -> Path:
    size = parquet.stat().st_size
    os.truncate(parquet, rng.randrange(size // 2, size - 1))
    return parquet


def _garble_footer(parquet: Path, sidecar: Path, rng: random.Random) -> Path:
    with open(parquet, "r+b") as f:
        f.seek(-200, os.SEEK_END)
        f.write(rng.randbytes(200))
    return parquet


def _forge_metadata(parquet: Path, sidecar: Path, rng: random.Random) -> Path:
    """A valid parquet with different key/value metadata and a sidecar that matches it: only the ledger's
    sha256 can tell."""
    footer = {k: v for k, v in pq.read_metadata(parquet).metadata.items() if k != b"ARROW:schema"}
    meta = footer | {b"spx_data.tool_version": b"0.0.0+forged"}
    table = pq.read_table(parquet)
    pq.write_table(table.replace_schema_metadata(meta), parquet, compression="zstd")
    digest = hashlib.sha256(parquet.read_bytes()).hexdigest()
    sidecar.write_text(f"{digest}  {parquet.name}\n")
    return parquet


def _delete_sidecar(parquet: Path, sidecar: Path, rng: random.Random) -> Path:
    sidecar.unlink()
    return sidecar


def _edit_sidecar_hash(parquet: Path, sidecar: Path, rng: random.Random) -> Path:
    digest, rest = sidecar.read_text().split(" ", 1)
    at = rng.randrange(64)
    edited = digest[:at] + format((int(digest[at], 16) + rng.randrange(1, 16)) % 16, "x") + digest[at + 1 :]
    sidecar.write_text(f"{edited} {rest}")
    return sidecar


DAMAGES: dict[str, Callable[[Path, Path, random.Random], Path]] = {
    "flip a byte": _flip_byte,
    "truncate": _truncate,
    "garble the footer": _garble_footer,
    "forge the metadata": _forge_metadata,
    "delete the sidecar": _delete_sidecar,
    "edit the sidecar hash": _edit_sidecar_hash,
}


def _bad_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("BAD ")]


@pytest.mark.slow
def test_verify_names_exactly_the_damaged_files_and_repair_restores_identical_bytes(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    project = Project(tmp_path, simulator(chain="tiny").url)
    project.write_config(*CORRUPTION_RANGE)
    project.snakemake()
    clean = project.archive_digests()
    conf = ("--config-file", str(project.config_file))
    assert project.spx("verify", *conf).returncode == 0

    layout = Layout(project.archive, project.work)
    pairs = sorted(
        (p.parent.parent.name, p.parent.name.removeprefix("date="))
        for p in project.archive.rglob("*.parquet")
    )
    assert len(pairs) == 8
    rng = random.Random(5)
    victims = dict(
        zip(rng.sample(pairs, len(DAMAGES)), rng.sample(sorted(DAMAGES), len(DAMAGES)), strict=True)
    )
    damaged: dict[tuple[str, str], Path] = {}
    for (ds, day), how in victims.items():
        damaged[(ds, day)] = DAMAGES[how](layout.parquet(ds, day), layout.sidecar(ds, day), rng)
    intact = [pair for pair in pairs if pair not in victims]

    found = project.spx("verify", *conf)
    assert found.returncode == 1, found.stdout + found.stderr
    bad = _bad_lines(found.stdout)
    for (ds, day), path in damaged.items():
        folder = str(layout.day_dir(ds, day)) + os.sep
        lines = [line for line in bad if folder in line]
        assert lines, f"{victims[(ds, day)]} of {path} not reported:\n{found.stdout}"
        named = {path, layout.parquet(ds, day)}  # a bad sidecar is reported as its parquet not matching
        assert any(str(p) in line for p in named for line in lines)
    for ds, day in intact:
        assert not [line for line in bad if str(layout.day_dir(ds, day)) + os.sep in line], found.stdout
    assert all(any(str(layout.day_dir(ds, day)) + os.sep in line for ds, day in victims) for line in bad)
    caught = {pair for pair in victims if any(str(layout.day_dir(*pair)) + os.sep in line for line in bad)}
    print(f"damaged {len(damaged)} files, verify named {len(caught)} of them and {len(bad)} BAD lines:")
    print(
        "\n".join(f"  {victims[pair]:<22} {damaged[pair].relative_to(project.archive)}" for pair in victims)
    )
    print(found.stdout)

    repaired = project.spx("verify", "--repair", *conf)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    quarantined = {
        (p.parent.parent.name, p.parent.name.removeprefix("date=")): p.parent
        for p in (project.work / "quarantine").rglob("REASON")
    }
    assert set(quarantined) == set(victims)
    for (ds, day), path in damaged.items():
        assert not layout.day_dir(ds, day).exists()
        if path.name.endswith(".parquet"):  # the damaged bytes are kept for a look
            kept = quarantined[(ds, day)] / path.name
            assert (
                hashlib.sha256(kept.read_bytes()).hexdigest() != clean[str(path.relative_to(project.archive))]
            )
    with Ledger(project.ledger) as ledger:
        assert {(ds, day): ledger.day(ds, day).status for ds, day in victims} == dict.fromkeys(
            victims, "failed"
        )

    out = project.snakemake("-n", "--quiet", "host").stdout  # one block per job
    jobs_planned = dry_run_jobs(out)
    expirations = sum(len(listing.read(layout.listing(day)).expirations) for _, day in victims)
    assert jobs_planned == {"fetch": expirations, "assemble": len(victims), "all": 1}, out
    planned = {line.split("wildcards: ")[1] for line in out.splitlines() if "wildcards: " in line}
    assert {p for p in planned if "expiration" not in p} == {
        f"dataset={ds}, day={day}" for ds, day in victims
    }

    project.snakemake()
    assert project.archive_digests() == clean
    final = project.spx("verify", *conf)
    assert final.returncode == 0 and "0 problem(s)" in final.stdout, final.stdout
    statuses = ledger_rows(project.ledger, "SELECT dataset, day, status FROM days")
    assert {(ds, day): status for ds, day, status in statuses} == dict.fromkeys(pairs, "success")
    assert project.temp_files() == []


# ----------------------------------------------------------------- b. out of disk space


class _Budget:
    left: int | None = None  # bytes the injected disk still takes; None = unlimited


class _LimitedFile(io.FileIO):
    """A file on a disk that holds only `_Budget.left` more bytes: then a partial write and ENOSPC."""

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if _Budget.left is not None and len(view) > _Budget.left:
            written = super().write(view[: _Budget.left]) if _Budget.left else 0
            _Budget.left -= written or 0
            raise OSError(errno.ENOSPC, ENOSPC_TEXT)
        if _Budget.left is not None:
            _Budget.left -= len(view)
        return super().write(view) or 0


class FullDisk:
    """The data folder runs out of space: a real tmpfs mounted there ("tmpfs", needs root and mount), or
    ENOSPC injected at the calls that write data files ("injected": the NDJSON part file and the parquet
    writer's sink)."""

    def __init__(self, kind: str, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kind, self.data = kind, data
        self.ballast = data / "ballast"
        data.mkdir(parents=True)
        if kind == "tmpfs":
            mount = ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(data)]
            if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(mount).returncode != 0:
                pytest.skip("cannot mount a tmpfs here; the injected variant covers ENOSPC")
            return
        _Budget.left = None

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if mode == "wb":
                return io.BufferedWriter(_LimitedFile(fd, "wb"))
            return os.fdopen(fd, mode, *args, **kwargs)

        class LimitedParquetWriter(pq.ParquetWriter):
            def __init__(self, where: Any, schema: Any, **options: Any) -> None:
                self._sink = _LimitedFile(str(where), "wb")
                super().__init__(self._sink, schema, **options)

            def close(self) -> None:
                try:
                    super().close()
                finally:
                    self._sink.close()

        # The client's `os` only (its part file is opened with os.fdopen), not everybody's.
        monkeypatch.setattr(client, "os", types.SimpleNamespace(**(vars(os) | {"fdopen": fdopen})))
        monkeypatch.setattr(pq, "ParquetWriter", LimitedParquetWriter)

    def fill(self, leave: int) -> None:
        """Leave about `leave` bytes free."""
        if self.kind == "injected":
            _Budget.left = leave
            return
        st = os.statvfs(self.data)
        with open(self.ballast, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - leave)

    def free(self) -> None:
        _Budget.left = None
        self.ballast.unlink(missing_ok=True)

    def close(self) -> None:
        _Budget.left = None
        if self.kind == "tmpfs":
            subprocess.run(["umount", "-l", str(self.data)], check=True)


@pytest.fixture(params=["tmpfs", "injected"])
def full_disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FullDisk]:
    disk = FullDisk(request.param, tmp_path / "data", monkeypatch)
    try:
        yield disk
    finally:
        disk.close()


ENOSPC_DAY = "2024-11-26"


def _job_argv(layout: Layout, *step: str) -> list[str]:
    return ["--archive", str(layout.archive), "--work", str(layout.work), *step]


def _fetch_argv(layout: Layout, url: str, day: str, symbol: str, expiration: str) -> list[str]:
    out = str(layout.ndjson("quote", day, symbol, expiration))
    step = ["fetch", "quote", day, symbol, expiration, "--out", out, "--url", url, "--interval", "1m"]
    return _job_argv(layout, *step, "--retry", json.dumps(FAST_RETRY))


def _assemble_argv(layout: Layout, day: str) -> list[str]:
    return _job_argv(layout, "assemble", "quote", day, "--interval", "1m", "--symbols", "SPX,SPXW")


def _listed(layout: Layout, url: str, day: str) -> list[tuple[str, str, int]]:
    make_client = lambda: ThetaClient(url, RetryPolicy.from_config(FAST_RETRY))  # noqa: E731
    assert listing.list_days([day], layout.listing, make_client, 1) == {}
    found = listing.read(layout.listing(day))
    assert found is not None and found.expirations
    return list(found.expirations)


def _failed_event(layout: Layout, kind: str) -> dict[str, Any]:
    events = [e for _, e in outcomes.read_events(layout.outcomes()) if e["kind"] == kind]
    assert [e["status"] for e in events] == ["failed"], events
    return events[0]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith((".tmp", ".part"))]


@pytest.mark.parametrize("chunk", [client.CHUNK_SIZE, 2048], ids=["large-chunks", "buffered-chunks"])
def test_enospc_while_fetching_leaves_no_ndjson_and_a_failed_day(
    chunk: int,
    full_disk: FullDisk,
    simulator: Callable[..., Simulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Body pieces smaller than the file's write buffer make ENOSPC come from flush and close too."""
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "enospc-fetch")
    monkeypatch.setattr(client, "CHUNK_SIZE", chunk)
    url = simulator(chain="tiny").url
    project = Project(tmp_path, url)
    layout = Layout(project.archive, project.work)
    symbol, expiration, _ = _listed(layout, url, ENOSPC_DAY)[0]
    full_disk.fill(leave=96 << 10)  # an expiration's NDJSON is well over 1 MB

    assert jobs.main(_fetch_argv(layout, url, ENOSPC_DAY, symbol, expiration)) == 1

    assert not layout.ndjson("quote", ENOSPC_DAY, symbol, expiration).exists()
    assert _leftovers(project.root / "data") == []
    event = _failed_event(layout, "fetch")
    assert ENOSPC_TEXT in event["error"] and event["error_class"] == "OSError", event
    full_disk.free()
    with Ledger(project.ledger) as ledger:
        ledger.refresh(layout.outcomes())
        row = ledger.day("quote", ENOSPC_DAY)
        assert row is not None and row.status == "failed" and ENOSPC_TEXT in (row.last_error or ""), row
        (request,) = ledger.requests(dataset="quote", day=ENOSPC_DAY)
        assert request["status"] == "failed" and ENOSPC_TEXT in request["error"]
    # With space again the same job completes.
    assert jobs.main(_fetch_argv(layout, url, ENOSPC_DAY, symbol, expiration)) == 0
    assert layout.ndjson("quote", ENOSPC_DAY, symbol, expiration).stat().st_size > 96 << 10


def _fetch_day(layout: Layout, url: str, day: str) -> None:
    for symbol, expiration, _ in _listed(layout, url, day):
        assert jobs.main(_fetch_argv(layout, url, day, symbol, expiration)) == 0


@pytest.mark.parametrize("short_of", ["parquet", "sidecar"])
def test_enospc_while_assembling_leaves_no_parquet_and_a_failed_day(
    short_of: str,
    full_disk: FullDisk,
    simulator: Callable[..., Simulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Space runs out in the parquet, or (tmpfs only) just after it, in the sidecar written last."""
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "enospc-assemble")
    url = simulator(chain="tiny").url
    project = Project(tmp_path, url)
    layout = Layout(project.archive, project.work)
    parquet, sidecar = layout.parquet("quote", ENOSPC_DAY), layout.sidecar("quote", ENOSPC_DAY)
    _fetch_day(layout, url, ENOSPC_DAY)
    if short_of == "parquet":
        full_disk.fill(leave=64 << 10)  # the day's parquet is ~230 KB
    else:
        if full_disk.kind != "tmpfs":
            pytest.skip("needs a real filesystem: the sidecar goes through the same writes as the events")
        assert jobs.main(_assemble_argv(layout, ENOSPC_DAY)) == 0  # the size is a function of the data
        pages = -(-parquet.stat().st_size // 4096)
        for path in (parquet, sidecar, *layout.outcomes().iterdir()):
            path.unlink()
        full_disk.fill(leave=(pages + 1) * 4096)  # the parquet and the assemble_start event fit, no more

    assert jobs.main(_assemble_argv(layout, ENOSPC_DAY)) == 1

    assert not parquet.exists() and not sidecar.exists()
    assert _leftovers(project.root / "data") == []
    event = _failed_event(layout, "assemble")
    assert ENOSPC_TEXT in event["error"] and event["error_class"] == "OSError", event
    if short_of == "sidecar":  # the parquet was written whole: the error is the sidecar's plain write
        assert event["error"] == f"[Errno {errno.ENOSPC}] {ENOSPC_TEXT}", event
    full_disk.free()
    with Ledger(project.ledger) as ledger:
        ledger.refresh(layout.outcomes())
        row = ledger.day("quote", ENOSPC_DAY)
        assert row is not None and row.status == "failed" and ENOSPC_TEXT in (row.last_error or ""), row
        assert row.error_class == "OSError"
    # The sources are untouched: with space again the same job completes.
    assert jobs.main(_assemble_argv(layout, ENOSPC_DAY)) == 0
    assert pq.read_metadata(parquet).metadata[b"spx_data.status"] == b"success"
    with Ledger(project.ledger) as ledger:
        ledger.refresh(layout.outcomes())
        assert ledger.day("quote", ENOSPC_DAY).status == "success"


# ----------------------------------------------------------------- c. values that become paths or SQL

BAD_PARTS = [
    "", ".", "..", "/", "../x", "x/..", "SPX/../x", "quote/../../etc", "/etc/passwd", "~", "\\..\\x",
    "2024-1-1", "2024-11-25/..", "2024-11-25\n", "2024-11-25\x00", "quote\x00", "SPX\x00", "2024-02-30",
    "２０２４-11-25", "quote ", " SPX", "QUOTE", "spx", "*", "date=2024-11-25",
]  # fmt: skip


@pytest.mark.parametrize("value", BAD_PARTS, ids=repr)
def test_values_that_become_path_parts_are_refused_before_any_path_is_built(
    value: str, tmp_path: Path
) -> None:
    for check in (check_dataset, check_symbol, check_date):
        with pytest.raises(ValueError) as refused:
            check(value)
        assert "\n" not in str(refused.value) and repr(value) in str(refused.value)
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    good = {"dataset": "quote", "day": "2024-11-25", "symbol": "SPX", "expiration": "2024-12-20"}
    calls: list[tuple[Callable[..., Path], tuple[str, ...]]] = [
        (layout.day_dir, ("dataset", "day")),
        (layout.parquet, ("dataset", "day")),
        (layout.sidecar, ("dataset", "day")),
        (layout.listing, ("day",)),
        (layout.ndjson, ("dataset", "day", "symbol", "expiration")),
    ]
    for method, names in calls:
        for bad in names:
            with pytest.raises(ValueError, match="not"):
                method(*(value if name == bad else good[name] for name in names))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", BAD_PARTS, ids=repr)
def test_config_refuses_bad_path_parts_in_one_line(value: str, tmp_path: Path) -> None:
    base = {"start_date": "2024-11-25", "end_date": "2024-11-26"}
    for key, bad in (("datasets", [value]), ("symbols", [value]), ("start_date", value), ("end_date", value)):
        if key == "end_date" and value in ("", "~"):
            continue  # YAML's null: the newest final session
        with pytest.raises(ConfigError) as refused:
            config_mod.load(base | {key: bad}, base=tmp_path)
        assert str(refused.value).startswith(key) and "\n" not in str(refused.value), refused.value
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_bad_path_parts_in_one_line(tmp_path: Path) -> None:
    project = Project(tmp_path, "http://127.0.0.1:9")
    project.write_config("2024-11-25", "2024-11-26")
    before = sorted(p.name for p in tmp_path.iterdir())
    conf = ("--config-file", str(project.config_file))
    for args in (
        ("gaps", "--dataset", "../x"),
        ("list", "--set", "datasets=[quote/../../x]"),
        ("gaps", "--set", "symbols=SPX/../x"),
        ("retry", "2024-1-1"),
    ):
        proc = project.spx(*args, *conf)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made (no data folder)


QUOTED = ["quo'te", "it's", "x'); DROP TABLE days; --", '"\'"', "O'Brien \\' %s ?"]


def test_quotes_round_trip_through_the_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "run'1")
    events = tmp_path / "outcomes"
    day = "2024-11-25"
    outcomes.write_event(events, "run_start", pid=os.getpid(), host="h'o", planned=[[d, day] for d in QUOTED])
    for text in QUOTED:
        outcomes.write_event(
            events, "fetch", dataset=text, day=day, symbol="SPX", expiration="2024-12-20", status="failed",
            http_status=None, attempts=1, rows=0, bytes=0, seconds=0.1, sha256=None, error_class=text,
            error=f"failed: {text}",
        )  # fmt: skip
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.sync(events) == len(QUOTED) + 1
        assert list(events.iterdir()) == []  # nothing skipped as malformed
        for text in QUOTED:
            row = ledger.day(text, day)
            assert row is not None and (row.status, row.error_class, row.last_error) == (
                "failed", text, f"failed: {text}"
            )  # fmt: skip
            assert [r.dataset for r in ledger.days(dataset=text)] == [text]
            assert [r["error"] for r in ledger.requests(dataset=text)] == [f"failed: {text}"]
            ledger.set_status(text, day, "failed", error_class="Quarantined", error=f"moved {text}'")
            assert ledger.day(text, day).last_error == f"moved {text}'"
        assert ledger.days(dataset="x' OR '1'='1") == []
        assert ledger.runs()[0]["run_id"] == "run'1"
    (n,) = ledger_rows(tmp_path / "ledger.sqlite", "SELECT count(*) FROM days")[0]
    assert n == len(QUOTED)


def test_run_refuses_to_start_when_free_disk_is_below_the_estimate(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)]
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(mount).returncode != 0:
        pytest.skip("cannot mount a small filesystem here")
    try:
        project = Project(tmp_path, simulator(chain="tiny").url)
        project.write_config("2024-11-21", "2024-12-05")  # ~20 day-files: tens of MB against 2 MB free
        proc = project.spx("run", "--config-file", str(project.config_file))
        assert proc.returncode == 4, proc.stdout + proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "below the estimated need" in line and str(project.archive) in line
        assert sorted(p.name for p in data.iterdir()) == []  # no ledger, no work folder, no archive
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)
