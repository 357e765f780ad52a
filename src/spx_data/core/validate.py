"""The checks every input goes through: one of a fixed set, and a YYYY-MM-DD date."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def choice(what: str, value: object, allowed: Collection[str], error: type[Exception] = ValueError) -> str:
    """`value` when it is one of `allowed`; else `error`, one line naming the value and the choices."""
    if not isinstance(value, str) or value not in allowed:
        raise error(f"{what} {value!r}: not one of {', '.join(allowed)}")
    return value


def iso_date(text: str) -> dt.date | None:
    """The date a YYYY-MM-DD text names, None for anything else (fromisoformat alone takes 20240102 too)."""
    if not _DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:  # no such day, such as 2024-02-30
        return None
