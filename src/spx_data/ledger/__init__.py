"""Outcomes: events the jobs leave on disk, mirrored into the SQLite ledger."""
