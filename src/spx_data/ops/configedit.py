"""`spx-data config set`: change one value in config.yaml, keeping its comments, only if it validates."""

from __future__ import annotations

import datetime as dt
import io
import stat
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import ScalarString

from spx_data.core import atomic
from spx_data.core import config as config_mod
from spx_data.core.errors import ConfigError


def set_value(path: Path, key: str, text: str, base: Path) -> None:
    """Set KEY (or retry.KEY) to the YAML value TEXT; the file changes only when the result is valid.

    Relative paths in the result are checked against `base`, the project folder."""
    yaml = YAML()  # round-trip mode keeps comments, key order and quotes
    yaml.preserve_quotes = True
    yaml.representer.add_representer(type(None), _null)  # `max_dte: null`, not `max_dte:`
    try:
        doc = yaml.load(path.read_text())
    except Exception as e:  # ruamel raises many error types; all mean the same to the operator
        raise ConfigError(f"config file {path}: not valid YAML ({type(e).__name__})") from None
    try:
        value = YAML(typ="safe").load(text) if text.strip() else None
    except Exception:  # e.g. 2025-13-01 looks like a YAML date but is none: validate it as text
        value = text
    top, _, sub = key.partition(".")
    known = config_mod.schema()["properties"]
    if top not in known or (sub and sub not in known[top].get("properties", {})):
        raise ConfigError(f"unknown key {key}; allowed keys: {', '.join(sorted(known))}")
    parent = doc.setdefault(top, {}) if sub else doc
    name = sub or top
    old = parent.get(name)
    if isinstance(old, ScalarString) and isinstance(value, str | dt.date):
        value = type(old)(str(value))  # a quoted value stays quoted the same way
    parent[name] = value
    # Validate what the file would hold (the loader turns YAML dates into ISO strings itself).
    plain = YAML(typ="safe").load(_dump(yaml, doc))
    try:
        config_mod.load(plain, base=base)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(key) else f"{key} {text}: {msg}") from None
    # The file keeps its permission bits (a new file's would follow the umask instead).
    atomic.write_bytes(path, _dump(yaml, doc).encode(), mode=stat.S_IMODE(path.stat().st_mode))


def _null(representer: RoundTripRepresenter, data: None) -> ScalarNode:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _dump(yaml: YAML, doc: object) -> str:
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()
