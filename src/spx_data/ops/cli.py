"""`spx-data`: the operator's command line over the same plan, ledger and Snakemake workflow.

Exit codes: 0 ok; 1 some days failed (or verify found bad files); 2 usage or config error;
3 terminal unreachable; 4 not enough free disk; 5 another run holds the workflow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from spx_data import __version__
from spx_data.core import config as config_mod
from spx_data.core import project
from spx_data.core.errors import ConfigError, SpxDataError, TerminalUnreachable
from spx_data.core.humane import human_bytes
from spx_data.core.validate import iso_date
from spx_data.ops import launch
from spx_data.ops.invocation import (
    BROKEN_PIPE,
    FAILED,
    INTERRUPTED,
    OK,
    UNREACHABLE,
    USAGE,
    Exit,
    config,
    locate,
    open_ledger,
    require_terminal,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the whole usage
        raise Exit(USAGE, f"{self.prog}: {message} (see --help)")


# ---------------------------------------------------------------- config and shared plumbing


def _cores(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: must be a whole number >= 1")
    return n


def _date(value: str) -> dt.date:
    day = iso_date(value)
    if day is None:
        raise argparse.ArgumentTypeError(f"{value!r}: not a date (YYYY-MM-DD)")
    return day


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=1, default=str) if getattr(args, "json", False) else text)


# ---------------------------------------------------------------- commands


def cmd_config(args: argparse.Namespace) -> int:
    from spx_data.ops import configedit

    if args.action == "show":
        cfg = config(args, writable=False)
        data = {k: (str(v) if isinstance(v, Path | dt.date) else v) for k, v in vars(cfg).items()}
        text = args.config_file.read_text() + f"\n# effective range: {cfg.start} .. {cfg.end}"
        _emit(args, data, text)
        return OK
    if args.key is None or args.value is None:
        raise Exit(USAGE, "spx-data config set: needs KEY VALUE")
    configedit.set_value(args.config_file, args.key, args.value, Path())
    print(f"{args.key} = {args.value}")
    return OK


def cmd_gaps(args: argparse.Namespace) -> int:
    from spx_data.ops import report

    cfg = config(args, writable=False)
    with open_ledger(cfg) as ledger:
        gaps = report.gaps(cfg, ledger.days(), since=args.since, dataset=args.dataset)
    _emit(args, gaps.as_dict(cfg), report.gaps_text(cfg, gaps))
    return OK


def cmd_status(args: argparse.Namespace) -> int:
    from spx_data.ops import report

    cfg = config(args, writable=False)
    with open_ledger(cfg) as ledger:
        data = report.status(cfg, ledger)
        data["flagged_days"] = ledger.flagged_days()
        grid = _calendar_grid(cfg, ledger) if args.calendar else ""
    lines = []
    for ds, d in data["datasets"].items():
        counts = ", ".join(f"{k} {v}" for k, v in sorted(d["counts"].items())) or "nothing yet"
        lines.append(
            f"{ds}: {counts}; {d['rows']:,} rows, {human_bytes(d['archive_bytes'])}; newest {d['newest']}"
        )
    for run in data["runs"]:
        lines.append(
            f"last run {run['run_id']}: {run['status']}, started {run['started'][:19]}, "
            f"{run['days_archived']} day-files, {run['rows_archived']:,} rows"
            + (
                f" in {run['seconds']:.0f} s, {run['rows_per_second']:,.0f} rows/s"
                if "seconds" in run
                else ""
            )
        )
    if data["flagged_days"]:
        lines.append(f"quality: {data['flagged_days']} day-files flagged (`spx-data quality --flagged`)")
    lines += _status_hints(args, cfg, data)
    _emit(args, data, "\n".join(lines) + ("\n" + grid if grid else ""))
    return OK


def _status_hints(args: argparse.Namespace, cfg: config_mod.Config, data: dict[str, Any]) -> list[str]:
    """Why a ledger that knows nothing may be misleading: files it does not know, or a demo elsewhere."""
    from spx_data.archive import verify
    from spx_data.ops import demo

    if any(d["counts"] for d in data["datasets"].values()):
        return []
    hints = []
    if archived := verify.count_archived(cfg):
        hints.append(
            f"the ledger knows no day, but {cfg.archive} holds {archived} day-files: "
            "`spx-data ledger rebuild` indexes them"
        )
    if (args.project / demo.DEFAULT_DIR / project.SNAKEFILE).is_file():
        hints.append(
            f"`spx-data demo` has its own project folder {demo.DEFAULT_DIR}/: "
            f"`spx-data -d {demo.DEFAULT_DIR} status` shows it"
        )
    return hints


_CELLS = {"success": ("#", "32"), "no_data": ("o", "90"), "failed": ("X", "31"), None: (".", "33")}


def _calendar_grid(cfg: config_mod.Config, ledger: Any) -> str:
    """Month by month, one cell per session: # success, o no data, X failed, . missing."""
    from spx_data.ops import report

    rows = {(r.dataset, r.day): r.status for r in report.on_disk(cfg.layout, ledger.days())}
    color = sys.stdout.isatty()
    out = ["legend: # success  o no data  X failed  . missing"]
    for ds in cfg.datasets:
        out.append(ds)
        months: dict[str, list[str]] = {}
        for s in cfg.sessions():
            status = rows.get((ds, s.day.isoformat()))
            char, code = _CELLS.get(status if status in _CELLS else None, _CELLS[None])
            cell = f"\033[{code}m{char}\033[0m" if color else char
            months.setdefault(s.day.strftime("%Y-%m"), []).append(cell)
        out += [f"  {m} {''.join(cells)}" for m, cells in months.items()]
    return "\n".join(out)


