# One request per (dataset, day, symbol, expiration): a `shell:` job (docs/DESIGN.md §2 measured ~53 jobs/s)
# holding one unit of the run-wide `api` resource. The NDJSON is temporary: assembly consumes it.


rule fetch:
    input:
        listing=lambda w: LAYOUT.listing(w.day),
    output:
        temp(CFG.work / "ndjson" / "{dataset}" / "{day}" / "{symbol}-{expiration}.ndjson"),
    log:
        LOGS / "fetch" / "{dataset}" / "{day}" / "{symbol}-{expiration}.log",
    localrule: True
    conda:
        "../envs/spx-data.yaml"
    resources:
        api=1,
    params:
        url=CFG.terminal_url,
        interval=CFG.interval,
        retry=json.dumps(dict(CFG.retry)),
        greeks=json.dumps(vars(CFG.greeks)),
    shell:
        job("fetch") + " {wildcards.dataset} {wildcards.day} {wildcards.symbol} {wildcards.expiration}"
        " --out {output:q} --url {params.url:q} --interval {params.interval} --retry {params.retry:q}"
        " --greeks {params.greeks:q}"
        " 2> {log:q}"


# An index series: one request per (dataset, day, index symbol), no listing, the same `api` unit and
# outcome events (a 471 leaves an empty answer: see ops/jobs.py `_fetch_index`).
rule fetch_index:
    output:
        temp(CFG.work / "ndjson" / "{dataset}" / "{day}" / "{index_symbol}.ndjson"),
    log:
        LOGS / "fetch" / "{dataset}" / "{day}" / "{index_symbol}.log",
    wildcard_constraints:
        dataset="|".join(INDEX_DATASETS) or "(?!)",
    localrule: True
    conda:
        "../envs/spx-data.yaml"
    resources:
        api=1,
    params:
        url=CFG.terminal_url,
        interval=CFG.interval,
        retry=json.dumps(dict(CFG.retry)),
    shell:
        job("fetch") + " {wildcards.dataset} {wildcards.day} {wildcards.index_symbol}"
        " --out {output:q} --url {params.url:q} --interval {params.interval} --retry {params.retry:q}"
        " 2> {log:q}"
