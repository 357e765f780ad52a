"""Bring an archive written by an older spx-data up to the current storage contract, in place.

Only writing commands call this (a run's start); inspection never changes the archive.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from spx_data.core.atomic import fsync_dir
from spx_data.core.paths import Layout


def rename_legacy_sidecars(layout: Layout, datasets: Iterable[str]) -> int:
    """Give every sidecar of the legacy name its current name; returns how many were renamed.

    A rename is atomic, so the day keeps exactly one sidecar at every instant and stays finished.
    When both names exist (an interrupted migration), the current one is kept.
    """
    renamed = 0
    for dataset in datasets:
        for day in layout.archived_days(dataset):
            legacy, current = layout.legacy_sidecar(dataset, day), layout.sidecar(dataset, day)
            if not legacy.exists():
                continue
            try:
                if current.exists():
                    legacy.unlink()
                else:
                    os.rename(legacy, current)
                    renamed += 1
            except FileNotFoundError:
                continue  # another process migrated it first
            fsync_dir(current.parent)
    return renamed
