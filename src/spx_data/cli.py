"""`spx-data`: the operator's command line over the same plan, ledger and Snakemake workflow.

Exit codes: 0 ok; 1 some days failed (or verify found bad files); 2 usage or config error;
3 terminal unreachable; 4 not enough free disk; 5 another run holds the workflow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from spx_data import __version__, outage
from spx_data import config as config_mod
from spx_data.errors import ConfigError, SpxDataError, TerminalUnreachable

OK, FAILED, USAGE, UNREACHABLE, NO_DISK, BUSY = 0, 1, 2, 3, 4, 5


class Exit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the whole usage
        raise Exit(USAGE, f"{self.prog}: {message} (see --help)")


# ---------------------------------------------------------------- config and shared plumbing


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: not a date (YYYY-MM-DD)") from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides from the command line, in config-key form (passed on to Snakemake as is)."""
    out: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise Exit(USAGE, f"--set {item}: expected KEY=VALUE")
        out[key] = value
    if getattr(args, "from_", None):
        out["start_date"] = args.from_.isoformat()
    if getattr(args, "to", None):
        out["end_date"] = args.to.isoformat()
    if getattr(args, "dataset", None):
        out["datasets"] = [args.dataset]
    return out


def _raw_config(args: argparse.Namespace) -> dict[str, Any]:
    raw = config_mod.read_yaml(args.config_file)
    for key, value in _overrides(args).items():
        if key == "retry" and isinstance(value, str):
            raise Exit(USAGE, "--set retry: set retry.KEY=VALUE one at a time")
        if key.startswith("retry."):
            raw.setdefault("retry", {})[key.split(".", 1)[1]] = value
        else:
            raw[key] = value
    return raw


def _config(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(_raw_config(args), base=config_mod.PROJECT_DIR)


def _snakemake_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = _overrides(args)
    retry = {k.split(".", 1)[1]: v for k, v in out.items() if k.startswith("retry.")}
    out = {k: v for k, v in out.items() if not k.startswith("retry.")}
    if retry:
        out["retry"] = retry
    return out


def _ledger(cfg: config_mod.Config) -> Any:
    from spx_data.ledger import Ledger

    ledger = Ledger(cfg.ledger)
    ledger.refresh(cfg.layout.outcomes())
    return ledger


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=1, default=str) if getattr(args, "json", False) else text)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


# ---------------------------------------------------------------- commands


def cmd_config(args: argparse.Namespace) -> int:
    from spx_data import configedit

    if args.action == "show":
        cfg = _config(args)
        data = {k: (str(v) if isinstance(v, Path | dt.date) else v) for k, v in vars(cfg).items()}
        text = args.config_file.read_text() + f"\n# effective range: {cfg.start} .. {cfg.end}"
        _emit(args, data, text)
        return OK
    if args.key is None or args.value is None:
        raise Exit(USAGE, "spx-data config set: needs KEY VALUE")
    configedit.set_value(args.config_file, args.key, args.value)
    print(f"{args.key} = {args.value}")
    return OK


def cmd_gaps(args: argparse.Namespace) -> int:
    from spx_data import report

    cfg = _config(args)
    with _ledger(cfg) as ledger:
        gaps = report.gaps(cfg, ledger, since=args.since, dataset=args.dataset)
    data = gaps.as_dict(cfg)
    lines = [f"range {cfg.start} .. {cfg.end}: {len(gaps.plan.sessions)} sessions"]
    labels = {"never_fetched": "never fetched", "failed": "failed", "no_data": "no data (not a gap)"}
    for ds, kinds in data["datasets"].items():
        n = len(kinds["never_fetched"]["days"]) + len(kinds["failed"]["days"])
        lines.append(f"{ds}: {n} missing")
        for kind, entry in kinds.items():
            for first, last, count in entry["ranges"]:
                span = first if first == last else f"{first} .. {last}"
                # A failed range shows its first day's error (one failed listing fails them all).
                cause = gaps.errors.get((ds, first)) if kind == "failed" else None
                extra = "" if cause is None else f"  {'' if first == last else first + ': '}{cause}"
                lines.append(f"  {labels[kind]:<20} {span} ({count} session{'s' * (count != 1)}){extra}")
    est = data["estimate"]
    lines.append(
        f"estimate: {est['requests']:,} requests, {est['rows']:,} rows, "
        f"{_human_bytes(est['disk_bytes'])} disk, {est['seconds'] / 3600:.1f} h"
    )
    _emit(args, data, "\n".join(lines))
    return OK


