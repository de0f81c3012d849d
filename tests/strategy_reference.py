"""Reference implementations of the built-in strategies in polars expressions, per symbol with
``.over("symbol")``: independent of the numba kernels the product runs (a different algorithm for
every rolling window), written from the formulas in ``docs/strategies.md``. Tests compare the two
on random and real bars.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from orchestra.strategies.common import VOL_FLOOR, bars_per_year


def _log_return() -> pl.Expr:
    return (pl.col("close") / pl.col("close").shift(1)).log().over("symbol")


def _vol(window: int, per_year: float, r: pl.Expr | None = None) -> pl.Expr:
    r = _log_return() if r is None else r
    return r.rolling_std(window).over("symbol") * np.sqrt(per_year)


def _scaled(signal: pl.Expr, vol: pl.Expr, vol_target: float, n: pl.Expr) -> pl.Expr:
    return signal * vol_target / vol.clip(lower_bound=VOL_FLOOR) / n


def _with_listed(bars: pl.DataFrame) -> pl.DataFrame:
    """Add ``_listed``: how many symbols have had a bar by each row's timestamp (an as-of join
    on the symbols' first bars)."""
    firsts = (
        bars.group_by("symbol")
        .agg(pl.col("timestamp").min().alias("first"))
        .sort("first")
        .with_columns(pl.int_range(1, pl.len() + 1).alias("_listed"))
        .group_by("first")
        .agg(pl.col("_listed").max())
        .sort("first")
    )
    return (
        bars.sort("timestamp")
        .join_asof(firsts, left_on="timestamp", right_on="first", strategy="backward")
        .drop("first")
        .sort("symbol", "timestamp")
    )


def _mom(lb: int) -> pl.Expr:
    return (pl.col("close") / pl.col("close").shift(lb) - 1).over("symbol").sign()


def _breakout(lookback: int, long_only: bool) -> pl.Expr:
    upper = pl.col("high").shift(1).rolling_max(lookback)
    lower = pl.col("low").shift(1).rolling_min(lookback)
    raw = (
        pl.when(pl.col("close") > upper)
        .then(1.0)
        .when(pl.col("close") < lower)
        .then(0.0 if long_only else -1.0)
        .otherwise(None)
    )
    return raw.forward_fill().fill_null(0.0).over("symbol")


def _expr(name: str, p: dict[str, Any], per_year: float, n: pl.Expr) -> pl.Expr:
    vt = p.get("vol_target", 0.35)
    if name == "tsmom":
        vol = _vol(p.get("vol_window", 30), per_year)
        return _scaled(_mom(p.get("lookback", 30)), vol, vt, n)
    if name == "vw-tsmom":
        lb = p.get("lookback", 30)
        num = (_log_return() * pl.col("volume")).rolling_sum(lb).over("symbol")
        den = pl.col("volume").rolling_sum(lb).over("symbol")
        # the documented rule: a window with zero total volume gives 0. Decided by counting the
        # window's non-zero volumes: polars' rolling sum of a window of zeros can leave a
        # rounding residue of earlier values (a "positive" 1e-17 and a sign out of noise)
        traded = (pl.col("volume") != 0).cast(pl.Int64).rolling_sum(lb).over("symbol") > 0
        signal = pl.when(traded & (den > 0)).then((num / den).sign()).otherwise(0.0)
        return _scaled(signal, _vol(p.get("vol_window", 30), per_year), vt, n)
    if name == "donchian-ensemble":
        lbs = p.get("lookbacks", [20, 60, 150])
        signal = pl.mean_horizontal([_breakout(L, p.get("long_only", False)) for L in lbs])
        return _scaled(signal, _vol(p.get("vol_window", 30), per_year), vt, n)
    if name == "vol-adaptive":
        short = _vol(p.get("vol_short", 20), per_year)
        long = _vol(p.get("vol_long", 120), per_year)
        signal = pl.when(short > long).then(_mom(p.get("fast_lookback", 20)))
        signal = signal.otherwise(_mom(p.get("slow_lookback", 90)))
        signal = pl.when(long.is_null()).then(0.0).otherwise(signal)
        return _scaled(signal, short, vt, n)
    raise KeyError(name)


def reference_weights(name: str, bars: pl.DataFrame, params: dict[str, Any]) -> pl.DataFrame:
    """``timestamp, symbol, weight`` sorted by symbol and time, NaN/null as 0 (no leverage cap)."""
    bars = bars.sort("symbol", "timestamp")
    per_year = bars_per_year(bars)
    if name != "ensemble":
        w = _expr(name, params, per_year, pl.col("_listed"))
        bars = _with_listed(bars)
        return bars.select("timestamp", "symbol", w.fill_nan(0.0).fill_null(0.0).alias("weight"))
    subs = params["sub_strategies"]
    base = bars.select("timestamp", "symbol", "close")
    cols = []
    for i, sub in enumerate(subs):
        w = reference_weights(sub["name"], bars, sub.get("params", {}))
        base = base.join(w.rename({"weight": f"w{i}"}), on=["timestamp", "symbol"], how="left")
        cols.append(f"w{i}")
    if params.get("aggregation", "equal") == "equal":
        combined = pl.mean_horizontal(cols)
    else:
        ret = (pl.col("close") / pl.col("close").shift(1) - 1).over("symbol")
        window = params.get("vol_window", 60)
        s = [
            (pl.col(c).shift(1) * ret).over("symbol").rolling_std(window).over("symbol")
            for c in cols
        ]
        known = pl.all_horizontal([x.is_not_null() & (x > 0) for x in s])
        inv = [pl.when(known).then(1.0 / x).otherwise(1.0) for x in s]
        total = pl.sum_horizontal(inv)
        combined = pl.sum_horizontal(
            [iv / total * pl.col(c) for iv, c in zip(inv, cols, strict=True)]
        )
    return base.select("timestamp", "symbol", combined.fill_nan(0.0).fill_null(0.0).alias("weight"))
