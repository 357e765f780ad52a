# The record step: jobs leave outcome events on disk; the ledger mirrors them at the start and end of
# every run (success or error), so cluster nodes never write SQLite over a network filesystem.


onstart:
    try:
        spx_config.require_writable(CFG)  # a real run writes; a dry run never gets here
    except ConfigError as e:
        sys.exit(f"spx-data: config: {e}")
    outcomes.write_event(
        LAYOUT.outcomes(), "run_start", pid=os.getpid(), host=socket.gethostname(),
        planned=PLAN.pairs(), argv=sys.argv,
    )
    mirror_ledger(None)


onsuccess:
    mirror_ledger(True)


onerror:
    mirror_ledger(False)
