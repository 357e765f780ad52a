"""Config loading: coercion of --config strings, and one clear line for every bad value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

from spx_data.core import calendar, config, datasets
from spx_data.core.errors import ConfigError
from spx_data.fetch.retry import RetryPolicy

BASE = {"start_date": "2024-11-21", "end_date": "2024-12-05"}
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def load(tmp_path: Path, **overrides: object) -> config.Config:
    return config.load({**BASE, **overrides}, base=tmp_path, today=NOW)


def test_defaults_and_coercion_of_snakemake_strings(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, api_concurrency="8", max_dte="30", retry={"max_attempts": "3", "base_delay": "0.1"},
        datasets="[quote]", allow_remote_terminal="false",
    )  # fmt: skip
    assert cfg.api_concurrency == 8 and cfg.max_dte == 30 and cfg.datasets == ("quote",)
    assert cfg.retry["max_attempts"] == 3 and cfg.retry["base_delay"] == 0.1
    assert cfg.retry["read_timeout"] == 120  # untouched defaults survive a partial override
    assert cfg.symbols == ("SPX", "SPXW") and cfg.interval == "1m"
    assert cfg.archive == tmp_path / "data/archive"
    assert [s.day.isoformat() for s in cfg.sessions()][:2] == ["2024-11-21", "2024-11-22"]
    assert len(cfg.sessions()) == 10
    policy = RetryPolicy.from_config(cfg.retry)
    assert policy.max_attempts == 3 and policy.starting_wait == (30.0, 120.0)


def test_end_date_defaults_to_last_final_session(tmp_path: Path) -> None:
    cfg = config.load({"start_date": "2026-11-02"}, base=tmp_path, today=NOW)
    assert cfg.end == dt.date(2026, 11, 27)  # Friday after Thanksgiving, closed 13:15


def test_yaml_dates_are_accepted(tmp_path: Path) -> None:
    cfg = config.load({"start_date": dt.date(2024, 11, 21), "end_date": dt.date(2024, 11, 22)}, base=tmp_path)
    assert (cfg.start, cfg.end) == (dt.date(2024, 11, 21), dt.date(2024, 11, 22))


BAD = [
    ({"start_date": "2025-13-01"}, "start_date 2025-13-01: not a date (YYYY-MM-DD)"),
    ({"start_date": "yesterday"}, "start_date yesterday: not a date (YYYY-MM-DD)"),
    ({"end_date": "2024-02-30"}, "end_date 2024-02-30: not a date (YYYY-MM-DD)"),
    ({"start_date": "2024-12-06"}, "start_date 2024-12-06: after end_date 2024-12-05"),
    (
        {"end_date": "2027-01-04"},
        "end_date 2027-01-04: after the newest session with final data (2026-11-27)",
    ),
    (
        {"start_date": "2019-06-03"},
        "start_date 2019-06-03: before the history of greeks_first_order (starts 2020-01-01)",
    ),
    (
        {"start_date": "2011-01-03", "datasets": ["quote"]},
        "start_date 2011-01-03: before the history of quote",
    ),
    ({"datasets": ["trades"]}, "datasets trades: not one of quote, ohlc"),
    ({"datasets": []}, "datasets []: "),
    ({"symbols": ["SPY"]}, "symbols SPY: not one of SPX, SPXW"),
    ({"interval": "7m"}, "interval 7m: not one of 1s, 5s"),
    ({"interval": "tick"}, "interval tick: not one of"),
    ({"api_concurrency": -1}, "api_concurrency -1: must be >= 1"),
    ({"api_concurrency": "four"}, "api_concurrency four: not an integer"),
    ({"api_concurrency": 0}, "api_concurrency 0: must be >= 1"),
    ({"max_dte": -3}, "max_dte -3: must be >= 0"),
    ({"terminal_url": "ftp://127.0.0.1:25503"}, "terminal_url ftp://127.0.0.1:25503: not an http(s) URL"),
    ({"terminal_url": "127.0.0.1:25503"}, "terminal_url 127.0.0.1:25503: not an http(s) URL"),
    (
        {"terminal_url": "http://192.168.1.5:25503"},
        "terminal_url http://192.168.1.5:25503: host 192.168.1.5 is not loopback; set allow_remote_terminal",
    ),
    (
        {"terminal_url": "http://example.com:25503"},
        "terminal_url http://example.com:25503: host example.com is not loopback",
    ),
    ({"colour": "blue"}, "unknown key colour; allowed keys: allow_remote_terminal"),
    ({"retry": {"max_attempts": 0}}, "retry.max_attempts 0: must be >= 1"),
    ({"retry": {"jitter": 1}}, "retry: unknown key jitter"),
    ({"retry": {"starting_wait_min": 200}}, "retry.starting_wait_min 200: above starting_wait_max 120"),
    ({"retry": {"read_timeout": 0}}, "retry.read_timeout 0: must be > 0"),
    ({"allow_remote_terminal": "maybe"}, "allow_remote_terminal maybe: not a boolean"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_values_get_one_line_naming_value_and_allowed(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, **overrides)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_remote_terminal_allowed_explicitly(tmp_path: Path) -> None:
    cfg = load(tmp_path, terminal_url="http://10.1.2.3:25503/", allow_remote_terminal=True)
    assert cfg.terminal_url == "http://10.1.2.3:25503"


def test_unwritable_archive(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"^archive_dir .*file/archive: not writable"):
        load(tmp_path, archive_dir=str(blocker / "archive"))


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("start_date: [2024\n  - : :")
    with pytest.raises(ConfigError, match=r"not valid YAML at line"):
        config.read_yaml(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="not a YAML mapping"):
        config.read_yaml(bad)


def test_shipped_config_is_valid() -> None:
    cfg = config.load(config.read_yaml(REPO / "config" / "config.yaml"), base=REPO)
    assert cfg.datasets == ("quote", "greeks_first_order") and cfg.api_concurrency == 4


def _keys(properties: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, spec in properties.items():
        yield prefix + key, spec
        yield from _keys(spec.get("properties", {}), f"{prefix}{key}.")


def test_every_key_has_a_description_and_all_but_start_date_a_default() -> None:
    keys = dict(_keys(config.schema()["properties"]))
    assert [k for k, spec in keys.items() if not spec.get("description")] == []
    no_default = [k for k, spec in keys.items() if "default" not in spec and "properties" not in spec]
    assert no_default == ["start_date"] == config.schema()["required"]


def test_defaults_are_the_schemas_and_the_retry_policys() -> None:
    keys = dict(_keys(config.schema()["properties"]))
    assert config.DEFAULTS["interval"] == keys["interval"]["default"] == "1m"
    assert config.DEFAULTS["retry"]["read_timeout"] == keys["retry.read_timeout"]["default"] == 120
    policy = RetryPolicy()
    expected = {k: v for k, v in config.DEFAULTS["retry"].items() if not k.startswith("starting_wait")}
    assert {k: getattr(policy, k) for k in expected} == expected
    assert policy.starting_wait == (config.DEFAULTS["retry"]["starting_wait_min"], 120.0)


def test_allowed_values_are_the_registrys() -> None:
    props = config.schema()["properties"]
    assert props["datasets"]["items"]["enum"] == list(datasets.DATASETS)
    assert props["symbols"]["items"]["enum"] == list(datasets.SYMBOLS)
    assert props["index_symbols"]["items"]["enum"] == list(datasets.INDEX_SYMBOLS)
    assert props["interval"]["enum"] == list(calendar.INTERVAL_SECONDS)


def test_greeks_inputs_default_coerce_and_refuse_in_one_line(tmp_path: Path) -> None:
    assert load(tmp_path).greeks == datasets.Greeks("sofr", "latest", None, None)
    cfg = load(tmp_path, greeks={"version": 1, "rate_value": "4.5"})  # YAML `1`, --config strings
    assert cfg.greeks == datasets.Greeks("sofr", "1", 4.5, None)
    with pytest.raises(ConfigError, match=r"^greeks.rate_type libor: not one of sofr, treasury_m1"):
        load(tmp_path, greeks={"rate_type": "libor"})
    with pytest.raises(ConfigError, match=r"^greeks.version 2: not one of latest, 1$"):
        load(tmp_path, greeks={"version": "2"})
    with pytest.raises(ConfigError, match=r"^greeks: unknown key dividend; allowed keys: annual_dividend"):
        load(tmp_path, greeks={"dividend": 1})


def test_shipped_schema_documents_every_greeks_key_with_a_default() -> None:
    keys = config.schema()["properties"]["greeks"]["properties"]
    assert set(keys) == {"rate_type", "version", "rate_value", "annual_dividend"}
    assert all("description" in spec and "default" in spec for spec in keys.values())
    assert {k: spec["default"] for k, spec in keys.items()} == config.DEFAULTS["greeks"]
    shipped = config.read_yaml(REPO / "config" / "config.yaml")["greeks"]
    assert shipped == config.DEFAULTS["greeks"]
    # datasets.Greeks cannot derive its defaults from the schema (config imports datasets): held equal here.
    assert datasets.Greeks(**config.DEFAULTS["greeks"]) == datasets.DEFAULT_GREEKS


def test_localhost_alone_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, terminal_url="http://localhost:25503").terminal_url == "http://localhost:25503"


def test_ohlc_and_eod_history_starts_2016(tmp_path: Path) -> None:
    for name in ("ohlc", "eod"):
        with pytest.raises(
            ConfigError, match=rf"start_date 2015-12-31: before the history of {name} \(starts 2016-01-01\)"
        ):
            config.load(
                {"start_date": "2015-12-31", "end_date": "2016-01-05", "datasets": [name]},
                base=tmp_path,
                today=NOW,
            )
    assert load(tmp_path, start_date="2016-01-04", datasets=["ohlc", "eod"]).start == dt.date(2016, 1, 4)
