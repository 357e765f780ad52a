"""The per-run "terminal gone" marker: the first job that waited the whole bound for the terminal
leaves it, so every later job (and the listing step, and `spx-data run`) stops at once with one line.

The marker is named after the run id, so the next run (a new id) ignores an old run's marker.
"""

from __future__ import annotations

from pathlib import Path

from spx_data.core import atomic
from spx_data.core.errors import TerminalUnreachable
from spx_data.core.outcomes import current_run_id


def marker(work: Path, run_id: str | None = None) -> Path:
    return work / "outages" / f"terminal-gone-{run_id or current_run_id()}.txt"


def give_up(work: Path, error: TerminalUnreachable) -> None:
    """Record that this run lost the terminal for good (the first job's message wins)."""
    path = marker(work)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, str(error).encode())


def check(work: Path, run_id: str | None = None) -> None:
    """Raise TerminalUnreachable when this run already lost the terminal for good."""
    try:
        message = marker(work, run_id).read_text()
    except FileNotFoundError:
        return
    raise TerminalUnreachable(message)
