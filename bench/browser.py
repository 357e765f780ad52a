"""Headless Debian chromium for the HTML report: the DOM after load, console messages, screenshots.

Console messages (console.*, uncaught errors) come from chromium's own log on stderr, where
`--enable-logging=stderr --v=0` prints each as `INFO:CONSOLE...] "message", source: url (line)`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

# What chromium needs as root in a container, with no network and nothing phoning home.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
)  # fmt: skip
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")


def chromium() -> str | None:
    return shutil.which("chromium")


def _run(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip


def load(page: Path) -> tuple[str, list[str]]:
    """The DOM after the page loaded, and every console message it logged."""
    proc = _run(page, "--dump-dom")
    return proc.stdout, _CONSOLE.findall(proc.stderr)


def screenshot(
    page: Path, png: Path, width: int = 1400, height: int = 4000, max_bytes: int = 450_000
) -> None:
    """A PNG of the top `height` pixels; above `max_bytes`, reduced to a 256-colour palette."""
    from PIL import Image

    _run(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    with Image.open(png) as im:
        rgb = im.convert("RGB")
    rgb.save(png, optimize=True)
    if png.stat().st_size > max_bytes:
        rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
