# The record step: jobs leave outcome events on disk; the ledger mirrors them at the start and end of
# every run (success or error), so cluster nodes never write SQLite over a network filesystem. The end
# of a run also redraws the HTML report beside the ledger (spx-data report).


onstart:
    try:
        spx_config.require_writable(CFG)  # a real run writes; a dry run never gets here
    except ConfigError as e:
        sys.exit(f"spx-data: config: {e}")
    scheduling.widen_local_pool(workflow, api_cap())
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
    refresh_report()


onerror:
    mirror_ledger(False)
    refresh_report()


# The report page's charts as Snakemake report items; not part of `all`, so asked for by name:
#   snakemake --no-hooks --cores 1 report_figures && snakemake --report report.zip report_figures
rule report_figures:
    output:
        report(
            directory(str(CFG.ledger.with_name("report-figures"))),
            patterns=["{name}.svg"],
            caption="../report/figures.rst",
            category="spx-data",
        ),
    log:
        LOGS / "report_figures.log",
    localrule: True
    run:
        draw_report_figures(output[0], log[0])
