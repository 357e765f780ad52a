"""The parsed copy of a fetched answer, so that an answer is parsed once (issue 16).

The fetch check parses every block of an answer with the strict reader's types (`contract.row_schema`)
anyway; it keeps those tables in an Arrow IPC file beside the NDJSON (`<name>.arrow`). Assembly reads
them instead of parsing the NDJSON again — only when the copy provably belongs to that NDJSON: its
metadata names the NDJSON's sha256 and size, which assembly recomputes, and its schema is the strict
reader's for the NDJSON's first row. Anything else (no copy, a stale or torn one, a foreign schema) and
assembly parses the NDJSON as before, so the NDJSON stays the one source of truth and the copy a cache.

The copy is not a Snakemake target: an NDJSON from an older run, or one written by hand, assembles as
it always did. Assembly deletes the copies of a day it archived; Snakemake deletes the NDJSON (temp()).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Generator
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.ipc as ipc

from spx_data.core import atomic

SUFFIX = ".arrow"
_SHA = b"spx_data.ndjson_sha256"
_SIZE = b"spx_data.ndjson_bytes"


def path_for(ndjson: Path) -> Path:
    return ndjson.with_suffix(SUFFIX)


class Writer:
    """Collects an answer's parsed tables in file order; `commit()` renames the copy into place.

    Leaves nothing behind unless committed: a failed check or fetch discards the temp file."""

    def __init__(self, ndjson_final: Path, schema: pa.Schema, sha256: str, size: int) -> None:
        self.final = path_for(ndjson_final)
        atomic.sweep(self.final)
        self._tmp = atomic.temp_path(self.final, "part")
        meta = {_SHA: sha256.encode(), _SIZE: str(size).encode()}
        self._sink = pa.OSFile(str(self._tmp), "wb")
        self._writer = ipc.new_file(self._sink, schema.with_metadata(meta))
        self.usable = True  # False once a block could not be kept as the strict reader reads it

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()
        self._tmp.unlink(missing_ok=True)

    def add(self, table: pa.Table | None) -> None:
        """The next block's rows (a block of blank lines has none); None: the block is not the strict
        reader's (no copy is kept)."""
        if table is None:
            self.usable = False
        elif self.usable and table.num_rows:
            self._writer.write_table(table)

    def commit(self) -> Path | None:
        """fsync and rename; the copy's path, or None when a block made it unusable (an old copy goes)."""
        self._close()
        if not self.usable:
            self.final.unlink(missing_ok=True)
            return None
        with open(self._tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp, self.final)
        return self.final

    def _close(self) -> None:
        if not self._sink.closed:
            try:
                self._writer.close()
            finally:
                self._sink.close()


def batches(ndjson: Path, schema: pa.Schema) -> Generator[pa.RecordBatch, None, None] | None:
    """The strict reader's batches of `ndjson` from its parsed copy, or None when there is no copy that
    provably belongs to it (see the module docstring). Reads the NDJSON once, to hash it."""
    copy = path_for(ndjson)
    try:
        reader = ipc.open_file(pa.memory_map(str(copy)))
        meta = reader.schema.metadata or {}
        if reader.schema.remove_metadata() != schema or int(meta.get(_SIZE, b"-1")) != ndjson.stat().st_size:
            return None
        with open(ndjson, "rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest().encode() != meta.get(_SHA):
                return None
    except (OSError, pa.ArrowInvalid, ValueError):
        return None
    return (reader.get_batch(i) for i in range(reader.num_record_batches))


def discard(ndjson: Path) -> None:
    path_for(ndjson).unlink(missing_ok=True)
