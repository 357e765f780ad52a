"""A ThetaData Terminal v3 simulator over real HTTP (loopback), with slots, a queue and seeded faults.

Run it: `python -m spx_data.sim.server --chain full` (later `spx-data sim`), or in tests with
`spx_data.sim.testing.running_simulator(...)`. Paths are those of /work/shared/thetadata-v3.md under
/v3, plus `GET /sim/stats` (JSON counters). History answers stream as chunked HTTP/1.1 bodies built
block by block (about `block_rows` rows each, several MB) by the vectorised formatters of `chain`.

Simulator choices beyond the v3 doc: `interval=tick` is served on a one-second grid; `format=html`
answers 473; `list/strikes` answers `symbol,strike`; list endpoints without a date (`expirations`,
`strikes`, `dates`) see the chain as of `SimConfig.today` (default: the real date).
`SimConfig.bad_data` switches make history answers 200s with a wrong body (see `bad_data`);
`SimConfig.time_columns` makes history rows carry `date` + `ms_of_day` instead of `timestamp`.
`/index/history/price` serves SPX on the path the greeks' `underlying_price` takes (equal at the same row
time) and VIX on its own; `SimConfig.index_denied` makes a symbol answer 471 (a subscription without it).
`SimConfig.latency="vendor-p90"` makes every request hold its slot for a service time drawn around the
vendor's p90 server time of its endpoint (see `latency`) before its answer starts; `/sim/stats` lists
every slot hold (`slot_holds`, system-wide monotonic seconds) for occupancy accounting (see `occupancy`).

Like a real terminal, interval answers fill `start_time`..`end_time` (default 09:30:00-16:00:00) on every
session: after an early close the rows carry no quote and no volume. The behaviours no public source
settles are switches (`final_newline`, `traded_only`, `empty_no_data`); `SimConfig.real_terminal()` and
`--real-terminal` turn on every one a real terminal shows or may show. Greeks inputs (`rate_type`,
`version`, `rate_value`, `annual_dividend`) are checked against the spec's values but do not change the
simulated greeks: the vendor's formulas for them are not public, so any effect would be invented; what
the greeks requests sent is counted in `/sim/stats` (`greeks_inputs`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from spx_data.core import calendar
from spx_data.core.datasets import (
    DATASETS,
    GREEKS_VERSIONS,
    INDEX_SYMBOLS,
    INTERVALS,
    LIST_CONTRACTS_ENDPOINT,
    LIST_TRADED_ENDPOINT,
    RATE_TYPES,
    STATUS_ENDPOINT,
    SYMBOLS,
    Dataset,
)
from spx_data.sim import bad_data as bd
from spx_data.sim import chain as ch
from spx_data.sim import defects
from spx_data.sim import latency as lat
from spx_data.sim.faults import FAULT_CLASSES, TIERS, Decision, FaultPlan, Slots, Stats, check_rates

API = "/v3"
STATS_PATH = "/sim/stats"
# The spec's allowed values of the greeks inputs; None: a number.
GREEKS_INPUTS: dict[str, tuple[str, ...] | None] = {
    "rate_type": RATE_TYPES, "version": GREEKS_VERSIONS, "rate_value": None, "annual_dividend": None,
}  # fmt: skip
# Parameters that select rows or greeks inputs but not the request's identity: its ndjson key order and
# fault draws stay those of the same request without them, so sending the defaults keeps the bytes.
_NOT_IN_KEY = frozenset(("start_time", "end_time", *GREEKS_INPUTS))
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv", "json": "application/json"}
REASONS = {
    404: "Not Found", 429: "Too Many Requests", 470: "GENERAL", 471: "PERMISSION", 472: "NO_DATA",
    473: "INVALID_PARAMS",
    474: "DISCONNECTED", 500: "Internal Server Error", 570: "LARGE_REQUEST", 571: "SERVER_STARTING",
}  # fmt: skip


@dataclass(frozen=True)
class SimConfig:
    chain: str = "tiny"  # tiny | small | medium | full (see chain.SIZES)
    seed: int = 0  # the market data; faults draw from fault_seed so they never change the data
    fault_seed: int = 0
    tier: int = 4  # concurrent requests: 1 free, 2 value, 4 standard, 8 pro
    queue: int = 16  # requests waiting for a slot before 429
    fault_rates: Mapping[str, float] = field(default_factory=dict)  # class -> 0..1, see faults.FAULT_CLASSES
    fault_paths: tuple[str, ...] = ()  # endpoints (under /v3) the faults hit; empty: every endpoint
    no_data_days: tuple[dt.date, ...] = ()  # sessions the vendor has nothing for (472)
    large_request_rows: int | None = 1_000_000  # answers above this many rows get 570; None: never
    stall_seconds: float = 2.0
    disconnect_seconds: float = 2.0  # how long a 474 fault keeps the terminal DISCONNECTED
    starting_seconds: float = 5.0  # how long a 571 fault keeps answering SERVER_STARTING
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    block_rows: int = ch.DEFAULT_BLOCK_ROWS  # rows rendered (and written as one chunk) at a time
    today: dt.date | None = None  # "now" for list endpoints without a date; None: the real date
    bad_data: tuple[str, ...] = ()  # "KIND" or "KIND@YYYY-MM-DD": history answers spoiled (bad_data.KINDS)
    bad_data_times: int | None = None  # per request: bad this many times, then clean; None: always bad
    time_columns: str = "timestamp"  # history rows' time: timestamp | date_ms | date_ms_iso (see chain)
    final_newline: bool = True  # False: ndjson bodies end without their last "\n" (the vendor's examples)
    traded_only: bool = False  # True: ohlc answers only the contracts that traded (list/contracts/trade)
    empty_no_data: bool = False  # True: "no data" is a 200 with an empty body instead of 472
    index_denied: tuple[str, ...] = ()  # index symbols answering 471 (a subscription without VIX, say)
    latency: str = "off"  # off | vendor-p90: per-request service time holding the slot (see latency)
    latency_scale: float = 1.0  # multiplies every service time (< 1: a compressed benchmark)
    defects: Mapping[str, float] = field(default_factory=dict)  # kind -> rate, see sim/defects.py
    defect_seed: int = 0

    @classmethod
    def real_terminal(cls, **overrides: Any) -> SimConfig:
        """The preset: every behaviour a real terminal shows or may show, on at once."""
        return cls(**(REAL_TERMINAL | overrides))

    def __post_init__(self) -> None:
        if self.chain not in ch.SIZES:
            raise ValueError(f"chain {self.chain!r}: not one of {', '.join(ch.SIZES)}")
        if self.tier not in TIERS:
            raise ValueError(f"tier {self.tier}: not one of {', '.join(map(str, TIERS))}")
        if self.queue < 0 or self.block_rows < 1 or min(self.seed, self.fault_seed) < 0:
            raise ValueError("queue, seed and fault_seed must be >= 0, block_rows >= 1")
        object.__setattr__(self, "fault_rates", check_rates(self.fault_rates))
        days = tuple(d if isinstance(d, dt.date) else ch._as_date(str(d)) for d in self.no_data_days)
        object.__setattr__(self, "no_data_days", days)
        for switch in self.bad_data:
            bd.parse_switch(switch)
        if self.bad_data_times is not None and self.bad_data_times < 0:
            raise ValueError(f"bad_data_times {self.bad_data_times}: must be >= 0")
        ch.answer_columns((), self.time_columns)  # raises for an unknown shape
        lat.check(self.latency, self.latency_scale)
        object.__setattr__(self, "defects", defects.checked(self.defects))


# The switches the real-terminal preset turns on (the 16:00 fill needs none: the simulator always does it).
REAL_TERMINAL: dict[str, Any] = {"final_newline": False, "traded_only": True, "empty_no_data": True}


class Reply(Exception):
    """An error answer: a status code and a short plain-text body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


