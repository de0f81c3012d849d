"""Return analytics: what a quant reads first, on daily returns.

Daily returns are taken at each UTC day's last bar: the account's equity (its first day against
the starting capital) and each pod's NAV (transfers removed), and the benchmark's value
(``backtest.benchmark``: BTC buy and hold by default, ``docs/results.md``). Every figure uses
calendar-day annualisation (365 returns a year: crypto trades every day) and zero risk-free
rate, with the same definitions as QuantStats (tested against it on daily runs):

* volatility ``std(r)·√365``, Sharpe ``mean(r)/std(r)·√365`` (``ddof = 1``);
* skew and (excess) kurtosis: the bias-corrected sample estimators (pandas, QuantStats);
* ``var_95``: parametric (normal) one-day VaR at 95 % — QuantStats' ``value_at_risk``;
  ``var_95_hist``: the 5 % quantile of the daily returns; ``cvar_95``: the mean of the returns at
  or below that quantile (historical expected shortfall, QuantStats ``method="historical"``);
* against the benchmark ``b``: ``beta = cov(r, b) / var(b)``, ``alpha = (mean(r) − β·mean(b))·365``
  (QuantStats' ``greeks``), ``correlation``, ``tracking_error = std(r − b)·√365`` and
  ``information_ratio = mean(r − b) / std(r − b)·√365`` (QuantStats reports it un-annualised:
  ours is its figure × √365).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

PERIODS = 365  # daily returns a year (crypto trades every day)


def _day_ends(frame: pl.DataFrame, value: str) -> pl.DataFrame:
    return (
        frame.select("timestamp", value)
        .sort("timestamp")
        .group_by_dynamic("timestamp", every="1d")
        .agg(pl.col(value).last())
        .select(pl.col("timestamp").dt.date().alias("date"), pl.col(value).alias("value"))
    )


def day_end_values(result: Any, entity: str = "account") -> tuple[pl.DataFrame, float]:
    """``date, value`` at each UTC day's last bar, and the value before the first day (the
    starting capital, a NAV of 1, the benchmark's 1)."""
    if entity == "account":
        start = float(result.summary.get("capital") or result.equity["equity"][0])
        return _day_ends(result.equity, "equity"), start
    if entity == "benchmark":
        if not result.benchmark.height:
            raise KeyError("this run has no benchmark (backtest.benchmark: none)")
        return _day_ends(result.benchmark, "value"), 1.0
    pods = result.pod_equity["pod_id"].unique(maintain_order=True).to_list()
    if entity not in pods:
        raise KeyError(f"no entity {entity!r}; use account, benchmark or a pod: {', '.join(pods)}")
    nav = result.pod_equity.filter(pl.col("pod_id") == entity)
    return _day_ends(nav, "nav"), 1.0


def daily_returns(result: Any, entity: str = "account") -> pl.DataFrame:
    """``date, return``: the entity's daily simple returns (a day whose value is not positive
    before it — a pod at NAV 0 — has none)."""
    days, start = day_end_values(result, entity)
    return _returns(days, start)


def daily_returns_of(frame: pl.DataFrame, value: str, start: float) -> pl.DataFrame:
    """:func:`daily_returns` of a ``timestamp, value`` frame that starts from ``start``."""
    return _returns(_day_ends(frame, value), start)


