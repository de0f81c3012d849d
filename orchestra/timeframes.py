"""Timeframe strings (``1m``, ``15m``, ``1h``, ``4h``, ``1D``, ``1w``) and their durations.

Time is 24/7 (crypto): a day has 24 hours and a year 365 days, so the annualisation factor of a
timeframe is ``365 * bars_per_day``.

>>> timeframe_ms("4h")
14400000
>>> timeframe_ms("1D") == timeframe_ms("1d")
True
>>> bars_per_year("1h")
8760.0
"""

from __future__ import annotations

import re

_UNITS_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_PATTERN = re.compile(r"^\s*(\d+)\s*([mhdwMHDW]|min)\s*$")
DAY_MS = 86_400_000
DAYS_PER_YEAR = 365.0


class TimeframeError(ValueError):
    """A timeframe string that cannot be parsed."""


def timeframe_ms(tf: str) -> int:
    """Duration of one bar of ``tf`` in milliseconds.

    Accepts ``<n>m`` (minutes), ``<n>h``, ``<n>d`` / ``<n>D`` and ``<n>w``. Months are not accepted
    (they have no fixed length); an upper-case ``M`` is rejected rather than read as minutes.
    """
    match = _PATTERN.match(str(tf))
    if match is None or match.group(2) == "M":
        raise TimeframeError(
            f"{tf!r} is not a timeframe; use <n>m, <n>h, <n>d (or D) or <n>w, e.g. 15m, 4h, 1D"
        )
    n = int(match.group(1))
    if n <= 0:
        raise TimeframeError(f"{tf!r}: the number of units must be positive")
    unit = "m" if match.group(2) == "min" else match.group(2).lower()
    return n * _UNITS_MS[unit]


def polars_every(tf: str) -> str:
    """The polars duration string (``1h``, ``1d``, ``15m``) for a timeframe."""
    ms = timeframe_ms(tf)
    if ms % DAY_MS == 0:
        return f"{ms // DAY_MS}d"
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    return f"{ms // 60_000}m"


def bars_per_day(tf: str) -> float:
    """Number of bars of ``tf`` in one 24-hour day (may be fractional for weekly bars)."""
    return DAY_MS / timeframe_ms(tf)


def bars_per_year(tf: str) -> float:
    """Annualisation factor: 365 days × bars per day."""
    return DAYS_PER_YEAR * bars_per_day(tf)


def period_days(clock_tf: str) -> float:
    """Calendar days covered by one lifecycle/allocator step on a clock of ``clock_tf``.

    Pods are evaluated once per UTC day end; on a clock of a day or finer that is every day, on a
    coarser clock (``3d``, ``1w``) every bar, which then covers ``timeframe / 1 day`` days.

    >>> period_days("1h"), period_days("1d"), period_days("3d"), period_days("1w")
    (1.0, 1.0, 3.0, 7.0)
    """
    return max(1.0, timeframe_ms(clock_tf) / DAY_MS)


def days_to_periods(days: float, period: float) -> int:
    """The number of steps of ``period`` days that cover ``days`` calendar days (at least 1).

    >>> days_to_periods(180, 1.0), days_to_periods(180, 3.0), days_to_periods(30, 7.0)
    (180, 60, 5)
    """
    import math

    return max(1, math.ceil(days / period - 1e-9))


def file_suffix(tf: str) -> str:
    """The lower-case suffix used in data file names: ``BTC-USDT_1d.parquet``."""
    return polars_every(tf)


def epoch_ms(when: object) -> int:
    """Milliseconds since the epoch (UTC) of a date (its midnight) or an aware/naive datetime."""
    import datetime as dt

    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return int(when.timestamp() * 1000)
    if isinstance(when, dt.date):
        return int(dt.datetime.combine(when, dt.time(), dt.UTC).timestamp() * 1000)
    raise TypeError(f"expected a date or datetime, got {when!r}")
