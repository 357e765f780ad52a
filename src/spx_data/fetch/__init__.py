"""Terminal -> NDJSON: the v3 HTTP client, its retry policy and the fetch job's process tricks."""
