"""ThetaClient against a mocked terminal (`responses`): status codes, retries, splits, validation, files."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pj
import pytest
import requests
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spx_data.archive.assemble import Source, assemble_day
from spx_data.core import calendar
from spx_data.core.datasets import Greeks, get
from spx_data.core.errors import (
    BadResponse,
    FatalRequestError,
    PermissionDenied,
    RetriesExhausted,
    TerminalUnreachable,
    ValidationError,
)
from spx_data.fetch import client as client_mod
from spx_data.fetch.client import FetchResult, ListedExpiration, NoData, ThetaClient
from spx_data.fetch.retry import RetryPolicy
from spx_data.ndjson import check as ndjson_check
from spx_data.ndjson import parsed
from spx_data.ndjson.contract import row_schema

BASE = "http://127.0.0.1:25503"
QUOTE = get("quote")
DAY = dt.date(2024, 1, 5)
EXP = "2024-01-05"
DATA_URL = f"{BASE}/v3/option/history/quote"
STATUS_URL = f"{BASE}/v3/terminal/mdds/status"
STRIKES_URL = f"{BASE}/v3/option/list/strikes"
LIST_URL = f"{BASE}/v3/option/list/contracts/quote"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


# ---------------------------------------------------------------- helpers


class FakeClock:
    """Time that moves only when the client sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def quote_rows(
    contracts: list[tuple[float, str]], per: int, symbol: str = "SPXW", expiration: str = EXP
) -> list[dict[str, Any]]:
    rows = []
    for strike, right in contracts:
        for i in range(per):
            h, m = divmod(570 + i, 60)
            rows.append(
                {
                    "symbol": symbol, "expiration": expiration, "strike": strike, "right": right,
                    "timestamp": f"2024-01-05T{h:02d}:{m:02d}:00" + (".250" if i % 3 == 1 else ""),
                    "bid_size": 10 + i, "bid_exchange": 5, "bid": 1.25 + i, "bid_condition": 50,
                    "ask_size": 7, "ask_exchange": 5, "ask": 1.35 + i, "ask_condition": 50,
                }
            )  # fmt: skip
    return rows


def ndjson(rows: list[dict[str, Any]], seed: int = 0) -> bytes:
    """One object a line, keys in arbitrary order (as the terminal sends them)."""
    rng = random.Random(seed)
    lines = []
    for row in rows:
        keys = list(row)
        rng.shuffle(keys)
        lines.append(json.dumps({k: row[k] for k in keys}) + "\n")
    return "".join(lines).encode()


CONTRACTS = [(4700.0, "CALL"), (4700.0, "PUT"), (4705.0, "CALL"), (4705.0, "PUT")]
BODY = ndjson(quote_rows(CONTRACTS, 5))


def make_client(clock: FakeClock, **policy: Any) -> ThetaClient:
    return ThetaClient(BASE, RetryPolicy(**policy), sleep=clock.sleep, rng=random.Random(7), clock=clock)


def fetch(client: ThetaClient, dest: Path, **kwargs: Any) -> FetchResult:
    return client.fetch_history(QUOTE, DAY, "SPXW", EXP, "1m", dest, **kwargs)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class Breaking(io.BufferedReader):
    """A body that sends `after` bytes and then resets the connection."""

    def __init__(self, data: bytes, after: int) -> None:
        super().__init__(io.BytesIO(data))
        self._left = after

    def read(self, amt: int | None = -1) -> bytes:
        if self._left <= 0:
            raise ConnectionResetError(104, "Connection reset by peer")
        size = self._left if amt is None or amt < 0 else min(amt, self._left)
        data = super().read(size)
        self._left -= len(data)
        return data

    def read1(self, amt: int = -1) -> bytes:
        return self.read(amt)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def data_calls(rsps: responses.RequestsMock) -> list[Any]:
    return [c for c in rsps.calls if not c.request.url.startswith(STATUS_URL)]


# ---------------------------------------------------------------- success and no data


def test_ok_writes_validated_file_and_counts(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=BODY)
    dest = tmp_path / "d" / "q.ndjson"
    res = fetch(make_client(clock), dest, expected_contracts=4, rows_per_contract=5)
    assert (res.status, res.http_status, res.rows, res.contracts, res.attempts) == ("ok", 200, 20, 4, 1)
    assert res.bytes == len(BODY) and res.sha256 == hashlib.sha256(BODY).hexdigest()
    assert dest.read_bytes() == BODY and leftovers(dest.parent) == ["q.arrow", "q.ndjson"]
    strict = pj.read_json(dest, parse_options=pj.ParseOptions(explicit_schema=row_schema(QUOTE)))
    kept = parsed.batches(dest, row_schema(QUOTE))
    assert kept is not None and pa.Table.from_batches(list(kept)).equals(strict)  # the check's parse, kept
    params = rsps.calls[0].request.params
    assert params == {"symbol": "SPXW", "expiration": "20240105", "date": "20240105", "interval": "1m",
                      "start_time": "09:30:00", "end_time": "16:00:00", "format": "ndjson"}  # fmt: skip
    assert rsps.calls[0].request.req_kwargs["stream"] is True
    assert clock.sleeps == []


def test_472_writes_empty_file_no_retry(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=472, body="No data for the specified timeframe & contract.")
    dest = tmp_path / "q.ndjson"
    res = fetch(make_client(clock), dest, expected_contracts=4)
    assert (res.status, res.http_status, res.rows, res.bytes, res.attempts) == ("no_data", 472, 0, 0, 1)
    assert res.sha256 == EMPTY_SHA and dest.read_bytes() == b""
    assert leftovers(tmp_path) == ["q.ndjson"] and len(rsps.calls) == 1


