"""Atomic writes: a temp name in the final folder, fsync, rename; and sweeping what a `kill -9` left.

Every writer streams into `.<final name>.<16 hex>.<tmp|part>` next to the final name and renames, so a
final name only ever holds a whole file. A killed writer cannot clean up; the next writer of the same
final name (Snakemake runs at most one job per output) sweeps those leftovers first.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def temp_path(final: Path, suffix: str = "tmp") -> Path:
    return final.with_name(f".{final.name}.{secrets.token_hex(8)}.{suffix}")


def sweep(final: Path) -> int:
    """Remove temp files of earlier, killed writers of `final`; returns how many."""
    removed = 0
    for stale in final.parent.glob(f".{final.name}.*"):
        if stale.suffix in (".tmp", ".part") and len(stale.name.split(".")[-2]) == 16:
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(final: Path, data: bytes, mode: int | None = None, tmp: Path | None = None) -> None:
    """`final` holds `data` whole, or keeps what it held before; `mode`: its permission bits; `tmp`: the
    temp name to write through (default `temp_path(final)`)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep(final)
    tmp = tmp or temp_path(final)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
