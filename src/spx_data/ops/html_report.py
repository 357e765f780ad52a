"""`spx-data report`: one self-contained HTML page of coverage, size, runs, failures, terminal and disk.

Read from the ledger (read-only), the cached listings and the disk; charts are matplotlib SVG inlined in
the page, so it opens from disk with no network. Numbers a test or a script may want to read carry
`data-value` attributes. matplotlib is imported here only, so other commands stay fast.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import logging
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spx_data import __version__
from spx_data.core import atomic, datasets, project
from spx_data.core.config import Config
from spx_data.core.humane import human_bytes, human_seconds
from spx_data.core.paths import free_bytes
from spx_data.ledger.store import SCHEMA_VERSION
from spx_data.ops import estimate
from spx_data.plan import listing
from spx_data.plan import targets as plan

if TYPE_CHECKING:
    from spx_data.ops.runner import Progress

log = logging.getLogger(__name__)

FILE_NAME = "report.html"
LIVE_REFRESH_S = 5  # how often an open tab reloads, and the shortest gap between two live writes
FAILURES_SHOWN = 200  # rows of the failures table; the rest are one `retry --all-failed` away
RUNS_SHOWN = 12  # rows of the runs table (the chart has up to 200)

# Coverage classes, in legend order. "flagged" is an archived day the quality checks flagged.
COVERAGE = {
    "archived": "#2e9d4e",
    "flagged": "#8e44ad",
    "no_data": "#b8b8b8",
    "failed": "#d7301f",
    "in_progress": "#3b82c4",
    "missing": "#f2d49b",
}
_LABELS = {"no_data": "no data", "in_progress": "in progress"}
_DAY_CLASS = {"success": "archived", "no_data": "no_data", "failed": "failed"}


def default_path(cfg: Config) -> Path:
    """Beside the ledger: one page per project."""
    return cfg.ledger.with_name(FILE_NAME)


@dataclass(frozen=True)
class Live:
    """The current run as `spx-data run` follows it: shown with its ETA, and the page reloads itself."""

    planned: int
    done: dict[tuple[str, str], str]  # (dataset, day) -> assemble status so far
    rows: int
    elapsed_s: float
    eta_s: float | None


# ---------------------------------------------------------------- data


@dataclass
class Data:
    days: dict[tuple[str, str], tuple[Any, ...]]  # (dataset, day) -> the days row
    flagged: set[tuple[str, str]]
    runs: list[dict[str, Any]]  # oldest first
    requests_by_code: list[tuple[Any, str, int]]  # (http_status, status, count)
    retries: int
    latencies: list[float]
    last_run_requests: tuple[str | None, list[tuple[str, float]]]  # run_id, [(finished at, seconds)]
    schema_version: str
    listings: dict[str, tuple[int, int]]  # day -> (expirations, contracts)


_DAY_FIELDS = "dataset, day, status, attempts, rows, bytes, seconds, error_class, last_error, updated"


def read(cfg: Config) -> Data:
    """Everything the page shows, in a few queries (a 2,500-session ledger answers in well under 1 s)."""
    with closing(sqlite3.connect(f"file:{cfg.ledger}?mode=ro", uri=True)) as db:
        days = {(r[0], r[1]): r for r in db.execute(f"SELECT {_DAY_FIELDS} FROM days")}
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # The quality checks (issue 13) keep one row per (dataset, day, metric) with a flag column.
        flagged = (
            set(db.execute("SELECT DISTINCT dataset, day FROM quality WHERE flag"))
            if "quality" in tables
            else set()
        )
        runs = _dicts(
            db,
            "SELECT r.run_id, r.started, r.finished, r.status, r.planned, "
            "coalesce(sum(a.status IN ('success', 'no_data')), 0) AS archived, "
            "coalesce(sum(CASE WHEN a.status = 'success' THEN a.rows END), 0) AS rows, "
            "coalesce(sum(a.status = 'failed'), 0) AS failed "
            "FROM runs r LEFT JOIN attempts a ON a.run_id = r.run_id GROUP BY r.run_id ORDER BY r.started",
        )
        by_code = db.execute(
            "SELECT http_status, status, count(*) FROM requests GROUP BY http_status, status "
            "ORDER BY count(*) DESC"
        ).fetchall()
        retries = db.execute("SELECT coalesce(sum(max(attempts - 1, 0)), 0) FROM requests").fetchone()[0]
        latencies = [s for (s,) in db.execute("SELECT seconds FROM requests WHERE seconds IS NOT NULL")]
        last = db.execute("SELECT run_id FROM requests ORDER BY at DESC LIMIT 1").fetchone()
        last_run = last[0] if last else None
        timeline = db.execute(
            "SELECT at, coalesce(seconds, 0) FROM requests WHERE run_id IS ? AND at IS NOT NULL", (last_run,)
        ).fetchall()
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    _add_run_numbers(runs)
    return Data(
        days, flagged, runs, by_code, retries, latencies, (last_run, timeline),
        version[0] if version else "?", _listings(cfg, {day for _, day in days}),
    )  # fmt: skip


def _dicts(db: sqlite3.Connection, sql: str) -> list[dict[str, Any]]:
    cursor = db.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _listings(cfg: Config, days: Iterable[str]) -> dict[str, tuple[int, int]]:
    """day -> (expirations, contracts) the config selects, from the cached listings."""
    out = {}
    for day in days:
        found = listing.read(cfg.layout.listing(day))
        if found is not None and not found.no_data:
            chosen = found.select(cfg.symbols, cfg.max_dte)
            out[day] = (len(chosen), sum(n for *_, n in chosen))
    return out


def coverage(cfg: Config, data: Data, live: Live | None) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Sessions shown (the config's range plus any day the ledger knows) and dataset -> day -> class."""
    days = sorted({s.day.isoformat() for s in cfg.sessions()} | {d for _, d in data.days})
    names = list(dict.fromkeys([*cfg.datasets, *sorted({ds for ds, _ in data.days})]))
    done = live.done if live else {}
    out: dict[str, dict[str, str]] = {}
    for ds in names:
        classes = {}
        for day in days:
            status = done.get((ds, day)) or (row[2] if (row := data.days.get((ds, day))) else None)
            cls = _DAY_CLASS.get(status or "", "in_progress" if status and live else "missing")
            if cls == "archived" and (ds, day) in data.flagged:
                cls = "flagged"
            classes[day] = cls
        out[ds] = classes
    return days, out


