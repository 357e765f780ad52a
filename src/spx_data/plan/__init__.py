"""Which (dataset, day) targets are missing and which expirations each day needs."""