def cmd_list(args: argparse.Namespace) -> int:
    from spx_data.ops import report

    cfg = config(args, writable=False)
    status = "failed" if args.failed_only else args.status
    with open_ledger(cfg) as ledger:
        since = args.since and args.since.isoformat()
        rows = [r for r in report.on_disk(cfg.layout, ledger.days(dataset=args.dataset, since=since))
                if status is None or r.status == status]  # fmt: skip
    data = [vars(r) if hasattr(r, "__dict__") else r._asdict() for r in rows]
    text = "\n".join(
        f"{r.dataset:<20} {r.day} {r.status:<10} attempts {r.attempts:>2}  rows {r.rows or 0:>11,}  "
        f"{human_bytes(r.bytes or 0):>9}  {r.seconds or 0:>7.1f} s"
        + (f"  {r.error_class}: {r.last_error}" if r.status == "failed" else "")
        + (f"  ({r.note})" if r.note and r.status != "failed" else "")
        for r in rows
    )
    _emit(args, data, text or "nothing matches")
    return OK


def cmd_run(args: argparse.Namespace) -> int:
    if args.newest_first:
        return _run_newest_first(args)
    return launch.run(args, {})


def _run_newest_first(args: argparse.Namespace) -> int:
    """Month by month from the newest: the recent past is usable before the backfill ends."""
    cfg = config(args)
    months = sorted({(s.day.year, s.day.month) for s in cfg.sessions()}, reverse=True)
    worst = OK
    for year, month in months:
        sessions = [s.day for s in cfg.sessions() if (s.day.year, s.day.month) == (year, month)]
        code = launch.run(args, {"start_date": sessions[0].isoformat(), "end_date": sessions[-1].isoformat()})
        worst = max(worst, code)
    return worst


