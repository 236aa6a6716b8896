"""The index family and T-bill rate reach the tape every environment trades on, past-only."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clstm_ppo.config import build_config
from clstm_ppo.data.indices import snapshot_dir
from clstm_ppo.envs.tape import tape_for

CUT = pd.Timestamp("2010-06-01")


def _tape(**overrides):
    return tape_for(build_config(overrides=overrides, origin="test"))


def test_bundled_spx_is_priced_from_indices_not_garch_from_1999() -> None:
    tape = _tape()
    market = tape.option_market.provenance
    first = tape.first_usable_day
    source = tape.option_market.levels.source[first:]
    assert not np.any(source == "garch")  # arch's VIX starts 2014; the snapshot's in 1990
    assert np.mean(source == "vix_term") > 0.5  # VIX3M and the others from 2008/2009
    assert market["rate"]["days_from_series"] == len(tape.dates)
    origins = {s["origin"] for s in market["surface_inputs"]["series"].values()}
    assert any("snapshot" in origin or "bundled" in origin for origin in origins), origins
    rate = tape.option_market.levels.rate
    day = tape.dates.searchsorted(pd.Timestamp("2007-01-03"))
    assert 0.045 < rate[day] < 0.052  # T-bills paid ~5% before the 2008 cuts
    assert rate[tape.dates.searchsorted(pd.Timestamp("2012-06-01"))] < 0.002


def test_no_indices_falls_back_to_garch_and_the_constant_rate() -> None:
    tape = _tape(**{"data.vol_indices": None, "data.vix": None})
    levels = tape.option_market.levels
    assert set(levels.source[tape.first_usable_day :]) == {"garch"}
    assert np.all(levels.rate == 0.02) and set(levels.rate_source) == {"constant"}


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("indices")
    for item in snapshot_dir().iterdir():
        if item.name.endswith(".csv.gz"):
            with item.open("rb") as source, (folder / item.name).open("wb") as target:
                shutil.copyfileobj(source, target)
    return folder


def _perturb_after(folder: Path, cut: pd.Timestamp) -> None:
    """Scale every index and rate value dated after ``cut`` by 1.5 (dates kept)."""
    for path in folder.glob("*.csv.gz"):
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        out = [lines[0]]
        for line in lines[1:]:
            cells = line.split(",")
            if pd.Timestamp(cells[0]) > cut and cells[-1] not in ("", "."):
                cells = [cells[0], *(f"{float(c) * 1.5:.4f}" for c in cells[1:])]
            out.append(",".join(cells))
        path.write_bytes(gzip.compress(("\n".join(out) + "\n").encode()))


def test_perturbing_future_index_values_changes_no_earlier_day(index_folder) -> None:
    overrides = {"data.vol_indices": str(index_folder), "data.vix": None}
    before = _tape(**overrides)
    _perturb_after(index_folder, CUT)
    # Another window only to get a fresh tape: the cache is keyed by config, not file contents.
    after = tape_for(build_config(overrides={**overrides, "env.window": 31}, origin="test"))
    cut = before.dates.searchsorted(CUT, side="right")  # first day after the cut
    a, b = before.option_market.levels, after.option_market.levels
    np.testing.assert_array_equal(a.knots[:cut], b.knots[:cut])
    np.testing.assert_array_equal(a.rate[:cut], b.rate[:cut])
    np.testing.assert_array_equal(a.rho[:cut], b.rho[:cut])
    # The day after the cut sees the new VIX family close but still yesterday's T-bill yield.
    assert not np.array_equal(a.knots[cut], b.knots[cut])
    assert a.rate[cut] == b.rate[cut] and a.rate[cut + 1] != b.rate[cut + 1]
