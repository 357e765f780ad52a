"""`spx-data probe`: a one-minute live check that the terminal answers the way the archive assumes.

For each configured dataset it fetches one whole expiration (the smallest listed) on the newest regular
and the newest early-close session at or before the config's end, exactly as a run would (the client's
`fetch_history`: the same parameters, timeouts and validation, but one attempt), and reports one line
per assumption, ✓ or ✗. A recording session keeps every raw answer, so the details (columns, contracts,
rows per contract, last timestamp, final newline, latency) are read from what the terminal sent, with
the archive's own checker (`ndjson.check`). Behaviours the archive accepts either way (a final newline or
not, 472 or an empty 200 for no data, ohlc answering only traded contracts) are ✓ with what was seen.
The findings go to `<work_dir>/probe/probe-<UTC time>.json`, to attach to a bug report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from spx_data import __version__
from spx_data.core import atomic, calendar
from spx_data.core.config import Config
from spx_data.core.datasets import Dataset
from spx_data.core.datasets import get as get_dataset
from spx_data.core.errors import BadResponse, PermissionDenied, SpxDataError
from spx_data.fetch.client import ListedExpiration, NoData, ThetaClient
from spx_data.fetch.retry import RetryPolicy
from spx_data.ndjson.check import Expected, check_ndjson, complete_row, first_line

OK, BAD = "✓", "✗"
LOOKBACK = dt.timedelta(days=400)  # early closes come two or three times a year
POLL_LIMIT = 10.0  # s: the probe reports a disconnected terminal rather than waiting minutes for it


@dataclass(frozen=True)
class Finding:
    ok: bool
    check: str
    detail: str

    def line(self) -> str:
        return f"{OK if self.ok else BAD} {self.check}: {self.detail}"


@dataclass
class Exchange:
    """One HTTP request as the terminal answered it."""

    label: str
    url: str
    status: int | None  # None: no answer (connection error, timeout)
    seconds: float
    bytes: int = 0
    final_newline: bool | None = None  # of a non-empty 200 body
    error: str | None = None
    body: bytes = field(default=b"", repr=False)


class Recorder(requests.Session):
    """A session that reads each answer whole and keeps it: the probe's answers are small."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[Exchange] = []
        self.label = ""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        start = time.monotonic()
        try:
            resp = super().request(method, url, *args, **kwargs)
            body = resp.content  # cached: the client's iter_content then reads from it
        except requests.RequestException as exc:
            self.exchanges.append(
                Exchange(self.label, str(url), None, time.monotonic() - start, error=type(exc).__name__)
            )
            raise
        newline = body.endswith(b"\n") if resp.status_code == 200 and body else None
        self.exchanges.append(
            Exchange(
                self.label,
                resp.url,
                resp.status_code,
                time.monotonic() - start,
                len(body),
                newline,
                body=body,
            )
        )
        return resp

    @contextmanager
    def labelled(self, label: str) -> Iterator[list[Exchange]]:
        """The exchanges made inside the block, labelled."""
        self.label, first = label, len(self.exchanges)
        found: list[Exchange] = []
        try:
            yield found
        finally:
            found += self.exchanges[first:]
            self.label = ""


@dataclass(frozen=True)
class Days:
    regular: calendar.Session
    early: calendar.Session | None
    closed: dt.date | None


def pick_days(end: dt.date) -> Days:
    """The newest regular and early-close sessions at or before `end` (and final), and the newest
    weekday the calendar says was closed (a holiday)."""
    end = min(end, calendar.last_final_session())
    sessions = calendar.sessions(end - LOOKBACK, end)
    regular = next(s for s in reversed(sessions) if not s.early_close)
    early = next((s for s in reversed(sessions) if s.early_close), None)
    open_days = {s.day for s in sessions}
    weekdays = (end - dt.timedelta(days=i) for i in range(LOOKBACK.days))
    closed = next((d for d in weekdays if d.weekday() < 5 and d not in open_days), None)
    return Days(regular, early, closed)


