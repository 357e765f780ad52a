"""HTTP client of the ThetaData Terminal v3: retries, status polling, request splitting, atomic NDJSON files.

Branches only on status codes, never on body text. Every request carries connect and read timeouts.
A fetched body is streamed to a temp file next to its destination (hashed as written), validated as a
whole, fsynced and renamed; on any failure nothing is left under the destination or as a temp file.
"""

from __future__ import annotations

import datetime as dt
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

from spx_data import atomic, calendar
from spx_data.datasets import LIST_CONTRACTS_ENDPOINT, RIGHTS, STATUS_ENDPOINT, Dataset
from spx_data.errors import BadResponse, FatalRequestError, SpxDataError, TerminalUnreachable
from spx_data.ndjson_check import Counts, Expected, TornBody, check_ndjson
from spx_data.retry import (
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

__all__ = ["FetchResult", "ListedExpiration", "RetryPolicy", "ThetaClient"]

CHUNK_SIZE = 1 << 20
STRIKES_ENDPOINT = "/option/list/strikes"
_RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, TornBody)
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
class FetchResult:
    path: Path
    status: Literal["ok", "no_data"]
    http_status: int
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
    wait: Literal["backoff", "starting", "disconnected"]


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
        self._root = base_url.rstrip("/") + "/v3"
        self._policy = policy
        self._session = session or requests.Session()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock

    def url(self, endpoint: str) -> str:
        return self._root + endpoint

    def status(self) -> str:
        """The terminal's link state (`CONNECTED` when ready)."""
        url = self.url(STATUS_ENDPOINT)
        try:
            with self._session.get(url, timeout=self._policy.timeout) as resp:
                if resp.status_code != 200:
                    raise fatal_error(resp.status_code, url, resp.text[:200].strip())
                return resp.text.strip()
        except requests.RequestException as exc:
            raise TerminalUnreachable(f"{url}: no answer from the terminal ({exc})") from exc

    def list_contracts(
        self, day: dt.date, symbols: Sequence[str], max_dte: int | None = None
    ) -> list[ListedExpiration] | None:
        """Contracts quoted on `day` per (symbol, expiration); None when the terminal has no data (472)."""
        params = {"date": day.strftime("%Y%m%d"), "symbol": ",".join(symbols), "format": "ndjson"}
        if max_dte is not None:
            params["max_dte"] = str(max_dte)
        budget = Budget(self._policy, self._clock, self._sleep)
        code, counts = self._request(self.url(LIST_CONTRACTS_ENDPOINT), params, budget, _count_contracts)
        if code == NO_DATA:
            return None
        if code == LARGE_REQUEST:
            return self._list_per_symbol(day, symbols, max_dte, params)
        assert counts is not None
        return [ListedExpiration(s, e, n) for (s, e), n in sorted(counts.items())]

    def fetch_history(
        self,
        dataset: Dataset,
        day: dt.date,
        symbol: str,
        expiration: str,
        interval: str,
        dest: Path,
        *,
        expected_contracts: int | None = None,
        rows_per_contract: int | None = None,
    ) -> FetchResult:
        """Fetch one (dataset, day, symbol, expiration) answer into `dest`, validated, atomically."""
        url = self.url(dataset.endpoint)
        params = dataset.request_params(day, symbol, expiration, interval)
        session = calendar.session_on(day) if dataset.interval_based else None
        window = (calendar.OPEN, session.close) if session is not None else None
        expected = Expected(symbol, _iso(expiration), expected_contracts, rows_per_contract, day, window)
        budget = Budget(self._policy, self._clock, self._sleep)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _PartFile(dest) as out:
            counts = self._fetch_validated(dataset, url, params, expected, out, budget)
            size, digest = out.commit(dest)
        if counts is None:
            return FetchResult(dest, "no_data", NO_DATA, 0, 0, size, budget.requests, budget.elapsed, digest)
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
    ) -> Counts | None:
        """Fetch all parts and validate the whole (None: no data); a bad body is re-asked, bounded."""
        full = _full_url(url, params)
        tries = 0
        while True:
            tries += 1
            out.reset()
            try:
                if not self._fetch_parts(url, params, out, budget):
                    return None
                out.flush()
                return check_ndjson(out.path, dataset, expected)
            except BadResponse as exc:
                cause = f"{type(exc).__name__}: {exc}"
                if tries >= self._policy.bad_response_attempts:
                    raise BadResponse(f"{full}: bad answer after {tries} tries: {cause}") from exc
                budget.wait(self._policy.backoff(tries - 1, self._rng), full, cause, budget.requests)

    def _fetch_parts(self, url: str, params: dict[str, str], out: _PartFile, budget: Budget) -> bool:
        """Append the answer to `out`, splitting on 570; False when every part had no data (472)."""
        code, _ = self._request(url, params, budget, out.append)
        if code != LARGE_REQUEST:
            return code == 200
        got = [self._fetch_parts(url, part, out, budget) for part in self._split(url, params, budget)]
        return any(got)

    def _split(self, url: str, params: dict[str, str], budget: Budget) -> list[dict[str, str]]:
        """570: first per right, then per strike of that right."""
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
        self, day: dt.date, symbols: Sequence[str], max_dte: int | None, params: dict[str, str]
    ) -> list[ListedExpiration] | None:
        if len(symbols) < 2:
            full = _full_url(self.url(LIST_CONTRACTS_ENDPOINT), params)
            raise FatalRequestError(f"HTTP 570 for {full}: listing too large for one symbol", 570, full)
        parts = [self.list_contracts(day, [symbol], max_dte) for symbol in symbols]
        if all(part is None for part in parts):
            return None
        return [listed for part in parts if part for listed in part]

    def _request(
        self, url: str, params: dict[str, str], budget: Budget, consume: Callable[[requests.Response], T]
    ) -> tuple[int, T | None]:
        """One logical GET, retried through transient failures: (200, consume(body)), (472|570, None)."""
        full = _full_url(url, params)
        attempt = failures = 0
        while True:
            attempt += 1
            budget.requests += 1
            result = self._attempt(url, params, full, consume)
            if not isinstance(result, _Retry):
                return result
            # A terminal that is starting or reconnecting says nothing about this request: those waits
            # are bounded by time (starting_wait, disconnected_max_wait, the budget), not by attempts.
            failures += result.wait == "backoff"
            if failures >= self._policy.max_attempts:
                raise budget.exhausted(
                    full, result.cause, attempt, f"max_attempts={self._policy.max_attempts}"
                )
            self._wait(result, failures, full, budget)

    def _attempt(
        self, url: str, params: dict[str, str], full: str, consume: Callable[[requests.Response], T]
    ) -> tuple[int, T | None] | _Retry:
        try:
            with self._session.get(url, params=params, stream=True, timeout=self._policy.timeout) as resp:
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

    def _await_connected(self, cause: str, attempt: int, full: str, budget: Budget) -> None:
        """474: poll the status endpoint until CONNECTED, bounded by disconnected_max_wait and the budget."""
        limit = min(self._policy.disconnected_max_wait, budget.remaining())
        start = self._clock()
        while True:
            try:
                state = self.status()
            except SpxDataError as exc:
                state = f"{type(exc).__name__}: {exc}"
            if state == "CONNECTED":
                return
            if self._clock() - start + self._policy.disconnected_poll > limit:
                why = f"terminal not CONNECTED after {limit:g} s of polling (last status {state!r})"
                raise budget.exhausted(full, f"{cause}; {why}", attempt, "disconnected_max_wait")
            self._sleep(self._policy.disconnected_poll)


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

    def append(self, resp: requests.Response) -> None:
        """Stream one 200 body; it must be non-empty and end at a line end."""
        start, hash_at_start = self._file.tell(), self._hash.copy()
        last = b""
        try:
            for chunk in resp.iter_content(chunk_size=CHUNK_SIZE):
                if chunk:
                    self._file.write(chunk)
                    self._hash.update(chunk)
                    last = chunk
            if not last:
                raise BadResponse("empty 200 body")
            if not last.endswith(b"\n"):
                raise TornBody("torn last line (no final newline): the body was cut short")
        except BaseException:
            self._file.seek(start)
            self._file.truncate()
            self._hash = hash_at_start
            raise

    def flush(self) -> None:
        self._file.flush()

    def commit(self, dest: Path) -> tuple[int, str]:
        """fsync and rename to `dest`; (bytes, sha256)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        size = self._file.tell()
        self._file.close()
        os.replace(self.path, dest)
        _fsync_dir(dest.parent)
        return size, self._hash.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _count_contracts(resp: requests.Response) -> Counter[tuple[str, str]]:
    """Distinct contracts per (symbol, ISO expiration) of a list/contracts NDJSON body, parsed per block."""
    contracts: set[tuple[str, str, float, str]] = set()
    for block in _line_blocks(resp):
        table = _read_list_block(block)
        contracts.update(zip(*(table[name].to_pylist() for name in _LIST_SCHEMA.names), strict=True))
    if not contracts:
        raise BadResponse("empty 200 body for a contract listing")
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
    """The body in blocks of whole lines (small listing bodies); a torn end raises TornBody."""
    rest = b""
    for chunk in resp.iter_content(chunk_size=CHUNK_SIZE):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]
    if rest:
        raise TornBody("torn last line (no final newline): the body was cut short")


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