def _returns(days: pl.DataFrame, start: float) -> pl.DataFrame:
    v = days["value"].to_numpy()
    prev = np.concatenate([[start], v[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, v / prev - 1.0, np.nan)
    out = pl.DataFrame({"date": days["date"], "return": r})
    return out.filter(pl.col("return").is_finite())


def _skew(r: np.ndarray) -> float:
    n = r.size
    if n < 3:
        return float("nan")
    d = r - r.mean()
    m2, m3 = np.mean(d**2), np.mean(d**3)
    if m2 == 0:
        return 0.0
    g1 = m3 / m2**1.5
    return float(g1 * np.sqrt(n * (n - 1)) / (n - 2))


def _kurtosis(r: np.ndarray) -> float:
    n = r.size
    if n < 4:
        return float("nan")
    d = r - r.mean()
    m2, m4 = np.mean(d**2), np.mean(d**4)
    if m2 == 0:
        return 0.0
    g2 = m4 / m2**2 - 3.0
    return float((n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * g2 + 6.0))


def _normal_ppf(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def return_stats(r: np.ndarray) -> dict[str, float]:
    """Distribution figures of daily returns ``r`` (definitions: the module docstring)."""
    n = r.size
    sd = float(np.std(r, ddof=1)) if n > 1 else 0.0
    mean = float(r.mean()) if n else 0.0
    q = float(np.quantile(r, 0.05)) if n else float("nan")
    tail = r[r <= q] if n else r
    return {
        "days": float(n),
        "mean_daily": mean,
        "volatility": sd * np.sqrt(PERIODS),
        "sharpe": mean / sd * np.sqrt(PERIODS) if sd > 0 else 0.0,
        "skew": _skew(r),
        "kurtosis": _kurtosis(r),
        "var_95": mean + sd * _normal_ppf(0.05) if n > 1 else float("nan"),
        "var_95_hist": q,
        "cvar_95": float(tail.mean()) if tail.size else float("nan"),
        "best_day": float(r.max()) if n else float("nan"),
        "worst_day": float(r.min()) if n else float("nan"),
        "win_days": float((r > 0).mean()) if n else float("nan"),
    }


def relative_stats(r: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Figures against the benchmark on paired daily returns (module docstring)."""
    nan = float("nan")
    if r.size < 3:
        return dict.fromkeys(
            ("alpha", "beta", "correlation", "tracking_error", "information_ratio"), nan
        )
    cov = np.cov(r, b)
    beta = cov[0, 1] / cov[1, 1] if cov[1, 1] > 0 else nan
    alpha = (r.mean() - beta * b.mean()) * PERIODS if np.isfinite(beta) else nan
    sd_r, sd_b = np.sqrt(cov[0, 0]), np.sqrt(cov[1, 1])
    corr = cov[0, 1] / (sd_r * sd_b) if sd_r > 0 and sd_b > 0 else nan
    active = r - b
    te = float(np.std(active, ddof=1))
    return {
        "alpha": float(alpha),
        "beta": float(beta),
        "correlation": float(corr),
        "tracking_error": te * np.sqrt(PERIODS),
        "information_ratio": float(active.mean() / te * np.sqrt(PERIODS)) if te > 0 else 0.0,
    }


def analytics(result: Any) -> pl.DataFrame:
    """One row per entity (``account``, each pod, and ``benchmark`` when there is one): the
    distribution figures of its daily returns and, against the benchmark, alpha, beta,
    correlation, tracking error and information ratio."""
    entities = ["account", *result.pod_equity["pod_id"].unique(maintain_order=True).to_list()]
    bench = daily_returns(result, "benchmark") if result.benchmark.height else None
    if bench is not None:
        entities.append("benchmark")
    rows = []
    for entity in entities:
        r = daily_returns(result, entity)
        row: dict[str, Any] = {"entity": entity, **return_stats(r["return"].to_numpy())}
        if bench is not None:
            both = r.join(bench, on="date", how="inner", suffix="_b")
            row.update(relative_stats(both["return"].to_numpy(), both["return_b"].to_numpy()))
        rows.append(row)
    return pl.DataFrame(rows)


def monthly_returns(result: Any, entity: str = "account") -> pl.DataFrame:
    """``year, month, return``: compounded daily returns per calendar month (UTC)."""
    r = daily_returns(result, entity)
    return (
        r.group_by(pl.col("date").dt.year().alias("year"), pl.col("date").dt.month().alias("month"))
        .agg(((1.0 + pl.col("return")).product() - 1.0).alias("return"))
        .sort("year", "month")
    )


def yearly_returns(result: Any, entity: str = "account") -> pl.DataFrame:
    """``year, return`` (and the benchmark's, when there is one), compounded per calendar year."""
    r = daily_returns(result, entity)
    out = (
        r.group_by(pl.col("date").dt.year().alias("year"))
        .agg(((1.0 + pl.col("return")).product() - 1.0).alias("return"))
        .sort("year")
    )
    if entity != "benchmark" and result.benchmark.height:
        b = yearly_returns(result, "benchmark").rename({"return": "benchmark"})
        out = out.join(b, on="year", how="left")
    return out


def rolling(result: Any, entity: str = "account", window: int = 90) -> pl.DataFrame:
    """``date, sharpe, volatility`` over trailing ``window``-day windows (annualised)."""
    r = daily_returns(result, entity)
    mean = pl.col("return").rolling_mean(window)
    sd = pl.col("return").rolling_std(window)
    return r.select(
        "date",
        (mean / sd * np.sqrt(PERIODS)).alias("sharpe"),
        (sd * np.sqrt(PERIODS)).alias("volatility"),
    )


def drawdowns(result: Any, entity: str = "account", top: int = 5) -> pl.DataFrame:
    """The ``top`` deepest drawdowns of the daily value path: ``start`` (first day below the
    peak), ``trough``, ``recovery`` (first day back at the peak; null while not recovered),
    ``depth`` (fraction below the peak), ``days`` (start to recovery, or to the last day)."""
    days, start_value = day_end_values(result, entity)
    dates = days["date"].to_list()
    v = days["value"].to_numpy()
    peak = np.maximum.accumulate(np.concatenate([[start_value], v]))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - v / peak, 0.0)
    rows = []
    i, n = 0, v.size
    while i < n:
        if dd[i] <= 0:
            i += 1
            continue
        j = i
        while j < n and dd[j] > 0:
            j += 1
        k = i + int(np.argmax(dd[i:j]))
        recovered = j < n
        end: dt.date = dates[j] if recovered else dates[-1]
        rows.append(
            {
                "start": dates[i],
                "trough": dates[k],
                "recovery": dates[j] if recovered else None,
                "depth": float(dd[k]),
                "days": (end - dates[i]).days + (0 if recovered else 1),
            }
        )
        i = j
    frame = pl.DataFrame(
        rows,
        schema={"start": pl.Date, "trough": pl.Date, "recovery": pl.Date, "depth": pl.Float64,
                "days": pl.Int64},
    )  # fmt: skip
    return frame.sort("depth", descending=True).head(top)
