"""The NDJSON answer contract: what fetch validates and assembly reads, defined once."""
