"""Volume-weighted time-series momentum.

``m[t,s] = Σ_{i=t-L+1..t} v[i,s]·r[i,s] / Σ_{i=t-L+1..t} v[i,s]`` (r the bar log-return, v the
volume), then ``w = sign(m) · vol_target / σ / N`` as in :mod:`tsmom`. Returns on heavy volume
count more: a trend confirmed by volume dominates one made on thin trading (cf. Lo & Wang 2000
on volume and return predictability). A window with zero total volume gives weight 0.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field

from orchestra.strategies.common import bars_per_year, finish, log_return, realised_vol, vol_scaled
from orchestra.strategies.registry import StrategyParams, register


class VwTsmomParams(StrategyParams):
    lookback: int = Field(30, ge=1, description="Bars in the volume-weighted momentum")
    vol_target: float = Field(0.35, gt=0, description="Annualised volatility target per pod")
    vol_window: int = Field(30, ge=2, description="Bars in the realised-volatility estimate")

    def warmup_bars(self) -> int:
        return max(self.lookback, self.vol_window) + 1


@register("vw-tsmom", VwTsmomParams)
def vw_tsmom(bars: pl.DataFrame, params: VwTsmomParams) -> pl.DataFrame:
    """Sign of the volume-weighted mean return over ``lookback`` bars, vol-targeted."""
    n = bars["symbol"].n_unique()
    r = log_return()
    num = (r * pl.col("volume")).rolling_sum(params.lookback).over("symbol")
    den = pl.col("volume").rolling_sum(params.lookback).over("symbol")
    signal = pl.when(den > 0).then((num / den).sign()).otherwise(0.0)
    vol = realised_vol(params.vol_window, bars_per_year(bars))
    return finish(bars, vol_scaled(signal, vol, params.vol_target, n))
