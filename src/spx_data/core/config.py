"""Load, coerce and validate the workflow configuration; every error is one line naming the value.

Snakemake's `--config key=value` parses nested values with YAML's BaseLoader, so numbers inside
`retry={...}` arrive as strings; values are coerced to the types config.schema.yaml declares before
validation. The schema is the single source of allowed keys and values for the Snakefile and the CLI.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from spx_data.core import calendar, datasets, project
from spx_data.core.errors import ConfigError
from spx_data.core.paths import Layout, nearest_existing
from spx_data.core.validate import iso_date

# libyaml's loader where present: the schema is read by every job process (~1 ms against ~25 ms).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def schema() -> dict[str, Any]:
    return yaml.load(project.schema_text(), Loader=_YAML_LOADER)


def _defaults(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Each key's schema `default`; a mapping's default is its own keys' defaults."""
    return {
        key: _defaults(spec["properties"]) if "properties" in spec else spec["default"]
        for key, spec in properties.items()
        if "default" in spec or "properties" in spec
    }


# Every key's default, from the schema alone (the client's RetryPolicy takes `retry`'s from here too).
DEFAULTS: dict[str, Any] = _defaults(schema()["properties"])


@dataclass(frozen=True)
class Config:
    start: dt.date
    end: dt.date
    symbols: tuple[str, ...]
    datasets: tuple[str, ...]
    interval: str
    max_dte: int | None
    terminal_url: str
    api_concurrency: int
    archive: Path
    work: Path
    ledger: Path
    retry: Mapping[str, float]
    greeks: datasets.Greeks = datasets.DEFAULT_GREEKS
    index_symbols: tuple[str, ...] = tuple(DEFAULTS["index_symbols"])
    queued_requests: int = DEFAULTS["queued_requests"]
    quality: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULTS["quality"]))

    @property
    def layout(self) -> Layout:
        return Layout(self.archive, self.work)

    @property
    def requests_in_flight(self) -> int:
        """The run-wide `api` cap: the tier's slots, and the requests waiting in the terminal's queue."""
        return self.api_concurrency + self.queued_requests

    def sessions(self) -> list[calendar.Session]:
        return calendar.sessions(self.start, self.end)


def _coerce(value: Any, spec: Mapping[str, Any]) -> Any:
    """Turn a string from --config into the type the schema asks for; leave anything else as is."""
    types = spec.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping) and "properties" in spec:
        props = spec["properties"]
        return {k: _coerce(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, list) and "items" in spec:
        return [_coerce(v, spec["items"]) for v in value]
    if "string" in types and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # YAML reads `version: 1` as a number
    if not isinstance(value, str):
        return value
    if "null" in types and value.lower() in ("null", "none", "~", ""):
        return None
    if "boolean" in types and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    for kind, parse in (("integer", int), ("number", float)):
        if kind in types:
            try:
                return parse(value)
            except ValueError:
                pass
    if "array" in types:
        return [_coerce(v.strip(), spec.get("items", {})) for v in value.strip("[]").split(",") if v.strip()]
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(_fmt, value)) + "]"
    text = str(value)
    return text if text.isprintable() else repr(text)  # a newline or NUL must not break the one line


def _explain(error: Any) -> str:
    """One line from a jsonschema ValidationError: the key, the bad value and what is allowed."""
    key = ".".join(str(p) for p in error.absolute_path if not isinstance(p, int)) or "config"
    spec = error.schema
    value = _fmt(error.instance)
    match error.validator:
        case "additionalProperties":
            allowed = ", ".join(sorted(error.schema.get("properties", {})))
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            where = f"{key}: " if key != "config" else ""
            return f"{where}unknown key {', '.join(extra)}; allowed keys: {allowed}"
        case "enum":
            return f"{key} {value}: not one of {', '.join(map(str, spec['enum']))}"
        case "type":
            want = spec["type"] if isinstance(spec["type"], str) else " or ".join(spec["type"])
            article = "an" if want[0] in "aeiou" else "a"
            return f"{key} {value}: not {article} {want}"
        case "minimum" | "exclusiveMinimum" | "maximum":
            op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}[error.validator]
            return f"{key} {value}: must be {op} {error.validator_value}"
        case "pattern" if key == "terminal_url":
            return f"terminal_url {value}: not an http(s) URL like http://127.0.0.1:25503"
        case "required":
            return f"missing required key {error.message.split(' ')[0]}"
        case _:
            return f"{key} {value}: {error.message}"


