"""NYSE trading days and listed option expirations, from the ``exchange_calendars`` library.

Listed equity-option expirations are Fridays: the monthly contract on the third Friday and, for
underlyings that have them, weekly contracts on the other Fridays. When the exchange is closed on
that Friday (e.g. Good Friday) the contract expires on the preceding trading day.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from clstm_ppo.errors import DataError

CALENDAR_NAME = "XNYS"
# exchange_calendars only builds 20 years back by default; our bundled data starts in 1999.
_CALENDAR_START = "1990-01-02"
_CALENDAR_END_YEARS_AHEAD = 2


@lru_cache(maxsize=1)
def nyse_calendar() -> xcals.ExchangeCalendar:
    """The NYSE calendar covering 1990 to two years from today."""
    end = pd.Timestamp.today().normalize() + pd.DateOffset(years=_CALENDAR_END_YEARS_AHEAD)
    return xcals.get_calendar(CALENDAR_NAME, start=_CALENDAR_START, end=end.strftime("%Y-%m-%d"))


@lru_cache(maxsize=1)
def _all_sessions() -> pd.DatetimeIndex:
    return pd.DatetimeIndex(nyse_calendar().sessions).tz_localize(None)


def trading_days(start: dt.date | str, end: dt.date | str) -> pd.DatetimeIndex:
    """NYSE sessions between ``start`` and ``end`` inclusive (tz-naive midnight timestamps)."""
    sessions = _all_sessions()
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    if lo < sessions[0] or hi > sessions[-1]:
        raise DataError(
            f"calendar {CALENDAR_NAME}: dates {lo.date()}..{hi.date()} are outside "
            f"{sessions[0].date()}..{sessions[-1].date()}"
        )
    return sessions[(sessions >= lo) & (sessions <= hi)]


def is_trading_day(dates: pd.DatetimeIndex | pd.Series | np.ndarray) -> np.ndarray:
    """Boolean mask: which of ``dates`` are NYSE sessions."""
    return pd.DatetimeIndex(dates).normalize().isin(_all_sessions())


def _on_or_before_session(dates: pd.DatetimeIndex) -> pd.DatetimeIndex:
    sessions = _all_sessions()
    positions = sessions.searchsorted(dates, side="right") - 1
    return sessions[positions]


def monthly_expiry(year: int, month: int) -> pd.Timestamp:
    """Standard monthly expiration: third Friday, or the trading day before it if closed."""
    first = pd.Timestamp(year=year, month=month, day=1)
    offset = (4 - first.weekday()) % 7  # Friday is weekday 4
    third_friday = first + pd.Timedelta(days=offset + 14)
    return _on_or_before_session(pd.DatetimeIndex([third_friday]))[0]


WEEKLY_HORIZON_DAYS = 45


def expiration_calendar(
    start: dt.date | pd.Timestamp, end: dt.date | pd.Timestamp
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Every Friday expiration from ``start`` to ``end`` (shifted before holidays) and whether it
    is a monthly (third-Friday) contract; the table :func:`listed_expiries` filters per day."""
    fridays = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="W-FRI")
    monthly = np.asarray((fridays.day >= 15) & (fridays.day <= 21))
    return _on_or_before_session(fridays), monthly


def listed_expiries(
    as_of: dt.date | pd.Timestamp,
    max_days: int = 400,
    weeklies: bool = True,
    weekly_horizon_days: int = WEEKLY_HORIZON_DAYS,
) -> pd.DatetimeIndex:
    """Expirations listed on ``as_of``: monthlies out to ``max_days`` calendar days, weeklies
    (other Fridays) out to ``weekly_horizon_days``, each moved to the previous session when the
    exchange is closed. Includes ``as_of`` itself when it is an expiration day."""
    as_of = pd.Timestamp(as_of).normalize()
    horizon = as_of + pd.Timedelta(days=max_days)
    fridays = pd.date_range(
        as_of - pd.Timedelta(days=6), horizon + pd.Timedelta(days=6), freq="W-FRI"
    )
    third = (fridays.day >= 15) & (fridays.day <= 21)
    weekly_limit = as_of + pd.Timedelta(days=weekly_horizon_days)
    keep = third | (weeklies & (fridays <= weekly_limit))
    expiries = _on_or_before_session(fridays[keep]).unique()
    return expiries[(expiries >= as_of) & (expiries <= horizon)]
