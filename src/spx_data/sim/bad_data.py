"""Bad server data: 200 answers whose body is wrong in one named way, for the history endpoints.

A switch is `KIND` (every session) or `KIND@YYYY-MM-DD` (one session). The corruption is applied to a
whole rendered NDJSON body, which is only ever done for the requests a switch selects, so clean answers
keep the vectorised path. Line kinds touch line 17 (`TARGET_LINE`, or the last line of a shorter body).
"""

from __future__ import annotations

import datetime as dt
import json
import re

from spx_data.core.datasets import Dataset

KINDS: tuple[str, ...] = (
    "html", "empty", "malformed_line", "missing_column", "wrong_type", "unknown_right", "duplicate_row",
    "short_contract", "missing_contract", "outside_session", "other_date", "wrong_expiration",
)  # fmt: skip
TARGET_LINE = 17  # 1-based
HTML = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1></body></html>\n"
)
HTML_CONTENT_TYPE = "text/html"


def parse_switch(text: str) -> tuple[str, dt.date | None]:
    """`KIND` or `KIND@YYYY-MM-DD` (or YYYYMMDD) → (kind, day or None for every session)."""
    kind, _, day = text.partition("@")
    if kind not in KINDS:
        raise ValueError(f"bad data {text!r}: kind not one of {', '.join(KINDS)}")
    if not day:
        return kind, None
    try:
        return kind, dt.date.fromisoformat(day if "-" in day else f"{day[:4]}-{day[4:6]}-{day[6:]}")
    except ValueError:
        raise ValueError(f"bad data {text!r}: {day!r} is not a date (YYYY-MM-DD)") from None


def value_column(dataset: Dataset) -> str:
    """The value column the type and missing-column kinds spoil: `bid` where there is one."""
    names = [name for name, kind in dataset.columns if kind != "timestamp"]
    return "bid" if "bid" in names else names[0]


def corrupt(kind: str, body: bytes, dataset: Dataset, day: dt.date) -> bytes:
    """The NDJSON `body` of one answer for `day`, spoiled as `kind` says."""
    if kind == "html":
        return HTML
    if kind == "empty":
        return b""
    lines = body.splitlines(keepends=True)
    if not lines:
        return body
    if kind == "missing_column":  # a schema change: the column is gone from every row
        drop = re.compile(rb'"%s":[^,}]*,|,"%s":[^,}]*' % ((value_column(dataset).encode(),) * 2))
        return b"".join(drop.sub(b"", line, count=1) for line in lines)
    if kind == "wrong_expiration":  # the answer of the following week's expiration
        row = json.loads(lines[0])
        other = (dt.date.fromisoformat(row["expiration"]) + dt.timedelta(days=7)).isoformat()
        old, new = (f'"expiration":"{e}"'.encode() for e in (row["expiration"], other))
        return body.replace(old, new)
    at = min(TARGET_LINE, len(lines)) - 1
    if kind == "malformed_line":  # cut mid-line, but the body still ends with a newline
        lines[at] = lines[at][: len(lines[at]) // 2] + b"\n"
    elif kind == "duplicate_row":  # the next row becomes a copy: same row count, one key twice
        lines[at + 1 : at + 2] = [lines[at]]
    elif kind in ("short_contract", "missing_contract"):  # the target row's contract (rows are
        key = _contract(lines[at])  # contract-major) loses half its rows, or all of them
        first, last = at, at
        while first > 0 and _contract(lines[first - 1]) == key:
            first -= 1
        while last + 1 < len(lines) and _contract(lines[last + 1]) == key:
            last += 1
        del lines[(first + last) // 2 + 1 if kind == "short_contract" else first : last + 1]
    else:
        lines[at] = _edit_row(kind, lines[at], dataset, day)
    return b"".join(lines)


def _contract(line: bytes) -> tuple[object, object]:
    row = json.loads(line)
    return row["strike"], row["right"]


def _edit_row(kind: str, line: bytes, dataset: Dataset, day: dt.date) -> bytes:
    row = json.loads(line)
    stamp = "timestamp" if "timestamp" in row else next(n for n, k in dataset.columns if k == "timestamp")
    date_ms = "ms_of_day" in row and "timestamp" not in row  # SimConfig.time_columns date_ms shapes
    if kind == "wrong_type":
        row[value_column(dataset)] = "abc"
    elif kind == "unknown_right":
        row["right"] = "X"
    elif kind == "outside_session" and date_ms:
        row["ms_of_day"] = (16 * 60 + 30) * 60_000
    elif kind == "outside_session":  # after every close
        row[stamp] = f"{day.isoformat()}T16:30:00"
    elif kind == "other_date" and date_ms:
        before = day - dt.timedelta(days=1)
        row["date"] = int(f"{before:%Y%m%d}") if isinstance(row["date"], int) else before.isoformat()
    elif kind == "other_date":
        row[stamp] = (day - dt.timedelta(days=1)).isoformat() + row[stamp][10:]
    else:
        raise ValueError(f"bad data kind {kind!r}: not one of {', '.join(KINDS)}")
    return json.dumps(row, separators=(",", ":")).encode() + b"\n"
