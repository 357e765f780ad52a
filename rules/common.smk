# Configuration and the gap plan, computed once per Snakefile parse. Only days whose parquet or sidecar
# is missing enter the DAG (docs/DESIGN.md §2); finished days cost two stats each.
import atexit
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from spx_data.core import config as spx_config
from spx_data.ledger import store as spx_ledger
from spx_data.core import datasets
from spx_data.plan import listing
from spx_data.archive import migrate
from spx_data.core import outcomes
from spx_data.plan import targets as plan
from spx_data.ops import jobs, runner, scheduling
from spx_data.ops import report as operator_report  # `report` is Snakemake's own report() in rules
from spx_data.core.errors import ConfigError, SpxDataError

try:
    # `snakemake -n` inspects read-only archives too; onstart checks a real run can write.
    CFG = spx_config.load(config, writable=False)
    spx_ledger.check_archive(CFG.ledger, CFG.archive)  # another archive's outcomes never mix in
except ConfigError as e:
    sys.exit(f"spx-data: config: {e}")
except SpxDataError as e:
    sys.exit(f"spx-data: {e}")

LAYOUT = CFG.layout
# One setting for the tier: `api_concurrency` (+ `queued_requests` waiting in the terminal's queue) caps
# requests in flight for plain `snakemake` as well; `--resources api=N` still overrides it for one run.
if "api" not in workflow.global_resources:
    workflow.register_resource("api", CFG.requests_in_flight)
PLAN = plan.build(CFG)
# Snakemake learns of a dry run only after parsing; its command line says so before.
DRY_RUN = runner.is_dry_run(sys.argv)
if workflow.is_main_process and DRY_RUN:
    # After Snakemake's job stats: the gaps as `spx-data gaps` shows them, not one block per job.
    atexit.register(
        lambda: print(
            operator_report.gaps_text(CFG, operator_report.gaps(CFG, spx_ledger.read_days(CFG.ledger)))
        )
    )
elif workflow.is_main_process:
    try:  # a writing run renames sidecars of the legacy name; a read-only archive keeps them
        migrate.rename_legacy_sidecars(LAYOUT, CFG.datasets)
    except PermissionError:
        pass
# One id per run, inherited by every job process through the environment.
os.environ.setdefault(
    outcomes.RUN_ID_ENV, f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}"
)
RUN_ID = os.environ[outcomes.RUN_ID_ENV]
# Jobs run the interpreter of the environment they are deployed in: `python` of envs/ under `--sdm conda`,
# else the one running Snakemake (a .venv's works without activating it, where plain `python` may not).
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    PY = "python"
else:
    PY = shlex.quote(sys.executable)


def job(step: str) -> str:
    """The command line of a scripts/ entry point, up to the step's own arguments."""
    script = shlex.quote(os.path.join(workflow.basedir, "scripts", f"{step}.py"))
    return f"{PY} {script} --archive {shlex.quote(str(CFG.archive))} --work {shlex.quote(str(CFG.work))}"


LOGS = CFG.work / "logs"
INDEX_DATASETS = [ds for ds in CFG.datasets if datasets.get(ds).index]
ALL_TARGETS = [
    str(path)
    for ds, days in PLAN.missing.items()
    for day in days
    for path in (LAYOUT.parquet(ds, day), LAYOUT.sidecar(ds, day))
]


wildcard_constraints:
    dataset="|".join(CFG.datasets),
    day=r"\d{4}-\d{2}-\d{2}",
    symbol="|".join(CFG.symbols),
    expiration=r"\d{4}-\d{2}-\d{2}",
    index_symbol="|".join(CFG.index_symbols),


def api_cap() -> int:
    """The listing step's share of the run-wide `api` cap: all of it, never more than the profile gives."""
    cap = workflow.global_resources.get("api")
    cap = getattr(cap, "value", cap)
    return min(CFG.requests_in_flight, cap) if isinstance(cap, int) else CFG.requests_in_flight


