"""The NDJSON contract from both sides: what the fetch check accepts, assembly accepts and stores exactly."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spx_data.archive.assemble import Source, assemble_day
from spx_data.core import calendar, datasets
from spx_data.core.errors import BadResponse, ValidationError
from spx_data.ndjson.check import Expected, check_ndjson

SESSION = calendar.session_on(dt.date(2024, 1, 2))
EXPIRATION = "2024-01-05"
assert SESSION is not None


def body(name: str, interval: str, contracts: list[tuple[int, str]], digits: int, seed: int) -> list[dict]:
    """Rows of one answer whose timestamps carry `digits` fractional digits (none when 0)."""
    rnd = random.Random(seed)
    rows = []
    for thou, right in contracts:
        for t in SESSION.interval_times(interval):
            # Inside the session: a non-zero fraction only before the close.
            fraction = "".join(rnd.choice("0123456789") if t < SESSION.close else "0" for _ in range(digits))
            row: dict[str, object] = {"symbol": "SPXW", "expiration": EXPIRATION, "strike": thou / 1000}
            row["right"] = right
            for column, kind in datasets.get(name).columns:
                if kind == "timestamp":
                    row[column] = f"{SESSION.day}T{t:%H:%M:%S}" + (f".{fraction}" if digits else "")
                else:
                    row[column] = rnd.randrange(1, 10**5) if kind in ("size", "code") else rnd.random() * 100
            rows.append(row)
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
    return path


def fetch_check(path: Path, name: str, interval: str, contracts: int) -> None:
    window = (calendar.OPEN, SESSION.close)
    rows = SESSION.intervals(interval)
    check_ndjson(path, datasets.get(name), Expected("SPXW", EXPIRATION, contracts, rows, SESSION.day, window))


def assemble(path: Path, name: str, interval: str) -> pq.ParquetFile:
    parquet = path.parent / f"spx-{name}-{SESSION.day}.parquet"
    sources = [Source("SPXW", EXPIRATION, path)]
    assemble_day(datasets.get(name), SESSION, interval, sources, parquet, Path(f"{parquet}.sha256"), {})
    return pq.ParquetFile(parquet)


def test_a_fourth_fractional_digit_is_refused_by_the_fetch_check_and_by_assembly(tmp_path: Path) -> None:
    rows = body("quote", "1h", [(4_500_000, "CALL")], 3, 0)
    rows[2]["timestamp"] = f"{SESSION.day}T11:30:00.1234"
    path = write(tmp_path / "q.ndjson", rows)
    with pytest.raises(BadResponse, match=r"'2024-01-02T11:30:00.1234' is not a timestamp"):
        fetch_check(path, "quote", "1h", 1)
    with pytest.raises(ValidationError, match=r"'2024-01-02T11:30:00.1234' is not YYYY-MM-DDTHH:MM:SS"):
        assemble(path, "quote", "1h")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["quote", "ohlc", "greeks_first_order"]),
    interval=st.sampled_from(["30m", "1h"]),
    contracts=st.lists(
        st.tuples(st.integers(1, 9_999_999), st.sampled_from(["CALL", "PUT"])),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    digits=st.integers(0, 9),
    seed=st.integers(0, 2**32),
)
def test_every_body_the_fetch_check_accepts_assembly_accepts(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    interval: str,
    contracts: list[tuple[int, str]],
    digits: int,
    seed: int,
) -> None:
    folder = tmp_path_factory.mktemp("contract")
    rows = body(name, interval, contracts, digits, seed)
    path = write(folder / "a.ndjson", rows)
    try:
        fetch_check(path, name, interval, len(contracts))
    except BadResponse as e:
        assert digits > 3, f"the fetch check refused a body of ms timestamps: {e}"
        return
    assert digits <= 3, "the fetch check accepted timestamps finer than the archive's milliseconds"
    table = assemble(path, name, interval).read()
    stored = sorted(t.replace(tzinfo=None) for t in table["timestamp"].to_pylist())
    sent = sorted(dt.datetime.fromisoformat(str(r["timestamp"])) for r in rows)
    assert table.num_rows == len(rows) and stored == sent  # every digit the check let through is kept