class Probe:
    def __init__(self, cfg: Config, days: Days | None = None) -> None:
        self.cfg = cfg
        self.days = days or pick_days(cfg.end)
        self.session = Recorder()
        policy = dataclasses.replace(
            RetryPolicy.from_config(cfg.retry),
            max_attempts=1,
            bad_response_attempts=1,
            disconnected_max_wait=min(RetryPolicy.from_config(cfg.retry).disconnected_max_wait, POLL_LIMIT),
        )
        self.client = ThetaClient(cfg.terminal_url, policy, session=self.session)
        self.timeout = policy.timeout
        self.findings: list[Finding] = []
        self.picks: dict[dt.date, ListedExpiration] = {}  # the expiration probed on each session

    def add(self, ok: bool, check: str, detail: str) -> None:
        self.findings.append(Finding(ok, check, detail))

    def run(self, scratch: Path) -> list[Finding]:
        status = self.client.status()  # TerminalUnreachable when nothing answers
        self.add(status == "CONNECTED", "terminal", f"{self.cfg.terminal_url} mdds/status {status}")
        if status != "CONNECTED":
            return self.findings
        for session in (self.days.regular, self.days.early):
            if session is not None:
                self._session(session, scratch)
        if self.days.early is None:
            self.add(
                False, "early close", f"no early-close session in the {LOOKBACK.days} days before the end"
            )
        self._without_end_time(scratch)
        self._closed_day()
        self._greeks_inputs()
        self._final_newline()
        self._latency()
        return self.findings

    def _listing(self, day: dt.date, traded: bool) -> list[ListedExpiration] | NoData | str:
        kind = "traded listing" if traded else "listing"
        with self.session.labelled(f"{kind} {day}"):
            try:
                return self.client.list_contracts(day, self.cfg.symbols, self.cfg.max_dte, traded=traded)
            except SpxDataError as exc:
                return f"{type(exc).__name__}: {exc}"

    def _session(self, session: calendar.Session, scratch: Path) -> None:
        day = session.day
        what = f"{day} ({'early close' if session.early_close else 'close'} {session.close:%H:%M})"
        listed = self._listing(day, traded=False)
        if not isinstance(listed, list):
            reason = listed.reason if isinstance(listed, NoData) else listed
            self.add(False, f"listing {what}", f"{reason}: nothing to probe on this session")
            return
        traded: dict[tuple[str, str], int] | None = None  # contracts that traded, per expiration
        if any(get_dataset(name).trade_derived for name in self.cfg.datasets):
            found = self._listing(day, traded=True)
            if isinstance(found, str):
                self.add(False, f"traded listing {day}", found)
            else:  # no data: nothing traded
                traded = {(x.symbol, x.expiration): x.contracts for x in found or ()}
        pick = self.picks[day] = min(listed, key=lambda x: (x.contracts, x.expiration, x.symbol))
        total = sum(x.contracts for x in listed)
        self.add(
            True,
            f"listing {what}",
            f"{len(listed)} expirations, {total:,} contracts; probing "
            f"{pick.symbol} {pick.expiration} ({pick.contracts} contracts, the smallest)",
        )
        for name in self.cfg.datasets:
            ds = get_dataset(name)
            if ds.index and day >= ds.first_date:
                self._index(ds, session, scratch)
            elif day >= ds.first_date:
                n_traded = None
                if ds.trade_derived and traded is not None:
                    n_traded = traded.get((pick.symbol, pick.expiration), 0)
                self._dataset(ds, session, pick, n_traded, scratch)

    def _index(self, ds: Dataset, session: calendar.Session, scratch: Path) -> None:
        """Each index symbol fetched as a run's fetch_index job would: the archive's verdict. A 471 is
        what a run records (no_permission) and archives the day without; it is reported, not passed."""
        for symbol in self.cfg.index_symbols:
            name = f"{ds.name} {session.day} {symbol}"
            dest = scratch / f"{ds.name}-{session.day}-{symbol}.ndjson"
            try:
                result = self.client.fetch_history(
                    ds, session.day, symbol, None, self.cfg.interval, dest,
                    expected_contracts=1, rows_per_contract=session.intervals(self.cfg.interval),
                )  # fmt: skip
                no_data = " as no data" if result.status == "no_data" else ""
                self.add(True, name, f"{result.rows:,} rows; the archive accepts it{no_data}")
            except PermissionDenied:
                self.add(False, name, "471: not in the subscription; runs archive the day without it")
            except SpxDataError as exc:
                self.add(False, name, f"the archive refuses it: {type(exc).__name__}: {exc}")

    def _dataset(
        self,
        ds: Dataset,
        session: calendar.Session,
        pick: ListedExpiration,
        n_traded: int | None,
        scratch: Path,
    ) -> None:
        """Fetch as a run would (the archive's verdict), then check the raw answer assumption by
        assumption."""
        name = f"{ds.name} {session.day} {pick.symbol} {pick.expiration}"
        rpc = session.intervals(self.cfg.interval) if ds.interval_based else None
        dest = scratch / f"{ds.name}-{session.day}.ndjson"
        with self.session.labelled(name) as sent:
            try:  # with the arguments a run's fetch job passes
                result = self.client.fetch_history(
                    ds,
                    session.day,
                    pick.symbol,
                    pick.expiration,
                    self.cfg.interval,
                    dest,
                    expected_contracts=pick.contracts if ds.interval_based else None,
                    rows_per_contract=rpc,
                    min_contracts=(n_traded or 0) if ds.trade_derived and ds.interval_based else None,
                    greeks=self.cfg.greeks,
                )
                verdict = "the archive accepts it" + (" as no data" if result.status == "no_data" else "")
                accepted = True
            except SpxDataError as exc:
                verdict, accepted = f"the archive refuses it: {type(exc).__name__}: {exc}", False
        answers = [x for x in sent if x.label == name and x.status is not None]
        seen = (
            ", ".join(f"HTTP {x.status} {x.bytes:,} B in {x.seconds:.2f} s" for x in answers) or "no answer"
        )
        self.add(accepted, name, f"{seen}; {verdict}")
        bodies = [x.body for x in answers if x.status == 200 and x.body]
        if not bodies:
            return
        path = scratch / f"{ds.name}-{session.day}.raw.ndjson"
        path.write_bytes(_whole_lines(bodies))
        self._answer(ds, session, pick, n_traded, rpc, path)

    def _answer(
        self,
        ds: Dataset,
        session: calendar.Session,
        pick: ListedExpiration,
        n_traded: int | None,
        rpc: int | None,
        path: Path,
    ) -> None:
        subject = f"{ds.name} {session.day}"
        base = Expected(pick.symbol, pick.expiration)
        with path.open("rb") as f:
            keys, want = set(_row(first_line(f))), set(ds.column_names)
        if "ms_of_day" in keys and "timestamp" in want:  # the date + ms_of_day shape the archive reads too
            want = (want - {"timestamp"}) | {"date", "ms_of_day"}
        try:
            counts = check_ndjson(path, ds, base)
        except BadResponse as exc:
            missing, extra = sorted(want - keys), sorted(keys - want)
            self.add(False, f"{subject} columns", f"missing {missing}, extra {extra}; {exc}")
            return
        if keys != want:
            self.add(
                False, f"{subject} columns", f"missing {sorted(want - keys)}, extra {sorted(keys - want)}"
            )
        else:
            self.add(True, f"{subject} columns", f"the registry's {len(want)}, all rows parse")
        self._contracts(ds, counts.contracts, pick.contracts, n_traded, subject)
        if rpc is None:
            return
        window = f"09:30..{session.close:%H:%M} every {self.cfg.interval}"
        try:
            check_ndjson(path, ds, dataclasses.replace(base, rows_per_contract=rpc))
            self.add(True, f"{subject} rows per contract", f"{rpc} each ({window})")
        except BadResponse as exc:
            self.add(False, f"{subject} rows per contract", f"{exc} ({window})")
        last = _last_time(path)
        try:
            check_ndjson(
                path, ds, dataclasses.replace(base, day=session.day, window=(calendar.OPEN, session.close))
            )
            self.add(
                True, f"{subject} last timestamp", f"{last} = the session close {session.close:%H:%M:%S}"
            )
        except BadResponse as exc:
            self.add(
                False, f"{subject} last timestamp", f"{last}, session closes {session.close:%H:%M:%S}: {exc}"
            )

    def _contracts(self, ds: Dataset, answered: int, listed: int, n_traded: int | None, subject: str) -> None:
        check = f"{subject} contracts"
        if not ds.interval_based:
            self.add(True, check, f"{answered} of {listed} listed (not checked by the archive)")
        elif not ds.trade_derived:
            self.add(answered == listed, check, f"{answered} answered, {listed} listed")
        else:
            least = n_traded or 0
            traded = "no traded listing" if n_traded is None else f"{n_traded} traded"
            note = " (only the traded ones: accepted)" if answered < listed else ""
            self.add(
                least <= answered <= listed, check, f"{answered} answered, {listed} listed, {traded}{note}"
            )

    def _without_end_time(self, scratch: Path) -> None:
        """What the terminal does when the archive's window is left out, on the early close (information)."""
        session = self.days.early
        pick = self.picks.get(session.day) if session is not None else None
        interval = [
            get_dataset(n)
            for n in self.cfg.datasets
            if get_dataset(n).interval_based and not get_dataset(n).index
        ]
        if session is None or pick is None or not interval:
            return
        ds = min(interval, key=lambda d: d.greeks)  # a quote-like one: the client's default timeout fits
        params = ds.request_params(
            session.day, pick.symbol, pick.expiration, self.cfg.interval, session.close, self.cfg.greeks
        )
        sent_end = params.pop("end_time")
        del params["start_time"]
        check = f"without end_time ({ds.name} {session.day})"
        with self.session.labelled(check) as sent, contextlib.suppress(requests.RequestException):
            self.session.get(self.client.url(ds.endpoint), params=params, timeout=self.timeout)
        answer = sent[-1]  # a failed request is recorded too
        if answer.status != 200 or not answer.body:
            self.add(answer.status in (200, 472), check, f"HTTP {answer.status} {answer.error or ''}")
            return
        path = scratch / "without-end-time.ndjson"
        path.write_bytes(_whole_lines([answer.body]))
        try:
            counts = check_ndjson(path, ds, Expected(pick.symbol, pick.expiration))
        except BadResponse as exc:
            self.add(False, check, f"the answer does not parse: {exc}")
            return
        self.add(
            True,
            check,
            f"the terminal fills to {_last_time(path)[11:]} "
            f"({counts.rows // counts.contracts} rows per contract); the archive sends end_time={sent_end}",
        )

    def _closed_day(self) -> None:
        day = self.days.closed
        if day is None:
            return
        found = self._listing(day, traded=False)
        check = f"closed day {day}"
        if isinstance(found, NoData):
            self.add(
                True,
                check,
                f"the listing says no data ({found.reason}); the archive accepts 472 and an empty 200 alike",
            )
        elif isinstance(found, str):
            self.add(False, check, f"the listing failed: {found}")
        else:
            self.add(
                False,
                check,
                f"the terminal lists {sum(x.contracts for x in found):,} contracts for a day "
                "the calendar says was closed",
            )

    def _greeks_inputs(self) -> None:
        greeks = {n for n in self.cfg.datasets if get_dataset(n).greeks}
        asked = [x for x in self.session.exchanges if x.label.split(" ", 1)[0] in greeks]
        if not asked:
            return
        sent = "&".join(f"{k}={v}" for k, v in self.cfg.greeks.params().items())
        refused = [x for x in asked if x.status not in (200, 472)]
        if refused:
            codes = ", ".join(sorted({f"HTTP {x.status}" for x in refused}))
            self.add(
                False, "greeks inputs", f"{sent}: {codes} for {len(refused)} of {len(asked)} greeks requests"
            )
        else:
            self.add(
                True,
                "greeks inputs",
                f"{sent} accepted on {len(asked)} greeks requests (the answers "
                "have no column for them: each file's footer records them)",
            )

    def _final_newline(self) -> None:
        bodies = [
            x for x in self.session.exchanges if x.status == 200 and x.bytes and "format=ndjson" in x.url
        ]
        if not bodies:
            return
        without = [x for x in bodies if not x.final_newline]
        torn = [x for x in without if not complete_row(x.body.rsplit(b"\n", 1)[-1])]
        if torn:
            self.add(
                False,
                "final newline",
                f"{len(torn)} of {len(bodies)} answers end in a torn line (first: {torn[0].label})",
            )
        elif without:
            self.add(
                True,
                "final newline",
                f"absent in {len(without)} of {len(bodies)} answers, each last line "
                "a complete row (accepted either way)",
            )
        else:
            self.add(True, "final newline", f"present in all {len(bodies)} answers (accepted either way)")

    def _latency(self) -> None:
        sent = self.session.exchanges
        slowest = max(sent, key=lambda x: x.seconds)
        timed_out = [x for x in sent if x.error and "Timeout" in x.error]
        detail = (
            f"{len(sent)} requests, median {statistics.median(x.seconds for x in sent):.2f} s, slowest "
            f"{slowest.seconds:.2f} s ({slowest.label or 'mdds/status'})"
        )
        if timed_out:
            detail += f"; {len(timed_out)} timed out (first: {timed_out[0].label}): raise retry.read_timeout"
        self.add(not timed_out, "latency", detail)