def run_listing(marker: str, log: str) -> None:
    from spx_data.fetch.client import ThetaClient
    from spx_data.fetch.retry import RetryPolicy

    failures = listing.list_days(
        PLAN.unlisted, LAYOUT.listing, lambda: ThetaClient(CFG.terminal_url, RetryPolicy.from_config(CFG.retry)), api_cap(),
        traded=any(datasets.get(ds).trade_derived for ds in CFG.datasets), work=CFG.work,
    )  # fmt: skip
    with open(log, "w") as f:
        json.dump({"listed": len(PLAN.unlisted) - len(failures), "failed": failures}, f, indent=1)
    listing.write_failures(failures, LAYOUT.listing, Path(log).resolve())
    with open(marker, "w") as f:
        json.dump(sorted(PLAN.unlisted), f)


PRIORITY = scheduling.day_priorities(day for days in PLAN.missing.values() for day in days)


def fetch_priority(w) -> int:
    return PRIORITY.get(w.day, 0)


def assemble_priority(w) -> int:
    """Above every fetch: a day whose answers are all in is assembled before more is downloaded."""
    return len(PRIORITY) + PRIORITY.get(w.day, 0)


def run_fetch(wildcards, output, log, symbol: str, expiration: str | None) -> None:
    """A fetch job's body (rules/fetch.smk), run in a thread of this process."""
    jobs.fetch_in_thread(
        log[0], archive=str(CFG.archive), work=str(CFG.work), dataset=wildcards.dataset, day=wildcards.day,
        symbol=symbol, expiration=expiration, out=output[0], url=CFG.terminal_url, interval=CFG.interval,
        retry=json.dumps(dict(CFG.retry)), greeks=json.dumps(vars(CFG.greeks)),
    )  # fmt: skip


def day_listing(day: str) -> listing.Listing | None:
    """The day's listing; waits for the listing step when the day had none at parse time."""
    if day in PLAN.unlisted:
        checkpoints.list_contracts.get()
    return listing.read(LAYOUT.listing(day))


def assemble_inputs(w) -> dict[str, object]:
    if datasets.get(w.dataset).index:  # one answer per index symbol, no listing
        return {"ndjson": [str(LAYOUT.ndjson(w.dataset, w.day, s)) for s in CFG.index_symbols]}
    found = day_listing(w.day)
    if found is None:  # the listing failed: the job records why and fails; the next run asks again
        return {}
    return {
        "listing": str(LAYOUT.listing(w.day)),
        "ndjson": [
            str(LAYOUT.ndjson(w.dataset, w.day, s, e)) for s, e, _ in found.select(CFG.symbols, CFG.max_dte)
        ],
    }


def assemble_symbols(w) -> str:
    return ",".join(CFG.index_symbols if datasets.get(w.dataset).index else CFG.symbols)


def mirror_ledger(ok: bool | None) -> None:
    from spx_data.ledger.store import Ledger

    if ok is not None:
        outcomes.write_event(LAYOUT.outcomes(), "run_end", ok=ok)
        LAYOUT.listing_marker(RUN_ID).unlink(missing_ok=True)  # the listing step's, not a cache
    with Ledger(CFG.ledger, CFG.archive) as ledger:
        ledger.refresh(LAYOUT.outcomes())
        if ok is not None:  # the run's day-files against their trailing sessions (ledger and footers only)
            from spx_data.ops import quality

            quality.day_level(CFG, ledger, PLAN.pairs())


def refresh_report() -> None:
    """Redraw report.html beside the ledger (the end of every run); never fails the run."""
    from spx_data.ops import html_report

    configfiles = workflow.overwrite_configfiles
    html_report.refresh(CFG, config_file=Path(configfiles[-1]) if configfiles else None)


def draw_report_figures(folder: str, log: str) -> None:
    from spx_data.ops import html_report

    written = html_report.write_figures(CFG, Path(folder))
    Path(log).write_text("".join(f"{p}\n" for p in written))
