"""Time-series momentum (Moskowitz, Ooi & Pedersen 2012, "Time series momentum", JFE 104(2)).

``w[t,s] = sign(close[t,s] / close[t-L,s] - 1) · vol_target / σ[t,s] / N``

with ``L = lookback`` bars, ``σ`` the annualised standard deviation of log-returns over
``vol_window`` bars (up to and including t), and ``N`` the number of the pod's symbols. Zero until
``max(lookback, vol_window) + 1`` bars of history.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field

from orchestra.strategies.common import bars_per_year, finish, realised_vol, vol_scaled
from orchestra.strategies.registry import StrategyParams, register


class TsmomParams(StrategyParams):
    lookback: int = Field(30, ge=1, description="Bars in the momentum return")
    vol_target: float = Field(0.35, gt=0, description="Annualised volatility target per pod")
    vol_window: int = Field(30, ge=2, description="Bars in the realised-volatility estimate")

    def warmup_bars(self) -> int:
        return max(self.lookback, self.vol_window) + 1


@register("tsmom", TsmomParams)
def tsmom(bars: pl.DataFrame, params: TsmomParams) -> pl.DataFrame:
    """Sign of the ``lookback`` return, scaled to ``vol_target`` and split across symbols."""
    n = bars["symbol"].n_unique()
    momentum = (pl.col("close") / pl.col("close").shift(params.lookback) - 1).over("symbol")
    vol = realised_vol(params.vol_window, bars_per_year(bars))
    return finish(bars, vol_scaled(momentum.sign(), vol, params.vol_target, n))
