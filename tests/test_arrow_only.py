"""A fetch job process never imports pandas, and hiding it leaves no trace outside job processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from helpers import FAST_RETRY

from spx_data.core import datasets
from spx_data.core.paths import Layout
from spx_data.fetch.client import ThetaClient
from spx_data.fetch.retry import RetryPolicy
from spx_data.ndjson.check import Counts, Expected, check_ndjson
from spx_data.plan import listing
from spx_data.sim.server import Simulator

DAY = "2024-11-04"


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_pyarrow_converts_to_numpy_without_pandas_while_hidden_and_pandas_imports_after() -> None:
    out = python(
        "import sys, numpy as np, pyarrow as pa, pyarrow.compute as pc\n"
        "from spx_data.fetch.arrow_only import pandas_hidden\n"
        "with pandas_hidden():\n"
        "    a = pa.array(np.array([1.5, 2.0]))\n"
        "    puts = pc.equal(pa.array(['CALL', 'PUT']), 'PUT').to_numpy(zero_copy_only=False)\n"
        "    print(a.to_numpy().tolist(), puts.tolist(), 'pandas' in sys.modules)\n"
        "import pandas\n"
        "print(pandas.__name__)\n"
    )
    assert out.splitlines() == ["[1.5, 2.0] [False, True] False", "pandas"]


def test_hiding_is_a_no_op_once_pandas_is_imported() -> None:
    out = python(
        "import sys, pandas\n"
        "from spx_data.fetch.arrow_only import pandas_hidden\n"
        "before = list(sys.meta_path)\n"
        "with pandas_hidden():\n"
        "    import pandas.api.types\n"
        "    print(sys.meta_path == before)\n"
    )
    assert out == "True"


def test_a_fetch_job_process_never_imports_pandas(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    url = simulator(chain="tiny").url
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    make_client = lambda: ThetaClient(url, RetryPolicy.from_config(FAST_RETRY))  # noqa: E731
    assert listing.list_days([DAY], layout.listing, make_client, 1) == {}
    found = listing.read(layout.listing(DAY))
    assert found is not None
    symbol, expiration, contracts = found.expirations[0]
    out = layout.ndjson("quote", DAY, symbol, expiration)
    argv = [
        "--archive", str(layout.archive), "--work", str(layout.work), "fetch", "quote", DAY, symbol,
        expiration, "--out", str(out), "--url", url, "--interval", "1m", "--retry", json.dumps(FAST_RETRY),
    ]  # fmt: skip
    # As `python -m spx_data.ops.jobs ...` runs it, then asked what the process imported.
    report = python(
        "import runpy, sys\n"
        f"sys.argv = ['spx_data.ops.jobs', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('spx_data.ops.jobs', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'pandas' in sys.modules)\n"
    )
    assert report == "0 False"
    counts = check_ndjson(out, datasets.get("quote"), Expected(symbol, expiration, contracts, 391))
    assert counts == Counts(contracts * 391, contracts)
