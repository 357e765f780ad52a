"""Rule `assemble`: argv → a day's NDJSON files → parquet + sha256 sidecar + one outcome event."""

import sys

from spx_data.ops import jobs

if __name__ == "__main__":
    sys.exit(jobs.main(step="assemble", own_process=True))
