"""Polars building blocks shared by the built-in strategies.

Every expression here is evaluated per symbol (``.over("symbol")``) on a frame sorted by
``symbol, timestamp``, and uses only the current and earlier rows (no look-ahead).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from orchestra.timeframes import DAYS_PER_YEAR

VOL_FLOOR = 1e-6  # annualised; keeps 1/σ finite on flat (zero-volume, gap-filled) stretches


def bars_per_year(bars: pl.DataFrame) -> float:
    """Annualisation factor (365 × bars per day) inferred from the frame's bar spacing."""
    ts = bars.select(pl.col("timestamp").dt.epoch("ms").diff().over("symbol").alias("d"))["d"]
    ts = ts.filter(ts > 0)
    step = float(ts.min()) if ts.len() else 86_400_000.0  # type: ignore[arg-type]
    return DAYS_PER_YEAR * 86_400_000.0 / step


def log_return() -> pl.Expr:
    """Bar log-return ``ln(close_t / close_{t-1})`` per symbol (null on the first bar)."""
    return (pl.col("close") / pl.col("close").shift(1)).log().over("symbol")


def realised_vol(window: int, per_year: float, returns: pl.Expr | None = None) -> pl.Expr:
    """Annualised rolling standard deviation of ``returns`` (default log-returns) per symbol."""
    r = log_return() if returns is None else returns
    return r.rolling_std(window).over("symbol") * np.sqrt(per_year)


def vol_scaled(signal: pl.Expr, vol: pl.Expr, vol_target: float, n_symbols: int) -> pl.Expr:
    """``signal · vol_target / σ / n_symbols`` with σ floored at :data:`VOL_FLOOR`."""
    return signal * vol_target / vol.clip(lower_bound=VOL_FLOOR) / n_symbols


def finish(frame: pl.LazyFrame | pl.DataFrame, weight: pl.Expr) -> pl.DataFrame:
    """Select ``timestamp, symbol, weight`` with nulls and NaNs (not enough history) as 0."""
    lf = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
    return (
        lf.select("timestamp", "symbol", weight.alias("weight"))
        .with_columns(pl.col("weight").fill_nan(0.0).fill_null(0.0))
        .collect()
    )