@dataclass
class Answer:
    """A 200 answer: its row count (checked against the 570 threshold) and its body, lazily."""

    rows: int
    fmt: str
    chunks: Callable[[], Iterable[bytes | memoryview | str]]
    bad: str | None = None  # the bad_data kind spoiling the body


# ---------------------------------------------------------------------------------------------------------
# Parameters


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise Reply(473, f"INVALID_PARAMS: missing required parameter '{name}'")
    return value


def _date(params: Mapping[str, str], name: str) -> dt.date:
    text = _required(params, name)
    try:
        if len(text.replace("-", "")) != 8:
            raise ValueError
        return ch._as_date(text)
    except ValueError:
        raise Reply(473, f"INVALID_PARAMS: {name}={text!r} is not a date (YYYYMMDD)") from None


def _format(params: Mapping[str, str]) -> str:
    fmt = params.get("format", "csv").lower()
    if fmt not in ch.FORMATS:
        raise Reply(473, f"INVALID_PARAMS: format={fmt!r} (simulated: ndjson, csv, json)")
    return fmt


_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d{1,3}))?")


def _time_ms(params: Mapping[str, str], name: str, default: int) -> int:
    """`start_time`/`end_time` (HH:MM:SS[.SSS], ET) as ms of day."""
    text = params.get(name)
    if not text:
        return default
    m = _CLOCK.fullmatch(text)
    if m is None:
        raise Reply(473, f"INVALID_PARAMS: {name}={text!r} is not HH:MM:SS[.SSS]")
    h, mi, sec = (int(g) for g in m.groups()[:3])
    return ((h * 60 + mi) * 60 + sec) * 1000 + int((m.group(4) or "").ljust(3, "0"))


