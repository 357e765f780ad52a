"""Rule `fetch`: argv → one (dataset, day, symbol, expiration) request → NDJSON file + one outcome event."""

import sys

from spx_data.ops import jobs

if __name__ == "__main__":
    sys.exit(jobs.main(step="fetch", own_process=True))
