"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from portfolio_helpers import write_panel_csv

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real market data in ../shared/data; tests that need it skip where a clone lacks it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real market data folder {SHARED_DATA} is absent (only in the dev workspace)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def panel_csv(tmp_path_factory) -> Path:
    """The hand-made stock panel of :mod:`portfolio_helpers`, written once per test module."""
    return write_panel_csv(tmp_path_factory.mktemp("panel") / "panel.csv")


@pytest.fixture(scope="module")
def late_csv(tmp_path_factory) -> Path:
    """The same panel with ticker DDD listing only on 2019-01-02 (incomplete for the paper)."""
    path = tmp_path_factory.mktemp("late") / "late.csv"
    return write_panel_csv(path, late={"DDD": "2019-01-02"})
