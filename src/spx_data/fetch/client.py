"""HTTP client of the ThetaData Terminal v3: retries, status polling, request splitting, atomic NDJSON files.

Branches only on status codes, never on body text. Every request carries connect and read timeouts.
A fetched body is streamed to a temp file next to its destination (hashed as written), validated as a
whole, fsynced and renamed; on any failure nothing is left under the destination or as a temp file.

A terminal outage (connection refused or reset, a body cut off) is waited out like a 474: the status
endpoint is polled until CONNECTED, bounded by `disconnected_max_wait`, without spending attempts, so a
terminal restart fails nothing. When the status answers CONNECTED at once, the failure belonged to the
request and costs an attempt. A read timeout is not an outage: the terminal accepted the connection, so
it is alive and the status would answer at once; it is retried as transient, spending attempts.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

import pyarrow as pa
import pyarrow.json as pj
import requests

from spx_data.core import atomic, calendar
from spx_data.core.datasets import (
    DEFAULT_GREEKS,
    LIST_CONTRACTS_ENDPOINT,
    LIST_TRADED_ENDPOINT,
    RIGHTS,
    STATUS_ENDPOINT,
    Dataset,
    Greeks,
)
from spx_data.core.errors import BadResponse, FatalRequestError, SpxDataError, TerminalUnreachable
from spx_data.fetch import terminal
from spx_data.fetch.retry import (
    DISCONNECTED,
    LARGE_REQUEST,
    NO_DATA,
    SERVER_STARTING,
    TRANSIENT_CODES,
    Budget,
    RetryPolicy,
    fatal_error,
    wait_notice,
)
from spx_data.ndjson import parsed
from spx_data.ndjson.check import Counts, Expected, TornBody, check_ndjson, complete_row

__all__ = ["FetchResult", "ListedExpiration", "NoData", "RetryPolicy", "ThetaClient"]

CHUNK_SIZE = 1 << 20
STRIKES_ENDPOINT = "/option/list/strikes"
# The terminal went away (refused, reset, cut off mid-body): maybe the whole process, so wait for it.
_OUTAGE = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
_RETRYABLE = (requests.Timeout, TornBody)
EMPTY_200 = "empty 200"  # no-data reasons, as recorded: the documented 472, or a 200 without a body
NO_DATA_472 = "HTTP 472"
_LIST_SCHEMA = pa.schema(
    [("symbol", pa.string()), ("expiration", pa.string()), ("strike", pa.float64()), ("right", pa.string())]
)
T = TypeVar("T")
DEFAULT_POLICY = RetryPolicy()  # frozen, so one shared default is safe


@dataclass(frozen=True)
class ListedExpiration:
    symbol: str
    expiration: str  # ISO date
    contracts: int  # contracts (strike x right) quoted that day


@dataclass(frozen=True)
class NoData:
    """The terminal has nothing for a request: `reason` is NO_DATA_472 or EMPTY_200."""

    reason: str


@dataclass(frozen=True)
class FetchResult:
    path: Path
    status: Literal["ok", "no_data"]
    http_status: int  # 200 with status no_data: the terminal answered an empty 200
    rows: int
    contracts: int
    bytes: int
    attempts: int  # HTTP requests to data endpoints (retries, split parts, strike listing)
    seconds: float
    sha256: str  # of the file


@dataclass(frozen=True)
class _Retry:
    """Why an attempt failed and how to wait before the next one."""

    cause: str
    wait: Literal["backoff", "starting", "disconnected", "outage"]


class ThetaClient:
    def __init__(
        self,
        base_url: str,
        policy: RetryPolicy = DEFAULT_POLICY,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._root = self._base + "/v3"
        self._policy = policy
        self._session = session or requests.Session()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock

    def url(self, endpoint: str) -> str:
        return self._root + endpoint

    def status(self) -> str:
        """The terminal's link state (`CONNECTED` when ready)."""
        code, text = terminal.status(self._base, timeout=self._policy.timeout, session=self._session)
        if code != 200:
            raise fatal_error(code, self.url(STATUS_ENDPOINT), text[:200].strip())
        return text.strip()

    def list_contracts(
        self, day: dt.date, symbols: Sequence[str], max_dte: int | None = None, *, traded: bool = False
    ) -> list[ListedExpiration] | NoData:
        """Contracts quoted on `day` per (symbol, expiration), or with `traded` those that traded
        (what a trade-derived answer such as ohlc holds); NoData when the terminal has none."""
        params = {"date": day.strftime("%Y%m%d"), "symbol": ",".join(symbols), "format": "ndjson"}
        if max_dte is not None:
            params["max_dte"] = str(max_dte)
        budget = Budget(self._policy, self._clock, self._sleep)
        endpoint = LIST_TRADED_ENDPOINT if traded else LIST_CONTRACTS_ENDPOINT
        code, counts = self._request(self.url(endpoint), params, budget, _count_contracts)
        if code == NO_DATA:
            return NoData(NO_DATA_472)
        if code == LARGE_REQUEST:
            return self._list_per_symbol(day, symbols, max_dte, params, traded)
        assert counts is not None
        if not counts:
            return NoData(EMPTY_200)
        return [ListedExpiration(s, e, n) for (s, e), n in sorted(counts.items())]

    def fetch_history(
        self,
        dataset: Dataset,
        day: dt.date,
        symbol: str,
        expiration: str | None,
        interval: str,
        dest: Path,
        *,
        expected_contracts: int | None = None,
        rows_per_contract: int | None = None,
        min_contracts: int | None = None,
        greeks: Greeks = DEFAULT_GREEKS,
    ) -> FetchResult:
        """Fetch one (dataset, day, symbol, expiration) answer into `dest`, validated, atomically
        (an index series: expiration None).

        `min_contracts` (trade-derived datasets): the answer may hold fewer contracts than
        `expected_contracts` (those listed), down to this many (those that traded)."""
        url = self.url(dataset.endpoint)
        session = calendar.session_on(day)
        if session is None:
            raise ValueError(f"{day} is not a session")
        params = dataset.request_params(day, symbol, expiration, interval, session.close, greeks)
        window = (calendar.OPEN, session.close) if dataset.interval_based else None
        iso = None if expiration is None else _iso(expiration)
        expected = Expected(symbol, iso, expected_contracts, rows_per_contract, day, window, min_contracts)
        budget = Budget(self._policy, self._clock, self._sleep)
        read_timeout = max(self._policy.read_timeout, dataset.read_timeout or 0.0)
        timeout = (self._policy.connect_timeout, read_timeout)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _PartFile(dest) as out:
            counts = self._fetch_validated(dataset, url, params, expected, out, budget, timeout, dest)
            size, digest = out.commit(dest)
        if isinstance(counts, NoData):
            code = NO_DATA if counts.reason == NO_DATA_472 else 200
            return FetchResult(dest, "no_data", code, 0, 0, size, budget.requests, budget.elapsed, digest)
        return FetchResult(
            dest, "ok", 200, counts.rows, counts.contracts, size, budget.requests, budget.elapsed, digest
        )

    def _fetch_validated(
        self,
        dataset: Dataset,
        url: str,
        params: dict[str, str],
        expected: Expected,
        out: _PartFile,
        budget: Budget,
        timeout: tuple[float, float],
        dest: Path,
    ) -> Counts | NoData:
        """Fetch all parts and validate the whole; a bad body is re-asked, bounded. The rows the check
        parsed are kept beside `dest` for assembly (`ndjson.parsed`), committed before the NDJSON is."""
        full = _full_url(url, params)
        tries = 0
        while True:
            tries += 1
            out.reset()
            try:
                if none := self._fetch_parts(url, params, out, budget, timeout):
                    return none
                out.flush()
                size, digest = out.summary()
                keep = functools.partial(parsed.Writer, dest, sha256=digest, size=size)
                return check_ndjson(out.path, dataset, expected, keep=keep)
            except BadResponse as exc:
                cause = f"{type(exc).__name__}: {exc}"
                if tries >= self._policy.bad_response_attempts:
                    raise BadResponse(f"{full}: bad answer after {tries} tries: {cause}") from exc
                budget.wait(self._policy.backoff(tries - 1, self._rng), full, cause, budget.requests)

    def _fetch_parts(
        self, url: str, params: dict[str, str], out: _PartFile, budget: Budget, timeout: tuple[float, float]
    ) -> NoData | None:
        """Append the answer to `out`, splitting on 570; NoData when every part had none (472 or empty)."""
        code, size = self._request(url, params, budget, out.append, timeout)
        if code == NO_DATA:
            return NoData(NO_DATA_472)
        if code != LARGE_REQUEST:
            return None if size else NoData(EMPTY_200)
        split = self._split(url, params, budget)
        parts = [self._fetch_parts(url, part, out, budget, timeout) for part in split]
        return None if None in parts else parts[0]

    def _split(self, url: str, params: dict[str, str], budget: Budget) -> list[dict[str, str]]:
        """570: first per right, then per strike of that right."""
        if "expiration" not in params:  # an index series (one row per interval) has nothing to split by
            full = _full_url(url, params)
            raise FatalRequestError(f"HTTP 570 for {full}: an index series cannot be split", 570, full)
        if "right" not in params:
            return [params | {"right": "call"}, params | {"right": "put"}]
        if "strike" not in params:
            strikes = self._list_strikes(params["symbol"], params["expiration"], budget)
            return [params | {"strike": strike} for strike in strikes]
        full = _full_url(url, params)
        raise FatalRequestError(f"HTTP 570 for {full}: too large even for one contract", status=570, url=full)

    def _list_strikes(self, symbol: str, expiration: str, budget: Budget) -> list[str]:
        url = self.url(STRIKES_ENDPOINT)
        params = {"symbol": symbol, "expiration": expiration, "format": "ndjson"}
        code, strikes = self._request(url, params, budget, _read_strikes)
        if code != 200 or not strikes:
            raise BadResponse(f"{_full_url(url, params)}: no strikes listed (HTTP {code}) for a 570 answer")
        return strikes

    def _list_per_symbol(
        self, day: dt.date, symbols: Sequence[str], max_dte: int | None, params: dict[str, str], traded: bool
    ) -> list[ListedExpiration] | NoData:
        if len(symbols) < 2:
            endpoint = LIST_TRADED_ENDPOINT if traded else LIST_CONTRACTS_ENDPOINT
            full = _full_url(self.url(endpoint), params)
            raise FatalRequestError(f"HTTP 570 for {full}: listing too large for one symbol", 570, full)
        parts = [self.list_contracts(day, [symbol], max_dte, traded=traded) for symbol in symbols]
        found = [listed for part in parts if not isinstance(part, NoData) for listed in part]
        return found or next(part for part in parts if isinstance(part, NoData))

    def _request(
        self,
        url: str,
        params: dict[str, str],
        budget: Budget,
        consume: Callable[[requests.Response], T],
        timeout: tuple[float, float] | None = None,
    ) -> tuple[int, T | None]:
        """One logical GET, retried through transient failures: (200, consume(body)), (472|570, None)."""
        full = _full_url(url, params)
        attempt = failures = 0
        while True:
            attempt += 1
            budget.requests += 1
            result = self._attempt(url, params, full, consume, timeout or self._policy.timeout)
            if not isinstance(result, _Retry):
                return result
            # A terminal that is starting, reconnecting or restarting says nothing about this request:
            # those waits are bounded by time (starting_wait, disconnected_max_wait, the budget).
            if result.wait == "outage" and self._await_connected(result.cause, attempt, full, budget):
                continue
            failures += result.wait in ("backoff", "outage")
            if failures >= self._policy.max_attempts:
                raise budget.exhausted(
                    full, result.cause, attempt, f"max_attempts={self._policy.max_attempts}"
                )
            self._wait(result, failures, full, budget)

    def _attempt(
        self,
        url: str,
        params: dict[str, str],
        full: str,
        consume: Callable[[requests.Response], T],
        timeout: tuple[float, float],
    ) -> tuple[int, T | None] | _Retry:
        try:
            with self._session.get(url, params=params, stream=True, timeout=timeout) as resp:
                code = resp.status_code
                if code == 200:
                    return code, consume(resp)
                text = _drain(resp)  # read the short error body so the connection can be reused
                if code in (NO_DATA, LARGE_REQUEST):
                    return code, None
                if code in TRANSIENT_CODES:
                    return _Retry(f"HTTP {code}", "backoff")
                if code == DISCONNECTED:
                    return _Retry("HTTP 474 DISCONNECTED", "disconnected")
                if code == SERVER_STARTING:
                    return _Retry("HTTP 571 SERVER_STARTING", "starting")
                raise fatal_error(code, full, text)
        except requests.exceptions.ConnectTimeout as exc:  # a ConnectionError, but the host is silent
            return _Retry(f"{type(exc).__name__}: {exc}", "outage")
        except _OUTAGE as exc:
            return _Retry(f"{type(exc).__name__}: {exc}", "outage")
        except _RETRYABLE as exc:
            return _Retry(f"{type(exc).__name__}: {exc}", "backoff")

    def _wait(self, retry: _Retry, failures: int, full: str, budget: Budget) -> None:
        # Each wait leaves one line in the job's log, which `spx-data run` shows as it happens.
        policy = self._policy
        if retry.wait == "disconnected":
            limit = policy.disconnected_max_wait
            wait_notice(f"{retry.cause}: polling up to {limit:g} s for CONNECTED", full)
            self._await_connected(retry.cause, failures, full, budget)
        elif retry.wait == "starting":
            seconds = self._rng.uniform(*policy.starting_wait)
            wait_notice(f"{retry.cause}: the terminal is starting, retry in {seconds:.0f} s", full)
            budget.wait(seconds, full, retry.cause, failures)
        else:
            seconds = policy.backoff(failures - 1, self._rng)
            wait_notice(f"{retry.cause}: retry {failures} in {seconds:.1f} s", full)
            budget.wait(seconds, full, retry.cause, failures)

    def _await_connected(self, cause: str, attempt: int, full: str, budget: Budget) -> bool:
        """474 or an outage: poll the status endpoint until CONNECTED, bounded by disconnected_max_wait
        and the budget; True when the terminal was not CONNECTED at the first poll (it had to be waited for).

        Past the bound with no answer at all the terminal is gone: TerminalUnreachable, which stops the run.
        """
        policy = self._policy
        limit = min(policy.disconnected_max_wait, budget.remaining())
        start = self._clock()
        polls = 0
        while True:
            polls += 1
            gone: TerminalUnreachable | None = None
            try:
                state = self.status()
            except TerminalUnreachable as exc:
                state, gone = "no answer", exc
            except SpxDataError as exc:
                state = f"{type(exc).__name__}: {exc}"
            if state == "CONNECTED":
                return polls > 1
            if self._clock() - start + policy.disconnected_poll > limit:
                why = f"terminal not CONNECTED after {limit:g} s of polling (last status {state!r})"
                if gone is not None:
                    raise TerminalUnreachable(
                        f"no terminal answers at {self._root.removesuffix('/v3')} within "
                        f"retry.disconnected_max_wait ({limit:g} s): start ThetaTerminal "
                        f"(java -jar ThetaTerminalv3.jar) or fix terminal_url, then run again"
                    )
                raise budget.exhausted(full, f"{cause}; {why}", attempt, "disconnected_max_wait")
            self._sleep(policy.disconnected_poll)


