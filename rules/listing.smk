# One listing step for all gap days without a cached listing (docs/DESIGN.md §2: a checkpoint per day would
# make Snakemake re-evaluate the DAG after each one). Its output is a per-run marker, so a day whose
# listing failed is asked again by the next run; the per-day listings themselves are cached forever.

if PLAN.unlisted:

    checkpoint list_contracts:
        output:
            temp(LAYOUT.listing_marker(RUN_ID)),
        log:
            LOGS / f"list_contracts-{RUN_ID}.log",
        localrule: True
        resources:
            api=api_cap(),
        run:
            run_listing(output[0], log[0])
