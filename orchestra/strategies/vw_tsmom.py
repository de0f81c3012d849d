"""Volume-weighted time-series momentum.

``m[t,s] = Σ_{i=t-L+1..t} v[i,s]·r[i,s] / Σ_{i=t-L+1..t} v[i,s]`` (r the bar log-return, v the
volume), then ``w = sign(m) · vol_target / σ / N`` as in :mod:`tsmom`. Returns on heavy volume
count more: a trend confirmed by volume dominates one made on thin trading (cf. Lo & Wang 2000
on volume and return predictability). A window with zero total volume gives weight 0.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from orchestra.strategies.common import Fields, long_form
from orchestra.strategies.kernels import vw_tsmom_nb
from orchestra.strategies.registry import StrategyParams, register


class VwTsmomParams(StrategyParams):
    lookback: int = Field(30, ge=1, description="Bars in the volume-weighted momentum")
    vol_target: float = Field(0.35, gt=0, description="Annualised volatility target per pod")
    vol_window: int = Field(30, ge=2, description="Bars in the realised-volatility estimate")

    def warmup_bars(self) -> int:
        return max(self.lookback, self.vol_window) + 1


@register("vw-tsmom", VwTsmomParams)
@long_form
def vw_tsmom(
    p: VwTsmomParams, f: Fields, start, stop, per_year: float, listed: np.ndarray
) -> np.ndarray:
    """Sign of the volume-weighted mean return over ``lookback`` bars, vol-targeted."""
    return vw_tsmom_nb(
        f["close"],
        f["volume"],
        start,
        stop,
        p.lookback,
        p.vol_window,
        p.vol_target,
        per_year,
        listed,
    )