def cmd_retry(args: argparse.Namespace) -> int:
    """Re-run exactly the (dataset, day) pairs that failed (or had no data, or the given days)."""
    cfg = config(args)
    with open_ledger(cfg) as ledger:
        if args.all_failed or args.no_data:
            status = "failed" if args.all_failed else "no_data"
            pairs = sorted({(r.dataset, r.day) for r in ledger.days(dataset=args.dataset, status=status)})
        else:
            datasets = [args.dataset] if args.dataset else cfg.datasets
            pairs = sorted({(ds, d.isoformat()) for ds in datasets for d in args.dates})
    if not pairs:
        print("nothing to retry")
        return OK
    days = sorted(d for _, d in pairs)
    overrides = {"start_date": days[0], "end_date": days[-1], "datasets": sorted({ds for ds, _ in pairs})}
    if args.no_data:
        require_terminal(cfg)  # before anything moves: no half-done re-check
        _requeue_no_data(cfg, pairs)
    return launch.run(args, overrides, only=pairs)


def _requeue_no_data(cfg: config_mod.Config, pairs: Sequence[tuple[str, str]]) -> None:
    """Move no-data day files aside and forget their listing, so the terminal is asked again; the
    ledger keeps `no_data` until the new outcome arrives."""
    from spx_data.archive.verify import quarantine

    for ds, day in pairs:
        quarantine(cfg, ds, day, reason="re-check of a no-data day")
    for day in {d for _, d in pairs}:
        cfg.layout.listing(day).unlink(missing_ok=True)


def cmd_verify(args: argparse.Namespace) -> int:
    from spx_data.archive import verify
    from spx_data.ledger import rebuild

    cfg = config(args, writable=args.repair)
    checked = verify.count_archived(cfg)
    lines, quarantined = [], {}
    with open_ledger(cfg) as ledger:
        problems = verify.verify_archive(cfg, ledger)
        for p in problems:
            # Problems from the file checks already start with the path.
            lines.append(
                f"BAD {p.problem}" if p.problem.startswith(str(p.path)) else f"BAD {p.path}: {p.problem}"
            )
        if args.repair:
            files_bad = {(p.dataset, p.day) for p in problems if not p.ledger_only}
            for ds, day in sorted({(p.dataset, p.day) for p in problems} - files_bad):
                row = rebuild.set_from_archive(ledger, cfg.layout, ds, day)
                lines.append(f"ledger fixed from the files: {ds} {day} sha256 {row.sha256}")
            for ds, day in sorted(files_bad):
                dest = verify.quarantine(cfg, ds, day, reason="failed verify")
                ledger.set_status(ds, day, "failed", error_class="Quarantined", error=f"moved to {dest}")
                quarantined[f"{ds} {day}"] = str(dest)
                lines.append(f"quarantined {ds} {day} → {dest}")
    lines.append(
        f"verified {checked} files: {len(problems)} problem(s)" + (" (repaired)" if args.repair else "")
    )
    data = {
        "verified": checked,
        "problems": [
            {"dataset": p.dataset, "day": p.day, "path": str(p.path), "problem": p.problem} for p in problems
        ],
        "quarantined": quarantined,
    }
    _emit(args, data, "\n".join(lines))
    return FAILED if problems and not args.repair else OK


def cmd_quality(args: argparse.Namespace) -> int:
    from spx_data.ops import quality

    cfg = config(args)
    since = args.since and args.since.isoformat()
    with open_ledger(cfg) as ledger:
        if args.recompute:
            n = quality.recompute(cfg, ledger, args.dataset, since)
            print(f"recomputed the quality of {n} archived files (ledger rows only; no archive file written)")
        else:
            quality.day_level(cfg, ledger)
        days = quality.summary(ledger.quality(dataset=args.dataset, since=since), args.flagged)
    _emit(args, days, quality.text(days))
    return OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from spx_data.ops import doctor

    cfg = config(args, writable=False)
    results = doctor.run_checks(cfg)
    for r in results:
        print(f"{'✓' if r.ok else '✗'} {r.name}: {r.detail}" + ("" if r.ok else f"  → {r.fix}"))
    print(doctor.PROBE_HINT)
    if any(r.name == doctor.REACHABLE and not r.ok for r in results):
        return UNREACHABLE
    return OK if all(r.ok for r in results) else FAILED