def _date(key: str, value: Any) -> dt.date:
    day = iso_date(str(value))
    if day is None:
        raise ConfigError(f"{key} {_fmt(value)}: not a date (YYYY-MM-DD)")
    return day


def _check_url(url: str, allow_remote: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"terminal_url {url}: not an http(s) URL like http://127.0.0.1:25503")
    host = parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not allow_remote:
        raise ConfigError(
            f"terminal_url {url}: host {host} is not loopback; set allow_remote_terminal: true to use it"
        )
    return url.rstrip("/")


def _check_path(key: str, path: Path, is_file: bool = False, writable: bool = True) -> Path:
    """A path that is (or can become) the folder or file it should be; `writable` also asks for write
    access, which inspection never needs (a read-only share or backup can be inspected)."""
    if not str(path).isprintable():
        raise ConfigError(f"{key} {_fmt(str(path))}: control characters are not allowed in a path")
    if path.exists():
        if is_file and path.is_file():
            if writable and not os.access(path, os.W_OK):
                raise ConfigError(f"{key} {path}: not writable (the file is read-only)")
            return path
        if not is_file and not path.is_dir():
            raise ConfigError(f"{key} {path}: not a folder")
        if is_file:
            raise ConfigError(f"{key} {path}: not a file")
    probe = nearest_existing(path)
    if not probe.is_dir() or (writable and not os.access(probe, os.W_OK | os.X_OK)):
        raise ConfigError(f"{key} {path}: not writable ({probe} is not a writable folder)")
    return path


def load(
    raw: Mapping[str, Any], base: Path | None = None, today: dt.datetime | None = None, writable: bool = True
) -> Config:
    """Validate a config mapping (config.yaml merged with overrides) into a Config; with `writable`, the
    archive, work folder and ledger must be writable (see require_writable)."""
    import jsonschema

    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping of keys to values, got {type(raw).__name__}")
    doc = {**DEFAULTS, **raw}
    for key, default in DEFAULTS.items():  # a mapping's keys take their defaults one by one
        given = raw.get(key) or {}
        if isinstance(default, dict) and isinstance(given, Mapping):
            doc[key] = {**default, **given}
    doc = _coerce(doc, schema())
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(doc), key=lambda e: e.path)
    if errors:
        raise ConfigError(_explain(errors[0]))

    start = _date("start_date", doc["start_date"])
    last_final = calendar.last_final_session(today)
    end = last_final if doc["end_date"] is None else _date("end_date", doc["end_date"])
    if start > end:
        raise ConfigError(f"start_date {start}: after end_date {end}")
    if end > last_final:
        raise ConfigError(f"end_date {end}: after the newest session with final data ({last_final})")
    for name in doc["datasets"]:
        first = datasets.DATASETS[name].first_date
        if start < first:
            raise ConfigError(f"start_date {start}: before the history of {name} (starts {first})")
    retry = doc["retry"]
    if retry["starting_wait_min"] > retry["starting_wait_max"]:
        raise ConfigError(
            f"retry.starting_wait_min {retry['starting_wait_min']}: above starting_wait_max "
            f"{retry['starting_wait_max']}"
        )
    base = base or Path()
    paths = {
        k: _check_path(k, base / doc[k], k == "ledger_path", writable)
        for k in ("archive_dir", "work_dir", "ledger_path")
    }
    return Config(
        start=start,
        end=end,
        symbols=tuple(doc["symbols"]),
        datasets=tuple(doc["datasets"]),
        interval=doc["interval"],
        max_dte=doc["max_dte"],
        terminal_url=_check_url(doc["terminal_url"], doc["allow_remote_terminal"]),
        api_concurrency=doc["api_concurrency"],
        queued_requests=doc["queued_requests"],
        archive=paths["archive_dir"],
        work=paths["work_dir"],
        ledger=paths["ledger_path"],
        retry=retry,
        greeks=datasets.Greeks(**doc["greeks"]),
        index_symbols=tuple(doc["index_symbols"]),
        quality=doc["quality"],
    )


def require_writable(cfg: Config) -> None:
    """Refuse, in one line, to write into a read-only archive, work folder or ledger."""
    for key, path in (("archive_dir", cfg.archive), ("work_dir", cfg.work), ("ledger_path", cfg.ledger)):
        _check_path(key, path, key == "ledger_path")


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file as a mapping; a file that is not YAML (or not a mapping) is a ConfigError."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}: not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path}: not a YAML mapping of keys to values")
    return doc
