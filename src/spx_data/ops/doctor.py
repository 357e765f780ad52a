"""`spx-data doctor`: one line per check, each failure with its fix."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from spx_data.core import calendar, datasets
from spx_data.core.config import Config
from spx_data.core.errors import TerminalUnreachable
from spx_data.core.paths import free_bytes, nearest_existing
from spx_data.fetch import terminal
from spx_data.fetch.retry import FIXES as _FIXES
from spx_data.ops.estimate import estimate
from spx_data.plan import targets as plan

REACHABLE = "terminal reachable"  # its failure makes `spx-data doctor` exit 3, like `run`
# Doctor asks one strike per dataset; whether whole answers match the archive's assumptions is the probe's.
PROBE_HINT = (
    "once per terminal: `spx-data probe` checks whole answers against what the archive assumes (~1 min)"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _get(cfg: Config, path: str, params: dict[str, str] | None = None) -> requests.Response:
    return requests.get(f"{cfg.terminal_url}/v3{path}", params=params, timeout=(3, 30))


def _probe(cfg: Config, name: str, day: dt.date, symbol: str, expiration: str) -> Check:
    """Ask for one put strike of one expiration: 200/472 prove permission, 471 denies it."""
    d = datasets.get(name)
    if d.index:
        return _probe_index(cfg, d, day)
    strikes = _get(cfg, "/option/list/strikes", {"symbol": symbol, "expiration": expiration.replace("-", ""),
                                                 "format": "ndjson"})  # fmt: skip
    strike = "*"
    if strikes.status_code == 200 and strikes.text.strip():
        import json

        strike = str(json.loads(strikes.text.splitlines()[0])["strike"])
    params = d.request_params(day, symbol, expiration, cfg.interval, greeks=cfg.greeks)
    params |= {"strike": strike, "right": "put"}
    fix = f"{name} needs the {d.tier} tier or higher; upgrade or drop it from `datasets`"
    return _verdict(f"dataset {name}", d, _get(cfg, d.endpoint, params), fix)


def _probe_index(cfg: Config, d: datasets.Dataset, day: dt.date) -> Check:
    """One day of each index symbol: a 471 for one symbol (VIX, say) is a permission that runs record
    and archive the day without; the check names it."""
    verdicts = []
    for symbol in cfg.index_symbols:
        params = d.request_params(day, symbol, None, cfg.interval)
        fix = f"index {symbol} is not in the subscription: add it, or drop it from `index_symbols`"
        verdicts.append(_verdict(f"dataset {d.name} {symbol}", d, _get(cfg, d.endpoint, params), fix))
    failed = [v for v in verdicts if not v.ok]
    name = f"dataset {d.name} ({', '.join(cfg.index_symbols)})"
    if failed:
        return Check(name, False, "; ".join(f"{v.name}: {v.detail}" for v in failed), failed[0].fix)
    return Check(name, True, verdicts[0].detail)


def _verdict(name: str, d: datasets.Dataset, r: requests.Response, fix_471: str) -> Check:
    if r.status_code in (200, 472):
        what = "data" if r.status_code == 200 else "no data for the probe, but permitted"
        return Check(name, True, f"{d.endpoint} answered {r.status_code} ({what})")
    if r.status_code == 471:
        return Check(name, False, f"{d.endpoint}: 471 permission denied", fix_471)
    detail = f"{d.endpoint} answered {r.status_code}: {r.text[:80]!r}"
    return Check(name, False, detail, _FIXES.get(r.status_code, "see the status table in the README"))


def run_checks(cfg: Config) -> list[Check]:
    checks: list[Check] = []
    host = urlsplit(cfg.terminal_url).hostname or ""
    # Either host form alone is fine; only mixing them (here and in another client) makes a 476.
    checks.append(Check("host string", True, f"terminal_url uses {host}; use this same form everywhere"))
    try:
        code, text = terminal.status(cfg.terminal_url)
        status = text.strip()
        checks.append(Check(REACHABLE, True, f"{cfg.terminal_url} answers"))
        connected = code == 200 and status == "CONNECTED"
        if code != 200:
            fix = _FIXES.get(code, "unexpected status code: see the status table in the README")
            checks.append(Check("mdds/status", False, f"HTTP {code} ({status[:80]!r})", fix))
        else:
            checks.append(
                Check("mdds/status", connected, status or "(empty)",
                      "the terminal is up but not linked to ThetaData: check its console and creds.txt")
            )  # fmt: skip
    except TerminalUnreachable as e:
        checks.append(
            Check(REACHABLE, False, f"{cfg.terminal_url}: {type(e.__cause__).__name__}",
                  "start the terminal (java -jar ThetaTerminalv3.jar) or `spx-data sim`")
        )  # fmt: skip
        connected = False
    if connected:
        day = cfg.end
        listed = _get(cfg, "/option/list/contracts/quote", {"date": day.strftime("%Y%m%d"), "symbol": "SPXW",
                                                              "format": "ndjson"})  # fmt: skip
        if listed.status_code == 200 and listed.text.strip():
            import json

            first = json.loads(listed.text.splitlines()[0])
            for name in cfg.datasets:
                checks.append(_probe(cfg, name, day, first["symbol"], str(first["expiration"])))
        else:
            checks.append(Check("dataset probes", False, f"listing {day} answered {listed.status_code}",
                                "pick an end_date with data"))  # fmt: skip
    sessions = cfg.sessions()
    checks.append(
        Check("calendar", bool(sessions), f"{len(sessions)} sessions {cfg.start} .. {cfg.end} "
              f"(newest final session {calendar.last_final_session()})", "check start_date/end_date")
    )  # fmt: skip
    need = estimate(cfg, plan.build(cfg, sessions).pairs()).disk_bytes
    probe = nearest_existing(cfg.archive)
    free = free_bytes(probe)
    checks.append(
        Check("free disk", free >= need, f"{free / 2**30:.1f} GiB free, ~{need / 2**30:.1f} GiB needed",
              f"free space on {probe} or move archive_dir")
    )  # fmt: skip
    writable = os.access(probe, os.W_OK)
    checks.append(Check("archive writable", writable, str(cfg.archive), f"make {probe} writable"))
    return checks
