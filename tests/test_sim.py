"""The terminal simulator over real loopback HTTP: paths, formats, chain model, slots and faults."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import requests

from spx_data.core.datasets import CONTRACT_COLUMNS, DATASETS
from spx_data.ndjson.contract import row_schema
from spx_data.sim import chain as ch
from spx_data.sim.faults import FaultPlan, Slots
from spx_data.sim.server import SimConfig, Simulator, build_parser, config_from_args, main
from spx_data.sim.testing import running_simulator

DAY = "20240612"  # a normal Wednesday session
EARLY = "20241129"  # day after Thanksgiving: closes 13:15
TIMEOUT = (5, 30)

Factory = Callable[..., Simulator]


def get(sim: Simulator, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sim.url}/v3{path}", params=params, timeout=TIMEOUT)


def quote(sim: Simulator, expiration: str = DAY, day: str = DAY, **params: Any) -> requests.Response:
    base = {"symbol": "SPXW", "expiration": expiration, "date": day, "interval": "1m", "format": "ndjson"}
    return get(sim, "/option/history/quote", **(base | params))


def ndjson(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_status_and_stats(simulator: Factory) -> None:
    sim = simulator()
    r = get(sim, "/terminal/mdds/status")
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (200, "CONNECTED", "text/plain")
    assert get(sim, "/option/history/nope").status_code == 404
    stats = requests.get(f"{sim.url}/sim/stats", timeout=TIMEOUT).json()
    # At least ours: in a parallel run a killed workflow's orphaned job may reach a reused port.
    assert stats["statuses"]["200"] >= 1 and stats["statuses"]["404"] >= 1
    assert stats["requests"] >= 3  # ours and this /sim/stats request
    assert sim.stats["faults"]["500"] == 0


@pytest.mark.parametrize(
    ("day", "status"),
    [("20240612", 200), ("20240704", 472), ("20240615", 472), ("20250109", 472), ("20240613", 472)],
    ids=["session", "holiday", "weekend", "closure-2025-01-09", "configured-no-data"],
)
def test_listing_statuses(simulator: Factory, day: str, status: int) -> None:
    sim = simulator(no_data_days=("2024-06-13",))
    r = get(sim, "/option/list/contracts/quote", date=day, symbol="SPX,SPXW", format="csv")
    assert r.status_code == status
    if status == 472:
        assert r.headers["Content-Type"] == "text/plain" and r.text.startswith("NO_DATA")
        return
    lines = r.text.split("\r\n")
    assert lines[0] == "symbol,expiration,strike,right" and lines[-1] == ""
    expected = ch.Chain("tiny").listing(dt.date(2024, 6, 12))
    assert expected is not None and sum(n for *_, n in expected) == len(lines) - 2
    assert {tuple(line.split(",")[:2]) for line in lines[1:-1]} == {(s, e) for s, e, _ in expected}
    assert ("SPXW", "2024-06-12") in {(s, e) for s, e, _ in expected}  # 0DTE listed on its own day


def test_tiny_chain_is_tiny_and_has_both_symbols() -> None:
    listed = ch.Chain("tiny").listing(dt.date(2024, 6, 12))
    assert listed is not None and len(listed) <= 4
    assert sum(n for *_, n in listed) <= 100
    assert {s for s, *_ in listed} == {"SPX", "SPXW"}


def test_full_chain_listing_size() -> None:
    chain = ch.Chain("full", seed=0)
    for day in (dt.date(2023, 3, 15), dt.date(2024, 6, 12), dt.date(2025, 10, 15), dt.date(2026, 3, 2)):
        listed = chain.listing(day)
        assert listed is not None
        assert 55 <= len(listed) <= 85, (day, len(listed))
        assert 20_000 <= sum(n for *_, n in listed) <= 35_000, day
        # a third Friday appears under both symbols; the 0DTE chain is the largest kind
        assert any(s == "SPX" for s, *_ in listed) and any(s == "SPXW" for s, *_ in listed)
        zero_dte = [n for s, e, n in listed if e == day.isoformat() and s == "SPXW"]
        assert zero_dte and 500 <= zero_dte[0] <= 900


def test_full_chain_listing_over_http(simulator: Factory) -> None:
    sim = simulator(chain="full")
    r = get(sim, "/option/list/contracts/quote", date=DAY, symbol="SPX,SPXW", format="ndjson")
    rows = ndjson(r.text)
    expirations = {(row["symbol"], row["expiration"]) for row in rows}
    assert 55 <= len(expirations) <= 85 and 20_000 <= len(rows) <= 35_000
    third_friday = "2024-06-21"
    assert ("SPX", third_friday) in expirations and ("SPXW", third_friday) in expirations
    r = get(sim, "/option/list/contracts/quote", date=DAY, symbol="SPXW", max_dte="7", format="ndjson")
    # 2024-06-19 (Juneteenth) was a holiday: no daily that day
    want = {"2024-06-12", "2024-06-13", "2024-06-14", "2024-06-17", "2024-06-18"}
    assert {row["expiration"] for row in ndjson(r.text)} == want


def test_holiday_expiration_moves_to_previous_session() -> None:
    # 2025-04-18 was Good Friday and the third Friday of April: the monthly expires Thursday 04-17.
    listed = ch.Chain("full").expirations(dt.date(2025, 4, 1), "SPX")
    assert listed is not None and dt.date(2025, 4, 17) in listed and dt.date(2025, 4, 18) not in listed
    # before 2022 the dailies are Mon/Wed/Fri only
    old = ch.Chain("full").expirations(dt.date(2021, 6, 14), "SPXW") or ()
    assert {d.weekday() for d in old if d <= dt.date(2021, 6, 30)} == {0, 2, 4}


@pytest.mark.parametrize(
    ("day", "window", "rows", "last"),
    [
        (DAY, {}, 391, "16:00:00"),
        (DAY, {"start_time": "09:30:00", "end_time": "16:00:00"}, 391, "16:00:00"),
        (EARLY, {}, 391, "16:00:00"),  # a real terminal fills to its default end_time whatever the session
        (EARLY, {"start_time": "09:30:00", "end_time": "13:15:00"}, 226, "13:15:00"),
    ],
)
def test_rows_per_contract(
    simulator: Factory, day: str, window: dict[str, str], rows: int, last: str
) -> None:
    sim = simulator()
    expiration = (ch.Chain("tiny").expirations(ch._as_date(day), "SPXW") or ())[0].strftime("%Y%m%d")
    data = ndjson(quote(sim, expiration, day, **window).text)
    per_contract = Counter((d["strike"], d["right"]) for d in data)
    assert set(per_contract.values()) == {rows} and len(per_contract) == 20
    times = sorted({d["timestamp"] for d in data})
    iso = ch._as_date(day).isoformat()
    assert times[0] == f"{iso}T09:30:00" and times[-1] == f"{iso}T{last}" and len(times) == rows


def test_csv_has_header_and_crlf(simulator: Factory) -> None:
    sim = simulator()
    r = quote(sim, format="csv")
    assert r.headers["Content-Type"] == "text/csv"
    assert r.content.endswith(b"\r\n") and r.content.count(b"\r\n") == r.content.count(b"\n") == 1 + 20 * 391
    header, first = r.text.split("\r\n")[:2]
    assert header.split(",") == list(DATASETS["quote"].column_names)
    assert re.fullmatch(r"SPXW,2024-06-12,\d+\.000,(CALL|PUT),2024-06-12T09:30:00,.*", first)


def test_ndjson_key_order_varies_but_values_parse(simulator: Factory) -> None:
    sim = simulator()
    a, b = quote(sim, right="call"), quote(sim, right="put")
    keys_a = list(json.loads(a.text.split("\n", 1)[0]))
    keys_b = list(json.loads(b.text.split("\n", 1)[0]))
    assert keys_a != keys_b and sorted(keys_a) == sorted(keys_b) == sorted(DATASETS["quote"].column_names)
    assert {row["right"] for row in ndjson(a.text)} == {"CALL"} and {
        row["right"] for row in ndjson(b.text)
    } == {"PUT"}


def test_values_match_pure_history_table(simulator: Factory) -> None:
    sim = simulator()
    params = {"symbol": "SPXW", "expiration": DAY, "date": DAY, "interval": "5m", "format": "ndjson"}
    rows = ndjson(get(sim, "/option/history/greeks/first_order", **params).text)
    table = ch.Chain("tiny").history_table("greeks_first_order", DAY, "SPXW", DAY, "5m")
    assert table is not None and table.schema == DATASETS["greeks_first_order"].arrow_schema()
    assert table.num_rows == len(rows) == 20 * 79
    got = sorted((r["strike"], r["right"], r["timestamp"], r["bid"], r["delta"], r["iv_error"]) for r in rows)
    edt = dt.timedelta(hours=4)  # archive timestamps are tz-aware; June wall clock is UTC-4
    wall = [(t - edt).isoformat() for t in table["timestamp"].cast(pa.timestamp("ms")).to_pylist()]
    columns = [table[c].to_pylist() for c in ("strike", "right")] + [wall]
    columns += [table[c].to_pylist() for c in ("bid", "delta", "iv_error")]
    want = sorted((float(k), *rest) for k, *rest in zip(*columns, strict=True))
    assert got == want
    # the first row of some contracts is all zeros, with iv_error 100
    first = [r for r in rows if r["timestamp"].endswith("T09:30:00")]
    zero = [r for r in first if r["bid"] == 0 and r["ask"] == 0]
    assert zero and all(r["iv_error"] == 100 and r["delta"] == 0 for r in zero)
    assert len(zero) < len(first)


def test_value_formats(simulator: Factory) -> None:
    sim = simulator()
    text = get(sim, "/option/history/greeks/first_order", symbol="SPXW", expiration=DAY, date=DAY,
               interval="1m", format="csv").text  # fmt: skip
    lines = text.split("\r\n")[1:-1]
    cols = DATASETS["greeks_first_order"].column_names
    cells = dict(zip(cols, zip(*(line.split(",") for line in lines), strict=True), strict=True))
    assert all(re.fullmatch(r"\d+\.\d{3}", v) for v in cells["strike"])
    assert all(re.fullmatch(r"\d+\.\d{2}", v) for v in cells["bid"] + cells["underlying_price"])
    assert all(re.fullmatch(r"-?\d+\.\d{4}", v) for v in cells["delta"] + cells["theta"])
    assert all(re.fullmatch(r"2024-06-12T\d\d:\d\d:00", v) for v in cells["timestamp"])
    stamps = cells["underlying_timestamp"]
    assert all(re.fullmatch(r"2024-06-12T\d\d:\d\d:\d\d(\.\d{3})?", v) for v in stamps)
    assert not any(v.endswith(".000") for v in stamps) and any("." in v for v in stamps)
    assert any(v.startswith("-") for v in cells["delta"])


@pytest.mark.parametrize("dataset", ["open_interest", "eod"])
def test_one_row_per_contract_datasets(simulator: Factory, dataset: str) -> None:
    sim = simulator()
    ds = DATASETS[dataset]
    dates = {"start_date": DAY, "end_date": DAY} if ds.date_range_params else {"date": DAY}
    rows = ndjson(get(sim, ds.endpoint, symbol="SPXW", expiration="*", format="ndjson", **dates).text)
    listed = [x for x in ch.Chain("tiny").listing(dt.date(2024, 6, 12)) or () if x[0] == "SPXW"]
    assert len(rows) == sum(n for *_, n in listed)
    assert len({(r["expiration"], r["strike"], r["right"]) for r in rows}) == len(rows)
    stamp = rows[0]["timestamp" if dataset == "open_interest" else "created"]
    assert stamp.startswith("2024-06-12T06:30:" if dataset == "open_interest" else "2024-06-12T17:15:")


def test_every_dataset_serves_its_exact_columns(simulator: Factory) -> None:
    sim = simulator()
    for ds in DATASETS.values():
        params = {"symbol": "SPX", "expiration": "20240621", "format": "ndjson", "interval": "1h"}
        params |= {"start_date": DAY, "end_date": DAY} if ds.date_range_params else {"date": DAY}
        rows = ndjson(get(sim, ds.endpoint, **params).text)
        # The row contract: an option row carries its contract columns, an index row none (the request's)
        assert rows and all(set(r) == set(row_schema(ds).names) for r in rows), ds.name


def test_json_format_is_parallel_arrays(simulator: Factory) -> None:
    sim = simulator()
    body = quote(sim, format="json", interval="1h").json()
    assert list(body) == list(DATASETS["quote"].column_names)
    assert {len(v) for v in body.values()} == {20 * 7} and set(body["symbol"]) == {"SPXW"}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/option/history/greeks/first_order", {"expiration": "*"}),
        ("/option/history/ohlc", {"expiration": "*"}),
        ("/option/history/quote", {"interval": "2m"}),
        ("/option/history/quote", {"date": "2024-13-45"}),
        ("/option/history/quote", {"right": "sideways"}),
        ("/option/history/quote", {"format": "xml"}),
        ("/option/history/quote", {"symbol": ""}),
    ],
)
def test_invalid_params_get_473(simulator: Factory, path: str, params: dict[str, str]) -> None:
    sim = simulator()
    base = {"symbol": "SPXW", "expiration": DAY, "date": DAY, "interval": "1m", "format": "ndjson"}
    r = get(sim, path, **(base | params))
    assert r.status_code == 473 and r.text.startswith("INVALID_PARAMS")


@pytest.mark.parametrize(
    ("expiration", "params"),
    [("20240628", {}), ("20240611", {}), (DAY, {"symbol": "NDX"}), (DAY, {"strike": "1.5"})],
    ids=["not-yet-listed", "expired", "unknown-symbol", "no-such-strike"],
)
def test_no_data_gets_472(simulator: Factory, expiration: str, params: dict[str, str]) -> None:
    r = quote(simulator(), expiration, **params)
    assert r.status_code == 472 and r.text.startswith("NO_DATA")


def test_same_request_same_bytes_and_seed_matters(simulator: Factory) -> None:
    a, b = simulator(seed=7), simulator(seed=7)
    first, again, other = quote(a).content, quote(a).content, quote(b).content
    assert first == again == other and len(first) > 100_000
    assert quote(simulator(seed=8)).content != first


def test_filters_keep_values(simulator: Factory) -> None:
    sim = simulator()
    whole = ndjson(quote(sim).text)
    strike = whole[0]["strike"]
    one = ndjson(
        quote(sim, right="call", strike=f"{strike:g}", start_time="10:00:00", end_time="10:05:00").text
    )
    assert len(one) == 6 and {r["strike"] for r in one} == {strike}
    index = {(r["strike"], r["right"], r["timestamp"]): r for r in whole}
    assert all(index[(r["strike"], r["right"], r["timestamp"])] == r for r in one)


def test_large_request_gets_570_then_splits_succeed(simulator: Factory) -> None:
    sim = simulator(large_request_rows=391 * 8)
    assert quote(sim).status_code == 570  # 20 contracts x 391
    assert quote(sim, right="call").status_code == 570  # 10 contracts
    listing = quote(sim, right="call", strike="*", interval="1h", format="csv").text.split("\r\n")[1:-1]
    strikes = sorted({line.split(",")[2] for line in listing})
    ok = [quote(sim, right="call", strike=s) for s in strikes]
    assert all(r.status_code == 200 for r in ok) and sum(len(ndjson(r.text)) for r in ok) == 10 * 391
    assert sim.stats["faults"]["570"] == 2


def test_list_endpoints(simulator: Factory) -> None:
    sim = simulator(today=dt.date(2024, 6, 12))
    exps = ndjson(get(sim, "/option/list/expirations", symbol="SPXW", format="ndjson").text)
    values = [e["expiration"] for e in exps]
    assert values == sorted(values) and values[0] == "2012-06-01" and "2024-06-12" in values
    strikes = ndjson(get(sim, "/option/list/strikes", symbol="SPXW", expiration=DAY, format="ndjson").text)
    assert len(strikes) >= 10 and all(isinstance(s["strike"], float) for s in strikes)
    dates = get(sim, "/option/list/dates/quote", symbol="SPXW", expiration=DAY).text.split("\r\n")
    assert dates[0] == "date" and dates[-2] == "2024-06-12" and "2024-06-08" not in dates
    assert get(sim, "/option/list/strikes", symbol="SPXW", expiration="*").status_code == 473


@pytest.mark.parametrize(
    ("day", "row"),
    [
        ("20241129", {"type": "early_close", "open": "09:30:00", "close": "13:15:00"}),
        ("20240612", {"type": "open", "open": "09:30:00", "close": "16:00:00"}),
        ("20240704", {"type": "full_close", "open": None, "close": None}),
        ("20240615", {"type": "weekend", "open": None, "close": None}),
    ],
)
def test_calendar_on_date(simulator: Factory, day: str, row: dict[str, Any]) -> None:
    r = get(simulator(), "/calendar/on_date", date=day, format="ndjson")
    assert json.loads(r.text) == row


def _burst(sim: Simulator, n: int) -> list[int]:
    codes: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        r = get(sim, "/option/list/contracts/quote", date=DAY, symbol="SPXW", i=str(i))
        with lock:
            codes.append(r.status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def test_slots_queue_and_429(simulator: Factory) -> None:
    sim = simulator(tier=1, queue=2, fault_rates={"stall": 1.0}, stall_seconds=0.4)
    codes = _burst(sim, 7)
    assert sorted(codes) == [200] * 3 + [429] * 4
    stats = sim.stats
    assert stats["faults"]["queue_full"] == 4 and stats["peak_active"] == 1 and stats["peak_waiting"] == 2


def test_slots_unit() -> None:
    slots = Slots(1, 0)
    assert slots.acquire() and not slots.acquire()
    slots.release()
    assert slots.acquire()


STATUS_CLASSES = {"429": 429, "500": 500, "474": 474, "571": 571}


def _outcome(sim: Simulator, i: int) -> str:
    try:
        r = requests.get(f"{sim.url}/v3/option/history/quote", timeout=TIMEOUT, params={
            "symbol": "SPXW", "expiration": DAY, "date": DAY, "interval": "1h", "format": "ndjson", "i": i,
        })  # fmt: skip
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
        return "drop"
    if r.status_code != 200:
        return str(r.status_code)
    return "ok" if r.text.endswith("\n") else "torn"


@pytest.mark.parametrize("cls", ["429", "500", "474", "571", "drop", "torn", "stall"])
def test_fault_rates_and_determinism(simulator: Factory, cls: str) -> None:
    config = {"fault_rates": {cls: 0.3}, "fault_seed": 3, "disconnect_seconds": 0, "starting_seconds": 0,
              "stall_seconds": 0}  # fmt: skip
    a, b = simulator(**config), simulator(**config)
    n = 120
    outcomes = [_outcome(a, i) for i in range(n)]
    assert outcomes == [_outcome(b, i) for i in range(n)]  # same seed, same faults
    fired = a.stats["faults"][cls]
    assert 0.17 * n <= fired <= 0.43 * n, fired
    expected = "ok" if cls == "stall" else cls
    assert outcomes.count(expected) == (n if cls == "stall" else fired)
    plan = FaultPlan(3, {cls: 0.3}, 0, 0)
    assert sum(plan.fires(cls, f"x{i}", 0) for i in range(2000)) == pytest.approx(600, abs=90)


def test_retry_of_the_same_request_is_a_new_draw(simulator: Factory) -> None:
    sim = simulator(fault_rates={"500": 0.5}, fault_seed=1)
    codes = [quote(sim, interval="1h").status_code for _ in range(20)]
    assert 200 in codes and 500 in codes


def test_disconnect_window_flips_status(simulator: Factory) -> None:
    sim = simulator(fault_rates={"474": 1.0}, disconnect_seconds=30)
    assert quote(sim).status_code == 474
    assert get(sim, "/terminal/mdds/status").text == "DISCONNECTED"
    calm = simulator()
    calm.disconnect(30)
    assert get(calm, "/terminal/mdds/status").text == "DISCONNECTED"
    assert get(calm, "/option/list/contracts/quote", date=DAY).status_code == 474
    assert get(calm, "/calendar/on_date", date=DAY).status_code == 200  # not behind the link
    calm.disconnect(0)
    assert get(calm, "/terminal/mdds/status").text == "CONNECTED"
    assert quote(calm).status_code == 200
    calm.starting(30)
    assert quote(calm).status_code == 571


def test_dropped_connection_is_a_client_error(simulator: Factory) -> None:
    sim = simulator(fault_rates={"drop": 1.0})
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        quote(sim)
    with requests.get(f"{sim.url}/v3/option/history/quote", stream=True, timeout=TIMEOUT, params={
        "symbol": "SPXW", "expiration": DAY, "date": DAY, "interval": "1m", "format": "ndjson", "x": "1",
    }) as r:  # fmt: skip
        got = bytearray()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for part in r.iter_content(1 << 16):
                got += part
    assert 0 < len(got) < len(quote(simulator()).content)


def test_torn_last_line(simulator: Factory) -> None:
    sim, clean = simulator(fault_rates={"torn": 1.0}), simulator()
    torn, whole = quote(sim).content, quote(clean).content
    assert not torn.endswith(b"\n") and whole.startswith(torn) and len(whole) - len(torn) < 200
    last = torn.rsplit(b"\n", 1)[1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(last)
    csv_torn = quote(sim, format="csv").content
    assert not csv_torn.endswith(b"\r\n")


def test_running_simulator_and_cli_parse() -> None:
    with running_simulator(chain="tiny", seed=2) as sim:
        assert get(sim, "/terminal/mdds/status").text == "CONNECTED"
    with pytest.raises(ValueError, match="fault class"):
        SimConfig(fault_rates={"boom": 0.1})
    with pytest.raises(SystemExit):
        main(["--fault-rate", "boom=0.1"])


def test_cli_serves_until_terminated() -> None:
    cmd = [
        sys.executable,
        "-m",
        "spx_data.sim.server",
        "--chain",
        "tiny",
        "--port",
        "0",
        "--fault-rate",
        "500=0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"(http://127\.0\.0\.1:\d+)/v3", banner)
        assert url, banner
        assert requests.get(f"{url[1]}/v3/terminal/mdds/status", timeout=TIMEOUT).text == "CONNECTED"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and json.loads(out.splitlines()[-1])["requests"] == 1
    assert err == ""  # no runpy RuntimeWarning: the package does not import `server` eagerly


def test_module_level_functions() -> None:
    assert ch.listing("2024-07-04") is None
    listed = ch.listing("20240612", ["SPXW"], max_dte=0, chain="small", seed=0)
    assert listed == [("SPXW", "2024-06-12", 80)]
    table = ch.history_table("open_interest", "2024-06-12", "SPXW", "*", chain="small")
    assert table is not None and table.num_rows == sum(
        n for *_, n in ch.listing("2024-06-12", ["SPXW"], chain="small") or ()
    )
    with pytest.raises(ValueError, match="dataset"):
        ch.history_table("trades", "2024-06-12", "SPXW", "*")


def test_counter_hash_is_order_independent() -> None:
    chain = ch.Chain("tiny")
    day = dt.date(2024, 6, 12)
    full = chain.history_table("quote", day, "SPXW", day, "1m")
    puts = chain.history_table("quote", day, "SPXW", day, "1m", right="put")
    assert full is not None and puts is not None
    mask = np.asarray(full["right"].cast(pa.string())) == "PUT"
    assert full.filter(pa.array(mask)).to_pylist() == puts.to_pylist()


# ---------------------------------------------------------------------------------------------------------
# time_columns: `date` + `ms_of_day` instead of `timestamp`


def _as_timestamp(row: dict[str, Any]) -> dict[str, Any]:
    """A date + ms_of_day row as the same row with `timestamp` (fraction omitted when zero)."""
    row = dict(row)
    date, ms = str(row.pop("date")).replace("-", ""), row.pop("ms_of_day")
    day = dt.date(int(date[:4]), int(date[4:6]), int(date[6:]))
    t = dt.datetime.combine(day, dt.time()) + dt.timedelta(milliseconds=ms)
    row["timestamp"] = t.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return row


@pytest.mark.parametrize(("shape", "date"), [("date_ms", 20240612), ("date_ms_iso", "2024-06-12")])
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/option/history/quote", {"expiration": DAY, "date": DAY, "interval": "1m"}),
        ("/option/history/greeks/first_order", {"expiration": DAY, "date": DAY, "interval": "5m"}),
        ("/option/history/open_interest", {"expiration": "*", "date": DAY}),
    ],
)
def test_time_columns_date_ms_carry_the_same_rows(
    simulator: Factory, shape: str, date: object, path: str, params: dict[str, str]
) -> None:
    normal, other = simulator(), simulator(time_columns=shape)
    query = {"symbol": "SPXW", "format": "ndjson"} | params
    want = ndjson(get(normal, path, **query).text)
    rows = ndjson(get(other, path, **query).text)
    assert len(rows) == len(want) > 0
    assert all("timestamp" not in r and r["date"] == date and isinstance(r["ms_of_day"], int) for r in rows)
    assert [_as_timestamp(r) for r in rows] == want
    if "greeks" in path:  # other timestamp columns stay text
        assert all(isinstance(r["underlying_timestamp"], str) for r in rows)


def test_time_columns_in_csv_and_json_and_config(simulator: Factory) -> None:
    sim = simulator(time_columns="date_ms")
    header = quote(sim, format="csv", interval="1h").text.split("\r\n", 1)[0]
    assert header.split(",")[4:7] == ["date", "ms_of_day", "bid_size"]
    body = quote(sim, format="json", interval="1h").json()
    assert (
        "timestamp" not in body
        and body["date"][0] == 20240612
        and body["ms_of_day"][:2] == [34_200_000, 37_800_000]
    )
    with pytest.raises(ValueError, match="time_columns 'ms': not one of timestamp, date_ms, date_ms_iso"):
        SimConfig(time_columns="ms")
    args = build_parser().parse_args(["--time-columns", "date_ms_iso"])
    assert config_from_args(args).time_columns == "date_ms_iso"
    assert config_from_args(build_parser().parse_args([])).time_columns == "timestamp"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--time-columns", "ms"])


# ---------------------------------------------------------------------------------------------------------
# Quiet server: clients that go away are not errors


def test_client_gone_is_not_printed(simulator: Factory, capfd: pytest.CaptureFixture[str]) -> None:
    sim = simulator(chain="full", large_request_rows=None)
    server = sim._server
    assert server is not None
    for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset"), TimeoutError()):
        try:
            raise error
        except OSError:
            server.handle_error(None, ("127.0.0.1", 1))
    assert capfd.readouterr().err == ""
    try:
        raise ValueError("a simulator bug")
    except ValueError:
        server.handle_error(None, ("127.0.0.1", 1))
    assert "ValueError: a simulator bug" in capfd.readouterr().err
    # Real disconnects: mid-answer, and while a kept-alive connection waits for its next request.
    linger0 = struct.pack("ii", 1, 0)  # close with a reset
    request = (
        f"GET /v3/option/history/quote?symbol=SPXW&expiration={DAY}&date={DAY}&interval=1m&format=ndjson"
    )
    for path in (request, "GET /v3/terminal/mdds/status"):
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
            s.sendall(f"{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.recv(4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
    assert get(sim, "/terminal/mdds/status").text == "CONNECTED"  # both handlers have run by now...
    time.sleep(0.3)  # ...or are about to finish
    assert capfd.readouterr().err == ""


def test_sim_package_exports_lazily() -> None:
    code = (
        "import sys, spx_data.sim as sim; assert 'spx_data.sim.server' not in sys.modules; "
        "from spx_data.sim import SimConfig, Simulator, main; "
        "from spx_data.sim.server import SimConfig as C; assert SimConfig is C and sim.main is main"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        import spx_data.sim

        spx_data.sim.nope  # noqa: B018


# ---------------------------------------------------------------------------------------------------------
# Issue 10: the real terminal's window, its unsettled behaviours as switches, list/contracts/trade


def lines(body: bytes) -> list[dict[str, Any]]:
    """NDJSON rows, with or without the final newline."""
    return [json.loads(line) for line in body.splitlines()]


def history(sim: Simulator, dataset: str, day: str = DAY, **params: Any) -> requests.Response:
    base = {"symbol": "SPXW", "expiration": day, "date": day, "interval": "1m", "format": "ndjson"}
    return get(sim, DATASETS[dataset].endpoint, **(base | params))


# sha256 of answers captured from the simulator before issue 10 (no window, no greeks inputs sent; the
# early close then stopped at 13:15 by itself).
TODAYS_BYTES = {
    (DAY, "quote"): "cb0cc465121a4d3b7a0960a3a8ec0ad440453d5179ec7ad4cfa2ee03e9c69c3a",
    (DAY, "ohlc"): "bc7eb0873e4ff23d2782b297a6dce952f08161497f3d7db73538e6e35b56dd64",
    (DAY, "greeks_first_order"): "c4639599057154259c3b239a61e6e18814e21f16d90398d91e8db827f7fd2114",
    (EARLY, "quote"): "b4237f2477262b2542d88f04ff8ff8f586a6c76e5fc60ce7f12c31c25104315c",
    (EARLY, "ohlc"): "decab84ccf799cb4e07905649bcf14f8a54a88c1e003fe1ecddf43935688690a",
    (EARLY, "greeks_first_order"): "118624cc45dcaaf425ffafb91ef4b0591d5c4f53d183739fdfb3ad37c09b56f5",
}
GREEKS_DEFAULTS = {"rate_type": "sofr", "version": "latest"}


@pytest.mark.parametrize(("day", "dataset"), list(TODAYS_BYTES))
def test_window_and_greeks_inputs_keep_todays_bytes(simulator: Factory, day: str, dataset: str) -> None:
    close = "13:15:00" if day == EARLY else "16:00:00"
    params = {"start_time": "09:30:00", "end_time": close}
    params |= GREEKS_DEFAULTS if dataset.startswith("greeks") else {}
    body = history(simulator(), dataset, day, **params).content
    assert hashlib.sha256(body).hexdigest() == TODAYS_BYTES[(day, dataset)]


@pytest.mark.parametrize("dataset", ["quote", "ohlc", "greeks_first_order"])
def test_early_close_filled_to_1600_without_quotes(simulator: Factory, dataset: str) -> None:
    sim = simulator()
    filled = history(sim, dataset, EARLY).content.splitlines(keepends=True)
    session = history(sim, dataset, EARLY, end_time="13:15:00").content.splitlines(keepends=True)
    stamp = [json.loads(line)["timestamp"][11:] for line in filled]
    # the session's rows are those of the filled answer up to the close, byte for byte
    assert [line for line, t in zip(filled, stamp, strict=True) if t <= "13:15:00"] == session
    after = [json.loads(line) for line, t in zip(filled, stamp, strict=True) if t > "13:15:00"]
    assert len(after) == 20 * 165 and max(stamp) == "16:00:00"
    zero = {"quote": ("bid", "ask", "bid_size", "ask_size"), "ohlc": ("volume", "count", "open", "close"),
            "greeks_first_order": ("bid", "ask", "delta", "implied_vol")}[dataset]  # fmt: skip
    assert all(row[c] == 0 for row in after for c in zero)
    assert any(row[zero[0]] != 0 for row in map(json.loads, session))
    if dataset == "greeks_first_order":
        assert {row["iv_error"] for row in after} == {100}


def test_window_selects_rows_from_its_start(simulator: Factory) -> None:
    sim = simulator()
    rows = lines(history(sim, "quote", start_time="15:00:00", end_time="16:10:00", interval="30m").content)
    assert sorted({r["timestamp"][11:] for r in rows}) == ["15:00:00", "15:30:00", "16:00:00"]
    late = [r for r in rows if r["timestamp"].endswith("16:00:00")]
    assert late and all(r["bid"] > 0 or r["ask"] > 0 for r in late)  # 16:00 is in a regular session
    one = lines(
        history(sim, "quote", start_time="12:00:00.500", end_time="12:00:00.500", interval="1s").content
    )
    assert len(one) == 20 and {r["timestamp"][11:] for r in one} == {"12:00:00.500"}


@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "9:30:00"}, {"end_time": "16:00"}, {"end_time": "24:00:00"},
        {"start_time": "09:60:00"},
        {"end_time": "16:00:00.1234"}, {"start_time": "10:00:00", "end_time": "09:59:59"},
        {"rate_type": "libor"}, {"rate_type": "SOFR"}, {"version": "2"}, {"rate_value": "abc"},
        {"rate_value": "nan"}, {"annual_dividend": "-1"}, {"annual_dividend": "inf"},
    ],
)  # fmt: skip
def test_bad_window_or_greeks_input_gets_473(simulator: Factory, params: dict[str, str]) -> None:
    r = history(simulator(), "greeks_first_order", **params)
    assert r.status_code == 473 and r.text.startswith("INVALID_PARAMS") and next(iter(params)) in r.text


def test_greeks_inputs_accepted_and_counted(simulator: Factory) -> None:
    sim = simulator()
    plain = history(sim, "greeks_first_order", interval="1h").content
    for inputs in (
        GREEKS_DEFAULTS,
        {"rate_type": "treasury_y10", "version": "1", "rate_value": "4.25", "annual_dividend": "70.5"},
        {"rate_value": "-0.1", "annual_dividend": "0"},
    ):
        # the inputs are the vendor's formulas' business: the simulated greeks do not change
        assert history(sim, "greeks_first_order", interval="1h", **inputs).content == plain
    assert history(sim, "quote", interval="1h", rate_type="libor").status_code == 200  # not a greeks path
    assert sim.stats["greeks_inputs"] == {
        "(none)": 1,
        "rate_type=sofr&version=latest": 1,
        "rate_type=treasury_y10&version=1&rate_value=4.25&annual_dividend=70.5": 1,
        "rate_value=-0.1&annual_dividend=0": 1,
    }


def test_final_newline_switch(simulator: Factory) -> None:
    plain, bare = simulator(), simulator(final_newline=False)
    requests_ = [
        lambda sim: history(sim, "quote"),
        lambda sim: history(sim, "open_interest", expiration="*", interval=None),
        lambda sim: get(sim, "/option/list/contracts/quote", date=DAY, format="ndjson"),
        lambda sim: get(sim, "/option/list/contracts/trade", date=DAY, format="ndjson"),
        lambda sim: get(sim, "/calendar/on_date", date=DAY, format="ndjson"),
    ]
    for ask in requests_:
        whole, cut = ask(plain).content, ask(bare).content
        assert whole.endswith(b"}\n") and cut + b"\n" == whole
    assert history(bare, "quote", format="csv").content == history(plain, "quote", format="csv").content
    torn = simulator(final_newline=False, fault_rates={"torn": 1.0})
    body = history(torn, "quote").content
    assert history(plain, "quote").content.startswith(body) and not body.endswith(b"}")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body.rsplit(b"\n", 1)[1])


def _contracts(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {(r["symbol"], r["expiration"], r["strike"], r["right"]) for r in rows}


@pytest.mark.parametrize("chain", ["tiny", "small"])
def test_list_contracts_trade(simulator: Factory, chain: str) -> None:
    sim = simulator(chain=chain)
    quoted = lines(
        get(sim, "/option/list/contracts/quote", date=DAY, symbol="SPX,SPXW", format="ndjson").content
    )
    traded = lines(
        get(sim, "/option/list/contracts/trade", date=DAY, symbol="SPX,SPXW", format="ndjson").content
    )
    assert _contracts(traded) < _contracts(quoted) and len(traded) > len(quoted) // 2
    assert {frozenset(r) for r in traded} == {frozenset(r) for r in quoted} == {frozenset(CONTRACT_COLUMNS)}
    csv = get(sim, "/option/list/contracts/trade", date=DAY, symbol="SPXW", max_dte="0", format="csv").text
    assert csv.split("\r\n")[0] == "symbol,expiration,strike,right"
    assert {line.split(",")[1] for line in csv.split("\r\n")[1:-1]} == {"2024-06-12"}
    zero_dte = {c for c in _contracts(traded) if c[:2] == ("SPXW", "2024-06-12")}
    assert len(csv.split("\r\n")) - 2 == len(zero_dte) > 0
    for day, status in (("20240704", 472), ("20240615", 472), ("2024-13-01", 473)):
        r = get(sim, "/option/list/contracts/trade", date=day, symbol="SPXW")
        assert r.status_code == status
    assert get(sim, "/option/list/contracts/trade", date=DAY, max_dte="x").status_code == 473


def test_traded_only_ohlc_answers_the_traded_contracts(simulator: Factory) -> None:
    plain, real = simulator(), simulator(traded_only=True)
    traded = _contracts(lines(get(real, "/option/list/contracts/trade", date=DAY, format="ndjson").content))
    whole, only = lines(history(plain, "ohlc").content), lines(history(real, "ohlc").content)
    zero_dte = {c for c in traded if c[:2] == ("SPXW", "2024-06-12")}
    assert _contracts(only) == zero_dte and len(zero_dte) < len(_contracts(whole)) == 20
    assert only == [r for r in whole if _contracts([r]) <= zero_dte]  # the same rows, fewer contracts
    assert _contracts(lines(history(plain, "ohlc").content)) == _contracts(whole)  # default: every contract
    for dataset in ("quote", "greeks_first_order"):  # quote-derived answers keep every contract
        assert len(_contracts(lines(history(real, dataset, interval="1h").content))) == 20
    untraded = sorted(_contracts(whole) - zero_dte)[0]
    r = history(real, "ohlc", strike=f"{untraded[2]:g}", right=untraded[3].lower())
    assert r.status_code == 472


def test_empty_no_data_switch(simulator: Factory) -> None:
    sim = simulator(empty_no_data=True, no_data_days=("2024-06-13",))
    for r in (
        get(sim, "/option/list/contracts/quote", date="20240704", format="ndjson"),
        get(sim, "/option/list/contracts/trade", date="20240704"),
        history(sim, "quote", "20240613"),
        history(sim, "quote", expiration="20240628"),
        history(sim, "eod", start_date="20240704", end_date="20240704", interval=None, date=None),
    ):
        assert (r.status_code, r.content, r.headers["Content-Length"]) == (200, b"", "0")
    assert history(sim, "quote").status_code == 200 and len(history(sim, "quote").content) > 100_000
    assert history(sim, "quote", interval="2m").status_code == 473
    assert history(simulator(), "quote", "20240704").status_code == 472  # the default stays 472


def test_real_terminal_preset_and_cli_switches() -> None:
    preset = SimConfig.real_terminal(chain="small")
    assert (preset.final_newline, preset.traded_only, preset.empty_no_data, preset.chain) == (
        False, True, True, "small",
    )  # fmt: skip
    default = SimConfig()
    assert (default.final_newline, default.traded_only, default.empty_no_data) == (True, False, False)
    parse = build_parser().parse_args
    assert config_from_args(parse(["--real-terminal"])) == SimConfig.real_terminal(chain="full", port=25503)
    one = config_from_args(parse(["--no-final-newline", "--traded-only", "--empty-no-data"]))
    assert one == SimConfig.real_terminal(chain="full", port=25503)
    assert config_from_args(parse(["--traded-only"])) == SimConfig(chain="full", port=25503, traded_only=True)
