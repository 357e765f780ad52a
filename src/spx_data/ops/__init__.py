"""What the operator runs: the CLI, the Snakemake runner, doctor, probe, reports, the job entry points."""
