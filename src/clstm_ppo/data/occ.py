"""OCC / OSI option symbols: ``AAPL240119C00190000`` is AAPL, 2024-01-19, call, strike 190.

The layout is fixed from the *right*: the last 15 characters are always ``yymmdd`` (expiry),
``C`` or ``P`` (right) and eight digits of strike in thousandths of a dollar. Whatever precedes
them is the root (1-6 characters, letters and digits, e.g. ``SPXW`` or the adjusted ``AAPL1``).
The OSI form pads the root with spaces to six characters (21 characters in all).

Parsing by position rather than by searching for ``"C"`` or ``"P"`` matters: roots such as
``C`` (Citigroup), ``CPB``, ``PCG`` or ``PEP`` contain those letters themselves.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from clstm_ppo.errors import DataError

TAIL_LENGTH = 15
MAX_ROOT_LENGTH = 6
OSI_LENGTH = MAX_ROOT_LENGTH + TAIL_LENGTH
MAX_STRIKE_THOUSANDTHS = 99_999_999

_ROOT = re.compile(r"[A-Z0-9]{1,6}")
_TAIL = re.compile(r"(?P<date>\d{6})(?P<right>[CP])(?P<strike>\d{8})")
# Anchored at both ends; the tail has a fixed width, so the root is whatever precedes it.
_SYMBOL = re.compile(r"^(?P<root>[A-Z0-9]{1,6}) *(?P<date>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")


@dataclass(frozen=True)
class OccSymbol:
    """One option contract identified by its OCC symbol."""

    root: str
    expiry: dt.date
    right: Literal["C", "P"]
    strike: float

    def __post_init__(self) -> None:
        if not _ROOT.fullmatch(self.root):
            raise DataError(
                f"OCC symbol root {self.root!r}: must be 1-6 upper-case letters or digits"
            )
        if self.right not in ("C", "P"):
            raise DataError(f"OCC symbol right {self.right!r}: must be 'C' or 'P'")
        if not 2000 <= self.expiry.year <= 2099:
            raise DataError(f"OCC symbol expiry {self.expiry}: year must be 2000-2099")
        thousandths = self.strike * 1000
        if (
            not (0 < thousandths <= MAX_STRIKE_THOUSANDTHS)
            or abs(thousandths - round(thousandths)) > 1e-6
        ):
            raise DataError(
                f"OCC symbol strike {self.strike!r}: must be positive, below 100000 and a "
                "whole number of thousandths of a dollar"
            )

    def format(self) -> str:
        """The compact OCC string (no padding), e.g. ``SPXW240119C04700000``."""
        return f"{self.root}{self.expiry:%y%m%d}{self.right}{round(self.strike * 1000):08d}"

    def format_osi(self) -> str:
        """The 21-character OSI string with the root space-padded to six characters."""
        return f"{self.root:<{MAX_ROOT_LENGTH}}{self.format()[len(self.root) :]}"

    def __str__(self) -> str:
        return self.format()


def _expiry(symbol: str, text: str) -> dt.date:
    # OSI dates from 2010 on; a two-digit year is always 20yy (strptime would map 69-99 to 19yy).
    try:
        return dt.date(2000 + int(text[:2]), int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise DataError(
            f"OCC symbol {symbol!r}: expiry {text!r} is not a valid yymmdd date"
        ) from None


def parse_occ(symbol: str) -> OccSymbol:
    """Parse an OCC symbol, compact (``AAPL240119C00190000``) or OSI (``SPXW  240119C04700000``).

    Raises :class:`DataError` with one line naming the symbol and what is wrong with it.
    """
    if not isinstance(symbol, str):
        raise DataError(f"OCC symbol {symbol!r}: must be a string")
    if len(symbol) <= TAIL_LENGTH or len(symbol) > OSI_LENGTH:
        raise DataError(
            f"OCC symbol {symbol!r}: length {len(symbol)}, expected {TAIL_LENGTH + 1}-"
            f"{OSI_LENGTH} characters (root of 1-6, yymmdd, C/P, 8-digit strike)"
        )
    head, tail = symbol[:-TAIL_LENGTH], symbol[-TAIL_LENGTH:]
    if " " in head:
        root = head.rstrip(" ")
        if len(symbol) != OSI_LENGTH or " " in root or not root:
            raise DataError(
                f"OCC symbol {symbol!r}: a space-padded root must be padded to exactly "
                f"{MAX_ROOT_LENGTH} characters (21 in all) with the spaces after the root"
            )
    else:
        root = head
    if not _ROOT.fullmatch(root):
        raise DataError(
            f"OCC symbol {symbol!r}: root {root!r} must be 1-6 upper-case letters or digits"
        )
    match = _TAIL.fullmatch(tail)
    if match is None:
        right = tail[6]
        if right not in ("C", "P"):
            raise DataError(
                f"OCC symbol {symbol!r}: right {right!r} at position {len(head) + 7} "
                "must be 'C' or 'P' (the last 15 characters are yymmdd, C/P, 8-digit strike)"
            )
        if not tail[:6].isdigit():
            raise DataError(f"OCC symbol {symbol!r}: expiry {tail[:6]!r} must be six digits")
        raise DataError(f"OCC symbol {symbol!r}: strike {tail[7:]!r} must be eight digits")
    expiry = _expiry(symbol, match["date"])
    thousandths = int(match["strike"])
    if thousandths == 0:
        raise DataError(f"OCC symbol {symbol!r}: strike is zero")
    right: Literal["C", "P"] = "C" if match["right"] == "C" else "P"
    return OccSymbol(root=root, expiry=expiry, right=right, strike=thousandths / 1000)


def parse_occ_many(symbols: Iterable[str]) -> pd.DataFrame:
    """Parse many OCC symbols at once (a whole option chain) into a frame.

    Columns: ``symbol`` (as given), ``root``, ``expiry`` (tz-naive ``datetime64``), ``right``
    and ``strike`` (dollars). Vectorised with one regular expression; the first symbol that does
    not parse is handed to :func:`parse_occ` so the error names exactly what is wrong with it.
    """
    series = pd.Series(list(symbols), dtype=object)
    columns = ["symbol", "root", "expiry", "right", "strike"]
    if series.empty:
        frame = pd.DataFrame({column: pd.Series(dtype=object) for column in columns})
        frame["expiry"] = pd.Series(dtype="datetime64[ns]")
        frame["strike"] = pd.Series(dtype=float)
        return frame
    text = series.where(series.map(lambda value: isinstance(value, str)), "")
    parts = text.str.extract(_SYMBOL)
    padded = text.str.contains(" ", regex=False)
    expiry = pd.to_datetime("20" + parts["date"], format="%Y%m%d", errors="coerce")
    strike = pd.to_numeric(parts["strike"], errors="coerce") / 1000
    bad = (
        parts["root"].isna()
        | expiry.isna()
        | ~(strike > 0)
        | (padded & (text.str.len() != OSI_LENGTH))
    )
    if bad.any():
        first = series[bad.to_numpy()].iloc[0]
        parse_occ(first)  # raises the specific one-line error
        raise DataError(f"OCC symbol {first!r}: malformed")  # pragma: no cover - safety net
    return pd.DataFrame(
        {
            "symbol": series.astype(str),
            "root": parts["root"].astype(str),
            "expiry": expiry.astype("datetime64[ns]"),
            "right": parts["right"].astype(str),
            "strike": strike.astype(float),
        },
        columns=columns,
    )
