"""The machine a benchmark ran on, printed at the top of every bench/ script."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version


def load() -> str:
    """The load averages, printed next to numbers that other work on the machine may have slowed."""
    return "load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def describe(*packages: str) -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
        with open("/proc/meminfo") as f:
            mem_kb = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal")))
    except OSError:
        model, mem_kb = "?", 0
    libs = []
    for name in packages:
        try:
            libs.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            libs.append(f"{name} (not installed)")
    cores = len(os.sched_getaffinity(0))
    return (
        f"machine: {cores} cores usable ({model}), {mem_kb / 2**20:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, load avg {os.getloadavg()[0]:.2f}\n"
        f"python {platform.python_version()}; " + ", ".join(libs)
    )
