"""NDJSON -> parquet + sha256 sidecar, and reading an archived file back to verify it."""
