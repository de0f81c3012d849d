"""A user's own strategy, referenced from a config as ``tests.user_strategy:always_long``."""

from __future__ import annotations

import polars as pl
from pydantic import Field

from orchestra.strategies import StrategyParams, strategy


class AlwaysLongParams(StrategyParams):
    weight: float = Field(0.5, description="Weight per symbol")


@strategy(AlwaysLongParams)
def always_long(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    return bars.select("timestamp", "symbol", pl.lit(params.weight).alias("weight"))


def no_params_model(bars: pl.DataFrame, params: object) -> pl.DataFrame:
    return bars.select("timestamp", "symbol", pl.lit(1.0).alias("weight"))


class ReversedParams(StrategyParams):
    lookback: int = Field(20, ge=1)

    def warmup_bars(self) -> int:
        return self.lookback + 31


@strategy(ReversedParams)
def reversed_tsmom(bars: pl.DataFrame, params: ReversedParams) -> pl.DataFrame:
    """A deliberately bad pod: the opposite of tsmom."""
    from orchestra.strategies import compute_weights

    w = compute_weights("tsmom", bars, {"lookback": params.lookback})
    return w.with_columns(-pl.col("weight"))


@strategy(AlwaysLongParams)
def inf_weights(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: infinite weights."""
    return bars.select("timestamp", "symbol", pl.lit(float("inf")).alias("weight"))


@strategy(AlwaysLongParams)
def duplicate_rows(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: every (timestamp, symbol) twice."""
    w = bars.select("timestamp", "symbol", pl.lit(params.weight).alias("weight"))
    return pl.concat([w, w])


class LagParams(StrategyParams):
    lookback: int = Field(5, ge=1)

    def warmup_bars(self) -> int:
        return self.lookback + 1

    def history_bars(self) -> int:
        return self.lookback + 1  # the weight at t reads bars t-lookback .. t


@strategy(LagParams)
def lag_momentum(bars: pl.DataFrame, params: LagParams) -> pl.DataFrame:
    """``0.3 · sign(close / close lookback bars ago − 1)`` per symbol: a user strategy whose
    weight depends on its last ``lookback + 1`` bars only (it declares ``history_bars``)."""
    mom = (pl.col("close") / pl.col("close").shift(params.lookback) - 1.0).over("symbol")
    return bars.sort("symbol", "timestamp").select(
        "timestamp", "symbol", (0.3 * mom.sign()).fill_null(0.0).alias("weight")
    )


@strategy(LagParams)
def lag_momentum_whole(bars: pl.DataFrame, params: LagParams) -> pl.DataFrame:
    """:func:`lag_momentum` without a declared history (recomputed on the whole history)."""
    return lag_momentum(bars, params)


lag_momentum_whole.params_model = type(  # type: ignore[attr-defined]
    "LagWholeParams", (StrategyParams,), {"__annotations__": {"lookback": int}, "lookback": 5}
)


@strategy(AlwaysLongParams)
def exits(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: it ends the process."""
    import sys

    sys.exit(0)


@strategy(AlwaysLongParams)
def never_returns(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: an endless loop."""
    import time

    while True:
        time.sleep(0.05)


@strategy(AlwaysLongParams)
def nan_weights(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: a NaN weight in the middle of the history."""
    w = bars.select("timestamp", "symbol", pl.lit(params.weight).alias("weight"))
    return w.with_columns(
        pl.when(pl.int_range(pl.len()) == 40).then(float("nan")).otherwise("weight").alias("weight")
    )


@strategy(AlwaysLongParams)
def null_after_start(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: a null weight after the warm-up."""
    w = bars.select("timestamp", "symbol", pl.lit(params.weight).alias("weight"))
    return w.with_columns(
        pl.when(pl.int_range(pl.len()) == 40).then(None).otherwise("weight").alias("weight")
    )


@strategy(AlwaysLongParams)
def warmup_nulls(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A valid user strategy: null (and NaN) weights in each symbol's leading warm-up only."""
    mom = (pl.col("close") / pl.col("close").shift(10) - 1.0).over("symbol")
    return bars.sort("symbol", "timestamp").select(
        "timestamp", "symbol", mom.sign().alias("weight")
    )


@strategy(AlwaysLongParams)
def string_weights(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: weights as text."""
    return bars.select("timestamp", "symbol", pl.lit("0.5").alias("weight"))


@strategy(AlwaysLongParams)
def foreign_symbol(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: it adds rows for a symbol the pod does not trade."""
    w = bars.select("timestamp", "symbol", pl.lit(params.weight).alias("weight"))
    return pl.concat([w, w.head(3).with_columns(pl.lit("DOGE/USDT").alias("symbol"))])


@strategy(AlwaysLongParams)
def half_rows(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A broken user strategy: a weight for every other bar only."""
    w = bars.select("timestamp", "symbol", pl.lit(params.weight).alias("weight"))
    return w.gather_every(2)


@strategy(AlwaysLongParams)
def huge_weights(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A user strategy asking for a weight of 1e12 (the pod's leverage cap scales it down)."""
    return bars.select("timestamp", "symbol", pl.lit(1e12).alias("weight"))


@strategy(AlwaysLongParams)
def bad_wide(bars: pl.DataFrame, params: AlwaysLongParams) -> pl.DataFrame:
    """A long-frame strategy whose wide form (the engine's fast path) returns a wrong shape."""
    return bars.select("timestamp", "symbol", pl.lit(params.weight).alias("weight"))


def _bad_wide_form(params, fields, start, stop, per_year, listed):
    import numpy as np

    return np.zeros((len(start) + 1, listed.shape[1]))  # one row too many


bad_wide.wide = _bad_wide_form  # type: ignore[attr-defined]
