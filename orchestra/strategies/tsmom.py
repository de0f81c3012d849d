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

from orchestra.strategies.common import Fields, StepForm, first_close_state, long_form
from orchestra.strategies.kernels import tsmom_nb, tsmom_size, tsmom_step_nb
from orchestra.strategies.registry import StrategyParams, register


class TsmomParams(StrategyParams):
    lookback: int = Field(30, ge=1, description="Bars in the momentum return")
    vol_target: float = Field(0.35, gt=0, description="Annualised volatility target per pod")
    vol_window: int = Field(30, ge=2, description="Bars in the realised-volatility estimate")

    def warmup_bars(self) -> int:
        return max(self.lookback, self.vol_window) + 1


def _run(p: TsmomParams, f: Fields, start, stop, per_year: float, listed, state) -> np.ndarray:
    return tsmom_nb(
        f["close"], start, stop, p.lookback, p.vol_window, p.vol_target, per_year, listed, state
    )


def _step(p: TsmomParams, row, has, n: float, per_year: float, state) -> np.ndarray:
    return tsmom_step_nb(
        row["close"], has, n, p.lookback, p.vol_window, p.vol_target, per_year, state
    )


def _init(p: TsmomParams, n_symbols: int) -> np.ndarray:
    return first_close_state(n_symbols, tsmom_size(p.lookback, p.vol_window))


@register("tsmom", TsmomParams)
@long_form(StepForm(("close",), _init, _run, _step))
def tsmom(bars, params):
    """Sign of the ``lookback`` return, scaled to ``vol_target`` and split across symbols."""
