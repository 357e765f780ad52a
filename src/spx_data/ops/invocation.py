"""What a command was asked: the project folder, its config file and the command line's overrides, turned
into the effective Config; the exit codes every command shares."""

from __future__ import annotations

import argparse
import os
from typing import Any

from spx_data.core import config as config_mod
from spx_data.core import project
from spx_data.core.errors import TerminalUnreachable

OK, FAILED, USAGE, UNREACHABLE, NO_DISK, BUSY = 0, 1, 2, 3, 4, 5
INTERRUPTED, BROKEN_PIPE = 130, 141  # as shells report SIGINT and SIGPIPE


class Exit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code


def overrides(args: argparse.Namespace) -> dict[str, Any]:
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


def raw_config(args: argparse.Namespace) -> dict[str, Any]:
    raw = config_mod.read_yaml(args.config_file)
    for key, value in overrides(args).items():
        if key == "retry" and isinstance(value, str):
            raise Exit(USAGE, "--set retry: set retry.KEY=VALUE one at a time")
        if key.startswith(("retry.", "quality.")):
            section, sub = key.split(".", 1)
            raw.setdefault(section, {})[sub] = value
        else:
            raw[key] = value
    return raw


def config(args: argparse.Namespace, writable: bool = True) -> config_mod.Config:
    """The project's config; inspecting commands pass writable=False and work on a read-only archive."""
    return config_mod.load(raw_config(args), writable=writable)


def locate(args: argparse.Namespace) -> None:
    """Work in the project folder, as Snakemake does in its workdir: config paths then mean (and are
    spelled) exactly what they mean to the rules. A --config-file path is the user's, relative to the cwd."""
    args.project = project.find(args.directory)
    args.config_file = (args.config_file or args.project / project.CONFIG_FILE).absolute()
    os.chdir(args.project)


def snakemake_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = overrides(args)
    retry = {k.split(".", 1)[1]: v for k, v in out.items() if k.startswith("retry.")}
    out = {k: v for k, v in out.items() if not k.startswith("retry.")}
    if retry:
        out["retry"] = retry
    return out


def open_ledger(cfg: config_mod.Config) -> Any:
    """The ledger with pending outcomes mirrored in; on a read-only medium, read as it is."""
    from spx_data.ledger.store import Ledger

    folder = cfg.ledger.parent
    if (cfg.ledger.exists() and not os.access(cfg.ledger, os.W_OK)) or (
        folder.exists() and not os.access(folder, os.W_OK)
    ):
        return Ledger(cfg.ledger, read_only=True)
    ledger = Ledger(cfg.ledger, cfg.archive)
    ledger.refresh(cfg.layout.outcomes())
    return ledger


def require_terminal(cfg: config_mod.Config) -> None:
    from spx_data.core.datasets import STATUS_ENDPOINT
    from spx_data.fetch import terminal
    from spx_data.fetch.retry import fatal_error

    try:
        code, text = terminal.status(cfg.terminal_url)
    except TerminalUnreachable as e:
        raise TerminalUnreachable(
            f"no terminal answers at {cfg.terminal_url} ({type(e.__cause__).__name__}); start ThetaTerminal, "
            "or `spx-data sim` for the simulator"
        ) from None
    if code != 200:  # it answers, but refuses: 476 is a host-string mix-up, and so on
        raise fatal_error(code, f"{cfg.terminal_url}/v3{STATUS_ENDPOINT}", text[:200].strip())
