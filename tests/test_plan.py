"""Gap planning: exactly the (dataset, day) pairs without both a parquet and its sidecar are missing."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spx_data.core import config
from spx_data.plan import listing
from spx_data.plan import targets as plan

SESSIONS = config.load(
    {"start_date": "2024-11-01", "end_date": "2024-12-31"}, base=Path(tempfile.gettempdir())
).sessions()


def cfg_in(root: Path) -> config.Config:
    return config.load({"start_date": "2024-11-01", "end_date": "2024-12-31"}, base=root)


files = st.sampled_from(["none", "parquet", "sidecar", "both"])


@settings(deadline=None, max_examples=60)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from(["quote", "greeks_first_order"]), st.sampled_from(SESSIONS)), files
    ),
    st.sets(st.sampled_from(SESSIONS)),
)
def test_missing_is_exactly_what_lacks_parquet_or_sidecar(state: dict, listed: set) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = cfg_in(Path(tmp))
        for (ds, session), which in state.items():
            day = session.day.isoformat()
            folder = cfg.layout.day_dir(ds, day)
            folder.mkdir(parents=True, exist_ok=True)
            if which in ("parquet", "both"):
                cfg.layout.parquet(ds, day).write_bytes(b"x")
            if which in ("sidecar", "both"):
                cfg.layout.sidecar(ds, day).write_text("x")
        for session in listed:
            listing.write(
                cfg.layout.listing(session.day.isoformat()),
                listing.Listing(session.day.isoformat(), False, ()),
            )
        p = plan.build(cfg)
        done = {(ds, s.day.isoformat()) for (ds, s), which in state.items() if which == "both"}
        everything = {(ds, s.day.isoformat()) for ds in cfg.datasets for s in SESSIONS}
        assert set(p.pairs()) == everything - done
        for days in p.missing.values():
            assert list(days) == sorted(days)
        listed_days = {s.day.isoformat() for s in listed}
        assert set(p.unlisted) == set(p.days) - listed_days


def test_listing_select_filters_symbols_and_dte() -> None:
    lst = listing.Listing(
        "2024-11-21", False,
        (("SPX", "2024-12-20", 400), ("SPXW", "2024-11-21", 120), ("SPXW", "2025-06-30", 800)),
    )  # fmt: skip
    assert lst.select(["SPXW"], None) == [("SPXW", "2024-11-21", 120), ("SPXW", "2025-06-30", 800)]
    assert lst.select(["SPX", "SPXW"], 30) == [("SPX", "2024-12-20", 400), ("SPXW", "2024-11-21", 120)]
    assert lst.select(["SPX", "SPXW"], 0) == [("SPXW", "2024-11-21", 120)]
    assert dt.date.fromisoformat(lst.day).weekday() == 3


def test_listing_cache_round_trip_and_unreadable(tmp_path: Path) -> None:
    lst = listing.Listing("2024-11-21", False, (("SPXW", "2024-11-21", 120),))
    listing.write(tmp_path / "l.json", lst)
    assert listing.read(tmp_path / "l.json") == lst
    (tmp_path / "bad.json").write_text("{not json")
    assert listing.read(tmp_path / "bad.json") is None
    assert listing.read(tmp_path / "absent.json") is None
    assert list(tmp_path.glob(".*")) == []
