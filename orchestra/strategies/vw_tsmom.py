"""Volume-weighted time-series momentum.

``m[t,s] = Σ_{i=t-L+1..t} v[i,s]·r[i,s] / Σ_{i=t-L+1..t} v[i,s]`` (r the bar log-return, v the
volume), then ``w = sign(m) · vol_target / σ / N`` as in :mod:`tsmom`. Returns on heavy volume
count more: a trend confirmed by volume dominates one made on thin trading (cf. Lo & Wang 2000
on volume and return predictability). A window with zero total volume gives weight 0.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from orchestra.strategies.common import Fields, StepForm, first_close_state, long_form
from orchestra.strategies.kernels import vw_tsmom_nb, vw_tsmom_size, vw_tsmom_step_nb
from orchestra.strategies.registry import StrategyParams, register


class VwTsmomParams(StrategyParams):
    lookback: int = Field(30, ge=1, description="Bars in the volume-weighted momentum")
    vol_target: float = Field(0.35, gt=0, description="Annualised volatility target per pod")
    vol_window: int = Field(30, ge=2, description="Bars in the realised-volatility estimate")

    def warmup_bars(self) -> int:
        return max(self.lookback, self.vol_window) + 1


def _run(p: VwTsmomParams, f: Fields, start, stop, per_year: float, listed, state) -> np.ndarray:
    return vw_tsmom_nb(
        f["close"], f["volume"], start, stop, p.lookback, p.vol_window, p.vol_target, per_year,
        listed, state,
    )  # fmt: skip


def _step(p: VwTsmomParams, row, has, n: float, per_year: float, state) -> np.ndarray:
    return vw_tsmom_step_nb(
        row["close"], row["volume"], has, n, p.lookback, p.vol_window, p.vol_target, per_year,
        state,
    )  # fmt: skip


def _init(p: VwTsmomParams, n_symbols: int) -> np.ndarray:
    return first_close_state(n_symbols, vw_tsmom_size(p.lookback, p.vol_window))


@register("vw-tsmom", VwTsmomParams)
@long_form(StepForm(("close", "volume"), _init, _run, _step, cost=1.4))
def vw_tsmom(bars, params):
    """Sign of the volume-weighted mean return over ``lookback`` bars, vol-targeted."""
