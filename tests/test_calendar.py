"""Exchange calendar and listed expirations."""

from __future__ import annotations

import pandas as pd
import pytest

from clstm_ppo.data.calendar import (
    is_trading_day,
    listed_expiries,
    monthly_expiry,
    trading_days,
)
from clstm_ppo.errors import DataError


def test_sessions_match_the_bundled_spx_history() -> None:
    from clstm_ppo.data.bundled import load_bundled

    spx = load_bundled("SPX").bars
    sessions = trading_days("1999-01-04", "2018-12-31")
    assert len(sessions) == len(spx)
    assert (sessions == spx.index).all()


def test_known_holidays_are_closed() -> None:
    closed = pd.DatetimeIndex(["2016-12-26", "2018-12-05", "2012-10-30", "2001-09-11"])
    assert not is_trading_day(closed).any()


def test_monthly_expiry_is_third_friday_or_the_day_before_a_holiday() -> None:
    assert monthly_expiry(2016, 1) == pd.Timestamp("2016-01-15")
    assert monthly_expiry(2018, 12) == pd.Timestamp("2018-12-21")
    # Good Friday 2014-04-18 closed the exchange: the April contract expired on Thursday.
    assert monthly_expiry(2014, 4) == pd.Timestamp("2014-04-17")


@pytest.mark.parametrize("as_of", ["1999-03-01", "2008-10-10", "2014-04-10", "2016-12-20"])
def test_every_listed_expiry_is_a_trading_day(as_of) -> None:
    expiries = listed_expiries(as_of, max_days=400)
    assert len(expiries) > 12
    assert is_trading_day(expiries).all()
    assert (expiries >= pd.Timestamp(as_of)).all()
    assert expiries.is_monotonic_increasing and expiries.is_unique


def test_weeklies_are_fridays_or_shifted_and_optional() -> None:
    with_weeklies = listed_expiries("2016-01-04", max_days=60)
    monthlies = listed_expiries("2016-01-04", max_days=60, weeklies=False)
    assert set(monthlies) < set(with_weeklies)
    assert list(monthlies) == [pd.Timestamp("2016-01-15"), pd.Timestamp("2016-02-19")]
    assert (with_weeklies.day_of_week == 4).all()


def test_dates_outside_the_calendar_are_an_error() -> None:
    with pytest.raises(DataError, match="outside"):
        trading_days("1980-01-01", "1981-01-01")
