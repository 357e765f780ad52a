# One request per (dataset, day, symbol, expiration), holding one unit of the run-wide `api` resource. A
# `run:` job in Snakemake's own process (the profile's force-use-threads): no interpreter start per request.
# `threads: 0`: a request waits on the terminal, not on a core, so `api`, not --cores, bounds how many are in
# flight (docs/DESIGN.md §6). The NDJSON is temporary: assembly consumes it.


rule fetch:
    input:
        listing=lambda w: LAYOUT.listing(w.day),
    output:
        temp(CFG.work / "ndjson" / "{dataset}" / "{day}" / "{symbol}-{expiration}.ndjson"),
    log:
        LOGS / "fetch" / "{dataset}" / "{day}" / "{symbol}-{expiration}.log",
    priority: fetch_priority
    localrule: True
    threads: 0
    resources:
        api=1,
    run:
        run_fetch(wildcards, output, log, wildcards.symbol, wildcards.expiration)


# An index series: one request per (dataset, day, index symbol), no listing, the same `api` unit and
# outcome events (a 471 leaves an empty answer: see ops/jobs.py `_fetch_index`).
rule fetch_index:
    output:
        temp(CFG.work / "ndjson" / "{dataset}" / "{day}" / "{index_symbol}.ndjson"),
    log:
        LOGS / "fetch" / "{dataset}" / "{day}" / "{index_symbol}.log",
    wildcard_constraints:
        dataset="|".join(INDEX_DATASETS) or "(?!)",
    priority: fetch_priority
    localrule: True
    threads: 0
    resources:
        api=1,
    run:
        run_fetch(wildcards, output, log, wildcards.index_symbol, None)