def _greeks_inputs(params: Mapping[str, str]) -> str:
    """The greeks inputs sent, checked against the spec's values, as a `/sim/stats` key."""
    sent = []
    for name, allowed in GREEKS_INPUTS.items():
        value = params.get(name)
        if value is None:
            continue
        if allowed is not None and value not in allowed:
            raise Reply(473, f"INVALID_PARAMS: {name}={value!r} (one of {', '.join(allowed)})")
        if allowed is None and not _finite(value, nonnegative=name == "annual_dividend"):
            raise Reply(473, f"INVALID_PARAMS: {name}={value!r} is not a number")
        sent.append(f"{name}={value}")
    return "&".join(sent) or "(none)"


def _finite(text: str, nonnegative: bool) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and (value >= 0 or not nonnegative)


def _symbols(params: Mapping[str, str], default: Sequence[str] | None = None) -> list[str]:
    text = params.get("symbol", "")
    if not text:
        if default is None:
            raise Reply(473, "INVALID_PARAMS: missing required parameter 'symbol'")
        return list(default)
    return [s.strip().upper() for s in text.split(",") if s.strip()]


def canonical(path: str, params: Mapping[str, str]) -> str:
    return path + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in _NOT_IN_KEY)


# ---------------------------------------------------------------------------------------------------------
# Answers


