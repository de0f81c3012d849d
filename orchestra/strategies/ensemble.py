"""Ensemble of sub-strategies, combined per symbol.

Each sub-strategy ``i`` gives weights ``w_i[t,s]``. Aggregation:

* ``equal``: ``w[t,s] = mean_i w_i[t,s]``;
* ``inverse_volatility``: ``w[t,s] = Σ_i c_i[t,s] · w_i[t,s]`` with ``c_i ∝ 1/σ_i`` normalised to
  sum to 1, where ``σ_i[t,s]`` is the rolling standard deviation over ``vol_window`` bars of the
  sub-strategy's own return stream on that symbol, ``w_i[t-1,s] · r[t,s]`` (known at t's close).
  A sub-strategy whose stream has zero or unknown volatility (flat, or too little history) gets
  equal weight with the others until its volatility is known... precisely: while any σ is unknown
  or zero, the symbol falls back to ``equal``.

The sub-strategies come from the pod's ``sub_strategies`` list (the engine passes them in as
``params.sub_strategies``).
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import Field

from orchestra.strategies.registry import StrategyParams, get_strategy, register


class SubStrategy(StrategyParams):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class EnsembleParams(StrategyParams):
    aggregation: Literal["equal", "inverse_volatility"] = Field(
        "equal", description="How sub-strategy weights are combined per symbol"
    )
    vol_window: int = Field(60, ge=2, description="Bars of each sub-strategy's return stream")
    sub_strategies: list[SubStrategy] = Field(
        default_factory=list, description="Set from the pod's sub_strategies list"
    )

    def warmup_bars(self) -> int:
        subs = [
            get_strategy(s.name).parse_params(s.params).warmup_bars() for s in self.sub_strategies
        ]
        return max([*subs, 0]) + (
            self.vol_window if self.aggregation == "inverse_volatility" else 0
        )


@register("ensemble", EnsembleParams)
def ensemble(bars: pl.DataFrame, params: EnsembleParams) -> pl.DataFrame:
    """Combine the sub-strategies' weights per symbol (see module docstring)."""
    if not params.sub_strategies:
        raise ValueError("ensemble needs at least one sub-strategy")
    from orchestra.strategies import compute_weights

    base = bars.select("timestamp", "symbol", "close").sort("symbol", "timestamp")
    cols = []
    for i, sub in enumerate(params.sub_strategies):
        w = compute_weights(sub.name, bars, sub.params).rename({"weight": f"w{i}"})
        base = base.join(w, on=["timestamp", "symbol"], how="left")
        cols.append(f"w{i}")
    base = base.with_columns(pl.col(cols).fill_null(0.0))
    if params.aggregation == "equal":
        return base.select("timestamp", "symbol", pl.mean_horizontal(cols).alias("weight"))
    ret = (pl.col("close") / pl.col("close").shift(1) - 1).over("symbol")
    sig = [
        (pl.col(c).shift(1) * ret)
        .over("symbol")
        .rolling_std(params.vol_window)
        .over("symbol")
        .alias(f"s{i}")
        for i, c in enumerate(cols)
    ]
    base = base.with_columns(sig)
    s = [pl.col(f"s{i}") for i in range(len(cols))]
    known = pl.all_horizontal([(x.is_not_null()) & (x > 0) for x in s])
    inv = [pl.when(known).then(1.0 / x).otherwise(1.0) for x in s]
    total = pl.sum_horizontal(inv)
    combined = pl.sum_horizontal([iv / total * pl.col(c) for iv, c in zip(inv, cols, strict=True)])
    return base.select("timestamp", "symbol", combined.fill_nan(0.0).fill_null(0.0).alias("weight"))
