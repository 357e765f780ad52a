# spx-data: every open session from start_date to end_date archived as one parquet + sha256 per dataset.
# `snakemake -n` is the gap report, `snakemake --cores 4` fills every gap (see README).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/listing.smk"
include: "rules/fetch.smk"
include: "rules/assemble.smk"
include: "rules/ledger.smk"


rule all:
    default_target: True
    input:
        # With no gap, an existing file keeps `all` from being an always-run job without input.
        ALL_TARGETS or workflow.main_snakefile,
