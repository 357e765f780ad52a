"""The one place that maps a dataset to its endpoint, request parameters and columns.

Adding a dataset is one entry in DATASETS. Column order is ThetaData's; the archive keeps it after
the key columns: the contract (symbol, expiration, strike, right) for options, the symbol for an index.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from spx_data.core import calendar
from spx_data.core.validate import choice

SCHEMA_VERSION = "1"
TZ = "America/New_York"

# Kinds of value columns: how the NDJSON value is read and what the archive stores.
Kind = Literal["price", "size", "code", "greek", "timestamp", "float"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "price": pa.float64(),
    "greek": pa.float64(),
    "float": pa.float64(),
    "size": pa.int64(),
    "code": pa.int32(),
    "timestamp": pa.timestamp("ms", tz=TZ),
}

# Contract key columns, present in every row of every option history answer.
CONTRACT_COLUMNS: tuple[str, ...] = ("symbol", "expiration", "strike", "right")
STRIKE_TYPE = pa.decimal128(10, 3)
KEY_TYPES: dict[str, pa.DataType] = {
    "symbol": pa.dictionary(pa.int32(), pa.string()),
    "expiration": pa.date32(),
    "strike": STRIKE_TYPE,
    "right": pa.dictionary(pa.int32(), pa.string()),
}

INTERVALS: tuple[str, ...] = (
    "tick", "10ms", "100ms", "500ms", "1s", "5s", "10s", "15s", "30s",
    "1m", "5m", "10m", "15m", "30m", "1h",
)  # fmt: skip
SYMBOLS: tuple[str, ...] = ("SPX", "SPXW")
INDEX_SYMBOLS: tuple[str, ...] = ("SPX", "VIX")  # index series (VIX only where the subscription allows)
RIGHTS: tuple[str, ...] = ("CALL", "PUT")
# Greeks inputs the v3 OpenAPI spec allows (rate_type, version); the terminal answers 473 to others.
RATE_TYPES: tuple[str, ...] = (
    "sofr", "treasury_m1", "treasury_m3", "treasury_m6", "treasury_y1", "treasury_y2", "treasury_y3",
    "treasury_y5", "treasury_y7", "treasury_y10", "treasury_y20", "treasury_y30",
)  # fmt: skip
GREEKS_VERSIONS: tuple[str, ...] = ("latest", "1")


@dataclass(frozen=True)
class Greeks:
    """Server-side greeks inputs, sent on every greeks request: a changed vendor default must not
    silently change the archive."""

    rate_type: str = "sofr"
    version: str = "latest"
    rate_value: float | None = None  # percent; overrides rate_type's curve when set
    annual_dividend: float | None = None

    def params(self) -> dict[str, str]:
        out = {"rate_type": self.rate_type, "version": self.version}
        for key in ("rate_value", "annual_dividend"):
            value = getattr(self, key)
            if value is not None:
                out[key] = f"{value:g}"
        return out


DEFAULT_GREEKS = Greeks()


@dataclass(frozen=True)
class Dataset:
    name: str
    endpoint: str  # path under /v3
    columns: tuple[tuple[str, Kind], ...]  # value columns after the contract columns
    interval_based: bool  # one row per contract per interval; takes `interval`
    wildcard_expiration: bool  # the terminal accepts expiration=* for one day
    date_range_params: bool  # takes start_date/end_date instead of date
    tier: str
    first_date: dt.date  # earliest history ThetaData serves for SPX options of this kind
    read_timeout: float | None = None  # overrides retry.read_timeout (wide greeks answers are slow)
    trade_derived: bool = False  # answers only the contracts that traded (list/contracts/trade)
    # An index series: one request per (day, index symbol), no listing; its rows carry no key columns
    # (the archive's `symbol` is the one requested).
    index: bool = False

    @property
    def greeks(self) -> bool:
        return self.endpoint.startswith("/option/history/greeks/")

    @property
    def key_columns(self) -> tuple[str, ...]:
        return ("symbol",) if self.index else CONTRACT_COLUMNS

    @property
    def column_names(self) -> tuple[str, ...]:
        return self.key_columns + tuple(name for name, _ in self.columns)

    def arrow_schema(self) -> pa.Schema:
        """The archive schema (after conversion), key columns first."""
        fields = [pa.field(c, KEY_TYPES[c], nullable=False) for c in self.key_columns]
        fields += [pa.field(n, ARROW_TYPES[k], nullable=False) for n, k in self.columns]
        return pa.schema(fields)

    def request_params(
        self,
        day: dt.date,
        symbol: str,
        expiration: str | None,
        interval: str,
        session_close: dt.time | None = None,
        greeks: Greeks = DEFAULT_GREEKS,
    ) -> dict[str, str]:
        """Query parameters for one (day, symbol, expiration) request, NDJSON answer: the one builder
        every request, the footer and the probe use. An index request has no expiration (None).

        Interval requests carry the session's window: the terminal fills its default 09:30-16:00 grid
        whatever the session, so an early close needs end_time=13:15:00 sent explicitly. Without
        `session_close` the calendar's close of `day` is used.
        """
        if self.interval_based and session_close is None:
            session = calendar.session_on(day)
            if session is None:
                raise ValueError(f"{day} is not a session of Cboe index options")
            session_close = session.close
        ymd = day.strftime("%Y%m%d")
        params = {"symbol": symbol}
        if expiration is not None:
            params["expiration"] = expiration.replace("-", "")
        if self.date_range_params:
            params |= {"start_date": ymd, "end_date": ymd}
        else:
            params["date"] = ymd
        if self.interval_based:
            params |= {
                "interval": interval,
                "start_time": calendar.OPEN.strftime("%H:%M:%S"),
                "end_time": session_close.strftime("%H:%M:%S"),  # type: ignore[union-attr]
            }
        if self.greeks:
            params |= greeks.params()
        params["format"] = "ndjson"
        return params


_QUOTE = (
    ("timestamp", "timestamp"),
    ("bid_size", "size"), ("bid_exchange", "code"), ("bid", "price"), ("bid_condition", "code"),
    ("ask_size", "size"), ("ask_exchange", "code"), ("ask", "price"), ("ask_condition", "code"),
)  # fmt: skip
# A bar's prices and counts, shared by the intraday ohlc answer and the end-of-day report.
_BAR = (
    ("open", "price"), ("high", "price"), ("low", "price"), ("close", "price"),
    ("volume", "size"), ("count", "size"),
)  # fmt: skip
_GREEKS_TAIL = (("iv_error", "float"), ("underlying_timestamp", "timestamp"), ("underlying_price", "price"))
_GREEKS_2020 = dt.date(2020, 1, 1)
_OPTIONS_2012 = dt.date(2012, 6, 1)
_TRADES_2016 = dt.date(2016, 1, 1)  # documented first date of options trades, OHLC and EOD
# Index history's first date is not documented: the options' earliest, so no start_date valid for the
# option datasets is refused for it (a day before the vendor's index history fails naming its 472).
_INDEX_FIRST = _OPTIONS_2012
# Third-party v3 SPX downloaders need 300 s for a wide chain's greeks answer.
GREEKS_READ_TIMEOUT = 300.0


def _greeks(name: str, endpoint: str, tier: str, values: tuple[str, ...]) -> Dataset:
    cols = (("timestamp", "timestamp"), ("bid", "price"), ("ask", "price"))
    cols += tuple((v, "greek") for v in values) + _GREEKS_TAIL
    return Dataset(name, endpoint, cols, True, False, False, tier, _GREEKS_2020, GREEKS_READ_TIMEOUT)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("quote", "/option/history/quote", _QUOTE, True, True, False, "value", _OPTIONS_2012),
        Dataset(
            "ohlc",
            "/option/history/ohlc",
            (("timestamp", "timestamp"), *_BAR, ("vwap", "price")),
            True,
            False,
            False,
            "value",
            _TRADES_2016,
            trade_derived=True,
        ),
        Dataset(
            "open_interest",
            "/option/history/open_interest",
            (("timestamp", "timestamp"), ("open_interest", "size")),
            False,
            True,
            False,
            "value",
            _OPTIONS_2012,
        ),
        Dataset(
            "eod",
            "/option/history/eod",
            (("created", "timestamp"), ("last_trade", "timestamp"), *_BAR, *_QUOTE[1:]),
            False,
            True,
            True,
            "free",
            _TRADES_2016,
        ),
        _greeks(
            "greeks_first_order",
            "/option/history/greeks/first_order",
            "standard",
            ("delta", "theta", "vega", "rho", "epsilon", "lambda", "implied_vol"),
        ),
        Dataset(
            "greeks_implied_volatility",
            "/option/history/greeks/implied_volatility",
            (
                ("timestamp", "timestamp"),
                ("bid", "price"),
                ("bid_implied_vol", "greek"),
                ("midpoint", "price"),
                ("implied_vol", "greek"),
                ("ask", "price"),
                ("ask_implied_vol", "greek"),
            )
            + _GREEKS_TAIL,
            True,
            False,
            False,
            "standard",
            _GREEKS_2020,
            GREEKS_READ_TIMEOUT,
        ),
        _greeks(
            "greeks_second_order",
            "/option/history/greeks/second_order",
            "professional",
            ("gamma", "vanna", "charm", "vomma", "veta", "implied_vol"),
        ),
        _greeks(
            "greeks_third_order",
            "/option/history/greeks/third_order",
            "professional",
            ("speed", "zomma", "color", "ultima", "implied_vol"),
        ),
        _greeks(
            "greeks_all",
            "/option/history/greeks/all",
            "professional",
            (
                "delta",
                "theta",
                "vega",
                "rho",
                "epsilon",
                "lambda",
                "gamma",
                "vanna",
                "charm",
                "vomma",
                "veta",
                "vera",
                "speed",
                "zomma",
                "color",
                "ultima",
                "d1",
                "d2",
                "dual_delta",
                "dual_gamma",
                "implied_vol",
            ),
        ),
        # /index/history/price: `timestamp`, `price` per interval (v3 OpenAPI spec), value tier.
        Dataset(
            "index_price",
            "/index/history/price",
            (("timestamp", "timestamp"), ("price", "price")),
            True,
            False,
            False,
            "value",
            _INDEX_FIRST,
            index=True,
        ),
    )
}

LIST_CONTRACTS_ENDPOINT = "/option/list/contracts/quote"
LIST_TRADED_ENDPOINT = "/option/list/contracts/trade"  # the contracts a trade-derived answer holds
STATUS_ENDPOINT = "/terminal/mdds/status"


def get(name: str) -> Dataset:
    return DATASETS[choice("dataset", name, DATASETS)]
