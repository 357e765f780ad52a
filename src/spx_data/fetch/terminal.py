"""The one probe of the terminal's link state (`/v3/terminal/mdds/status`), for the client and the CLI."""

from __future__ import annotations

import requests

from spx_data.core.datasets import STATUS_ENDPOINT
from spx_data.core.errors import TerminalUnreachable

# (connect, read) seconds: a running terminal answers the status at once from memory, so an operator
# command learns within seconds that nothing is there. The client polls with its configured timeouts.
STATUS_TIMEOUT = (3.0, 10.0)


def status(
    terminal_url: str,
    *,
    timeout: tuple[float, float] = STATUS_TIMEOUT,
    session: requests.Session | None = None,
) -> tuple[int, str]:
    """(HTTP status, body) of the terminal's mdds/status; the body is `CONNECTED` when it is ready.

    Raises TerminalUnreachable naming the URL when nothing answers (refused, reset, timed out)."""
    url = f"{terminal_url.rstrip('/')}/v3{STATUS_ENDPOINT}"
    try:
        with (session or requests).get(url, timeout=timeout) as resp:
            return resp.status_code, resp.text
    except requests.RequestException as exc:
        raise TerminalUnreachable(f"{url}: no answer from the terminal ({exc})") from exc
