"""Time-series momentum (Moskowitz, Ooi & Pedersen 2012, "Time series momentum", JFE 104(2)).

``w[t,s] = sign(close[t,s] / close[t-L,s] - 1) · vol_target / σ[t,s] / N``

with ``L = lookback`` bars, ``σ`` the annualised standard deviation of log-returns over
``vol_window`` bars (up to and including t), and ``N`` the number of the pod's symbols
listed by bar t (:mod:`orchestra.strategies.common`). Zero until
``max(lookback, vol_window) + 1`` bars of history.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from orchestra.strategies.common import Fields, long_form
from orchestra.strategies.kernels import tsmom_nb
from orchestra.strategies.registry import StrategyParams, register


class TsmomParams(StrategyParams):
    lookback: int = Field(30, ge=1, description="Bars in the momentum return")
    vol_target: float = Field(0.35, gt=0, description="Annualised volatility target per pod")
    vol_window: int = Field(30, ge=2, description="Bars in the realised-volatility estimate")

    def warmup_bars(self) -> int:
        return max(self.lookback, self.vol_window) + 1


@register("tsmom", TsmomParams)
@long_form
def tsmom(
    p: TsmomParams, f: Fields, start, stop, per_year: float, listed: np.ndarray
) -> np.ndarray:
    """Sign of the ``lookback`` return, scaled to ``vol_target`` and split across symbols."""
    return tsmom_nb(
        f["close"], start, stop, p.lookback, p.vol_window, p.vol_target, per_year, listed
    )
