"""The one place that maps a dataset to its endpoint, request parameters and columns.

Adding a dataset is one entry in DATASETS. Column order is ThetaData's; the archive keeps it after
the contract columns (symbol, expiration, strike, right).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from spx_data.validate import choice

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
RIGHTS: tuple[str, ...] = ("CALL", "PUT")


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

    @property
    def column_names(self) -> tuple[str, ...]:
        return CONTRACT_COLUMNS + tuple(name for name, _ in self.columns)

    def arrow_schema(self) -> pa.Schema:
        """The archive schema (after conversion), contract columns first."""
        fields = [pa.field(c, KEY_TYPES[c], nullable=False) for c in CONTRACT_COLUMNS]
        fields += [pa.field(n, ARROW_TYPES[k], nullable=False) for n, k in self.columns]
        return pa.schema(fields)

    def request_params(self, day: dt.date, symbol: str, expiration: str, interval: str) -> dict[str, str]:
        """Query parameters for one (day, symbol, expiration) request, NDJSON answer."""
        ymd = day.strftime("%Y%m%d")
        params = {"symbol": symbol, "expiration": expiration.replace("-", "")}
        if self.date_range_params:
            params |= {"start_date": ymd, "end_date": ymd}
        else:
            params["date"] = ymd
        if self.interval_based:
            params["interval"] = interval
        params["format"] = "ndjson"
        return params


_QUOTE = (
    ("timestamp", "timestamp"),
    ("bid_size", "size"), ("bid_exchange", "code"), ("bid", "price"), ("bid_condition", "code"),
    ("ask_size", "size"), ("ask_exchange", "code"), ("ask", "price"), ("ask_condition", "code"),
)  # fmt: skip
_GREEKS_TAIL = (("iv_error", "float"), ("underlying_timestamp", "timestamp"), ("underlying_price", "price"))
_GREEKS_2020 = dt.date(2020, 1, 1)
_OPTIONS_2012 = dt.date(2012, 6, 1)


def _greeks(name: str, endpoint: str, tier: str, values: tuple[str, ...]) -> Dataset:
    cols = (("timestamp", "timestamp"), ("bid", "price"), ("ask", "price"))
    cols += tuple((v, "greek") for v in values) + _GREEKS_TAIL
    return Dataset(name, endpoint, cols, True, False, False, tier, _GREEKS_2020)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("quote", "/option/history/quote", _QUOTE, True, True, False, "value", _OPTIONS_2012),
        Dataset(
            "ohlc",
            "/option/history/ohlc",
            (
                ("timestamp", "timestamp"),
                ("open", "price"),
                ("high", "price"),
                ("low", "price"),
                ("close", "price"),
                ("volume", "size"),
                ("count", "size"),
                ("vwap", "price"),
            ),
            True,
            False,
            False,
            "value",
            _OPTIONS_2012,
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
            (
                ("created", "timestamp"),
                ("last_trade", "timestamp"),
                ("open", "price"),
                ("high", "price"),
                ("low", "price"),
                ("close", "price"),
                ("volume", "size"),
                ("count", "size"),
            )
            + _QUOTE[1:],
            False,
            True,
            True,
            "free",
            _OPTIONS_2012,
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
    )
}

LIST_CONTRACTS_ENDPOINT = "/option/list/contracts/quote"
STATUS_ENDPOINT = "/terminal/mdds/status"


def get(name: str) -> Dataset:
    return DATASETS[choice("dataset", name, DATASETS)]
