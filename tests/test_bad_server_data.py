"""Bad server data (issue 5): 200 answers with a wrong body fail the day with a named error, leave nothing
under a final name, and the next run asks again. Real HTTP against the simulator's `bad_data` switches."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import FAST_RETRY, Project, fetch_as_the_rule_does

from spx_data.core import outcomes
from spx_data.core.datasets import get
from spx_data.core.paths import Layout
from spx_data.fetch.client import ThetaClient
from spx_data.fetch.retry import RetryPolicy
from spx_data.ndjson import parsed
from spx_data.ops import jobs
from spx_data.plan import listing
from spx_data.sim import bad_data as bd
from spx_data.sim.server import SimConfig, Simulator, build_parser, config_from_args

DAY = "2024-11-26"
EXPIRATION = "2024-11-26"  # the SPXW 0DTE of DAY (the tiny chain lists 4 expirations that day)
RETRY = FAST_RETRY | {"max_attempts": 3, "read_timeout": 5}
BAD_TRIES = 3  # RetryPolicy.bad_response_attempts: a bad 200 body is asked this often before failing
CONTRACT = r"SPXW 2024-11-26 \d+\.000 (CALL|PUT)"
# What the client says about each kind (the fetch job's error); line 17 is where the simulator spoils.
CLIENT_ERRORS = {
    "html": r"an HTML page, not NDJSON \(starts b'<!DOCTYPE html>",
    "malformed_line": r"not NDJSON of the expected types: JSON parse error: .* in row 16 \(line 17\)",
    "missing_column": r"column 'bid' missing or null in \d+ rows \(line 1\)",
    "wrong_type": r"Column\(/bid\) changed from number to string in row 16 \(line 17\)",
    "unknown_right": r"right \['X'\] in the answer, expected \['CALL', 'PUT'\] \(line 17\)",
    "duplicate_row": rf"duplicate row: {CONTRACT} at 2024-11-26T09:46:00.000 appears more than once "
    r"\(duplicates: 1\)",
    "short_contract": rf"contract {CONTRACT} has 196 rows, session has 391",
    "missing_contract": r"19 contracts \(strike x right\) in the answer, 20 listed: cut short",
    "outside_session": r"timestamp '2024-11-26T16:30:00' is outside the session 09:30..16:00 \(line 17\)",
    "other_date": r"timestamp '2024-11-25T09:46:00' is not on 2024-11-26 \(line 17\)",
    "wrong_expiration": r"expiration \['2024-12-03'\] in the answer, expected \['2024-11-26'\] \(line 1\)",
}
# Kinds only the fetch job can see: assembly checks each contract's rows, not the listing's count.
FETCH_ONLY = ("missing_contract",)
# What assembly says when such a body reaches it anyway (defence in depth).
ASSEMBLE_ERRORS = {
    "html": r"not NDJSON of symbol,.*JSON parse error",
    "malformed_line": r"not NDJSON of symbol,.*JSON parse error",
    "missing_column": r"row 1: no value for 'bid'",
    "wrong_type": r"Column\(/bid\) changed from number to string",
    "unknown_right": r"row 17: right 'X' is not CALL or PUT",
    "duplicate_row": r"duplicate row for 2024-11-26T09:46:00.000",
    "short_contract": r"196 rows, expected 391",
    "outside_session": r"row 17: timestamp 2024-11-26T16:30:00.000 is outside the session 09:30..16:00",
    "other_date": r"row 17: timestamp 2024-11-25T09:46:00.000 is not on 2024-11-26",
    "wrong_expiration": r"row 1: expiration '2024-12-03', expected '2024-11-26'",
}

Factory = Callable[..., Simulator]


def test_every_kind_has_a_case() -> None:
    assert set(CLIENT_ERRORS) == set(bd.KINDS) - {"empty"}  # an empty 200 is "no data" (issue 10)
    assert set(ASSEMBLE_ERRORS) == set(bd.KINDS) - {"empty", *FETCH_ONLY}  # an empty source is a kept 472


def run_job(layout: Layout, *argv: str) -> tuple[int, str]:
    """`scripts/assemble.py ...` in-process, as the assemble rule calls it: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = jobs.main(["--archive", str(layout.archive), "--work", str(layout.work), *argv])
    return code, err.getvalue()