def cmd_status(args: argparse.Namespace) -> int:
    from spx_data import report

    cfg = _config(args)
    with _ledger(cfg) as ledger:
        data = report.status(cfg, ledger)
        grid = _calendar_grid(cfg, ledger) if args.calendar else ""
    lines = []
    for ds, d in data["datasets"].items():
        counts = ", ".join(f"{k} {v}" for k, v in sorted(d["counts"].items())) or "nothing yet"
        lines.append(
            f"{ds}: {counts}; {d['rows']:,} rows, {_human_bytes(d['archive_bytes'])}; newest {d['newest']}"
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
    _emit(args, data, "\n".join(lines) + ("\n" + grid if grid else ""))
    return OK


_CELLS = {"success": ("#", "32"), "no_data": ("o", "90"), "failed": ("X", "31"), None: (".", "33")}


def _calendar_grid(cfg: config_mod.Config, ledger: Any) -> str:
    """Month by month, one cell per session: # success, o no data, X failed, . missing."""
    rows = {(r.dataset, r.day): r.status for r in ledger.days()}
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
    cfg = _config(args)
    status = "failed" if args.failed_only else args.status
    with _ledger(cfg) as ledger:
        rows = ledger.days(dataset=args.dataset, status=status, since=args.since and args.since.isoformat())
    data = [vars(r) if hasattr(r, "__dict__") else r._asdict() for r in rows]
    text = "\n".join(
        f"{r.dataset:<20} {r.day} {r.status:<10} attempts {r.attempts:>2}  rows {r.rows or 0:>11,}  "
        f"{_human_bytes(r.bytes or 0):>9}  {r.seconds or 0:>7.1f} s"
        + (f"  {r.error_class}: {r.last_error}" if r.status == "failed" else "")
        + (f"  ({r.note})" if r.note and r.status != "failed" else "")
        for r in rows
    )
    _emit(args, data, text or "nothing matches")
    return OK


def _run(args: argparse.Namespace, overrides: dict[str, Any], targets: Sequence[str] = ()) -> int:
    """Preflight, then plain Snakemake with the project profile; 0 only if every planned day ended well."""
    from spx_data import estimate, plan, runner

    raw = _raw_config(args)
    for key, value in overrides.items():
        raw[key] = value
    cfg = config_mod.load(raw, base=config_mod.PROJECT_DIR)
    project = config_mod.PROJECT_DIR
    if busy := runner.snakemake_pids(project, args.config_file):
        raise Exit(
            BUSY,
            f"another Snakemake run of {args.config_file} works in {project} (pid {busy[0]}); "
            "wait for it or stop it",
        )
    _require_terminal(cfg)
    the_plan = plan.build(cfg)
    pairs = the_plan.pairs()
    if targets:
        wanted = set(targets)
        pairs = [(ds, d) for ds, d in pairs if str(cfg.layout.parquet(ds, d)) in wanted]
    if not pairs:
        print(f"nothing to do: every session {cfg.start} .. {cfg.end} is archived")
        return OK
    need = estimate.estimate(cfg, pairs).disk_bytes
    free = _free_bytes(cfg.archive)
    if free < need and not args.ignore_disk:
        raise Exit(
            NO_DISK,
            f"free disk {_human_bytes(free)} at {cfg.archive} is below the estimated need "
            f"{_human_bytes(need)}"
            " (free space or pass --ignore-disk)",
        )
    all_overrides = {**_snakemake_overrides(args), **overrides}
    base = runner.snakemake_command(args.cores, all_overrides, configfile=args.config_file)
    if runner.unlock_if_stale(project, base):
        print("removed a stale Snakemake lock (no Snakemake process held it)")
    cmd = runner.snakemake_command(
        args.cores, all_overrides, configfile=args.config_file, targets=targets,
        extra=["--rerun-incomplete", "--keep-going", "--resources", f"api={cfg.api_concurrency}"],
    )  # fmt: skip
    print(
        f"{len(pairs)} day-files to archive ({cfg.start} .. {cfg.end}); snakemake log in {cfg.work / 'logs'}"
    )
    progress = runner.Progress(set(pairs))
    log = cfg.work / "logs" / f"snakemake-{dt.datetime.now():%Y%m%dT%H%M%S}.log"
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    code = runner.run_snakemake(
        cmd, project, cfg.layout.outcomes(), progress, log, run_id=run_id, work=cfg.work
    )
    outage.check(cfg.work, run_id)  # the terminal went away for good: one line, exit 3
    with _ledger(cfg) as ledger:
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
    if code != 0 and not bad:
        print(f"snakemake exited {code}; see {log}")
        return FAILED
    return FAILED if bad else OK


def _require_terminal(cfg: config_mod.Config) -> None:
    import requests

    from spx_data.retry import fatal_error

    url = f"{cfg.terminal_url}/v3/terminal/mdds/status"
    try:
        resp = requests.get(url, timeout=(3, 10))
    except requests.RequestException as e:
        raise TerminalUnreachable(
            f"no terminal answers at {cfg.terminal_url} ({type(e).__name__}); start ThetaTerminal, or "
            "`spx-data sim` for the simulator"
        ) from None
    if resp.status_code != 200:  # it answers, but refuses: 476 is a host-string mix-up, and so on
        raise fatal_error(resp.status_code, url, resp.text[:200].strip())


def cmd_run(args: argparse.Namespace) -> int:
    if args.newest_first:
        return _run_newest_first(args)
    return _run(args, {})


def _run_newest_first(args: argparse.Namespace) -> int:
    """Month by month from the newest: the recent past is usable before the backfill ends."""
    cfg = _config(args)
    months = sorted({(s.day.year, s.day.month) for s in cfg.sessions()}, reverse=True)
    worst = OK
    for year, month in months:
        sessions = [s.day for s in cfg.sessions() if (s.day.year, s.day.month) == (year, month)]
        code = _run(args, {"start_date": sessions[0].isoformat(), "end_date": sessions[-1].isoformat()})
        worst = max(worst, code)
    return worst


def cmd_retry(args: argparse.Namespace) -> int:
    cfg = _config(args)
    with _ledger(cfg) as ledger:
        if args.all_failed:
            days = sorted({r.day for r in ledger.days(dataset=args.dataset, status="failed")})
        elif args.no_data:
            days = sorted({r.day for r in ledger.days(dataset=args.dataset, status="no_data")})
        else:
            days = sorted({d.isoformat() for d in args.dates})
        if not days:
            print("nothing to retry")
            return OK
        datasets = [args.dataset] if args.dataset else list(cfg.datasets)
        if args.no_data:
            _requeue_no_data(cfg, ledger, datasets, days)
    targets = [str(cfg.layout.parquet(ds, d)) for ds in datasets for d in days]
    return _run(args, {"start_date": days[0], "end_date": days[-1], "datasets": datasets}, targets)


def _requeue_no_data(
    cfg: config_mod.Config, ledger: Any, datasets: Sequence[str], days: Sequence[str]
) -> None:
    """Move no-data day files aside and forget their listing, so the terminal is asked again."""
    from spx_data.verify import quarantine

    for ds in datasets:
        for day in days:
            quarantine(cfg, ds, day, reason="re-check of a no-data day")
            ledger.set_status(ds, day, "queued")
    for day in days:
        cfg.layout.listing(day).unlink(missing_ok=True)


def cmd_verify(args: argparse.Namespace) -> int:
    from spx_data import verify

    cfg = _config(args)
    checked = verify.count_archived(cfg)
    lines, quarantined = [], {}
    with _ledger(cfg) as ledger:
        problems = verify.verify_archive(cfg, ledger)
        for p in problems:
            # Problems from the file checks already start with the path.
            lines.append(
                f"BAD {p.problem}" if p.problem.startswith(str(p.path)) else f"BAD {p.path}: {p.problem}"
            )
        if args.repair:
            for ds, day in sorted({(p.dataset, p.day) for p in problems}):
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


def cmd_doctor(args: argparse.Namespace) -> int:
    from spx_data import doctor

    cfg = _config(args)
    results = doctor.run_checks(cfg)
    for r in results:
        print(f"{'✓' if r.ok else '✗'} {r.name}: {r.detail}" + ("" if r.ok else f"  → {r.fix}"))
    print(doctor.PROBE_HINT)
    if any(r.name == doctor.REACHABLE and not r.ok for r in results):
        return UNREACHABLE
    return OK if all(r.ok for r in results) else FAILED


def cmd_probe(args: argparse.Namespace) -> int:
    from spx_data import probe

    return OK if probe.main(_config(args)) else FAILED


def cmd_ledger(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from spx_data.ledger import Ledger

    if args.action == "rebuild":
        cfg.ledger.unlink(missing_ok=True)
        with Ledger(cfg.ledger) as ledger:
            n = ledger.rebuild_from_archive(cfg.archive, cfg.datasets)
        print(f"rebuilt {cfg.ledger} from {n} archived files")
        return OK
    with Ledger(cfg.ledger) as ledger:
        n = ledger.sync(cfg.layout.outcomes())
        resolved = ledger.resolve_dead_runs()
    print(f"mirrored {n} outcome events; {resolved} interrupted day(s) resolved")
    return OK


def cmd_demo(args: argparse.Namespace) -> int:
    from spx_data import demo

    return demo.run(args)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config-file", type=Path, default=config_mod.DEFAULT_CONFIG, help="default: config/config.yaml"
    )
    common.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
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
    run_opts.add_argument("--cores", type=int, default=4)
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

    le = sub.add_parser("ledger", parents=[common], help="mirror outcomes now, or rebuild from the archive")
    le.add_argument("action", choices=["sync", "rebuild"])
    le.set_defaults(func=cmd_ledger)

    sub.add_parser("sim", help="start the terminal simulator (spx-data sim --help)", add_help=False)

    d = sub.add_parser("demo", parents=[common, run_opts], help="archive 10 sessions from the simulator")
    d.add_argument("--dir", type=Path, default=Path("demo"), help="where the demo archive goes")
    d.add_argument("--chain", default="tiny", help="simulator chain size")
    d.add_argument("--faults", type=float, default=0.0, help="simulator fault rate per class")
    d.set_defaults(func=cmd_demo)

    for name in ("gaps", "list"):
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
            from spx_data.paths import check_dataset

            try:
                check_dataset(args.dataset)
            except ValueError as e:
                raise Exit(USAGE, f"--dataset: {e}") from None
        return int(args.func(args))
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


if __name__ == "__main__":
    sys.exit(main())
