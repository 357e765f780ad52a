"""sha256 of files and `sha256sum`-format sidecars (`<hex>  <file name>\\n`), written atomically.

A sidecar names its file relative to the sidecar's folder, so `sha256sum -c` works run in that folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from spx_data.core import atomic

_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)\n?$")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _name_in_sidecar(sidecar_path: Path, file_path: Path) -> str:
    name = os.path.relpath(file_path, sidecar_path.parent)
    # sha256sum escapes such names with a leading backslash; ours never need it.
    if "\n" in name or "\\" in name:
        raise ValueError(f"{file_path}: a name with a newline or backslash cannot go in a sidecar")
    return name


def write_sidecar(sidecar_path: Path, file_path: Path, digest: str | None = None) -> str:
    """Write `sidecar_path` for `file_path` (hashing it unless `digest` is given); returns the digest.

    Written under a temporary name, fsynced and renamed, so a sidecar is either whole or absent.
    """
    digest = (digest or sha256_file(file_path)).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    text = f"{digest}  {_name_in_sidecar(sidecar_path, file_path)}\n"
    atomic.write_bytes(sidecar_path, text.encode())
    atomic.fsync_dir(sidecar_path.parent)
    return digest


def read_sidecar(sidecar_path: Path) -> tuple[str, str]:
    """(hex digest, file name) of a one-line sidecar; ValueError when it is not one."""
    text = sidecar_path.read_text(encoding="utf-8")
    match = _LINE.match(text)
    if match is None or text.count("\n") > 1:
        raise ValueError(f"{sidecar_path}: not a one-line sha256sum file")
    return match.group(1).lower(), match.group(2)


def verify_sidecar(sidecar_path: Path, file_path: Path) -> str | None:
    """None when `sidecar_path` exists, names `file_path` and matches its bytes; else the problem."""
    if not sidecar_path.exists():
        return f"{sidecar_path}: sidecar missing"
    try:
        digest, name = read_sidecar(sidecar_path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{sidecar_path}: unreadable sidecar ({e})"
    if name != os.path.relpath(file_path, sidecar_path.parent):
        return f"{sidecar_path}: names {name!r}, not {file_path.name!r}"
    try:
        actual = sha256_file(file_path)
    except OSError as e:
        return f"{file_path}: cannot read ({e.strerror or e})"
    if actual != digest:
        return f"{file_path}: sha256 {actual} does not match its sidecar ({digest})"
    return None