def fetch(layout: Layout, url: str, dataset: str = "quote") -> tuple[int, str]:
    return fetch_as_the_rule_does(layout, url, RETRY, dataset, DAY, "SPXW", EXPIRATION)


def assemble(layout: Layout) -> tuple[int, str]:
    # max_dte 0: the day's only source is the fetched 0DTE expiration
    return run_job(
        layout, "assemble", "quote", DAY, "--interval", "1m", "--symbols", "SPXW", "--max-dte", "0"
    )


def list_day(layout: Layout, url: str) -> None:
    """The listing step, over HTTP (bad data spoils history answers only)."""
    client = lambda: ThetaClient(url, RetryPolicy.from_config(RETRY))  # noqa: E731
    assert listing.list_days([DAY], layout.listing, client, 1) == {}


def events(layout: Layout, kind: str) -> list[dict[str, Any]]:
    return [e for _, e in outcomes.read_events(layout.outcomes()) if e["kind"] == kind]


def final_files(layout: Layout) -> list[Path]:
    """Anything under a final name: NDJSON, parquet, sidecar; and any temp file."""
    roots = [layout.work / "ndjson", layout.archive]
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


def test_empty_200_is_recorded_as_no_data_not_an_error(simulator: Factory, tmp_path: Path) -> None:
    sim = simulator(chain="tiny", bad_data=(f"empty@{DAY}",), bad_data_times=1)
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    list_day(layout, sim.url)
    assert fetch(layout, sim.url) == (0, "")
    [event] = events(layout, "fetch")
    assert (event["status"], event["http_status"], event["attempts"]) == ("no_data", 200, 1)
    assert layout.ndjson("quote", DAY, "SPXW", EXPIRATION).read_bytes() == b""


