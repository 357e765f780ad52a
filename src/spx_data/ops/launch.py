"""`spx-data run` (and retry, demo): preflight, then plain Snakemake with the project's profile, then the
run's summary from the ledger. Each step is one function; `run` only strings them together."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spx_data.core import config as config_mod
from spx_data.core.errors import ConfigError
from spx_data.core.humane import human_bytes
from spx_data.core.paths import free_bytes
from spx_data.fetch import outage
from spx_data.ops import runner
from spx_data.ops.invocation import (
    BUSY,
    FAILED,
    INTERRUPTED,
    NO_DISK,
    OK,
    Exit,
    open_ledger,
    raw_config,
    require_terminal,
    snakemake_overrides,
)

Pair = tuple[str, str]  # (dataset, day)


def run(args: argparse.Namespace, overrides: dict[str, Any], only: Sequence[Pair] | None = None) -> int:
    """Preflight, then plain Snakemake (targets: the `only` day-files, else every gap); 0 only if every
    planned day ended well."""
    cfg = _effective_config(args, overrides)
    _preflight(args, cfg)
    pairs, targets = _planned(cfg, only)
    if pairs is None:
        return OK
    _check_disk(args, cfg, pairs)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    code, progress, log = _snakemake(args, cfg, overrides, pairs, targets, run_id)
    outage.check(cfg.work, run_id)  # the terminal went away for good: one line, exit 3
    return _summarize(args, cfg, pairs, code, progress, log)


def _effective_config(args: argparse.Namespace, overrides: dict[str, Any]) -> config_mod.Config:
    raw = raw_config(args)
    raw.update(overrides)
    return config_mod.load(raw)


def _preflight(args: argparse.Namespace, cfg: config_mod.Config) -> None:
    """The ledger is this archive's, no other Snakemake works in the folder, the terminal answers."""
    from spx_data.ledger.store import check_archive

    check_archive(cfg.ledger, cfg.archive)
    if busy := runner.snakemake_pids(args.project, args.config_file):
        raise Exit(
            BUSY,
            f"another Snakemake run of {args.config_file} works in {args.project} (pid {busy[0]}); "
            "wait for it or stop it",
        )
    require_terminal(cfg)


def _planned(cfg: config_mod.Config, only: Sequence[Pair] | None) -> tuple[list[Pair] | None, list[str]]:
    """The day-files this run archives and its Snakemake targets; None (said why) when there is none."""
    from spx_data.plan import targets as plan

    the_plan = plan.build(cfg)
    pairs = the_plan.pairs()
    targets: list[str] = []
    if only is not None:
        wanted = set(only)
        pairs = [p for p in pairs if p in wanted]
        # Spelled as the rules spell their outputs (relative to the workdir), or Snakemake has no rule.
        targets = [str(cfg.layout.parquet(ds, d)) for ds, d in pairs]
    if not the_plan.sessions:
        print(f"nothing to do: there is no trading session in {cfg.start} .. {cfg.end}")
        return None, []
    if not pairs:
        print(f"nothing to do: every session {cfg.start} .. {cfg.end} is archived")
        return None, []
    return pairs, targets


def _check_disk(args: argparse.Namespace, cfg: config_mod.Config, pairs: Sequence[Pair]) -> None:
    from spx_data.ops import estimate

    need = estimate.estimate(cfg, pairs).disk_bytes
    free = free_bytes(cfg.archive)
    if free < need and not args.ignore_disk:
        raise Exit(
            NO_DISK,
            f"free disk {human_bytes(free)} at {cfg.archive} is below the estimated need "
            f"{human_bytes(need)}"
            " (free space or pass --ignore-disk)",
        )


