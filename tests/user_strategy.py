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
