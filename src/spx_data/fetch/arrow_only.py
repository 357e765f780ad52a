"""Keep pyarrow from importing pandas in a job process that only needs Arrow and numpy.

pyarrow imports pandas, when installed (pandas-market-calendars needs it), on its first numpy
conversion or `pa.array` call: about 0.28 s of an assembly process (one per dataset and day), and 0.2 s
of a fetch job run by hand (`python -m spx_data.ops.jobs fetch`; the workflow's fetch jobs run in
Snakemake's threads). While pandas is hidden, pyarrow takes the paths it takes when pandas is absent;
nothing in those jobs hands it pandas objects.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec


class _HidePandas:
    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(f"{name} is hidden from this job (spx_data.fetch.arrow_only)")
        return None


_HIDE = _HidePandas()


@contextlib.contextmanager
def pandas_hidden() -> Iterator[None]:
    """Make `import pandas` fail inside the block, unless pandas is already imported."""
    if "pandas" in sys.modules:
        yield
        return
    sys.meta_path.insert(0, _HIDE)
    try:
        yield
    finally:
        sys.meta_path.remove(_HIDE)