class Routes:
    """The v3 answers of one chain; every method returns an Answer or raises Reply."""

    def __init__(self, config: SimConfig, counters: Stats) -> None:
        self.config = config
        self.counters = counters
        self.chain = ch.Chain(config.chain, config.seed)
        self.no_data = frozenset(config.no_data_days)
        self.bad_switches = [bd.parse_switch(s) for s in config.bad_data]
        self._bad_served: Counter[str] = Counter()
        self._bad_lock = threading.Lock()
        self.table: dict[str, Callable[[Mapping[str, str], str], Answer]] = {
            API + LIST_CONTRACTS_ENDPOINT: partial(self.list_contracts, traded=False),
            API + LIST_TRADED_ENDPOINT: partial(self.list_contracts, traded=True),
            API + "/option/list/expirations": self.list_expirations,
            API + "/option/list/strikes": self.list_strikes,
            API + "/option/list/dates/quote": self.list_dates,
        }
        for ds in DATASETS.values():
            self.table[API + ds.endpoint] = (
                partial(self.index_history, ds) if ds.index else self._history_route(ds)
            )

    def today(self) -> dt.date:
        return self.config.today or dt.date.today()

    def _session(self, day: dt.date) -> None:
        if ch.close_ms(day) is None:
            raise Reply(472, f"NO_DATA: {day} was not a trading session")
        if day in self.no_data:
            raise Reply(472, f"NO_DATA: no data for {day}")

    def _table(self, columns: list[tuple[str, str, Any]], fmt: str, request: str) -> Answer:
        names = [c[0] for c in columns]
        order = ch.key_order(names, request) if fmt == "ndjson" else names
        body = ch.render_text_table(columns, fmt, order)  # type: ignore[arg-type]
        return Answer(len(columns[0][2]), fmt, lambda: [body])

    def list_contracts(self, params: Mapping[str, str], request: str, traded: bool) -> Answer:
        """The contracts quoted on a date, or with `traded` those that traded (list/contracts/trade)."""
        day, fmt = _date(params, "date"), _format(params)
        symbols = _symbols(params, default=SYMBOLS)
        max_dte = params.get("max_dte")
        if max_dte is not None and not max_dte.isdigit():
            raise Reply(473, f"INVALID_PARAMS: max_dte={max_dte!r}")
        self._session(day)
        contracts = self.chain.traded if traded else self.chain.contracts
        parts = []
        for symbol, exp, _ in self.chain.listing(day, symbols, int(max_dte) if max_dte else None) or []:
            c = contracts(day, symbol, dt.date.fromisoformat(exp))
            if c is not None and len(c):
                parts.append((symbol, exp, c))
        if not parts:
            raise Reply(472, f"NO_DATA: no contracts for {','.join(symbols)} on {day}")
        sizes = [len(c) for _, _, c in parts]
        columns = [
            ("symbol", "text", np.repeat([p[0] for p in parts], sizes)),
            ("expiration", "text", np.repeat([p[1] for p in parts], sizes)),
            ("strike", "strike", np.concatenate([c.strikes for *_, c in parts])),
            ("right", "text", np.where(np.concatenate([c.puts for *_, c in parts]), "PUT", "CALL")),
        ]
        return self._table(columns, fmt, request)

    def list_expirations(self, params: Mapping[str, str], request: str) -> Answer:
        symbols, fmt = _symbols(params), _format(params)
        found = [(s, e.isoformat()) for s in symbols for e in self.chain.expirations_ever(s, self.today())]
        if not found:
            raise Reply(472, f"NO_DATA: no expirations for {','.join(symbols)}")
        columns = [("symbol", "text", [f[0] for f in found]), ("expiration", "text", [f[1] for f in found])]
        return self._table(columns, fmt, request)

    def _symbol_expiration(self, params: Mapping[str, str]) -> tuple[str, dt.date]:
        symbol = _required(params, "symbol").upper()
        if params.get("expiration") == "*":
            raise Reply(473, "INVALID_PARAMS: expiration=* is not accepted here")
        expiration = _date(params, "expiration")
        if symbol not in SYMBOLS:
            raise Reply(472, f"NO_DATA: unknown symbol {symbol}")
        return symbol, expiration

    def list_strikes(self, params: Mapping[str, str], request: str) -> Answer:
        (symbol, expiration), fmt = self._symbol_expiration(params), _format(params)
        strikes = self.chain.strikes_ever(symbol, expiration, self.today())
        if not len(strikes):
            raise Reply(472, f"NO_DATA: no strikes for {symbol} {expiration}")
        columns = [("symbol", "text", [symbol] * len(strikes)), ("strike", "strike", strikes)]
        return self._table(columns, fmt, request)

    def list_dates(self, params: Mapping[str, str], request: str) -> Answer:
        (symbol, expiration), fmt = self._symbol_expiration(params), _format(params)
        days = [
            d.isoformat()
            for d in self.chain.quote_dates(symbol, expiration, self.today())
            if d not in self.no_data
        ]
        if not days:
            raise Reply(472, f"NO_DATA: no dates for {symbol} {expiration}")
        return self._table([("date", "text", days)], fmt, request)

    def _history_route(self, ds: Dataset) -> Callable[[Mapping[str, str], str], Answer]:
        return lambda params, request: self.history(ds, params, request)

    def _days(self, ds: Dataset, params: Mapping[str, str]) -> list[dt.date]:
        if ds.date_range_params and "date" not in params:
            start, end = _date(params, "start_date"), _date(params, "end_date")
            if end < start or (end - start).days > 31:
                raise Reply(473, "INVALID_PARAMS: start_date..end_date must be ordered and at most a month")
            return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        return [_date(params, "date")]

    def history(self, ds: Dataset, params: Mapping[str, str], request: str) -> Answer:
        symbol = _required(params, "symbol").upper()
        exp_text = _required(params, "expiration")
        if exp_text == "*" and not ds.wildcard_expiration:
            raise Reply(473, f"INVALID_PARAMS: expiration=* is not accepted by {ds.endpoint}")
        expiration: dt.date | str = "*" if exp_text == "*" else _date(params, "expiration")
        days = self._days(ds, params)
        interval, start_ms, end_ms = self._grid(params) if ds.interval_based else (None, None, None)
        try:
            right = ch.parse_right(params.get("right"))
            strike = ch.parse_strike(params.get("strike"))
        except ValueError as e:
            raise Reply(473, f"INVALID_PARAMS: {e}") from None
        fmt = _format(params)
        if ds.greeks:
            self.counters.count("greeks_inputs", _greeks_inputs(params))
        traded_only = self.config.traded_only and ds.trade_derived
        if symbol not in SYMBOLS:
            raise Reply(472, f"NO_DATA: unknown symbol {symbol}")
        plan = []
        for day in days:
            if ch.close_ms(day) is None or day in self.no_data or day < ds.first_date:
                continue
            cfg = self.config
            if defects.zero_dte_dropped(day, symbol, expiration, cfg.defects, cfg.defect_seed):
                continue  # the same-day expiration lost (sim/defects.py), though listed
            parts = self.chain.request_parts(day, symbol, expiration, right, strike, traded_only)
            times = ch.interval_grid(day, interval, start_ms, end_ms) if interval else None
            if parts is not None and (times is None or len(times)):
                plan.append((day, parts, times))
        if not plan:
            raise Reply(472, f"NO_DATA: nothing for {symbol} {exp_text} on {', '.join(map(str, days[:1]))}")
        rows = sum(len(c) * (len(t) if t is not None else 1) for _, parts, t in plan for _, c in parts)
        names = ch.answer_columns(ds.column_names, self.config.time_columns)
        order = names if fmt != "ndjson" else ch.key_order(names, request)
        answer = Answer(rows, fmt, lambda: self._history_body(ds, symbol, plan, fmt, order))
        kind = self._bad_kind(request, [day for day, _, _ in plan], fmt) if self.bad_switches else None
        return answer if kind is None else self._spoiled(answer, kind, ds, plan[0][0])

    def _grid(self, params: Mapping[str, str]) -> tuple[str, int, int]:
        """(interval, start ms, end ms) of an interval request; the window defaults to 09:30-16:00."""
        interval = _required(params, "interval")
        if interval not in INTERVALS:
            raise Reply(473, f"INVALID_PARAMS: interval={interval!r} (one of {', '.join(INTERVALS)})")
        start_ms = _time_ms(params, "start_time", ch.OPEN_MS)
        end_ms = _time_ms(params, "end_time", ch.REGULAR_CLOSE_MS)
        if start_ms > end_ms:
            window = f"start_time={params.get('start_time')}, end_time={params.get('end_time')}"
            raise Reply(473, f"INVALID_PARAMS: {window}: the start is after the end")
        return interval, start_ms, end_ms

    def index_history(self, ds: Dataset, params: Mapping[str, str], request: str) -> Answer:
        """/index/history/price: `timestamp`, `price` on the interval grid of the window, per session."""
        symbol = _required(params, "symbol").upper()
        days = self._days(ds, params)
        interval, start_ms, end_ms = self._grid(params)
        fmt = _format(params)
        if symbol not in INDEX_SYMBOLS:
            raise Reply(472, f"NO_DATA: unknown index {symbol}")
        if symbol in self.config.index_denied:
            raise Reply(471, f"PERMISSION: the subscription does not include index {symbol}")
        texts: list[str] = []
        cents: list[np.ndarray] = []
        for day in days:
            if ch.close_ms(day) is None or day in self.no_data or day < ds.first_date:
                continue
            times = ch.interval_grid(day, interval, start_ms, end_ms)
            midnight = dt.datetime.combine(day, dt.time())
            texts += [  # as the option routes write them: the fraction omitted when zero
                (midnight + dt.timedelta(milliseconds=int(t)))
                .isoformat(timespec="milliseconds")
                .removesuffix(".000")
                for t in times
            ]
            cents.append(ch.index_cents(symbol, day, times, self.config.seed))
        if not texts:
            raise Reply(472, f"NO_DATA: nothing for index {symbol} on {', '.join(map(str, days[:1]))}")
        return self._table(
            [("timestamp", "text", texts), ("price", "price", np.concatenate(cents))], fmt, request
        )

    def _bad_kind(self, request: str, days: list[dt.date], fmt: str) -> str | None:
        """The bad_data kind this answer gets (counted per request), or None for a clean one."""
        kind = next((k for k, d in self.bad_switches if d is None or d in days), None)
        if kind is None or (fmt != "ndjson" and kind not in ("html", "empty")):
            return None  # line kinds are defined on NDJSON, the client's format
        with self._bad_lock:
            n = self._bad_served[request]
            if self.config.bad_data_times is not None and n >= self.config.bad_data_times:
                return None
            self._bad_served[request] = n + 1
        return kind

    @staticmethod
    def _spoiled(clean: Answer, kind: str, ds: Dataset, day: dt.date) -> Answer:
        def chunks() -> list[bytes]:
            body = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in clean.chunks())
            return [bd.corrupt(kind, body, ds, day)]

        return Answer(clean.rows, clean.fmt, chunks, bad=kind)

    def _history_body(
        self, ds: Dataset, symbol: str, plan: list[Any], fmt: str, order: list[str]
    ) -> Iterator[bytes | memoryview | str]:
        blocks = (
            block
            for day, parts, times in plan
            for block in self.chain.blocks(ds, day, symbol, parts, times, self.config.block_rows)
        )
        if self.config.defects:
            seed = self.config.defect_seed
            blocks = (defects.inject(block, self.config.defects, seed)[0] for block in blocks)
        if fmt == "json":
            columns: dict[str, list[memoryview]] = {name: [] for name in order}
            for block in blocks:
                for name, text in ch.render_block_columns(block, order, self.config.time_columns).items():
                    columns[name].append(text)
            yield from ch.json_body(columns)
            return
        if fmt == "csv":
            yield ch.csv_header(order)
        for block in blocks:
            yield ch.render_block(block, fmt, order, self.config.time_columns)  # type: ignore[arg-type]

    def calendar_on_date(self, params: Mapping[str, str]) -> tuple[str, str]:
        day, fmt = _date(params, "date"), _format(params)
        session = calendar.session_on(day)
        if session is not None:
            kind = "early_close" if session.early_close else "open"
            row = {"type": kind, "open": calendar.OPEN.isoformat(), "close": session.close.isoformat()}
        else:
            row = {"type": "weekend" if day.weekday() >= 5 else "full_close", "open": None, "close": None}
        if fmt == "csv":
            return fmt, "type,open,close\r\n" + ",".join(v or "" for v in row.values()) + "\r\n"
        if fmt == "json":
            return fmt, json.dumps({k: [v] for k, v in row.items()}, separators=(",", ":"))
        return fmt, json.dumps(row, separators=(",", ":")) + ("\n" if self.config.final_newline else "")