# ---------------------------------------------------------------- retried status codes


def test_474_polls_status_until_connected(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=474, body="DISCONNECTED")
    rsps.add(responses.GET, DATA_URL, body=BODY)
    for state in ("DISCONNECTED", "DISCONNECTED", "CONNECTED"):
        rsps.add(responses.GET, STATUS_URL, body=state)
    res = fetch(make_client(clock, disconnected_poll=2.0), tmp_path / "q.ndjson")
    assert res.status == "ok" and res.attempts == 2
    assert clock.sleeps == [2.0, 2.0]
    assert [c.request.url for c in rsps.calls].count(STATUS_URL) == 3


def test_474_gives_up_after_disconnected_max_wait(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=474)
    rsps.add(responses.GET, STATUS_URL, body="DISCONNECTED")
    with pytest.raises(RetriesExhausted, match=r"not CONNECTED.*DISCONNECTED") as err:
        fetch(make_client(clock, disconnected_max_wait=10.0), tmp_path / "q.ndjson")
    assert DATA_URL in str(err.value) and clock.now <= 10.0
    assert len(data_calls(rsps)) == 1 and leftovers(tmp_path) == []


def test_474_status_unreachable_counts_as_not_connected(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=474)
    rsps.add(responses.GET, DATA_URL, body=BODY)
    rsps.add(responses.GET, STATUS_URL, body=requests.ConnectionError("refused"))
    rsps.add(responses.GET, STATUS_URL, body="CONNECTED")
    assert fetch(make_client(clock), tmp_path / "q.ndjson").rows == 20
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize("code", [429, 500, 470, 572])
def test_transient_codes_back_off_then_succeed(
    code: int, rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=code, body="busy")
    rsps.add(responses.GET, DATA_URL, status=code, body="busy")
    rsps.add(responses.GET, DATA_URL, body=BODY)
    res = fetch(make_client(clock), tmp_path / "q.ndjson", expected_contracts=4, rows_per_contract=5)
    assert (res.status, res.rows, res.attempts) == ("ok", 20, 3)
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.5 and 0 <= clock.sleeps[1] <= 1.0


def test_571_waits_within_starting_bounds(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=571, body="SERVER_STARTING")
    rsps.add(responses.GET, DATA_URL, status=571, body="SERVER_STARTING")
    rsps.add(responses.GET, DATA_URL, body=BODY)
    res = fetch(make_client(clock), tmp_path / "q.ndjson")
    assert res.attempts == 3 and len(clock.sleeps) == 2
    assert all(30.0 <= s <= 120.0 for s in clock.sleeps) and clock.sleeps[0] != clock.sleeps[1]


