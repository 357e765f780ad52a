"""`spx-data demo`: ten sessions (with Thanksgiving and its early close) from the simulator, end to end.

The demo makes a project folder of its own (`--dir`, default `demo/`) from the workflow files the
package carries, so it works from any directory and after a wheel install; `cd demo` and every
`spx-data` command or plain `snakemake` works on it. Uses a real terminal instead when one answers
CONNECTED at the configured URL.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from spx_data.core import config as config_mod
from spx_data.core import project
from spx_data.core.errors import TerminalUnreachable
from spx_data.fetch.terminal import status as terminal_status
from spx_data.ops import configedit, invocation, launch

DEFAULT_DIR = Path("demo")  # the demo's own project folder, under the folder it was started in
DEMO_RANGE = ("2024-11-21", "2024-12-05")  # 10 sessions: holiday 11-28, early close 11-29


@contextlib.contextmanager
def terminal(url: str, chain: str, faults: float) -> Iterator[str]:
    try:
        if terminal_status(url)[1].strip() == "CONNECTED":
            print(f"using the terminal at {url}")
            yield url
            return
    except TerminalUnreachable:
        pass
    from spx_data.sim.faults import FAULT_CLASSES
    from spx_data.sim.testing import running_simulator

    rates = {c: faults for c in FAULT_CLASSES}
    with running_simulator(chain=chain, fault_rates=rates, stall_seconds=0.5, disconnect_seconds=0.5,
                           starting_seconds=0.5) as sim:  # fmt: skip
        print(f"no terminal at {url}: started the simulator at {sim.url} (chain {chain}, faults {faults})")
        yield sim.url


def run(args: argparse.Namespace) -> int:
    root = (args.dir or DEFAULT_DIR).absolute()
    root.mkdir(parents=True, exist_ok=True)
    project.install_workflow(root)
    args.project, args.config_file = root, root / project.CONFIG_FILE
    os.chdir(root)  # as the CLI does in every project folder
    for key, value in zip(("start_date", "end_date"), DEMO_RANGE, strict=True):
        configedit.set_value(args.config_file, key, value, root)
    cfg = invocation.config(args)
    print(f"demo project folder: {root} (cd there: spx-data status, snakemake -n)")
    with terminal(cfg.terminal_url, args.chain, args.faults) as url:
        overrides: dict[str, object] = {"terminal_url": url}
        if url != cfg.terminal_url:  # the simulator restarts in a second, not in ThetaData's 30-120 s
            overrides["retry"] = {"starting_wait_min": 0.2, "starting_wait_max": 1.0, "base_delay": 0.05}
        code = launch.run(args, overrides)
    _summary(cfg)
    return code


def _summary(cfg: config_mod.Config) -> None:
    archive = cfg.archive
    folders = sorted(p for p in archive.glob("*/date=*") if p.is_dir())

    def check(folder: Path) -> int:
        sidecars = [p.name for p in folder.glob("*.sha256")]
        return subprocess.run(["sha256sum", "-c", "--quiet", *sidecars], cwd=folder).returncode

    bad = [f for f in folders if check(f)]
    print(f"archive {archive}: {len(folders)} day folders, sha256sum -c failed in {len(bad)}")
    try:
        import duckdb
    except ImportError:
        return
    from spx_data.ledger.store import Ledger

    with Ledger(cfg.ledger) as ledger:
        ledger_rows = {
            ds: sum(r.rows or 0 for r in ledger.days(dataset=ds)) for ds in ("quote", "greeks_first_order")
        }
    for ds in sorted(p.name for p in archive.iterdir() if p.is_dir()):
        glob = str(archive / ds / "*" / "*.parquet")
        n = duckdb.execute(
            "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)", [glob]
        ).fetchone()[0]
        mark = "=" if n == ledger_rows.get(ds) else "!="
        print(f"duckdb: {ds} has {n:,} rows {mark} ledger {ledger_rows.get(ds, 0):,}")