# ---------------------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        sim = self.server.sim
        self._started = False
        split = urlsplit(self.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        sim.counters.add(requests=1)
        try:
            if split.path == STATS_PATH:
                self._text(200, json.dumps(sim.stats), "application/json")
            elif split.path == API + STATUS_ENDPOINT:
                self._text(200, "CONNECTED" if sim.faults.connected else "DISCONNECTED")
            elif split.path == API + "/calendar/on_date":
                fmt, body = sim.routes.calendar_on_date(params)
                self._text(200, body, CONTENT_TYPES[fmt])
            elif split.path in sim.routes.table:
                self._served(split.path, params)
            else:
                self._text(404, f"404: no such path {split.path}")
        except Reply as e:
            self._text(e.status, e.text)
        except _CLIENT_GONE:
            self.close_connection = True
        except Exception:  # a simulator bug: answer 500 if nothing was sent yet, else cut the body
            traceback.print_exc()
            self.close_connection = True
            if not self._started:
                self._text(500, "500: simulator error")

    def _served(self, path: str, params: dict[str, str]) -> None:
        """A list or history request: through the slots, the fault plan and the 570 threshold."""
        sim = self.server.sim
        request = canonical(path, params)
        n = sim.faults.arrival(request)
        if not sim.slots.acquire():
            sim.counters.count("faults", "queue_full")
            raise Reply(429, "429: terminal queue is full")
        try:
            delay = sim.latency.seconds(path[len(API) :], request, n)
            if delay:
                time.sleep(delay)  # the vendor's server time, spent holding the slot
            paths = sim.config.fault_paths
            decision = sim.faults.decide(request, n) if not paths or path[len(API) :] in paths else Decision()
            if decision.stall:
                sim.counters.count("faults", "stall")
                time.sleep(sim.config.stall_seconds)
            self._status_faults(decision)
            try:
                answer = sim.routes.table[path](params, request)
            except Reply as e:
                if e.status != 472 or not sim.config.empty_no_data:
                    raise
                self._text(200, "", CONTENT_TYPES.get(params.get("format", "csv").lower(), "text/plain"))
                return
            limit = sim.config.large_request_rows
            if limit is not None and answer.rows > limit:
                sim.counters.count("faults", "570")
                raise Reply(570, f"LARGE_REQUEST: {answer.rows} rows > {limit}; split by right, then strike")
            self._stream(answer, decision.body)
        finally:
            sim.slots.release()

    def _status_faults(self, decision: Decision) -> None:
        sim = self.server.sim
        status = sim.faults.window() or decision.status
        if decision.status in ("474", "571"):
            sim.faults.open_window(decision.status)
        if status is not None:
            sim.counters.count("faults", status)
            text = {"474": "DISCONNECTED", "571": "SERVER_STARTING", "429": "429: too many requests"}
            raise Reply(int(status), text.get(status, "500: internal error (simulated)"))

    def _text(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        # Counted before the client can read the answer, so its next request sees the count.
        self.server.sim.counters.count("statuses", str(status))
        self.send_response(status, REASONS.get(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, answer: Answer, fault: str | None) -> None:
        sim = self.server.sim
        self._started = True
        self.send_response(200)
        html = answer.bad == "html"
        self.send_header("Content-Type", bd.HTML_CONTENT_TYPE if html else CONTENT_TYPES[answer.fmt])
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sim.counters.count("statuses", "200")
        if answer.bad is not None:
            sim.counters.count("bad_data", answer.bad)
        chunks: Iterable[bytes | memoryview | str] = answer.chunks()
        if answer.fmt == "ndjson" and not sim.config.final_newline and answer.bad != "html":
            chunks = _edit_last(chunks, _without_final_newline)
        if fault is not None:
            sim.counters.count("faults", fault)
        if fault == "torn":
            chunks = _edit_last(chunks, _tear)
        if fault == "drop":
            target = math.ceil(answer.rows / sim.config.block_rows) // 2
            self._dropped(chunks, target)
            return
        written = sum(self._chunk(c) for c in chunks)
        self.wfile.write(b"0\r\n\r\n")
        sim.counters.add(rows=answer.rows, bytes=written)

    def _dropped(self, chunks: Iterable[bytes | memoryview | str], target: int) -> None:
        """Send part of the body, then close the socket mid-chunk, without the terminating chunk."""
        written = 0
        for i, chunk in enumerate(chunks):
            data = memoryview(chunk.encode() if isinstance(chunk, str) else chunk)
            if i >= target and len(data) >= 2:
                self.wfile.write(b"%x\r\n" % len(data))
                self.wfile.write(data[: len(data) // 2])
                written += len(data) // 2
                break
            written += self._chunk(data)
        self.server.sim.counters.add(bytes=written)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _chunk(self, chunk: bytes | memoryview | str) -> int:
        data = chunk.encode() if isinstance(chunk, str) else chunk
        if not len(data):
            return 0
        self.wfile.write(b"%x\r\n" % len(data))
        self.wfile.write(data)
        self.wfile.write(b"\r\n")
        return len(data)


def _edit_last(
    chunks: Iterable[bytes | memoryview | str], edit: Callable[[memoryview], memoryview]
) -> Iterator[bytes | memoryview | str]:
    """The same chunks, the last non-empty one passed through `edit`."""
    last: bytes | memoryview | str | None = None
    for chunk in chunks:
        if len(chunk):
            if last is not None:
                yield last
            last = chunk
    if last is not None:
        yield edit(memoryview(last.encode() if isinstance(last, str) else last))


def _tear(data: memoryview) -> memoryview:
    """The last line loses its second half (and its line end)."""
    tail = bytes(data[-65_536:])
    line = len(tail) - (tail.rfind(b"\n", 0, len(tail) - 1) + 1)
    return data[: len(data) - max(2, (line + 1) // 2)]


def _without_final_newline(data: memoryview) -> memoryview:
    return data[:-1] if bytes(data[-1:]) == b"\n" else data


# A client that disconnects mid-answer or while its connection idles (read timeouts, fault tests).
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.open_sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Print a handler's traceback, unless the client went away: normal under faults and timeouts."""
        if isinstance(sys.exc_info()[1], _CLIENT_GONE):
            return
        super().handle_error(request, client_address)

    def close_open_sockets(self) -> None:
        with self._sockets_lock:
            sockets = list(self.open_sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class Simulator:
    """A running simulator: `.start()`, `.url`, `.stats`, `.stop()`; also a context manager."""

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or SimConfig(), **overrides)
        self.counters = Stats()
        self.routes = Routes(self.config, self.counters)
        self.faults = FaultPlan(
            self.config.fault_seed,
            self.config.fault_rates,
            self.config.disconnect_seconds,
            self.config.starting_seconds,
        )
        self.slots = Slots(self.config.tier, self.config.queue)
        self.latency = lat.Latency(self.config.latency, self.config.latency_scale, self.config.fault_seed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Simulator:
        self._server = _Server((self.config.host, self.config.port), self)
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05), name="spx-data-sim", daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL without /v3, e.g. http://127.0.0.1:25503."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def stats(self) -> dict[str, Any]:
        """requests, statuses {code: n}, faults {class: n} (plus 'queue_full'), rows, bytes (200 bodies),
        slots, peak_active, peak_waiting, slot_holds [[acquired, released], ...] (monotonic seconds)."""
        snap = self.counters.snapshot()
        snap["slots"] = self.slots.slots
        snap["peak_active"], snap["peak_waiting"] = self.slots.peak_active, self.slots.peak_waiting
        snap["slot_holds"] = self.slots.holds()
        return snap

    def disconnect(self, seconds: float) -> None:
        """Be DISCONNECTED (474 answers, status DISCONNECTED) for `seconds` from now; 0 reconnects."""
        self.faults.set_window("474", seconds)

    def starting(self, seconds: float) -> None:
        """Answer SERVER_STARTING (571) for `seconds` from now; 0 ends it."""
        self.faults.set_window("571", seconds)

    def stop(self) -> None:
        if self._server is None:
            return
        self.slots.close()
        self._server.shutdown()
        self._server.close_open_sockets()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Simulator:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------
# Command line


def _rate(text: str) -> tuple[str, float]:
    cls, sep, rate = text.partition("=")
    if not sep or cls not in FAULT_CLASSES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected CLASS=RATE, CLASS one of {', '.join(FAULT_CLASSES)}"
        )
    return cls, float(rate)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spx-data sim", description="Run the ThetaData Terminal v3 simulator.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=25503)
    p.add_argument("--chain", choices=list(ch.SIZES), default="full", help="chain size (default: full)")
    p.add_argument("--seed", type=int, default=0, help="market data seed")
    p.add_argument("--fault-seed", type=int, default=0, help="fault decisions seed")
    p.add_argument("--tier", type=int, choices=sorted(TIERS), default=4, help="concurrent requests")
    p.add_argument("--queue", type=int, default=16, help="requests waiting for a slot before 429")
    p.add_argument("--faults", type=float, default=0.0, metavar="RATE", help="rate of every fault class")
    p.add_argument("--fault-rate", type=_rate, action="append", default=[], metavar="CLASS=RATE",
                   help=f"rate of one class ({', '.join(FAULT_CLASSES)}); repeatable")  # fmt: skip
    p.add_argument("--no-data-day", action="append", default=[], metavar="DATE", help="repeatable")
    p.add_argument("--fault-path", action="append", default=[], metavar="ENDPOINT",
                   help="faults hit only this endpoint, e.g. /option/history/quote; repeatable")  # fmt: skip
    p.add_argument("--large-request-rows", type=int, default=1_000_000, help="570 above this; 0: never")
    p.add_argument("--stall-seconds", type=float, default=2.0)
    p.add_argument("--disconnect-seconds", type=float, default=2.0)
    p.add_argument("--starting-seconds", type=float, default=5.0)
    p.add_argument("--bad-data", action="append", default=[], metavar="KIND[@DATE]",
                   help=f"spoil history answers ({', '.join(bd.KINDS)}); repeatable")  # fmt: skip
    p.add_argument("--bad-data-times", type=int, default=None, metavar="N",
                   help="answer each request bad N times, then clean (default: always bad)")  # fmt: skip
    p.add_argument("--no-final-newline", action="store_true", help="ndjson bodies end without a last newline")
    p.add_argument("--traded-only", action="store_true", help="ohlc answers only the contracts that traded")
    p.add_argument("--empty-no-data", action="store_true", help="no data is a 200 with an empty body")
    p.add_argument("--real-terminal", action="store_true",
                   help="what a real terminal does or may do: the three switches above")  # fmt: skip
    p.add_argument("--deny-index", action="append", default=[], choices=INDEX_SYMBOLS, metavar="SYMBOL",
                   help="this index answers 471 (a subscription without it: VIX); repeatable")  # fmt: skip
    p.add_argument("--defects", default="", metavar="KIND=RATE,...",
                   help=f"inject data defects ({', '.join(defects.KINDS)}) at these rates")  # fmt: skip
    p.add_argument("--defect-seed", type=int, default=0, help="defect decisions seed")
    p.add_argument("--time-columns", choices=ch.TIME_COLUMNS, default="timestamp",
                   help="history rows' time: timestamp, or date + ms_of_day with date a YYYYMMDD number "
                        "(date_ms) or YYYY-MM-DD text (date_ms_iso)")  # fmt: skip
    p.add_argument("--latency", choices=lat.MODELS, default="off",
                   help="per-request service time holding the slot: vendor-p90 draws around the vendor's "
                        "p90 server time per endpoint (default: off)")  # fmt: skip
    p.add_argument("--latency-scale", type=float, default=1.0, metavar="X",
                   help="multiply every service time, e.g. 0.05 for a compressed benchmark")  # fmt: skip
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    rates = dict.fromkeys(FAULT_CLASSES, args.faults) if args.faults else {}
    rates.update(dict(args.fault_rate))
    switches = {"final_newline": not args.no_final_newline, "traded_only": args.traded_only,
                "empty_no_data": args.empty_no_data}  # fmt: skip
    switches |= REAL_TERMINAL if args.real_terminal else {}
    return SimConfig(
        chain=args.chain, seed=args.seed, fault_seed=args.fault_seed, tier=args.tier, queue=args.queue,
        fault_rates=rates, fault_paths=tuple(args.fault_path),
        no_data_days=tuple(ch._as_date(d) for d in args.no_data_day),
        large_request_rows=args.large_request_rows or None, stall_seconds=args.stall_seconds,
        disconnect_seconds=args.disconnect_seconds, starting_seconds=args.starting_seconds,
        host=args.host, port=args.port, bad_data=tuple(args.bad_data), bad_data_times=args.bad_data_times,
        time_columns=args.time_columns, index_denied=tuple(args.deny_index), latency=args.latency,
        latency_scale=args.latency_scale, defects=defects.parse(args.defects), defect_seed=args.defect_seed,
        **switches,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"spx-data sim: {e}", file=sys.stderr)
        return 2
    ch.warm_tables()
    try:
        sim = Simulator(config).start()
    except OSError as e:
        print(
            f"spx-data sim: cannot listen on {config.host}:{config.port}: {e.strerror} "
            "(another terminal or simulator? pick another --port)",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    shown = {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if f.name in ("chain", "seed", "fault_seed", "tier", "queue", *REAL_TERMINAL, "latency")
    }
    if config.latency != "off":
        shown["latency_scale"] = config.latency_scale
    print(f"spx-data simulator serving {sim.url}{API} ({shown}); Ctrl-C stops", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    sim.stop()
    print(json.dumps(sim.stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
