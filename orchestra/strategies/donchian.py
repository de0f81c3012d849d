"""Donchian channel breakout ensemble (Donchian 1960s; the "Turtle" rules, Faith 2007).

For each ``L`` in ``lookbacks``: ``upper = max(high[t-L..t-1])``, ``lower = min(low[t-L..t-1])``
(the prior ``L`` bars, bar t excluded). The signal becomes +1 on ``close[t] > upper``, −1 (or 0 with
``long_only``) on ``close[t] < lower``, and otherwise keeps its previous value (a breakout system
holds until the opposite breakout). The pod weight is the mean signal over lookbacks, scaled to
``vol_target`` by realised volatility and divided by the number of symbols.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field, field_validator

from orchestra.strategies.common import bars_per_year, finish, realised_vol, vol_scaled
from orchestra.strategies.registry import StrategyParams, register


class DonchianParams(StrategyParams):
    lookbacks: list[int] = Field([20, 60, 150], min_length=1, description="Channel lengths (bars)")
    long_only: bool = Field(False, description="Flat instead of short on a downside breakout")
    vol_target: float = Field(0.35, gt=0, description="Annualised volatility target per pod")
    vol_window: int = Field(30, ge=2, description="Bars in the realised-volatility estimate")

    @field_validator("lookbacks")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(x < 1 for x in v):
            raise ValueError("every lookback must be ≥ 1")
        return v

    def warmup_bars(self) -> int:
        return max(*self.lookbacks, self.vol_window) + 1


def breakout_signal(lookback: int, long_only: bool) -> pl.Expr:
    """+1 / −1 (0 if long_only) on a close beyond the prior ``lookback``-bar channel, held."""
    upper = pl.col("high").shift(1).rolling_max(lookback)
    lower = pl.col("low").shift(1).rolling_min(lookback)
    down = 0.0 if long_only else -1.0
    raw = (
        pl.when(pl.col("close") > upper)
        .then(1.0)
        .when(pl.col("close") < lower)
        .then(down)
        .otherwise(None)
    )
    return raw.forward_fill().fill_null(0.0).over("symbol")


@register("donchian-ensemble", DonchianParams)
def donchian_ensemble(bars: pl.DataFrame, params: DonchianParams) -> pl.DataFrame:
    """Mean of the breakout signals over ``lookbacks``, vol-targeted."""
    n = bars["symbol"].n_unique()
    signal = pl.mean_horizontal([breakout_signal(L, params.long_only) for L in params.lookbacks])
    vol = realised_vol(params.vol_window, bars_per_year(bars))
    return finish(bars, vol_scaled(signal, vol, params.vol_target, n))