class _PartFile:
    """The temp file a fetch streams into: hashed while written, each part rolled back if it fails."""

    def __init__(self, dest: Path) -> None:
        # Not mkstemp: its 0600 mode would stick to the final file; O_EXCL keeps the name ours alone.
        atomic.sweep(dest)
        self.path = atomic.temp_path(dest, "part")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._file: io.BufferedWriter = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()

    def __enter__(self) -> _PartFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if not self._file.closed:
                self._file.close()  # flushes: may raise ENOSPC again
        finally:
            self.path.unlink(missing_ok=True)  # after commit the temp name is gone already

    def reset(self) -> None:
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.sha256()

    def append(self, resp: requests.Response) -> int:
        """Stream one 200 body; returns its bytes (0: an empty body, which is "no data").

        A body whose last line lacks the newline is kept only when that line is a complete row (the
        official examples print no final newline); the newline is added so parts concatenate."""
        start, hash_at_start = self._file.tell(), self._hash.copy()
        tail = b""  # the text after the body's last newline
        try:
            for chunk in resp.iter_content(chunk_size=CHUNK_SIZE):
                if chunk:
                    self._file.write(chunk)
                    self._hash.update(chunk)
                    cut = chunk.rfind(b"\n")
                    tail = chunk[cut + 1 :] if cut >= 0 else tail + chunk
            if tail:
                if not complete_row(tail):
                    raise TornBody("torn last line (no final newline): the body was cut short")
                self._file.write(b"\n")
                self._hash.update(b"\n")
            return self._file.tell() - start
        except BaseException:
            self._file.seek(start)
            self._file.truncate()
            self._hash = hash_at_start
            raise

    def flush(self) -> None:
        self._file.flush()

    def summary(self) -> tuple[int, str]:
        """(bytes, sha256) of what was written so far."""
        return self._file.tell(), self._hash.hexdigest()

    def commit(self, dest: Path) -> tuple[int, str]:
        """fsync and rename to `dest`; (bytes, sha256)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        size = self._file.tell()
        self._file.close()
        os.replace(self.path, dest)
        atomic.fsync_dir(dest.parent)
        return size, self._hash.hexdigest()


def _count_contracts(resp: requests.Response) -> Counter[tuple[str, str]]:
    """Distinct contracts per (symbol, ISO expiration) of a list/contracts NDJSON body, parsed per block."""
    contracts: set[tuple[str, str, float, str]] = set()
    for block in _line_blocks(resp):
        table = _read_list_block(block)
        contracts.update(zip(*(table[name].to_pylist() for name in _LIST_SCHEMA.names), strict=True))
    try:
        return Counter((symbol, _iso(expiration)) for symbol, expiration, _, _ in contracts)
    except ValueError as exc:
        raise BadResponse(f"contract listing: bad expiration ({exc})") from None


def _read_list_block(block: bytes) -> pa.Table:
    options = pj.ParseOptions(explicit_schema=_LIST_SCHEMA, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(pa.BufferReader(block), parse_options=options)
    except pa.ArrowException as exc:
        raise BadResponse(f"contract listing is not the expected NDJSON: {exc}") from None
    for name, column in zip(table.column_names, table.columns, strict=True):
        if column.null_count:
            raise BadResponse(
                f"contract listing: column {name!r} missing or null in {column.null_count} rows"
            )
    rights = set(table["right"].unique().to_pylist())
    if not rights <= set(RIGHTS):
        raise BadResponse(f"contract listing: right {sorted(rights - set(RIGHTS))} not CALL/PUT")
    return table


def _read_strikes(resp: requests.Response) -> list[str]:
    """Strikes of a list/strikes NDJSON body as request parameters in dollars (5300, 17.5)."""
    strikes: set[Decimal] = set()
    for block in _line_blocks(resp):
        for line in block.splitlines():
            if line.strip():
                strikes.add(_strike_of(line))
    return [f"{strike.normalize():f}" for strike in sorted(strikes)]


def _strike_of(line: bytes) -> Decimal:
    try:
        return Decimal(str(json.loads(line)["strike"]))
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        raise BadResponse(f"strike listing: bad line {line[:100]!r}") from exc


def _line_blocks(resp: requests.Response) -> Iterator[bytes]:
    """The body in blocks of whole lines (small listing bodies); a torn end raises TornBody, a last
    line that is a complete row but lacks its newline is accepted."""
    rest = b""
    for chunk in resp.iter_content(chunk_size=CHUNK_SIZE):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]
    if rest:
        if not complete_row(rest):
            raise TornBody("torn last line (no final newline): the body was cut short")
        yield rest + b"\n"


def _drain(resp: requests.Response, limit: int = 64 << 10) -> str:
    """The start of an error body, for the operator; reads up to `limit` bytes (error bodies are short)."""
    head = b""
    try:
        for chunk in resp.iter_content(chunk_size=8192):
            head = (head + chunk)[:300]
            limit -= len(chunk)
            if limit <= 0:
                break
    except requests.RequestException:
        pass  # the body is only informative
    return head.decode("utf-8", "replace").strip()


def _full_url(url: str, params: dict[str, str]) -> str:
    return requests.Request("GET", url, params=params).prepare().url or url


def _iso(expiration: str) -> str:
    """ISO date of an expiration given as YYYY-MM-DD or YYYYMMDD."""
    return dt.datetime.strptime(expiration.replace("-", ""), "%Y%m%d").date().isoformat()
