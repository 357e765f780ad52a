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