@pytest.mark.parametrize("kind", [k for k in bd.KINDS if k != "empty"])
def test_fetch_job_fails_with_a_named_error_then_the_next_run_succeeds(
    kind: str, simulator: Factory, tmp_path: Path
) -> None:
    sim = simulator(chain="tiny", bad_data=(f"{kind}@{DAY}",), bad_data_times=BAD_TRIES)
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    list_day(layout, sim.url)

    code, stderr = fetch(layout, sim.url)
    assert code == 1
    assert re.search(
        f"BadResponse: .*bad answer after {BAD_TRIES} tries: BadResponse: .*{CLIENT_ERRORS[kind]}", stderr
    )
    assert final_files(layout) == []
    [failed] = events(layout, "fetch")
    assert (failed["status"], failed["error_class"]) == ("failed", "BadResponse")
    assert re.search(CLIENT_ERRORS[kind], failed["error"])
    assert sim.stats["bad_data"] == {kind: BAD_TRIES}

    # The next run asks again; this terminal has stopped sending bad data.
    assert fetch(layout, sim.url) == (0, "")
    assert events(layout, "fetch")[-1]["status"] == "ok"
    assert assemble(layout) == (0, "")
    assert sorted(p.name for p in final_files(layout)) == [
        f"SPXW-{EXPIRATION}.ndjson", f"_spx-quote-{DAY}.parquet.sha256", f"spx-quote-{DAY}.parquet",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", [k for k in bd.KINDS if k not in ("empty", *FETCH_ONLY)])
def test_assemble_job_rejects_a_bad_source_that_got_past_the_client(
    kind: str, simulator: Factory, tmp_path: Path
) -> None:
    sim = simulator(chain="tiny")
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    list_day(layout, sim.url)
    assert fetch(layout, sim.url) == (0, "")
    source = layout.ndjson("quote", DAY, "SPXW", EXPIRATION)
    source.write_bytes(bd.corrupt(kind, source.read_bytes(), get("quote"), dt.date.fromisoformat(DAY)))

    code, stderr = assemble(layout)
    assert code == 1 and re.search(f"ValidationError: .*{ASSEMBLE_ERRORS[kind]}", stderr), stderr
    # No parquet, sidecar or temp file. The fetch's parsed copy of the clean answer stays unused: it
    # does not belong to the corrupted file (had assembly read it, the day would have archived).
    assert [p.name for p in final_files(layout)] == [parsed.path_for(source).name, source.name]
    [failed] = events(layout, "assemble")
    assert (failed["status"], failed["error_class"]) == ("failed", "ValidationError")


def test_switches_are_per_day_and_per_request(simulator: Factory) -> None:
    sim = simulator(chain="tiny", bad_data=(f"unknown_right@{DAY}",), bad_data_times=1)

    def quote(day: str, expiration: str) -> requests.Response:
        params = {
            "symbol": "SPXW",
            "expiration": expiration,
            "date": day,
            "interval": "1m",
            "format": "ndjson",
        }
        return requests.get(f"{sim.url}/v3/option/history/quote", params=params, timeout=(5, 30))

    assert '"right":"X"' in quote(DAY, EXPIRATION).text
    assert '"right":"X"' in quote(DAY, "2024-11-27").text  # every expiration of the day
    assert '"right":"X"' not in quote(DAY, EXPIRATION).text  # bad_data_times=1: then clean
    assert '"right":"X"' not in quote("2024-11-27", "2024-11-27").text  # another day
    assert sim.stats["bad_data"] == {"unknown_right": 2}
    html = simulator(chain="tiny", bad_data=("html",))
    r = requests.get(
        f"{html.url}/v3/option/history/quote",
        params={"symbol": "SPXW", "expiration": "20241127", "date": "20241127", "interval": "1m"},
        timeout=(5, 30),
    )
    assert (r.status_code, r.headers["Content-Type"], r.content) == (200, "text/html", bd.HTML)


def test_cli_flags_and_bad_switches() -> None:
    args = build_parser().parse_args(["--bad-data", "html", "--bad-data", f"short_contract@{DAY}"])
    config = config_from_args(args)
    assert (config.bad_data, config.bad_data_times) == (("html", f"short_contract@{DAY}"), None)
    with pytest.raises(ValueError, match="kind not one of html, empty"):
        SimConfig(bad_data=("garbage",))
    with pytest.raises(ValueError, match="'2024-13-01' is not a date"):
        SimConfig(bad_data=("html@2024-13-01",))


@pytest.mark.slow
def test_snakemake_day_fails_on_bad_data_then_a_clean_terminal_fills_it(
    simulator: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Snakemake inherits the cwd; in the repository it would look like a run there to `spx-data run`'s
    # busy check (runner.snakemake_pids) in a test_cli test on the other xdist worker.
    monkeypatch.chdir(tmp_path)
    # duplicate_row: a body that parses, has the right types and the right row count
    bad = simulator(chain="tiny", bad_data=(f"duplicate_row@{DAY}",))
    project = Project(tmp_path, bad.url)
    project.write_config(DAY, DAY, datasets=["quote"], retry=RETRY)
    run = project.snakemake(check=False)
    assert run.returncode != 0
    layout = Layout(project.archive, project.work)
    assert final_files(layout) == [] and project.temp_files() == []
    with sqlite3.connect(project.ledger) as db:
        status, error_class, error = db.execute(
            "SELECT status, error_class, last_error FROM days WHERE dataset = 'quote' AND day = ?", (DAY,)
        ).fetchone()
    assert (status, error_class) == ("failed", "BadResponse"), error
    assert re.search(
        r"duplicate row: SPX\S* \S+ \d+\.000 (CALL|PUT) at .* appears more than once \(duplicates: 1\)", error
    )

    clean = simulator(chain="tiny")
    project.url = clean.url
    project.set_config(terminal_url=clean.url)
    project.snakemake()
    with sqlite3.connect(project.ledger) as db:
        assert db.execute("SELECT status FROM days WHERE day = ?", (DAY,)).fetchall() == [("success",)]
    assert sorted(p.name for p in (project.archive / "quote" / f"date={DAY}").iterdir()) == [
        f"_spx-quote-{DAY}.parquet.sha256",
        f"spx-quote-{DAY}.parquet",
    ]
    assert project.temp_files() == []


# ---------------------------------------------------------------------------------------------------------
# Answers with `date` + `ms_of_day` instead of `timestamp` (SimConfig.time_columns): same archive


def fetch_and_assemble(layout: Layout, url: str, dataset: str) -> Path:
    """The fetch job (client.fetch_history) then the assemble job (assemble_day), as the rules run them."""
    list_day(layout, url)
    assert fetch(layout, url, dataset) == (0, "")
    assert run_job(
        layout, "assemble", dataset, DAY, "--interval", "1m", "--symbols", "SPXW", "--max-dte", "0"
    ) == (0, "")
    return layout.ndjson(dataset, DAY, "SPXW", EXPIRATION)


@pytest.mark.parametrize("shape", ["date_ms", "date_ms_iso"])
@pytest.mark.parametrize("dataset", ["quote", "greeks_first_order", "open_interest"])
def test_date_and_ms_of_day_answers_archive_the_same_parquet(
    shape: str, dataset: str, simulator: Factory, tmp_path: Path
) -> None:
    normal, other = simulator(chain="tiny"), simulator(chain="tiny", time_columns=shape)
    archived = []
    for sim, name in ((normal, "timestamp"), (other, shape)):
        layout = Layout(tmp_path / name / "archive", tmp_path / name / "work")
        source = fetch_and_assemble(layout, sim.url, dataset)
        first = json.loads(source.read_bytes().split(b"\n", 1)[0])
        assert {"timestamp", "ms_of_day"} & set(first) == {
            "timestamp" if name == "timestamp" else "ms_of_day"
        }
        parquet = layout.parquet(dataset, DAY)
        [event] = events(layout, "assemble")
        assert event["sha256"] == hashlib.sha256(parquet.read_bytes()).hexdigest()
        archived.append((event["rows"], event["sha256"]))
    assert archived[0] == archived[1] and archived[0][0] > 0


DATE_MS_ERRORS = {  # what the client says about line kinds of a date_ms answer (line 17 spoiled)
    "outside_session": r"ms_of_day 59400000 \(16:30:00\.000\) is outside the session 09:30..16:00 "
    r"\(line 17\)",
    "other_date": r"date 20241125 is not 2024-11-26 \(line 17\)",
    "duplicate_row": rf"duplicate row: {CONTRACT} at 2024-11-26T09:46:00.000 appears more than once",
    "short_contract": rf"contract {CONTRACT} has 196 rows, session has 391",
    "unknown_right": r"right \['X'\] in the answer, expected \['CALL', 'PUT'\] \(line 17\)",
}


@pytest.mark.parametrize("kind", sorted(DATE_MS_ERRORS))
def test_bad_date_and_ms_of_day_answers_fail_with_named_errors(
    kind: str, simulator: Factory, tmp_path: Path
) -> None:
    sim = simulator(chain="tiny", time_columns="date_ms", bad_data=(f"{kind}@{DAY}",))
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    list_day(layout, sim.url)
    code, stderr = fetch(layout, sim.url)
    assert code == 1 and re.search(
        f"bad answer after {BAD_TRIES} tries: BadResponse: .*{DATE_MS_ERRORS[kind]}", stderr
    )
    assert final_files(layout) == []