# ---------------------------------------------------------------- charts


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.fonttype": "none",  # text stays text: a fraction of the bytes of glyph outlines
        "svg.hashsalt": "spx-data",  # the same ledger draws the same bytes
        "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
        "axes.titlesize": 10, "axes.titleweight": "bold", "axes.titlelocation": "left",
    })  # fmt: skip
    return plt


def _svg(fig: Any, prefix: str) -> str:
    """The figure as an inline <svg>; ids get a per-figure prefix so clip paths never collide."""
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    _pyplot().close(fig)
    text = out.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r'(id="|url\(#|href="#)', rf"\g<1>{prefix}-", text)


def heatmap_svg(days: Sequence[str], classes: dict[str, dict[str, str]]) -> str:
    """Years as rows, one column per weekday of the year; a run of equal cells is one rectangle and
    every class one path, so 2,500 sessions x 2 datasets stay a few kB."""
    plt = _pyplot()
    from matplotlib.patches import Patch, PathPatch
    from matplotlib.path import Path as MPath

    dates = [dt.date.fromisoformat(d) for d in days]
    years = sorted({d.year for d in dates}) or [dt.date.today().year]
    row = {y: i for i, y in enumerate(years)}
    # A short range within one year shows its own quarter or more, not a year of empty columns.
    cols = [_column(d) for d in dates] or [0]
    first = 0 if len(years) > 1 else max(0, min(cols) - 2)
    last = 265 if len(years) > 1 else min(265, max(max(cols) + 3, first + 65))
    # Fixed margins in inches (tight_layout would draw everything twice): title, rows, month labels.
    block = 0.35 + 0.2 * len(years) + 0.25
    height = 0.45 + block * len(classes)
    fig = plt.figure(figsize=(13, height))
    for i, (ds, cls) in enumerate(classes.items()):
        bottom = height - block * (i + 1) + 0.25
        ax = fig.add_axes((0.045, bottom / height, 0.95, 0.2 * len(years) / height))
        runs: dict[str, list[tuple[int, int, int]]] = {}  # class -> [(row, first column, width)]
        for d, day in zip(dates, days, strict=True):
            y, col, c = row[d.year], _column(d), cls[day]
            spans = runs.setdefault(c, [])
            if spans and spans[-1][0] == y and spans[-1][1] + spans[-1][2] == col:
                spans[-1] = (y, spans[-1][1], spans[-1][2] + 1)
            else:
                spans.append((y, col, 1))
        for c, spans in runs.items():
            verts = [v for y, x, w in spans for v in _corners(x, y, w)]
            codes = [MPath.MOVETO, *[MPath.LINETO] * 3, MPath.CLOSEPOLY] * len(spans)
            ax.add_patch(PathPatch(MPath(verts, codes), facecolor=COVERAGE[c], lw=0))
        # Thin white lines between columns make single cells visible inside merged runs.
        ax.vlines(range(first + 1, last), -0.1, len(years), colors="white", lw=0.35)
        ax.set_xlim(first, last)
        ax.set_ylim(len(years) - 0.1, -0.1)
        ax.set_yticks([i + 0.4 for i in range(len(years))], [str(y) for y in years])
        months = [
            (_column(dt.date(years[0], m, 1)), dt.date(2025, m, 1).strftime("%b")) for m in range(1, 13)
        ]
        shown = [(c, name) for c, name in months if first <= c <= last]  # none: a range within a month
        ax.set_xticks([c for c, _ in shown], [name for _, name in shown])
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)
        total = Counter(cls.values())
        ax.set_title(
            f"{ds}  ·  " + "  ·  ".join(f"{total[c]:,} {_LABELS.get(c, c)}" for c in COVERAGE if total[c])
        )
    handles = [Patch(color=color, label=_LABELS.get(c, c)) for c, color in COVERAGE.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    return _svg(fig, "cov")


def _column(d: dt.date) -> int:
    """Weekday columns: five per week since the Monday on or before 1 January."""
    first_monday = dt.date(d.year, 1, 1) - dt.timedelta(days=dt.date(d.year, 1, 1).weekday())
    return (d - first_monday).days // 7 * 5 + min(d.weekday(), 4)


def _corners(x: float, y: float, w: float) -> tuple[tuple[float, float], ...]:
    """A cell run's rectangle, 0.8 rows high; the fifth vertex is the one CLOSEPOLY ignores."""
    return ((x, y), (x + w, y), (x + w, y + 0.8), (x, y + 0.8), (x, y))


def _series_axes(ax: Any, x: Sequence[dt.date], series: dict[str, list[float]], ylabel: str) -> None:
    marker = "." if len(x) < 200 else None  # markers are one element per point: only for short ranges
    for name, values in series.items():
        ax.plot(x, values, lw=0.9, marker=marker, ms=4, label=name)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", lw=0.3)
    if len(series) > 1:
        ax.legend(frameon=False, loc="upper left", fontsize=8)


def shape_svg(data: Data, names: Sequence[str]) -> str | None:
    days = sorted({d for (_, d), r in data.days.items() if r[2] == "success"})
    if not days:
        return None
    plt = _pyplot()
    x = [dt.date.fromisoformat(d) for d in days]
    margins = {"left": 0.06, "right": 0.99, "top": 0.95, "bottom": 0.05, "hspace": 0.12}
    fig, axes = plt.subplots(4, 1, figsize=(13, 6.2), sharex=True, gridspec_kw=margins)
    nan = float("nan")

    def per_dataset(column: int, scale: float) -> dict[str, list[float]]:
        out = {}
        for ds in names:
            rows = [data.days.get((ds, d)) for d in days]
            out[ds] = [(r[column] or 0) / scale if r and r[2] == "success" else nan for r in rows]
        return out

    _series_axes(axes[0], x, per_dataset(4, 1e6), "rows (millions)")
    _series_axes(axes[1], x, per_dataset(5, 2**20), "MB")
    shape = [data.listings.get(d, (nan, nan)) for d in days]
    _series_axes(axes[2], x, {"expirations": [e for e, _ in shape]}, "expirations")
    _series_axes(axes[3], x, {"contracts": [c for _, c in shape]}, "contracts")
    axes[0].set_title("rows and MB per dataset; expirations and contracts the listing selects, per session")
    return _svg(fig, "shape")


_THREE = {"left": 0.05, "right": 0.99, "top": 0.88, "bottom": 0.2, "wspace": 0.22}  # three charts in a row


def runs_svg(runs: Sequence[dict[str, Any]]) -> str | None:
    shown = [r for r in runs if r["seconds"]][-200:]  # finished runs
    if not shown:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    idx = list(range(len(shown)))
    fig, axes = plt.subplots(1, 3, figsize=(13, 2.8), gridspec_kw=_THREE)
    per_min = [r["rows_per_min"] / 1e6 for r in shown]
    axes[0].bar(idx, per_min, color="#2e9d4e")
    axes[0].set_title("throughput (million rows/min)")
    axes[1].bar(idx, [r["seconds"] / 60 for r in shown], color="#3b82c4")
    axes[1].set_title("duration (min)")
    axes[2].bar(idx, [r["failed"] for r in shown], color="#d7301f")
    axes[2].set_title("failed day-files")
    for ax in axes:
        ax.set_xlabel(f"finished run (oldest → newest, last {len(shown)})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-0.6, max(len(shown), 10) - 0.4)  # a few runs keep bars of a readable width
        ax.grid(axis="y", lw=0.3)
    return _svg(fig, "runs")


def terminal_svg(data: Data, slots: int) -> str | None:
    if not data.requests_by_code:
        return None
    plt = _pyplot()
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(13, 2.8), gridspec_kw=_THREE)
    codes: Counter[str] = Counter()
    for code, status, n in data.requests_by_code:
        codes[str(code) if code is not None else status] += n
    labels = sorted(codes)
    bars = axes[0].bar(labels, [codes[c] for c in labels], color="#3b82c4")
    axes[0].bar_label(bars, fmt="{:,.0f}", fontsize=8)
    axes[0].set_title("requests by status code")
    lat = np.asarray(data.latencies, dtype=float)
    if lat.size:
        bins = np.logspace(np.log10(max(lat.min(), 1e-3)), np.log10(max(lat.max(), 1e-2)), 40)
        axes[1].hist(np.clip(lat, bins[0], None), bins=bins, color="#8e8e8e")
        axes[1].set_xscale("log")
        axes[1].xaxis.set_major_formatter("{x:g}")  # not mathtext: ten times cheaper to lay out
        axes[1].xaxis.set_minor_formatter("")
        for q, color in ((50, "#2e9d4e"), (90, "#e08a00"), (99, "#d7301f")):
            axes[1].axvline(np.percentile(lat, q), color=color, lw=1, label=f"p{q}")
        axes[1].legend(frameon=False, fontsize=8)
    axes[1].set_title("latency per request (s)")
    run_id, timeline = data.last_run_requests
    if timeline:
        t, busy = in_flight(timeline)
        axes[2].plot(t, busy, lw=0.9, color="#3b82c4", label="in flight (mean)")
        axes[2].axhline(slots, color="#d7301f", lw=1, ls="--", label=f"{slots} API slots")
        axes[2].set_xlabel(f"minutes into run {run_id or '(no run id)'}")
        axes[2].legend(frameon=False, fontsize=8)
    axes[2].set_title("requests in flight vs API slots")
    for ax in axes:
        ax.grid(axis="y", lw=0.3)
    return _svg(fig, "term")


def in_flight(timeline: Sequence[tuple[str, float]], bins: int = 200) -> tuple[list[float], list[float]]:
    """Mean requests in flight per bin (minutes from the first start), from finish times and run times."""
    import numpy as np

    end = np.array([dt.datetime.fromisoformat(at).timestamp() for at, _ in timeline])
    start = end - np.array([s for _, s in timeline], dtype=float)
    t0, t1 = start.min(), max(end.max(), start.min() + 1e-3)
    edges = np.linspace(t0, t1, bins + 1)

    def busy_before(x: Any) -> Any:
        """Request-seconds spent before each x: the sum of (x - start) over started requests minus
        the sum of (x - end) over finished ones, from sorted times and their running sums."""
        total = np.zeros_like(x)
        for times, sign in ((np.sort(start), 1), (np.sort(end), -1)):
            sums = np.concatenate(([0.0], np.cumsum(times)))
            n = np.searchsorted(times, x, "right")
            total += sign * (n * x - sums[n])
        return total

    busy = np.diff(busy_before(edges)) / (edges[1] - edges[0])
    mids = ((edges[:-1] + edges[1:]) / 2 - t0) / 60
    return mids.tolist(), busy.tolist()


# ---------------------------------------------------------------- page


def render(cfg: Config, *, live: Live | None = None, config_file: Path | None = None) -> str:
    data = read(cfg)
    days, classes = coverage(cfg, data, live)
    figs = figures(cfg, data, days, classes)
    pairs = plan.build(cfg).pairs()
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    sections = [
        _coverage_section(days, classes, figs["coverage"]),
        _shape_section(data, list(classes), figs["shape"]),
        _runs_section(data, live, figs["runs"]),
        _failures_section(data, config_file),
        _terminal_section(data, figs["terminal"]),
        _disk_section(cfg, data, pairs),
        _provenance_section(cfg, data, config_file),
    ]
    refresh = f'<meta http-equiv="refresh" content="{LIVE_REFRESH_S}">' if live else ""
    state = "live: a run is in progress" if live else "no run in progress"
    return _PAGE.format(
        refresh=refresh, css=_CSS, title=html.escape(f"spx-data report: {cfg.start} .. {cfg.end}"),
        generated=generated, state=state, live="1" if live else "0", body="\n".join(sections),
    )  # fmt: skip


def figures(
    cfg: Config, data: Data, days: Sequence[str], classes: dict[str, dict[str, str]]
) -> dict[str, str | None]:
    """name -> inline SVG (None when there is nothing to draw yet); the page's and Snakemake's."""
    return {
        "coverage": heatmap_svg(days, classes),
        "shape": shape_svg(data, list(classes)),
        "runs": runs_svg(data.runs),
        "terminal": terminal_svg(data, cfg.api_concurrency),
    }


def write_figures(cfg: Config, folder: Path) -> list[Path]:
    """The page's charts as standalone SVG files, for Snakemake's `--report` (rule report_figures)."""
    data = read(cfg)
    days, classes = coverage(cfg, data, None)
    written = []
    for name, svg in figures(cfg, data, days, classes).items():
        if svg is not None:
            atomic.write_bytes(folder / f"{name}.svg", svg.encode())
            written.append(folder / f"{name}.svg")
    return written


def write(
    cfg: Config, path: Path | None = None, *, live: Live | None = None, config_file: Path | None = None
) -> Path:
    """Render and replace the page atomically (an open tab never reads half a file); returns its path."""
    path = default_path(cfg) if path is None else path
    atomic.write_bytes(path, render(cfg, live=live, config_file=config_file).encode())
    return path


def refresh(cfg: Config, *, config_file: Path | None = None) -> Path | None:
    """The end-of-run refresh: a report that cannot be drawn is logged, never fails the run."""
    try:
        return write(cfg, config_file=config_file)
    except Exception as e:  # the page is a view of the run; its own bug must not fail the archive
        log.warning("spx-data report not refreshed: %s: %s", type(e).__name__, e)
        return None


class LiveReport:
    """Called from the progress loop: rewrites the page at most every LIVE_REFRESH_S seconds, and
    never more often than ten times its own drawing time (a big ledger must not starve the run)."""

    def __init__(self, cfg: Config, progress: Progress, config_file: Path | None = None) -> None:
        self._cfg, self._progress, self._config_file = cfg, progress, config_file
        self._next = 0.0
        self._warned = False

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self._next or not self._cfg.ledger.exists():  # Snakemake's onstart creates the ledger
            return
        try:
            p = self._progress
            live = Live(len(p.planned), dict(p.done), p.rows, now - p.started, p.eta_seconds())
            write(self._cfg, live=live, config_file=self._config_file)
        except Exception as e:  # as in refresh(): log once, keep the run going
            if not self._warned:
                log.warning("live report not written: %s: %s", type(e).__name__, e)
                self._warned = True
        took = time.monotonic() - now
        self._next = time.monotonic() + max(LIVE_REFRESH_S, 10 * took)


def _add_run_numbers(runs: list[dict[str, Any]]) -> None:
    for r in runs:
        seconds = None
        if r["started"] and r["finished"]:
            delta = dt.datetime.fromisoformat(r["finished"]) - dt.datetime.fromisoformat(r["started"])
            seconds = max(delta.total_seconds(), 1e-3)
        r["seconds"] = seconds
        r["rows_per_min"] = r["rows"] / seconds * 60 if seconds else 0.0


def _num(ident: str, value: float | int, text: str | None = None) -> str:
    """A number the page shows and a test can read back: id plus data-value."""
    shown = text if text is not None else (f"{value:,}" if isinstance(value, int) else f"{value:,.2f}")
    return f'<span id="{ident}" data-value="{value}">{html.escape(shown)}</span>'


def _section(ident: str, title: str, question: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{title}</h2><p class="q">{html.escape(question)}</p>{body}</section>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _coverage_section(days: Sequence[str], classes: dict[str, dict[str, str]], svg: str | None) -> str:
    rows = []
    for ds, cls in classes.items():
        total = Counter(cls.values())
        cells = [_num(f"cov-{ds}-{c}", total[c]) for c in COVERAGE]
        rows.append([html.escape(ds), *cells, _num(f"cov-{ds}-sessions", len(days))])
    head = ["dataset", *(f'<i style="background:{v}"></i>{_LABELS.get(c, c)}' for c, v in COVERAGE.items())]
    table = _table([*head, "sessions"], rows, "num")
    return _section(
        "coverage", "Coverage", "Which sessions are archived, and which are not?",
        table + f'<div class="fig">{svg}</div>',
    )  # fmt: skip


def _shape_section(data: Data, names: Sequence[str], svg: str | None) -> str:
    rows = []
    for ds in names:
        ok = [r for (d, _), r in data.days.items() if d == ds and r[2] == "success"]
        total_rows = sum(r[4] or 0 for r in ok)
        mean_mb = sum(r[5] or 0 for r in ok) / len(ok) / 2**20 if ok else 0.0
        rows.append([
            html.escape(ds), _num(f"rows-{ds}", total_rows), f"{total_rows / max(len(ok), 1):,.0f}",
            f"{mean_mb:,.1f}",
        ])  # fmt: skip
    table = _table(
        ["dataset", "rows archived", "rows per session (mean)", "MB per session (mean)"], rows, "num"
    )
    fig = f'<div class="fig">{svg}</div>' if svg else "<p>Nothing archived yet.</p>"
    return _section("shape", "Size and shape", "Does any stretch of sessions look unlike its neighbours?",
                    table + fig)  # fmt: skip


def _runs_section(data: Data, live: Live | None, svg: str | None) -> str:
    now = ""
    if live:
        n = len(live.done)
        failed = sum(1 for s in live.done.values() if s == "failed")
        eta = human_seconds(live.eta_s) if live.eta_s is not None else "?"
        pct = 100 * n / max(live.planned, 1)
        now = (
            f'<div class="live"><b>Run in progress:</b> {_num("live-done", n)} of '
            f"{_num('live-planned', live.planned)} day-files done, {_num('live-failed', failed)} failed, "
            f"{live.rows:,} rows, elapsed {human_seconds(live.elapsed_s)}, ETA {eta}"
            f'<div class="bar"><div style="width:{pct:.1f}%"></div></div>'
            "<small>Coverage follows this run; the other sections show the ledger as the run found it, "
            "until it ends.</small></div>"
        )
    rows = [
        [
            html.escape(r["run_id"]), html.escape((r["started"] or "")[:19].replace("T", " ")),
            html.escape(r["status"]), f"{r['planned'] or 0:,}", f"{r['archived']:,}", f"{r['failed']:,}",
            f"{r['rows']:,}", f"{r['seconds'] / 60:,.1f}" if r["seconds"] else "",
            f"{r['rows_per_min']:,.0f}" if r["seconds"] else "",
        ]
        for r in reversed(data.runs[-RUNS_SHOWN:])
    ]  # fmt: skip
    head = ["run", "started (UTC)", "status", "planned", "archived", "failed", "rows", "minutes", "rows/min"]
    body = now + (f'<div class="fig">{svg}</div>' if svg else "") + (
        _table(head, rows, "num")
        + f"<p>{_num('runs-total', len(data.runs))} runs in the ledger; the {RUNS_SHOWN} newest above.</p>"
        if data.runs else "<p>No run yet.</p>"
    )  # fmt: skip
    return _section("runs", "Runs", "How fast is the archive filling, and how often do runs fail?", body)


def _failures_section(data: Data, config_file: Path | None) -> str:
    """One row per failed session and cause: datasets that failed the same way share it."""
    failed = [r for r in data.days.values() if r[2] == "failed"]
    groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in sorted(failed, key=lambda r: (r[1], r[0])):
        groups.setdefault((r[1], f"{r[7] or '?'}: {r[8] or ''}"), []).append(r)
    default = config_file is None or Path(config_file).absolute() == project.CONFIG_FILE.absolute()
    retry = "spx-data retry" + ("" if default else f" --config-file {config_file}")
    rows = []
    for (day, cause), same in list(groups.items())[:FAILURES_SHOWN]:
        only = f" --dataset {same[0][0]}" if len(same) == 1 else ""
        last = max(r[9] or "" for r in same)[:19].replace("T", " ")
        rows.append([
            html.escape(", ".join(r[0] for r in same)), day, html.escape(cause),
            " / ".join(str(r[3]) for r in same), html.escape(last),
            f"<code>{html.escape(f'{retry}{only} {day}')}</code>",
        ])  # fmt: skip
    more = (
        f"<p>… and {len(groups) - FAILURES_SHOWN:,} more (<code>spx-data list --failed-only</code>).</p>"
        if len(groups) > FAILURES_SHOWN
        else ""
    )
    head = ["datasets", "session", "cause", "attempts", "last try (UTC)", "retry"]
    body = (
        f"<p>{_num('failed-total', len(failed))} failed day-files. All at once: "
        f"<code>{html.escape(retry)} --all-failed</code></p>"
        + (_table(head, rows, "fail") + more if rows else "")
    )
    return _section("failures", "Failures now", "What is failing, why, and how do I retry it?", body)


def _terminal_section(data: Data, svg: str | None) -> str:
    import numpy as np

    total = sum(n for *_, n in data.requests_by_code)
    lat = np.asarray(data.latencies, dtype=float)
    pct = {q: float(np.percentile(lat, q)) if lat.size else 0.0 for q in (50, 90, 99)}
    codes: Counter[str] = Counter()
    for code, status, n in data.requests_by_code:
        codes[f"{code if code is not None else '—'} ({status})"] += n
    table = _table(
        ["status code (outcome)", "requests"],
        [[html.escape(k), _num(f"req-{_slug(k)}", v)] for k, v in codes.most_common()], "num",
    )  # fmt: skip
    shown = {q: f"{v:.2f} s" if lat.size else "–" for q, v in pct.items()}
    summary = (
        f"<p>{_num('req-total', total)} requests, {_num('req-retries', data.retries)} retries; latency "
        f"p50 {_num('lat-p50', round(pct[50], 3), shown[50])}, "
        f"p90 {_num('lat-p90', round(pct[90], 3), shown[90])}, "
        f"p99 {_num('lat-p99', round(pct[99], 3), shown[99])}.</p>"
    )
    body = summary + (f'<div class="fig">{svg}</div>' if svg else "") + table if total else summary
    return _section(
        "terminal", "Terminal", "How is the terminal answering, and are the API slots full?", body
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _disk_section(cfg: Config, data: Data, pairs: list[tuple[str, str]]) -> str:
    archived = sum(r[5] or 0 for r in data.days.values() if r[2] in ("success", "no_data"))
    free = free_bytes(cfg.archive)
    need = estimate.estimate(cfg, pairs).disk_bytes if pairs else 0
    verdict = "enough" if free >= need else "NOT enough"
    body = (
        f"<p>Archive {_num('disk-archive', archived, human_bytes(archived))} (ledger: bytes of every "
        f"archived day-file); free {_num('disk-free', free, human_bytes(free))} at "
        f"{html.escape(str(cfg.archive))}; the "
        f"{_num('gaps-total', len(pairs))} remaining day-files need about "
        f"{_num('disk-need', need, human_bytes(need))}: <b>{verdict}</b>.</p>"
    )
    return _section("disk", "Disk", "Will the rest of the archive fit?", body)


def _provenance_section(cfg: Config, data: Data, config_file: Path | None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    libs = []
    for name in ("snakemake", "pyarrow", "matplotlib", "duckdb"):
        try:
            libs.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            libs.append(f"{name} (not installed)")
    endpoints = ", ".join(f"{ds} → /v3/{datasets.get(ds).endpoint.lstrip('/')}" for ds in cfg.datasets)
    rows = [
        ["spx-data", html.escape(__version__)],
        ["ledger schema", f"{html.escape(data.schema_version)} (this spx-data knows {SCHEMA_VERSION})"],
        ["terminal API", f"ThetaData REST v3 at {html.escape(cfg.terminal_url)}: {html.escape(endpoints)}"],
        ["libraries", html.escape(", ".join(libs))],
        ["config file", html.escape(str(config_file or project.CONFIG_FILE))],
        ["ledger", html.escape(str(cfg.ledger))],
    ]
    config = {k: (str(v) if isinstance(v, Path | dt.date) else v) for k, v in vars(cfg).items()}
    cfg_rows = [[html.escape(k), f"<code>{html.escape(str(v))}</code>"] for k, v in config.items()]
    body = _table(["what", "value"], rows) + "<h3>Config in force</h3>" + _table(["key", "value"], cfg_rows)
    return _section("provenance", "Provenance", "What made this archive, with which settings?", body)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1320px;
 padding:0 16px 40px;color:#1d232b;background:#fff}
header{border-bottom:2px solid #1d232b;padding:12px 0 6px;display:flex;justify-content:space-between;
 align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0}header span{color:#5b6470}
nav a{margin-right:12px;color:#2b5d9b;text-decoration:none}
section{margin-top:22px}h2{font-size:17px;margin:0}h3{font-size:14px;margin:14px 0 4px}
p.q{color:#5b6470;margin:2px 0 8px;font-style:italic}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border-bottom:1px solid #e3e6ea;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f5f6f8}table.num td+td{text-align:right;font-variant-numeric:tabular-nums}
th i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
table.fail{width:100%}table.fail td:nth-child(2),table.fail td:nth-child(5){white-space:nowrap}
table.fail td:nth-child(3){max-width:420px;overflow-wrap:anywhere}
code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f3f4f6;padding:1px 4px;border-radius:3px}
.fig svg{width:100%;height:auto}
.live{background:#eaf3fb;border:1px solid #3b82c4;border-radius:6px;padding:8px 12px;margin:6px 0}
.bar{height:8px;background:#d7e6f5;border-radius:4px;margin-top:6px}
.bar div{height:8px;background:#3b82c4;border-radius:4px}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body data-live="{live}">
<header><h1>{title}</h1><span>generated {generated} · {state}</span></header>
<nav><a href="#coverage">coverage</a><a href="#shape">size and shape</a><a href="#runs">runs</a>
<a href="#failures">failures</a><a href="#terminal">terminal</a><a href="#disk">disk</a>
<a href="#provenance">provenance</a></nav>
{body}
</body></html>
"""