def cmd_probe(args: argparse.Namespace) -> int:
    from spx_data.ops import probe

    return OK if probe.main(config(args)) else FAILED


def cmd_ledger(args: argparse.Namespace) -> int:
    cfg = config(args)
    from spx_data.ledger import rebuild
    from spx_data.ledger.store import Ledger

    if args.action == "rebuild":
        with open_ledger(cfg) as ledger:  # outcome events first, so the files have the last word
            n = rebuild.rebuild_from_archive(ledger, cfg.layout, cfg.datasets, cfg.quality)
        print(f"rebuilt the days of {cfg.ledger} from {n} archived files (run and request history kept)")
        return OK
    with Ledger(cfg.ledger, cfg.archive) as ledger:
        n = ledger.sync(cfg.layout.outcomes())
        resolved = ledger.resolve_dead_runs()
    print(f"mirrored {n} outcome events; {resolved} interrupted day(s) resolved")
    return OK


def cmd_report(args: argparse.Namespace) -> int:
    from spx_data.ops import html_report

    if args.output is not None and args.output.is_dir():
        raise Exit(USAGE, f"--output {args.output}: is a folder; give a file name such as report.html")
    cfg = config(args)
    with open_ledger(cfg):  # mirror pending outcome events first, as every reader does
        pass
    print(html_report.write(cfg, args.output, config_file=args.config_file))
    return OK


