"""Sizes and durations as an operator reads them."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def human_seconds(seconds: float) -> str:
    """`45 s`, `2 min 30 s`, `42 min`, `3.5 h`: whole units below three hours, never `0.0 h`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 180:
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
