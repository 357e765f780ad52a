"""Error classes shared by every step. The class name is what the ledger records as error_class."""

from __future__ import annotations


class SpxDataError(Exception):
    """Base of every error spx-data raises on purpose; str() is one line for the operator."""


class ConfigError(SpxDataError):
    """A bad config value or operator argument (exit code 2)."""


class TerminalUnreachable(SpxDataError):
    """Nothing answers at the configured terminal URL (exit code 3)."""


class FatalRequestError(SpxDataError):
    """The terminal refused a request in a way retrying cannot fix (471/473/475/476/478/404)."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class PermissionDenied(FatalRequestError):
    """471: the subscription tier lacks this endpoint or date range."""


class RetriesExhausted(SpxDataError):
    """A transient failure outlasted the retry policy (attempts or total time)."""


class BadResponse(SpxDataError):
    """The terminal answered 200 with a body that is not a complete, valid answer."""


class ValidationError(SpxDataError):
    """Assembled data broke the storage contract (counts, keys, dates, schema)."""