def _whole_lines(bodies: Sequence[bytes]) -> bytes:
    """The answers as the archive keeps them: a last line lacking its newline gets one if it is a
    complete row (as the client does); a torn one is left torn."""
    return b"".join(
        b + b"\n" if not b.endswith(b"\n") and complete_row(b.rsplit(b"\n", 1)[-1]) else b for b in bodies
    )


def _row(line: bytes) -> dict[str, Any]:
    """A row's fields, or none when the line is not a JSON object (the checker then names the problem)."""
    try:
        row = json.loads(line)
    except ValueError:
        return {}
    return row if isinstance(row, dict) else {}


def _last_time(path: Path) -> str:
    """The time of the answer's last row (rows come contract by contract, each in time order)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 65_536))
        row = json.loads(f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1])
    if "timestamp" in row:
        return str(row["timestamp"])
    ms = int(row["ms_of_day"])
    return f"{row['date']}T{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}"


def run(cfg: Config, days: Days | None = None) -> tuple[list[Finding], Path]:
    """Probe the configured terminal; (findings, path of the JSON report)."""
    probe = Probe(cfg, days)
    started = dt.datetime.now(dt.UTC)
    folder = cfg.work / "probe"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        findings = probe.run(Path(scratch))
    report = folder / f"probe-{started:%Y%m%dT%H%M%SZ}.json"
    doc = {
        "spx_data": __version__,
        "started": started.isoformat(timespec="seconds"),
        "terminal_url": cfg.terminal_url,
        "config": {
            "datasets": list(cfg.datasets),
            "interval": cfg.interval,
            "symbols": list(cfg.symbols),
            "max_dte": cfg.max_dte,
            "end_date": cfg.end.isoformat(),
            "greeks": cfg.greeks.params(),
        },
        "sessions": {
            "regular": probe.days.regular.day.isoformat(),
            "early_close": probe.days.early.day.isoformat() if probe.days.early else None,
            "closed": probe.days.closed.isoformat() if probe.days.closed else None,
        },
        "ok": all(f.ok for f in findings),
        "findings": [dataclasses.asdict(f) for f in findings],
        "requests": [
            {k: v for k, v in dataclasses.asdict(x).items() if k != "body"} for x in probe.session.exchanges
        ],
    }
    atomic.write_bytes(report, json.dumps(doc, indent=1).encode())
    return findings, report


def main(cfg: Config) -> bool:
    """Run the probe, print one line per finding and the report's path; True when every check passed."""
    days = pick_days(cfg.end)
    early = f", early close {days.early.day}" if days.early else ""
    closed = f", closed day {days.closed}" if days.closed else ""
    print(f"probing {cfg.terminal_url}: {', '.join(cfg.datasets)} every {cfg.interval} on {days.regular.day}"
          f"{early}{closed}", flush=True)  # fmt: skip
    findings, report = run(cfg, days)
    for finding in findings:
        print(finding.line())
    print(f"report: {report}")
    return all(f.ok for f in findings)
