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
