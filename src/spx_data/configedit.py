"""`spx-data config set`: change one value in config.yaml, keeping its comments, only if it validates."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from ruamel.yaml import YAML

from spx_data import config as config_mod
from spx_data.errors import ConfigError


def set_value(path: Path, key: str, text: str, base: Path) -> None:
    """Set KEY (or retry.KEY) to the YAML value TEXT; the file changes only when the result is valid.

    Relative paths in the result are checked against `base`, the project folder."""
    yaml = YAML()  # round-trip mode keeps comments and key order
    yaml.preserve_quotes = True
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
    if sub:
        doc.setdefault(top, {})[sub] = value
    else:
        doc[top] = value
    # Validate what the file would hold (the loader turns YAML dates into ISO strings itself).
    plain = YAML(typ="safe").load(_dump(yaml, doc))
    try:
        config_mod.load(plain, base=base)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(key) else f"{key} {text}: {msg}") from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(_dump(yaml, doc))
    os.replace(tmp, path)


def _dump(yaml: YAML, doc: object) -> str:
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()
