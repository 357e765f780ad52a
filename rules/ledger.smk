# The record step: jobs leave outcome events on disk; the ledger mirrors them at the start and end of
# every run (success or error), so cluster nodes never write SQLite over a network filesystem. The end
# of a run also redraws the HTML report beside the ledger (spx-data report).


def refresh_report() -> None:
    from pathlib import Path

    from spx_data import html_report

    configfiles = workflow.overwrite_configfiles
    html_report.refresh(CFG, config_file=Path(configfiles[-1]) if configfiles else None)


onstart:
    outcomes.write_event(
        LAYOUT.outcomes(), "run_start", pid=os.getpid(), host=socket.gethostname(),
        planned=PLAN.pairs(), argv=sys.argv,
    )
    mirror_ledger(None)


onsuccess:
    mirror_ledger(True)
    refresh_report()


onerror:
    mirror_ledger(False)
    refresh_report()