def cmd_demo(args: argparse.Namespace) -> int:
    from spx_data.ops import demo

    return demo.run(args)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    overrides = _Parser(add_help=False)
    overrides.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    common = _Parser(add_help=False, parents=[overrides])
    common.add_argument(
        "-d", "--directory", type=Path, help="the project folder (default: the current one), as for snakemake"
    )
    common.add_argument("--config-file", type=Path, help="default: config/config.yaml in the project")
    js = _Parser(add_help=False)
    js.add_argument("--json", action="store_true", help="machine-readable output")

    p = _Parser(prog="spx-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"spx-data {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("config", parents=[common, js], help="show or set config values (validated)")
    c.add_argument("action", choices=["show", "set"])
    c.add_argument("key", nargs="?")
    c.add_argument("value", nargs="?")
    c.set_defaults(func=cmd_config)

    sub.add_parser(
        "doctor", parents=[common], help="check terminal, permissions, disk, calendar"
    ).set_defaults(func=cmd_doctor)

    sub.add_parser(
        "probe", parents=[common], help="a one-minute check that the terminal answers as the archive assumes"
    ).set_defaults(func=cmd_probe)

    g = sub.add_parser("gaps", parents=[common, js], help="missing sessions, grouped, with an estimate")
    g.add_argument("--dataset")
    g.add_argument("--since", type=_date)
    g.set_defaults(func=cmd_gaps)

    run_opts = _Parser(add_help=False)
    run_opts.add_argument(
        "--cores",
        type=_cores,
        help="jobs at once (default 4); with --profile: CPUs per cluster job (default: the profile's)",
    )
    run_opts.add_argument(
        "--profile",
        help="run on a cluster (the project's profiles/NAME, e.g. slurm; see profiles/README.md)",
    )
    run_opts.add_argument("--ignore-disk", action="store_true", help="skip the free-disk preflight")

    r = sub.add_parser("run", parents=[common, run_opts], help="fill every gap through Snakemake")
    r.add_argument("--from", dest="from_", type=_date)
    r.add_argument("--to", type=_date)
    r.add_argument("--dataset")
    r.add_argument("--newest-first", action="store_true", help="work month by month from the newest")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", parents=[common, js], help="counts by status, sizes, last run")
    s.add_argument("--calendar", action="store_true", help="month-by-month coverage grid")
    s.set_defaults(func=cmd_status)

    li = sub.add_parser("list", parents=[common, js], help="one line per (dataset, day)")
    li.add_argument("--failed-only", action="store_true")
    li.add_argument("--status", choices=["queued", "processing", "success", "failed", "no_data"])
    li.add_argument("--dataset")
    li.add_argument("--since", type=_date)
    li.set_defaults(func=cmd_list)

    rt = sub.add_parser("retry", parents=[common, run_opts], help="re-run failed (or given) days")
    what = rt.add_mutually_exclusive_group(required=True)
    what.add_argument("--all-failed", action="store_true")
    what.add_argument("--no-data", action="store_true", help="re-check days the vendor had nothing for")
    what.add_argument("dates", nargs="*", type=_date, default=[])
    rt.add_argument("--dataset")
    rt.set_defaults(func=cmd_retry)

    v = sub.add_parser("verify", parents=[common, js], help="re-hash and re-validate the archive")
    v.add_argument("--repair", action="store_true", help="quarantine bad files so the next run re-fetches")
    v.set_defaults(func=cmd_verify)

    q = sub.add_parser("quality", parents=[common, js], help="per-day quality scores and flags")
    q.add_argument("--dataset")
    q.add_argument("--since", type=_date)
    q.add_argument("--flagged", action="store_true", help="only day-files with a flagged metric")
    q.add_argument(
        "--recompute", action="store_true", help="recompute from the archived files (writes ledger rows only)"
    )
    q.set_defaults(func=cmd_quality)

    le = sub.add_parser("ledger", parents=[common], help="mirror outcomes now, or rebuild from the archive")
    le.add_argument("action", choices=["sync", "rebuild"])
    le.set_defaults(func=cmd_ledger)

    rp = sub.add_parser("report", parents=[common], help="write the HTML report page; prints its path")
    rp.add_argument("--output", type=Path, help="default: report.html beside the ledger")
    rp.set_defaults(func=cmd_report)

    sub.add_parser("sim", help="start the terminal simulator (spx-data sim --help)", add_help=False)

    d = sub.add_parser("demo", parents=[overrides, run_opts], help="archive 10 sessions from the simulator")
    d.add_argument("--dir", type=Path, default=None, help="the demo's own project folder (default: demo)")
    d.add_argument("--chain", default="tiny", help="simulator chain size")
    d.add_argument("--faults", type=float, default=0.0, help="simulator fault rate per class")
    d.set_defaults(func=cmd_demo)

    for name in ("gaps", "list", "quality"):
        sub.choices[name].set_defaults(dataset=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:  # the simulator owns its options (argparse's REMAINDER drops a leading --x)
        from spx_data.sim.server import main as sim_main

        return sim_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "dataset", None) is not None:
            from spx_data.core.paths import check_dataset

            try:
                check_dataset(args.dataset)
            except ValueError as e:
                raise Exit(USAGE, f"--dataset: {e}") from None
        if args.command != "demo":  # the demo makes its own project folder
            locate(args)
        return int(args.func(args))
    except project.NotAProject as e:
        print(f"spx-data: {e}", file=sys.stderr)
        return USAGE
    except Exit as e:
        if e.args[0]:
            print(e.args[0], file=sys.stderr)
        return e.code
    except ConfigError as e:
        print(f"spx-data: config: {e}", file=sys.stderr)
        return USAGE
    except TerminalUnreachable as e:
        print(f"spx-data: {e}", file=sys.stderr)
        return UNREACHABLE
    except SpxDataError as e:
        print(f"spx-data: {e}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("spx-data: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # e.g. `spx-data list | head`: the reader has gone; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except sqlite3.Error as e:  # e.g. a full disk under the ledger
        print(f"spx-data: ledger: {e} (check free disk space and permissions where the ledger lives)",
              file=sys.stderr)  # fmt: skip
        return FAILED
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"spx-data:{where}: {e.strerror or e}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
