"""Performance measures: pure functions of numpy arrays (STYLE rule 5).

Returns are taken at UTC day ends (daily on a daily or finer clock, one per bar on a coarser
clock); annualisation uses 365 days (24/7 markets) with ``periods_per_year`` such returns a year
(365 for daily returns, 365/3 for 3-day returns). Pods are
measured on their NAV (equity with capital transfers removed), the account on its equity.
"""

from __future__ import annotations

import numpy as np

from orchestra.timeframes import DAYS_PER_YEAR

METRIC_COLUMNS = [
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "win_rate",
    "trade_count",
    "turnover",
    "fees",
    "netting_savings",
    "exposure",
    # the plan's pod performance: days live, rolling volatility, drawdown now (at the end)
    "live_days",
    "rolling_volatility",
    "current_drawdown",
]


def state_figures(
    day_end_values: np.ndarray, values: np.ndarray, live_days: float, window: int, per_year: float
) -> dict[str, float]:
    """``live_days``; ``rolling_volatility``: annualised std of the last ``window`` day-end
    returns (NaN with fewer than 2); ``current_drawdown``: the last value below its running
    peak."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (
            day_end_values[1:] / day_end_values[:-1] - 1.0
            if day_end_values.size > 1
            else np.zeros(0)
        )
    r = r[np.isfinite(r)][-window:]
    vol = float(np.std(r, ddof=1) * np.sqrt(per_year)) if r.size > 1 else float("nan")
    dd = drawdown(values)
    return {
        "live_days": float(live_days),
        "rolling_volatility": vol,
        "current_drawdown": float(dd[-1]) if dd.size else 0.0,
    }


def total_return(values: np.ndarray) -> float:
    """``values[-1] / values[0] - 1`` for a value path ``(n,)``."""
    return float(values[-1] / values[0] - 1.0) if values.size and values[0] > 0 else 0.0


def cagr(values: np.ndarray, days: float) -> float:
    """Compound annual growth ``(1 + total_return)^(365 / days) - 1``; ``days`` simulated."""
    tr = total_return(values)
    if days <= 0 or tr <= -1:
        return -1.0 if tr <= -1 else 0.0
    return float((1.0 + tr) ** (DAYS_PER_YEAR / days) - 1.0)


def volatility(daily: np.ndarray, periods_per_year: float = DAYS_PER_YEAR) -> float:
    """Annualised standard deviation (ddof=1) of periodic returns ``(n,)``."""
    return float(np.std(daily, ddof=1) * np.sqrt(periods_per_year)) if daily.size > 1 else 0.0


def sharpe(daily: np.ndarray, periods_per_year: float = DAYS_PER_YEAR) -> float:
    """Annualised Sharpe ratio, zero risk-free rate: ``mean / std · √periods_per_year`` (0 if
    std = 0)."""
    if daily.size < 2:
        return 0.0
    sd = np.std(daily, ddof=1)
    return float(np.mean(daily) / sd * np.sqrt(periods_per_year)) if sd > 0 else 0.0


def sortino(daily: np.ndarray, periods_per_year: float = DAYS_PER_YEAR) -> float:
    """``mean / downside deviation · √periods_per_year``, downside deviation ``√mean(min(r, 0)²)``."""
    if daily.size < 2:
        return 0.0
    dd = np.sqrt(np.mean(np.minimum(daily, 0.0) ** 2))
    return float(np.mean(daily) / dd * np.sqrt(periods_per_year)) if dd > 0 else 0.0


def drawdown(values: np.ndarray) -> np.ndarray:
    """Drawdown path ``1 - v / running max(v)`` (≥ 0)."""
    peak = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - values / peak, 0.0)
    return dd


def max_drawdown(values: np.ndarray) -> float:
    """Largest drawdown of a value path, as a positive fraction."""
    return float(drawdown(values).max()) if values.size else 0.0


def calmar(cagr_value: float, mdd: float) -> float:
    """CAGR / max drawdown (0 when there was no drawdown)."""
    return float(cagr_value / mdd) if mdd > 0 else 0.0


def win_rate(daily: np.ndarray) -> float:
    """Share of days with a positive return."""
    return float(np.mean(daily > 0)) if daily.size else 0.0


def summarize(
    values: np.ndarray,
    day_end_values: np.ndarray,
    days: float,
    trade_count: int,
    turnover: float,
    fees: float,
    netting_savings: float,
    exposure: float,
    periods_per_year: float = DAYS_PER_YEAR,
) -> dict[str, float]:
    """All metrics of SPEC §11 for one entity.

    ``values`` is the per-bar value path (starting value first), ``day_end_values`` the value at
    each day end with the starting value prepended; ``turnover`` is already annualised.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        daily = (
            day_end_values[1:] / day_end_values[:-1] - 1.0
            if day_end_values.size > 1
            else np.zeros(0)
        )
    daily = daily[np.isfinite(daily)]  # a frozen NAV at 0 has no return
    c = cagr(values, days)
    mdd = max_drawdown(values)
    return {
        "total_return": total_return(values),
        "cagr": c,
        "volatility": volatility(daily, periods_per_year),
        "sharpe": sharpe(daily, periods_per_year),
        "sortino": sortino(daily, periods_per_year),
        "max_drawdown": mdd,
        "calmar": calmar(c, mdd),
        "win_rate": win_rate(daily),
        "trade_count": float(trade_count),
        "turnover": float(turnover),
        "fees": float(fees),
        "netting_savings": float(netting_savings),
        "exposure": float(exposure),
    }
