"""Volatility-adaptive trend following.

The momentum lookback adapts to the volatility regime: with ``ratio = σ_short / σ_long`` (realised
volatility over ``vol_short`` and ``vol_long`` bars), the lookback is ``fast_lookback`` when
``ratio > 1`` (turbulent: react faster) and ``slow_lookback`` otherwise (calm: filter noise). Then
``w = sign(close_t / close_{t-lookback} - 1) · vol_target / σ_short / N``. In the spirit of
adaptive trend filters (Kaufman 1995; cf. Moskowitz et al. 2012 for the vol targeting).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from orchestra.strategies.common import Fields, StepForm, first_close_state, long_form
from orchestra.strategies.kernels import (
    vol_adaptive_nb,
    vol_adaptive_size,
    vol_adaptive_step_nb,
)
from orchestra.strategies.registry import StrategyParams, register


class VolAdaptiveParams(StrategyParams):
    fast_lookback: int = Field(20, ge=1, description="Lookback in high-volatility regimes")
    slow_lookback: int = Field(90, ge=1, description="Lookback in calm regimes")
    vol_short: int = Field(20, ge=2, description="Bars in the short volatility estimate")
    vol_long: int = Field(120, ge=3, description="Bars in the long volatility estimate")
    vol_target: float = Field(0.35, gt=0, description="Annualised volatility target per pod")

    @model_validator(mode="after")
    def _order(self) -> VolAdaptiveParams:
        if self.fast_lookback > self.slow_lookback:
            raise ValueError("fast_lookback must be ≤ slow_lookback")
        if self.vol_short >= self.vol_long:
            raise ValueError("vol_short must be < vol_long")
        return self

    def warmup_bars(self) -> int:
        return max(self.slow_lookback, self.vol_long) + 1


def _run(p: VolAdaptiveParams, f: Fields, start, stop, per_year: float, listed, state):
    return vol_adaptive_nb(
        f["close"], start, stop, p.fast_lookback, p.slow_lookback, p.vol_short, p.vol_long,
        p.vol_target, per_year, listed, state,
    )  # fmt: skip


def _step(p: VolAdaptiveParams, row, has, n: float, per_year: float, state) -> np.ndarray:
    return vol_adaptive_step_nb(
        row["close"], has, n, p.fast_lookback, p.slow_lookback, p.vol_short, p.vol_long,
        p.vol_target, per_year, state,
    )  # fmt: skip


def _init(p: VolAdaptiveParams, n_symbols: int) -> np.ndarray:
    width = vol_adaptive_size(p.fast_lookback, p.slow_lookback, p.vol_short, p.vol_long)
    return first_close_state(n_symbols, width)


@register("vol-adaptive", VolAdaptiveParams)
@long_form(StepForm(("close",), _init, _run, _step, cost=1.4))
def vol_adaptive(bars, params):
    """Trend sign with a lookback chosen by the volatility regime, vol-targeted."""
