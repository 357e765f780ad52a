"""The per-run terminal-gone marker: later jobs of the same run stop at once, the next run ignores it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import FAST_RETRY, fetch_as_the_rule_does

from spx_data.core import outcomes
from spx_data.core.errors import TerminalUnreachable
from spx_data.core.paths import Layout
from spx_data.fetch import outage


def test_marker_belongs_to_its_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "run-1")
    outage.check(tmp_path)  # nothing yet
    outage.give_up(tmp_path, TerminalUnreachable("no terminal answers at http://127.0.0.1:9 for 20 s"))
    outage.give_up(tmp_path, TerminalUnreachable("a later job's words"))  # the first message wins
    with pytest.raises(TerminalUnreachable, match=r"^no terminal answers at http://127.0.0.1:9 for 20 s$"):
        outage.check(tmp_path)
    with pytest.raises(TerminalUnreachable):
        outage.check(tmp_path, "run-1")
    outage.check(tmp_path, "run-2")  # the next run ignores an old run's marker
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "run-2")
    outage.check(tmp_path)


def fetch_job(layout: Layout, retry: dict[str, float]) -> tuple[int, str]:
    """One fetch job as the rule runs it, against a port where nothing listens: its exit code and its log."""
    code, log = fetch_as_the_rule_does(
        layout, "http://127.0.0.1:9", retry, "quote", "2024-11-26", "SPXW", "2024-11-26"
    )
    assert not layout.ndjson("quote", "2024-11-26", "SPXW", "2024-11-26").exists()
    return code, log


def test_fetch_job_after_the_marker_exits_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "gone")
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    outage.give_up(layout.work, TerminalUnreachable("no terminal answers at http://127.0.0.1:9 for 20 s"))
    started = time.monotonic()
    code, err = fetch_job(layout, FAST_RETRY)  # a 30 s bound, were it waited
    assert code == 1 and time.monotonic() - started < 5
    assert "TerminalUnreachable: no terminal answers at http://127.0.0.1:9" in err
    [(_, event)] = list(outcomes.read_events(layout.outcomes()))
    assert (event["status"], event["error_class"]) == ("failed", "TerminalUnreachable")


@pytest.mark.e2e  # connects to a closed loopback port: a refused connection is the point
def test_fetch_job_that_waits_out_the_bound_leaves_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "first")
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    assert fetch_job(layout, FAST_RETRY | {"disconnected_max_wait": 2})[0] == 1
    with pytest.raises(
        TerminalUnreachable,
        match=r"no terminal answers at http://127.0.0.1:9 within retry.disconnected_max_wait \(2 s\)",
    ):
        outage.check(layout.work)
