# The record step: jobs leave outcome events on disk; the ledger mirrors them at the start and end of
# every run (success or error), so cluster nodes never write SQLite over a network filesystem.


onstart:
    outcomes.write_event(
        LAYOUT.outcomes(),
        "run_start",
        pid=os.getpid(),
        host=socket.gethostname(),
        planned=PLAN.pairs(),
        argv=sys.argv,
    )
    mirror_ledger(None)


onsuccess:
    mirror_ledger(True)


onerror:
    mirror_ledger(False)