def _snakemake(
    args: argparse.Namespace,
    cfg: config_mod.Config,
    overrides: dict[str, Any],
    pairs: Sequence[Pair],
    targets: Sequence[str],
    run_id: str,
) -> tuple[int, runner.Progress, Path]:
    """Plain `snakemake` with the project's profile, its progress on the terminal and in report.html."""
    from spx_data.ops import html_report

    all_overrides = {**snakemake_overrides(args), **overrides}
    cores = args.cores if args.cores or args.profile else 4
    base = runner.snakemake_command(cores, all_overrides, configfile=args.config_file)
    if runner.unlock_if_stale(args.project, base):
        print("removed a stale Snakemake lock (no Snakemake process held it)")
    # Nothing beyond plain `snakemake`: the profile and the Snakefile set keep-going, rerun-incomplete, api.
    cmd = runner.snakemake_command(
        cores, all_overrides, configfile=args.config_file, targets=targets, extra=cluster_profile(args)
    )
    print(
        f"{len(pairs)} day-files to archive ({cfg.start} .. {cfg.end}); snakemake log in {cfg.work / 'logs'}"
    )
    progress = runner.Progress(set(pairs), _requests_of(cfg), cfg.work / "logs" / "fetch")
    log = cfg.work / "logs" / f"snakemake-{dt.datetime.now():%Y%m%dT%H%M%S}.log"
    live = html_report.LiveReport(cfg, progress, args.config_file)
    print(f"report (refreshed while running): {html_report.default_path(cfg)}")
    try:
        code = runner.run_snakemake(
            cmd, args.project, cfg.layout.outcomes(), progress, log, run_id=run_id, work=cfg.work, tick=live
        )
    except KeyboardInterrupt:
        raise Exit(
            INTERRUPTED,
            f"spx-data: interrupted after {len(progress.done)}/{len(pairs)} day-files (finished ones are "
            f"kept); resume with `spx-data run` or plain `snakemake --cores {args.cores}` in {args.project}",
        ) from None
    return code, progress, log


def _summarize(
    args: argparse.Namespace,
    cfg: config_mod.Config,
    pairs: Sequence[Pair],
    code: int,
    progress: runner.Progress,
    log: Path,
) -> int:
    """The ledger's word on every planned day-file, the report redrawn, and why Snakemake refused."""
    from spx_data.ops import html_report

    with open_ledger(cfg) as ledger:
        rows = {p: ledger.day(*p) for p in pairs}
    states = {p: (row.status if row else "missing") for p, row in rows.items()}
    bad = sorted(p for p, s in states.items() if s not in ("success", "no_data"))
    archived = sum(row.rows or 0 for p, row in rows.items() if row and states[p] == "success")
    elapsed = time.monotonic() - progress.started
    tally = ", ".join(f"{n} {s}" for s, n in sorted(Counter(states.values()).items()))
    print(
        f"{len(pairs) - len(bad)}/{len(pairs)} day-files archived ({tally}); {archived:,} rows in "
        f"{elapsed:.0f} s ({archived / max(elapsed, 1e-9) * 60:,.0f} rows/min)"
    )
    for ds, day in bad:
        print(f"not archived: {ds} {day} ({states[(ds, day)]})")
    if report := html_report.refresh(cfg, config_file=args.config_file):
        print(f"report: {report}")
    # Nothing ran at all: Snakemake refused the run itself; say why, not just "not archived".
    reason = runner.refusal(log) if code != 0 and not progress.done else None
    if reason:
        print(f"snakemake refused: {reason} (see {log})")
    elif code != 0 and not bad:
        print(f"snakemake exited {code}; see {log}")
    return FAILED if bad or code != 0 else OK


def _requests_of(cfg: config_mod.Config) -> Callable[[str], int | None]:
    """A day's requests per dataset, once its listing is cached (else None)."""
    from spx_data.plan import listing

    def count(day: str) -> int | None:
        found = listing.read(cfg.layout.listing(day))
        return None if found is None else len(found.select(cfg.symbols, cfg.max_dte))

    return count


def cluster_profile(args: argparse.Namespace) -> list[str]:
    """`--profile NAME` as Snakemake options: one of the project's profiles but `default`, which
    Snakemake applies by itself."""
    if not args.profile:
        return []
    root = args.project / "profiles"
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "default")
    if args.profile not in found:
        raise ConfigError(f"--profile {args.profile}: not one of {', '.join(found) or '(none)'} in {root}")
    return ["--profile", str(root / args.profile)]
