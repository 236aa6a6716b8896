"""The embedded default data: real daily series shipped inside the ``arch`` package.

- ``SPX``: S&P 500 index OHLCV, 1999-01-04 to 2018-12-31 (``arch.data.sp500``, Yahoo ^GSPC).
- ``NASDAQ``: NASDAQ Composite OHLCV, 1999-01-04 to 2018-12-31 (``arch.data.nasdaq``).
- ``VIX``: CBOE VIX close, 2014-01-03 to 2019-01-03 (``arch.data.vix``). An index level with no
  open/high/low or volume, so only ``close`` is required.

No network and no keys are needed.
"""

from __future__ import annotations

from functools import cache

import pandas as pd

from clstm_ppo.data.calendar import is_trading_day
from clstm_ppo.data.frames import BAR_COLUMNS, validate_bars
from clstm_ppo.data.market import MarketData
from clstm_ppo.errors import DataError

_ALIASES = {
    "SPX": "SPX",
    "SP500": "SPX",
    "^GSPC": "SPX",
    "GSPC": "SPX",
    "NASDAQ": "NASDAQ",
    "IXIC": "NASDAQ",
    "^IXIC": "NASDAQ",
    "VIX": "VIX",
    "^VIX": "VIX",
}
BUNDLED_SYMBOLS = ("SPX", "NASDAQ", "VIX")
_MODULES = {"SPX": "arch.data.sp500", "NASDAQ": "arch.data.nasdaq", "VIX": "arch.data.vix"}


def canonical_symbol(symbol: str) -> str:
    """Map an alias (``^GSPC``, ``SP500``...) to a bundled symbol, or fail naming the choices."""
    try:
        return _ALIASES[symbol.upper()]
    except KeyError:
        raise DataError(
            f"bundled data: unknown symbol {symbol!r} (available: {', '.join(BUNDLED_SYMBOLS)})"
        ) from None


@cache
def load_bundled(symbol: str) -> MarketData:
    """Validated bars of a bundled symbol."""
    name = canonical_symbol(symbol)
    module = _MODULES[name]
    if name == "VIX":
        import arch.data.vix

        raw = arch.data.vix.load()
        frame = pd.DataFrame({"close": raw["vix"].astype(float)})
        frame.index = pd.DatetimeIndex(raw.index, name="date")
        # The arch file carries a NaN row on each exchange holiday; only those rows are dropped.
        holiday_nan = frame["close"].isna().to_numpy() & ~is_trading_day(frame.index)
        frame = frame[~holiday_nan]
        notes = (f"dropped {int(holiday_nan.sum())} NaN rows dated on NYSE holidays",)
        validate_bars(frame, origin=module, required=("close",))
        return MarketData(name, frame, "bundled", module, notes)
    if name == "SPX":
        import arch.data.sp500 as data_module
    else:
        import arch.data.nasdaq as data_module
    raw = data_module.load()
    frame = raw.rename(columns=lambda c: c.strip().lower().replace(" ", "_"))
    frame = frame[[*BAR_COLUMNS, "adj_close"]].astype(float)
    frame.index = pd.DatetimeIndex(raw.index, name="date")
    validate_bars(frame, origin=module)
    return MarketData(name, frame, "bundled", module)
