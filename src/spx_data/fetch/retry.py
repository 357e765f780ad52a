"""Retry policy, the per-call retry budget, and what each terminal status code means for a request."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from spx_data.core.config import DEFAULTS
from spx_data.core.errors import FatalRequestError, PermissionDenied, RetriesExhausted

WAIT_PREFIX = "spx-data wait: "  # starts the log line of every retry or wait on the terminal
_log = logging.getLogger(__name__)

NO_DATA = 472
LARGE_REQUEST = 570
DISCONNECTED = 474
SERVER_STARTING = 571
TRANSIENT_CODES = frozenset({429, 500, 470, 572})
_CONFIGURED = DEFAULTS["retry"]  # the defaults of config/config.schema.yaml's `retry` keys

# Fatal codes: the fix the operator has to make.
FIXES: dict[int, str] = {
    471: "permission denied: the subscription tier lacks this endpoint or date range",
    473: "bad parameters: the request itself is wrong (fix the parameters, do not retry)",
    475: "wrong path or outdated terminal: update the terminal (ThetaTerminalv3.jar)",
    404: "wrong path or outdated terminal: update the terminal (ThetaTerminalv3.jar)",
    476: "host string mix-up: use the same host (127.0.0.1 vs localhost) everywhere",
    478: "a second terminal logged in with this account: stop the other terminal",
}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = _CONFIGURED["max_attempts"]  # per request, for transient failures
    # full-jitter backoff: sleep U(0, min(max_delay, base * 2**n))
    base_delay: float = _CONFIGURED["base_delay"]
    max_delay: float = _CONFIGURED["max_delay"]
    # per public call, all retries and waits included
    max_total_seconds: float = _CONFIGURED["max_total_seconds"]
    connect_timeout: float = _CONFIGURED["connect_timeout"]
    read_timeout: float = _CONFIGURED["read_timeout"]
    # 474: poll mdds/status until CONNECTED, at most this long
    disconnected_max_wait: float = _CONFIGURED["disconnected_max_wait"]
    disconnected_poll: float = 1.0
    # 571: wait U(lo, hi) then retry
    starting_wait: tuple[float, float] = (_CONFIGURED["starting_wait_min"], _CONFIGURED["starting_wait_max"])
    bad_response_attempts: int = 3  # a 200 body that fails validation (wrong rows, garbage): re-asked

    @classmethod
    def from_config(cls, retry: Mapping[str, float]) -> RetryPolicy:
        """The policy of the config's `retry` mapping (keys and defaults: config/config.schema.yaml)."""
        r = dict(retry)
        lo, hi = r.pop("starting_wait_min"), r.pop("starting_wait_max")
        return cls(
            **{k: (int(v) if k == "max_attempts" else float(v)) for k, v in r.items()},
            starting_wait=(float(lo), float(hi)),
        )

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Delay before retry number `retry` (0-based), full jitter."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2.0 ** min(retry, 60)))

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


class Budget:
    """The attempts and the deadline of one public client call; every wait is checked against both."""

    def __init__(
        self, policy: RetryPolicy, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.requests = 0  # HTTP requests to data endpoints, across retries and splits
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._max = policy.max_total_seconds

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def remaining(self) -> float:
        return self._max - self.elapsed

    def wait(self, seconds: float, url: str, cause: str, attempts: int) -> None:
        """Sleep, or raise RetriesExhausted at once when the sleep would overrun the deadline."""
        if seconds > self.remaining():
            raise self.exhausted(url, cause, attempts, f"max_total_seconds={self._max:g}")
        self._sleep(seconds)

    def exhausted(self, url: str, cause: str, attempts: int, limit: str) -> RetriesExhausted:
        return RetriesExhausted(
            f"{url}: gave up after {attempts} attempts in {self.elapsed:.1f} s ({limit}); last cause: {cause}"
        )


def wait_notice(text: str, url: str) -> None:
    """One line on stderr (the job's log) saying what the request waits for."""
    _log.warning("%s%s (%s)", WAIT_PREFIX, text, url)


def fatal_error(code: int, url: str, body: str) -> FatalRequestError:
    """The error for a status code retrying cannot fix; body text is shown, never branched on."""
    fix = FIXES.get(code, "unexpected status code")
    detail = f" (terminal said: {body})" if body else ""
    cls = PermissionDenied if code == 471 else FatalRequestError
    return cls(f"HTTP {code} for {url}: {fix}{detail}", status=code, url=url)
