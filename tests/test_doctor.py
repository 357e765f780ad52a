"""doctor: each check against a mocked terminal (responses, no sockets): what passes, fails, and the fix."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses

from spx_data.core import config, datasets
from spx_data.ops import doctor

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
URL = "http://127.0.0.1:25503/v3"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


def cfg(tmp_path: Path) -> config.Config:
    raw = {"start_date": "2024-11-25", "end_date": "2024-12-02", "datasets": ["quote", "greeks_first_order"]}
    return config.load(raw, base=tmp_path, today=NOW)


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_a_connected_terminal_with_one_dataset_denied(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    rsps.add(responses.GET, f"{URL}/terminal/mdds/status", body="CONNECTED")
    listed = '{"symbol":"SPXW","expiration":20241206}\n'
    rsps.add(responses.GET, f"{URL}/option/list/contracts/quote", body=listed)
    rsps.add(responses.GET, f"{URL}/option/list/strikes", body='{"strike":6000.0}\n')
    rsps.add(responses.GET, URL + datasets.get("quote").endpoint, body="{}\n")
    rsps.add(responses.GET, URL + datasets.get("greeks_first_order").endpoint, status=471)
    checks = by_name(doctor.run_checks(cfg(tmp_path)))
    assert all(checks[n].ok for n in ("host string", doctor.REACHABLE, "mdds/status", "calendar"))
    assert checks["dataset quote"].ok and "answered 200" in checks["dataset quote"].detail
    denied = checks["dataset greeks_first_order"]
    assert not denied.ok and "471 permission denied" in denied.detail and "tier or higher" in denied.fix
    assert "5 sessions" in checks["calendar"].detail and checks["archive writable"].ok
    probe = next(c for c in rsps.calls if datasets.get("quote").endpoint in c.request.url)
    assert "strike=6000.0" in probe.request.url and "right=put" in probe.request.url


def test_index_price_is_probed_per_symbol_and_a_vix_471_named(
    rsps: responses.RequestsMock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, f"{URL}/terminal/mdds/status", body="CONNECTED")
    rsps.add(
        responses.GET, f"{URL}/option/list/contracts/quote", body='{"symbol":"SPXW","expiration":20241206}\n'
    )
    endpoint = URL + datasets.get("index_price").endpoint
    rsps.add(
        responses.GET,
        endpoint,
        match=[responses.matchers.query_param_matcher({"symbol": "VIX"}, strict_match=False)],
        status=471,
    )
    rsps.add(responses.GET, endpoint, body='{"timestamp":"2024-12-02T09:30:00","price":6000.0}\n')
    raw = {
        "start_date": "2024-11-25",
        "end_date": "2024-12-02",
        "datasets": ["index_price"],
        "index_symbols": ["SPX", "VIX"],
    }
    check = by_name(doctor.run_checks(config.load(raw, base=tmp_path, today=NOW)))[
        "dataset index_price (SPX, VIX)"
    ]
    assert not check.ok
    assert (
        check.detail
        == f"dataset index_price VIX: {datasets.get('index_price').endpoint}: 471 permission denied"
    )
    assert "drop it from `index_symbols`" in check.fix
    sent = [c.request.url for c in rsps.calls if "/index/" in c.request.url]
    assert len(sent) == 2 and all("end_time=16%3A00%3A00" in u and "expiration" not in u for u in sent)


def test_an_unreachable_terminal_skips_the_probes(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    rsps.add(responses.GET, f"{URL}/terminal/mdds/status", body=requests.ConnectionError("refused"))
    checks = by_name(doctor.run_checks(cfg(tmp_path)))
    reach = checks[doctor.REACHABLE]
    assert not reach.ok and reach.detail.endswith("ConnectionError") and "start the terminal" in reach.fix
    assert not any(name.startswith("dataset") for name in checks) and "mdds/status" not in checks


def test_a_disconnected_terminal_is_reachable_but_not_linked(
    rsps: responses.RequestsMock, tmp_path: Path
) -> None:
    rsps.add(responses.GET, f"{URL}/terminal/mdds/status", body="DISCONNECTED")
    checks = by_name(doctor.run_checks(cfg(tmp_path)))
    assert checks[doctor.REACHABLE].ok and not checks["mdds/status"].ok
    assert checks["mdds/status"].detail == "DISCONNECTED" and "creds.txt" in checks["mdds/status"].fix
