"""Atomic writes and the sweep of what killed writers left next to a final name."""

from __future__ import annotations

from pathlib import Path

import pytest

from spx_data.core import atomic


def test_next_writer_sweeps_leftovers_of_its_own_name_only(tmp_path: Path) -> None:
    final = tmp_path / "spx-quote-2024-11-26.parquet"
    killed = [atomic.temp_path(final, "tmp"), atomic.temp_path(final, "part")]
    other = atomic.temp_path(tmp_path / "spx-quote-2024-11-27.parquet")
    keep = [other, tmp_path / f".{final.name}.notes.tmp", tmp_path / f".{final.name}.0123456789abcdef.txt"]
    for path in [*killed, *keep]:
        path.write_bytes(b"half")
    atomic.write_bytes(final, b"whole")
    assert final.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [final, *keep])


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "listing.json"
    atomic.write_bytes(final, b"old")

    def no_space(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        atomic.write_bytes(final, b"new")
    assert final.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["listing.json"]
