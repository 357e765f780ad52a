# A day's NDJSON files → one parquet + sha256 sidecar (sidecar written last, both atomic).


rule assemble:
    input:
        unpack(assemble_inputs),
    output:
        parquet=LAYOUT.patterns()[0],
        sidecar=LAYOUT.patterns()[1],
    log:
        LOGS / "assemble" / "{dataset}-{day}.log",
    priority: assemble_priority
    group:
        "assemble-{dataset}"
    conda:
        "../envs/spx-data.yaml"
    resources:
        mem_mb=1024,
    params:
        interval=CFG.interval,
        symbols=assemble_symbols,
        max_dte=CFG.max_dte,
        greeks=json.dumps(vars(CFG.greeks)),
        quality=json.dumps(dict(CFG.quality)),
    shell:
        job("assemble") + " {wildcards.dataset} {wildcards.day} --interval {params.interval}"
        " --symbols {params.symbols} --max-dte {params.max_dte} --greeks {params.greeks:q}"
        " --quality {params.quality:q} 2> {log:q}"