def test_571_waits_do_not_spend_attempts_but_stop_at_the_deadline(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    policy = {"max_attempts": 2, "starting_wait": (1.0, 2.0), "max_total_seconds": 60.0}
    for _ in range(5):  # a restart outlasting max_attempts is waited out
        rsps.add(responses.GET, DATA_URL, status=571, body="SERVER_STARTING")
    rsps.add(responses.GET, DATA_URL, body=BODY)
    assert fetch(make_client(clock, **policy), tmp_path / "q.ndjson").attempts == 6
    rsps.reset()
    rsps.add(responses.GET, DATA_URL, status=571, body="SERVER_STARTING")  # a terminal that never starts
    with pytest.raises(RetriesExhausted, match="max_total_seconds=60"):
        fetch(make_client(clock, **policy), tmp_path / "r.ndjson")
    assert not (tmp_path / "r.ndjson").exists()


# ---------------------------------------------------------------- 570 splits


def split_terminal(rsps: responses.RequestsMock, put_strikes_570: bool) -> list[dict[str, str]]:
    """A terminal that answers 570 to the whole request (and to right=put when asked)."""
    seen: list[dict[str, str]] = []
    calls = [c for c in CONTRACTS if c[1] == "CALL"]

    def history(request: Any) -> tuple[int, dict[str, str], bytes]:
        params = dict(request.params)
        seen.append(params)
        right, strike = params.get("right"), params.get("strike")
        if right is None or (right == "put" and strike is None and put_strikes_570):
            return 570, {}, b"LARGE_REQUEST"
        if right == "call":
            return 200, {}, ndjson(quote_rows(calls, 5))
        wanted = [c for c in CONTRACTS if c[1] == "PUT" and (strike is None or float(strike) == c[0])]
        return (200, {}, ndjson(quote_rows(wanted, 5))) if wanted else (472, {}, b"NO_DATA")

    rsps.add_callback(responses.GET, DATA_URL, callback=history)
    strikes = [{"symbol": "SPXW", "strike": s} for s in (4700.0, 4705.0, 17.5)]
    rsps.add(responses.GET, STRIKES_URL, body=ndjson(strikes))
    return seen


def test_570_splits_per_right(rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path) -> None:
    seen = split_terminal(rsps, put_strikes_570=False)
    dest = tmp_path / "q.ndjson"
    res = fetch(make_client(clock), dest, expected_contracts=4, rows_per_contract=5)
    assert [p.get("right") for p in seen] == [None, "call", "put"]
    assert (res.status, res.rows, res.contracts, res.attempts) == ("ok", 20, 4, 3)
    got = sorted(json.dumps(json.loads(line), sort_keys=True) for line in dest.read_bytes().splitlines())
    assert got == sorted(json.dumps(r, sort_keys=True) for r in quote_rows(CONTRACTS, 5))
    assert res.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()


def test_570_twice_splits_per_strike(rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path) -> None:
    seen = split_terminal(rsps, put_strikes_570=True)
    dest = tmp_path / "q.ndjson"
    res = fetch(make_client(clock), dest, expected_contracts=4, rows_per_contract=5)
    assert [(p.get("right"), p.get("strike")) for p in seen] == [
        (None, None), ("call", None), ("put", None), ("put", "17.5"), ("put", "4700"), ("put", "4705"),
    ]  # fmt: skip
    strikes_call = next(c for c in rsps.calls if c.request.url.startswith(STRIKES_URL))
    assert strikes_call.request.params == {"symbol": "SPXW", "expiration": "20240105", "format": "ndjson"}
    assert (res.rows, res.contracts, res.attempts) == (20, 4, 7)  # 6 history requests + the strike listing
    rows = [json.loads(line) for line in dest.read_bytes().splitlines()]
    assert sorted((r["strike"], r["right"], r["timestamp"]) for r in rows) == sorted(
        (r["strike"], r["right"], r["timestamp"]) for r in quote_rows(CONTRACTS, 5)
    )


def test_570_for_one_contract_is_fatal(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=570)
    rsps.add(responses.GET, STRIKES_URL, body=b'{"strike":4700.0}\n')
    with pytest.raises(FatalRequestError, match=r"570.*strike=4700"):
        fetch(make_client(clock), tmp_path / "q.ndjson")
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- fatal codes


@pytest.mark.parametrize(
    ("code", "cls", "fix"),
    [
        (471, PermissionDenied, "permission denied"),
        (473, FatalRequestError, "bad parameters"),
        (475, FatalRequestError, "update the terminal"),
        (404, FatalRequestError, "update the terminal"),
        (476, FatalRequestError, "host string mix-up: use the same host"),
        (478, FatalRequestError, "second terminal logged in.*stop the other terminal"),
        (418, FatalRequestError, "unexpected status code"),
    ],
)
def test_fatal_codes_fail_fast(
    code: int, cls: type[Exception], fix: str, rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=code, body="terminal text")
    with pytest.raises(cls, match=fix) as err:
        fetch(make_client(clock), tmp_path / "q.ndjson")
    url = rsps.calls[0].request.url
    assert url.startswith(DATA_URL + "?") and url in str(err.value)
    assert isinstance(err.value, FatalRequestError) and err.value.status == code and err.value.url == url
    assert f"HTTP {code}" in str(err.value) and "terminal text" in str(err.value)
    assert len(rsps.calls) == 1 and clock.sleeps == [] and leftovers(tmp_path) == []


# ---------------------------------------------------------------- retry bounds


def test_retries_exhausted_by_attempts(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=500)
    with pytest.raises(RetriesExhausted) as err:
        fetch(make_client(clock, max_attempts=4), tmp_path / "q.ndjson")
    msg = str(err.value)
    assert DATA_URL in msg and "4 attempts" in msg and "HTTP 500" in msg and "max_attempts=4" in msg
    assert len(rsps.calls) == 4 and len(clock.sleeps) == 3 and leftovers(tmp_path) == []


def test_retries_exhausted_by_total_time(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    def slow_500(request: Any) -> tuple[int, dict[str, str], bytes]:
        clock.now += 4.0  # each request takes 4 s
        return 500, {}, b"oops"

    rsps.add_callback(responses.GET, DATA_URL, callback=slow_500)
    with pytest.raises(RetriesExhausted, match="max_total_seconds=30") as err:
        fetch(make_client(clock, max_attempts=1000, max_total_seconds=30.0), tmp_path / "q.ndjson")
    assert DATA_URL in str(err.value) and clock.now <= 30.0 + 4.0
    assert 5 <= len(rsps.calls) <= 8 and leftovers(tmp_path) == []


def test_backoff_is_full_jitter_within_bounds() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    rng = random.Random(1)
    for retry in range(12):
        bound = min(30.0, 0.5 * 2**retry)
        delays = [policy.backoff(retry, rng) for _ in range(300)]
        assert all(0.0 <= d <= bound for d in delays)
        assert max(delays) > 0.9 * bound and min(delays) < 0.1 * bound  # spread over the whole range
    assert 0.0 <= policy.backoff(10_000, rng) <= 30.0


def test_backoff_delays_seen_by_client_within_bounds(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, status=429)
    with pytest.raises(RetriesExhausted):
        fetch(make_client(clock, max_attempts=9, base_delay=1.0, max_delay=20.0), tmp_path / "q.ndjson")
    assert len(clock.sleeps) == 8
    for n, delay in enumerate(clock.sleeps):
        assert 0.0 <= delay <= min(20.0, 1.0 * 2**n)


# ---------------------------------------------------------------- cut-short bodies


def test_torn_last_line_is_retried(rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path) -> None:
    rsps.add(responses.GET, DATA_URL, body=BODY[:-40])
    rsps.add(responses.GET, DATA_URL, body=BODY)
    dest = tmp_path / "q.ndjson"
    res = fetch(make_client(clock), dest, expected_contracts=4)
    assert res.attempts == 2 and dest.read_bytes() == BODY and res.sha256 == hashlib.sha256(BODY).hexdigest()


def test_torn_body_never_left_on_disk(rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path) -> None:
    rsps.add(responses.GET, DATA_URL, body=BODY[:-3])  # the last row cut inside its closing brace
    with pytest.raises(RetriesExhausted, match="TornBody"):
        fetch(make_client(clock, max_attempts=3), tmp_path / "q.ndjson")
    assert len(rsps.calls) == 3 and leftovers(tmp_path) == []


def test_missing_final_newline_after_a_complete_row_is_accepted(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=BODY[:-1])  # the official examples print no final newline
    dest = tmp_path / "q.ndjson"
    res = fetch(make_client(clock), dest, expected_contracts=4, rows_per_contract=5)
    assert (res.status, res.rows, res.attempts) == ("ok", 20, 1)
    assert dest.read_bytes() == BODY and res.sha256 == hashlib.sha256(BODY).hexdigest()


def test_short_body_without_final_newline_is_still_caught(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    short = BODY[: BODY.rindex(b"\n", 0, len(BODY) // 2)]  # whole rows, cut at a row end, no newline
    rsps.add(responses.GET, DATA_URL, body=short)
    with pytest.raises(BadResponse, match="cut short"):
        fetch(make_client(clock), tmp_path / "q.ndjson", expected_contracts=4, rows_per_contract=5)
    assert leftovers(tmp_path) == []


def test_connection_reset_mid_stream_is_retried(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "CHUNK_SIZE", 64)  # so part of the body is written before the reset
    rsps.add(responses.GET, DATA_URL, body=Breaking(BODY, len(BODY) // 2))
    rsps.add(responses.GET, DATA_URL, body=BODY)
    rsps.add(responses.GET, STATUS_URL, body="CONNECTED")  # the terminal is up: the request's own fault
    dest = tmp_path / "q.ndjson"
    res = fetch(make_client(clock), dest, expected_contracts=4, rows_per_contract=5)
    assert (res.attempts, res.rows) == (2, 20)
    assert dest.read_bytes() == BODY and res.sha256 == hashlib.sha256(BODY).hexdigest()
    assert leftovers(tmp_path) == ["q.arrow", "q.ndjson"]


def test_connection_reset_mid_stream_never_left_on_disk(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "CHUNK_SIZE", 64)
    for _ in range(2):  # a body object is used up by its attempt: one each
        rsps.add(responses.GET, DATA_URL, body=Breaking(BODY, 300))
    rsps.add(responses.GET, STATUS_URL, body="CONNECTED")
    with pytest.raises(RetriesExhausted, match="ChunkedEncodingError") as err:
        fetch(make_client(clock, max_attempts=2), tmp_path / "q.ndjson")
    assert "2 attempts" in str(err.value) and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "exc", [requests.ConnectionError("refused"), requests.ReadTimeout("read"), requests.ConnectTimeout("c")]
)
def test_connection_errors_are_retried(
    exc: Exception, rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=exc)
    rsps.add(responses.GET, DATA_URL, body=BODY)
    rsps.add(responses.GET, STATUS_URL, body="CONNECTED")
    assert fetch(make_client(clock), tmp_path / "q.ndjson").attempts == 2


# ---------------------------------------------------------------- bad 200 bodies


def _one_row(**change: Any) -> bytes:
    rows = quote_rows(CONTRACTS, 5)
    rows[7] = rows[7] | change
    return ndjson(rows)


def _without(key: str) -> bytes:
    rows = quote_rows(CONTRACTS, 5)
    del rows[11][key]
    return ndjson(rows)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>Error</body></html>\n", "not NDJSON"),
        (_without("ask"), "column 'ask' missing or null in 1 rows"),
        (_one_row(bid="abc"), "not NDJSON.*bid"),
        (_one_row(bid_size=1.5), "not NDJSON"),
        (_one_row(expiration="2024-01-12"), r"expiration \['2024-01-12'\].*2024-01-05"),
        (_one_row(symbol="SPX"), r"symbol \['SPX'\]"),
        (_one_row(right="C"), r"right \['C'\]"),
        (_one_row(timestamp="09:31"), "not a timestamp"),
        (ndjson(quote_rows(CONTRACTS[:3], 5)), "3 contracts .* 4 listed: cut short"),
        (ndjson(quote_rows(CONTRACTS, 4)), "16 rows, expected 4 contracts x 5 = 20"),
        (b"\n", "no rows"),
    ],
)
def test_bad_bodies_fail_with_named_errors(
    body: bytes, message: str, rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=body)
    dest = tmp_path / "q.ndjson"
    with pytest.raises(BadResponse, match=message) as err:
        fetch(make_client(clock), dest, expected_contracts=4, rows_per_contract=5)
    assert type(err.value) is BadResponse and DATA_URL in str(err.value) and "after 3 tries" in str(err.value)
    assert len(rsps.calls) == 3  # bad_response_attempts
    assert leftovers(tmp_path) == []


def test_bad_body_then_good_body_succeeds(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=_one_row(expiration="2024-01-12"))
    rsps.add(responses.GET, DATA_URL, body=BODY)
    res = fetch(make_client(clock), tmp_path / "q.ndjson", expected_contracts=4)
    assert (res.status, res.attempts, res.rows) == ("ok", 2, 20) and len(clock.sleeps) == 1


def test_extra_fields_and_iso_or_compact_expiration_accepted(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rows = [r | {"new_vendor_field": [1, 2]} for r in quote_rows(CONTRACTS, 2)]
    rsps.add(responses.GET, DATA_URL, body=ndjson(rows))
    res = make_client(clock).fetch_history(QUOTE, DAY, "SPXW", "20240105", "1m", tmp_path / "q.ndjson")
    assert (res.rows, res.contracts) == (8, 4)


def test_replaces_existing_dest_only_on_success(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    dest = tmp_path / "q.ndjson"
    dest.write_bytes(b"old\n")
    rsps.add(responses.GET, DATA_URL, status=473)
    with pytest.raises(FatalRequestError):
        fetch(make_client(clock), dest)
    assert dest.read_bytes() == b"old\n" and leftovers(tmp_path) == ["q.ndjson"]


# ---------------------------------------------------------------- timeouts


def test_timeouts_set_on_every_request(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    split_terminal(rsps, put_strikes_570=True)
    rsps.add(responses.GET, STATUS_URL, body="CONNECTED")
    client = make_client(clock, connect_timeout=3.0, read_timeout=45.0)
    fetch(client, tmp_path / "q.ndjson")
    client.status()
    rsps.add(responses.GET, LIST_URL, status=472)
    client.list_contracts(DAY, ["SPX", "SPXW"])
    assert len(rsps.calls) == 9
    assert all(c.request.req_kwargs["timeout"] == (3.0, 45.0) for c in rsps.calls)


# ---------------------------------------------------------------- status and list_contracts


def test_status_text_and_unreachable(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, STATUS_URL, body="CONNECTED\n")
    client = make_client(clock)
    assert client.status() == "CONNECTED"
    rsps.replace(responses.GET, STATUS_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(TerminalUnreachable, match=re.escape(STATUS_URL)):
        client.status()


def listing_rows() -> list[dict[str, Any]]:
    rows = []
    for symbol, expiration, n in (
        ("SPXW", "2024-01-05", 6),
        ("SPXW", "2024-01-08", 4),
        ("SPX", "2024-01-19", 3),
    ):
        for i in range(n):
            rows.append({"symbol": symbol, "expiration": expiration, "strike": 4700.0 + 5 * (i // 2),
                         "right": ("CALL", "PUT")[i % 2]})  # fmt: skip
    return rows


def test_list_contracts_groups_per_expiration(
    rsps: responses.RequestsMock, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "CHUNK_SIZE", 50)  # lines split across chunks
    rows = listing_rows()
    rsps.add(responses.GET, LIST_URL, body=ndjson(rows + rows[:2]))  # a repeated row counts once
    listed = make_client(clock).list_contracts(DAY, ["SPX", "SPXW"], max_dte=30)
    assert listed == [
        ListedExpiration("SPX", "2024-01-19", 3),
        ListedExpiration("SPXW", "2024-01-05", 6),
        ListedExpiration("SPXW", "2024-01-08", 4),
    ]
    assert rsps.calls[0].request.params == {"date": "20240105", "symbol": "SPX,SPXW", "max_dte": "30",
                                            "format": "ndjson"}  # fmt: skip


def test_list_contracts_472_is_no_data(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, LIST_URL, status=472)
    assert make_client(clock).list_contracts(DAY, ["SPX", "SPXW"]) == NoData("HTTP 472")
    assert "max_dte" not in rsps.calls[0].request.params and len(rsps.calls) == 1


def test_list_contracts_empty_200_is_no_data_with_its_own_reason(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(responses.GET, LIST_URL, body=b"")
    assert make_client(clock).list_contracts(DAY, ["SPX", "SPXW"]) == NoData("empty 200")
    assert len(rsps.calls) == 1


def test_list_traded_contracts_asks_the_trade_listing(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rows = listing_rows()
    rsps.add(responses.GET, f"{BASE}/v3/option/list/contracts/trade", body=ndjson(rows[:3])[:-1])
    listed = make_client(clock).list_contracts(DAY, ["SPX", "SPXW"], traded=True)
    assert sum(x.contracts for x in listed) == 3  # type: ignore[union-attr]


def test_list_contracts_retries_torn_and_rejects_garbage(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    body = ndjson(listing_rows())
    rsps.add(responses.GET, LIST_URL, status=500)
    rsps.add(responses.GET, LIST_URL, body=body[:-5])
    rsps.add(responses.GET, LIST_URL, body=body)
    client = make_client(clock)
    assert sum(x.contracts for x in client.list_contracts(DAY, ["SPX", "SPXW"]) or []) == 13
    assert len(rsps.calls) == 3
    rsps.replace(responses.GET, LIST_URL, body=b"<html>hi</html>\n")
    with pytest.raises(BadResponse, match="contract listing"):
        client.list_contracts(DAY, ["SPX", "SPXW"])


def test_list_contracts_570_splits_per_symbol(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rows = listing_rows()

    def listing(request: Any) -> tuple[int, dict[str, str], bytes]:
        symbol = request.params["symbol"]
        if "," in symbol:
            return 570, {}, b""
        return (
            (200, {}, ndjson([r for r in rows if r["symbol"] == symbol]))
            if symbol == "SPXW"
            else (472, {}, b"")
        )

    rsps.add_callback(responses.GET, LIST_URL, callback=listing)
    listed = make_client(clock).list_contracts(DAY, ["SPX", "SPXW"])
    assert listed == [ListedExpiration("SPXW", "2024-01-05", 6), ListedExpiration("SPXW", "2024-01-08", 4)]


# ---------------------------------------------------------------- chunking property


class ChunkResponse:
    """Stands in for a streamed requests.Response whose body arrives in the given chunks."""

    status_code = 200

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __enter__(self) -> ChunkResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        yield from self._chunks


class ChunkSession:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.timeouts: list[Any] = []

    def get(self, url: str, **kwargs: Any) -> ChunkResponse:
        self.timeouts.append(kwargs["timeout"])
        return ChunkResponse(self.chunks)


PROPERTY_BODY = ndjson(quote_rows(CONTRACTS, 6), seed=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(0, len(PROPERTY_BODY)), max_size=40),
    block=st.sampled_from([300, 1000, 1 << 20]),
)
def test_any_byte_split_validates_the_same(
    cuts: list[int], block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ndjson_check, "BLOCK_SIZE", block)  # also vary the validator's line blocks
    edges = [0, *sorted(cuts), len(PROPERTY_BODY)]
    chunks = [PROPERTY_BODY[a:b] for a, b in itertools.pairwise(edges)]  # some may be empty
    session = ChunkSession(chunks)
    client = ThetaClient(BASE, session=session, sleep=FakeClock().sleep, clock=FakeClock())  # type: ignore[arg-type]
    dest = tmp_path / "p.ndjson"
    res = client.fetch_history(QUOTE, DAY, "SPXW", EXP, "1m", dest, expected_contracts=4, rows_per_contract=6)
    assert (res.rows, res.contracts, res.bytes, res.attempts) == (24, 4, len(PROPERTY_BODY), 1)
    assert (
        res.sha256
        == hashlib.sha256(PROPERTY_BODY).hexdigest()
        == hashlib.sha256(dest.read_bytes()).hexdigest()
    )
    assert session.timeouts == [(5.0, 120.0)]


# ---------------------------------------------------------------- the validator alone


def test_validator_multi_block_counts_and_long_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ndjson_check, "BLOCK_SIZE", 700)  # lines are ~270 bytes: 2-3 lines a block
    path = tmp_path / "x.ndjson"
    path.write_bytes(BODY)
    expected = ndjson_check.Expected("SPXW", EXP, 4, 5)
    assert ndjson_check.check_ndjson(path, QUOTE, expected, workers=3) == ndjson_check.Counts(20, 4)
    path.write_bytes(BODY + b'{"symbol":"' + b"X" * 2000 + b'"}\n')
    with pytest.raises(BadResponse, match="longer than 700 bytes"):
        ndjson_check.check_ndjson(path, QUOTE, expected, workers=2)


def test_validator_reports_block_offsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ndjson_check, "BLOCK_SIZE", 1024)
    path = tmp_path / "x.ndjson"
    path.write_bytes(_one_row(right="BOTH"))
    with pytest.raises(BadResponse, match=r"^bytes \d+-\d+: right \['BOTH'\]"):
        ndjson_check.check_ndjson(path, QUOTE, ndjson_check.Expected("SPXW", EXP))


# ---------------------------------------------------------------- the date + ms_of_day shape

SESSION = calendar.session_on(DAY)
WINDOW = (calendar.OPEN, SESSION.close) if SESSION else None
FULL = 391  # rows per contract of DAY's 1m session


def date_ms_rows(rows: list[dict[str, Any]], date: Any = 20240105) -> list[dict[str, Any]]:
    """The same rows with `date` + `ms_of_day` (ms since ET midnight) instead of `timestamp`."""
    out = []
    for row in rows:
        row = dict(row)
        t = dt.datetime.fromisoformat(row.pop("timestamp"))
        row["date"] = date
        row["ms_of_day"] = ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000
        out.append(row)
    return out


def check(path: Path, body: bytes, contracts: int = 4, per: int = 5) -> ndjson_check.Counts:
    path.write_bytes(body)
    expected = ndjson_check.Expected("SPXW", EXP, contracts, per, DAY, WINDOW)
    return ndjson_check.check_ndjson(path, QUOTE, expected, workers=2)


@pytest.mark.parametrize("date", [20240105, "2024-01-05", "20240105"])
def test_validator_accepts_date_and_ms_of_day(
    date: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ndjson_check, "BLOCK_SIZE", 1000)  # several blocks
    rows = quote_rows(CONTRACTS, 5)
    path = tmp_path / "x.ndjson"
    assert (
        check(path, ndjson(date_ms_rows(rows, date)))
        == check(path, ndjson(rows))
        == ndjson_check.Counts(20, 4)
    )
    assert check(path, b"\n" + ndjson(date_ms_rows(rows, date))) == ndjson_check.Counts(20, 4)  # blank first


def _without_key(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


def _date_ms_body(edit: dict[str, Any], at: int = 11, date: Any = 20240105) -> bytes:
    rows = date_ms_rows(quote_rows(CONTRACTS, 5), date)
    rows[at] |= edit
    return ndjson(rows)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_date_ms_body({"date": 20240104}), r"date 20240104 is not 2024-01-05 \(line 12\)"),
        (_date_ms_body({"date": "2024-01-04"}, date="2024-01-05"), r"date '2024-01-04' is not 2024-01-05"),
        (
            _date_ms_body({"date": 2024015}),
            r"date 2024015 is not a date \(YYYY-MM-DD or YYYYMMDD\) \(line 12\)",
        ),
        (_date_ms_body({"date": "2024/01/05"}, date="2024-01-05"), r"date '2024/01/05' is not a date"),
        (_date_ms_body({"date": "2024-13-05"}, date="2024-01-05"), r"date '2024-13-05' is not a date"),
        (_date_ms_body({"date": "2024-01-05"}), r"Column\(/date\) changed from number to string in row 11"),
        (_date_ms_body({"ms_of_day": 34_200_000.5}), r"not NDJSON.*couldn't parse:34200000\.5"),
        (_date_ms_body({"ms_of_day": -1}), r"ms_of_day -1 is not a time of day \(0..86399999\) \(line 12\)"),
        (
            _date_ms_body({"date": 20240104, "ms_of_day": 86_400_000 + 34_200_000}),
            r"ms_of_day 120600000 is not",
        ),
        (
            _date_ms_body({"ms_of_day": 59_400_000}),
            r"ms_of_day 59400000 \(16:30:00\.000\) is outside the session 09:30..16:00 \(line 12\)",
        ),
        (
            _date_ms_body({"ms_of_day": 34_320_000}),  # the next row's time
            r"duplicate row: SPXW 2024-01-05 4705.000 CALL at 2024-01-05T09:32:00.000 appears more than once",
        ),
        (ndjson(date_ms_rows(quote_rows(CONTRACTS, 4))), "16 rows, expected 4 contracts x 5 = 20"),
        (
            ndjson([_without_key(r, "ms_of_day") for r in date_ms_rows(quote_rows(CONTRACTS, 5))]),
            "column 'timestamp' missing or null in 20 rows",
        ),  # no `ms_of_day` in the first row: the `timestamp` shape, without timestamps
    ],
)
def test_validator_date_and_ms_of_day_problems(body: bytes, message: str, tmp_path: Path) -> None:
    with pytest.raises(BadResponse, match=message) as err:
        check(tmp_path / "x.ndjson", body)
    assert type(err.value) is BadResponse


@pytest.mark.parametrize("first", ["timestamp", "date_ms"])
def test_validator_rejects_mixed_time_columns(
    first: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ndjson_check, "BLOCK_SIZE", 1000)
    rows = quote_rows(CONTRACTS, 5)
    other = date_ms_rows(rows)
    if first == "date_ms":
        rows, other = other, rows
    body = ndjson(rows[:15] + other[15:])  # the other shape from line 16 on, in a later block
    with pytest.raises(
        ndjson_check.MixedTimeColumns, match=r"mixed time columns: the first row has .*\(line 16\)"
    ):
        check(tmp_path / "x.ndjson", body)


def test_fetch_history_date_and_ms_of_day_and_mixed(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rows = quote_rows(CONTRACTS, 5)
    rsps.add(responses.GET, DATA_URL, body=ndjson(date_ms_rows(rows)))
    res = fetch(make_client(clock), tmp_path / "q.ndjson", expected_contracts=4, rows_per_contract=5)
    assert (res.status, res.rows, res.contracts) == ("ok", 20, 4)
    rsps.replace(responses.GET, DATA_URL, body=ndjson(rows[:10] + date_ms_rows(rows)[10:]))
    with pytest.raises(BadResponse, match=r"after 3 tries: MixedTimeColumns: .*mixed time columns") as err:
        fetch(make_client(clock), tmp_path / "m.ndjson", expected_contracts=4, rows_per_contract=5)
    assert isinstance(err.value.__cause__, ndjson_check.MixedTimeColumns)
    assert leftovers(tmp_path) == ["q.arrow", "q.ndjson"]  # no copy of the refused answer


# Row 17 of a whole session of 4 contracts gets `edit`; the body's other rows carry `date` as in `first`.
AGREEMENT_CASES = [
    (20240105, {}), ("2024-01-05", {}), ("20240105", {}), ("2024-0105", {}),
    (20240105, {"date": 20240104}), (20240105, {"date": 2024015}), (20240105, {"date": True}),
    (20240105, {"date": "20240105"}), ("2024-01-05", {"date": 20240105}),
    ("2024-01-05", {"date": "2024/01/05"}), ("2024-01-05", {"date": "2024-02-30"}),
    (20240105, {"ms_of_day": -1}), (20240105, {"ms_of_day": 1.5}),
    (20240105, {"date": 20240104, "ms_of_day": 86_400_000 + 34_200_000}),
    (20240105, {"ms_of_day": 34_199_999}), (20240105, {"ms_of_day": 57_600_001}),
    (20240105, {"ms_of_day": 35_160_001}), (20240105, {"ms_of_day": 57_600_000}),  # a later row's time
    (20240105, {"ms_of_day": None}),
    (20240105, {"timestamp": "2024-01-05T09:46:00"}),
]  # fmt: skip


@pytest.mark.parametrize(("first", "edit"), AGREEMENT_CASES)
def test_validator_and_assembly_agree_on_date_and_ms_of_day(
    first: Any, edit: dict[str, Any], tmp_path: Path
) -> None:
    """A body the client accepts is one assembly accepts, and the other way round."""
    assert SESSION is not None
    rows = date_ms_rows(quote_rows(CONTRACTS, FULL), first)
    rows[16] = {k: v for k, v in (rows[16] | edit).items() if v is not None}
    if "timestamp" in edit:
        del rows[16]["date"], rows[16]["ms_of_day"]
    path = tmp_path / f"SPXW-{EXP}.ndjson"
    try:
        check(path, ndjson(rows), per=FULL)
        client_error = None
    except BadResponse as exc:
        client_error = exc
    try:
        assemble_day(
            QUOTE,
            SESSION,
            "1m",
            [Source("SPXW", EXP, path)],
            tmp_path / "q.parquet",
            tmp_path / "q.sha256",
            {},
        )
        assembly_error = None
    except ValidationError as exc:
        assembly_error = exc
    assert (client_error is None) == (assembly_error is None), (client_error, assembly_error)
    assert (client_error is None) == (edit in ({}, {"ms_of_day": 35_160_001})), client_error


# ---------------------------------------------------------------- issue 10: a real terminal


def test_empty_200_is_no_data_with_its_own_status(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=b"")
    dest = tmp_path / "q.ndjson"
    res = fetch(make_client(clock), dest, expected_contracts=4)
    assert (res.status, res.http_status, res.rows, res.attempts) == ("no_data", 200, 0, 1)
    assert dest.read_bytes() == b"" and len(rsps.calls) == 1


def test_early_close_requests_end_at_the_session_close(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    day = dt.date(2024, 12, 24)  # early close 13:15: the terminal itself would fill to 16:00
    rsps.add(responses.GET, DATA_URL, status=472)
    make_client(clock).fetch_history(QUOTE, day, "SPXW", "2024-12-24", "1m", tmp_path / "q.ndjson")
    params = rsps.calls[0].request.params
    assert (params["start_time"], params["end_time"]) == ("09:30:00", "13:15:00")


def test_greeks_inputs_are_sent_and_greeks_wait_longer(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    get_ = requests.Session.get

    def spy(self: requests.Session, url: str, **kw: Any) -> Any:
        seen.append(kw.get("timeout"))
        return get_(self, url, **kw)

    monkeypatch.setattr(requests.Session, "get", spy)
    url = f"{BASE}/v3/option/history/greeks/first_order"
    rsps.add(responses.GET, url, status=472)
    rsps.add(responses.GET, DATA_URL, status=472)
    client = make_client(clock, read_timeout=120.0)
    greeks = Greeks("treasury_m1", "1", 4.25, 0.5)
    client.fetch_history(get("greeks_first_order"), DAY, "SPXW", EXP, "1m", tmp_path / "g", greeks=greeks)
    fetch(client, tmp_path / "q.ndjson", greeks=greeks)
    sent = rsps.calls[0].request.params
    assert {k: sent[k] for k in ("rate_type", "version", "rate_value", "annual_dividend")} == {
        "rate_type": "treasury_m1", "version": "1", "rate_value": "4.25", "annual_dividend": "0.5"
    }  # fmt: skip
    assert "rate_type" not in rsps.calls[1].request.params  # quotes take no greeks inputs
    assert seen == [(5.0, 300.0), (5.0, 120.0)]


def test_default_greeks_inputs_are_sent_explicitly(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    url = f"{BASE}/v3/option/history/greeks/implied_volatility"
    rsps.add(responses.GET, url, status=472)
    dataset = get("greeks_implied_volatility")
    make_client(clock).fetch_history(dataset, DAY, "SPXW", EXP, "1m", tmp_path / "g")
    params = rsps.calls[0].request.params
    assert (params["rate_type"], params["version"]) == ("sofr", "latest")
    assert "rate_value" not in params and "annual_dividend" not in params


def test_trade_derived_answer_may_hold_fewer_contracts_but_not_fewer_than_traded(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=ndjson(quote_rows(CONTRACTS[:3], 5)))
    client = make_client(clock, bad_response_attempts=1)
    res = fetch(client, tmp_path / "a", expected_contracts=4, rows_per_contract=5, min_contracts=2)
    assert (res.status, res.contracts) == ("ok", 3)
    with pytest.raises(BadResponse, match=r"3 contracts .* 4 listed, 4 traded: cut short"):
        fetch(client, tmp_path / "b", expected_contracts=4, rows_per_contract=5, min_contracts=4)
    with pytest.raises(BadResponse, match=r"3 contracts .* 2 listed"):  # more than quoted: never
        fetch(client, tmp_path / "c", expected_contracts=2, rows_per_contract=5, min_contracts=0)


def test_terminal_restart_is_waited_out_without_spending_attempts(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=requests.ConnectionError("refused"))
    rsps.add(responses.GET, DATA_URL, body=BODY)
    for _ in range(40):  # down for 40 polls (a restart), then back
        rsps.add(responses.GET, STATUS_URL, body=requests.ConnectionError("refused"))
    rsps.add(responses.GET, STATUS_URL, body="CONNECTED")
    res = fetch(make_client(clock, max_attempts=1, disconnected_max_wait=60.0), tmp_path / "q.ndjson")
    assert (res.status, res.rows, res.attempts) == ("ok", 20, 2)
    assert clock.sleeps == [1.0] * 40


def test_terminal_gone_for_good_is_terminal_unreachable_after_the_bound(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=requests.ConnectionError("refused"))
    rsps.add(responses.GET, STATUS_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(
        TerminalUnreachable,
        match=r"no terminal answers at http://127.0.0.1:25503 within retry.disconnected_max_wait \(20 s\)",
    ) as e:
        fetch(make_client(clock, disconnected_max_wait=20.0), tmp_path / "q.ndjson")
    assert "disconnected_max_wait" in str(e.value) and "ThetaTerminalv3.jar" in str(e.value)
    assert 19.0 <= clock.now <= 20.0 and len(data_calls(rsps)) == 1 and leftovers(tmp_path) == []


def test_read_timeout_is_not_an_outage_and_spends_attempts(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, DATA_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(RetriesExhausted, match="ReadTimeout"):
        fetch(make_client(clock, max_attempts=3), tmp_path / "q.ndjson")
    assert len(data_calls(rsps)) == 3 and not [c for c in rsps.calls if c.request.url == STATUS_URL]


def test_listing_line_blocks_accept_a_complete_last_row_but_not_a_torn_one() -> None:
    body = ndjson(listing_rows())
    good = ChunkResponse([body[:40], body[40:-1]])
    assert sum(client_mod._count_contracts(good).values()) == 13  # type: ignore[arg-type]
    with pytest.raises(ndjson_check.TornBody):
        client_mod._count_contracts(ChunkResponse([body[:-4]]))  # type: ignore[arg-type]
