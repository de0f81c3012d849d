"""Donchian channel breakout ensemble (Donchian 1960s; the "Turtle" rules, Faith 2007).

For each ``L`` in ``lookbacks``: ``upper = max(high[t-L..t-1])``, ``lower = min(low[t-L..t-1])``
(the prior ``L`` bars, bar t excluded). The signal becomes +1 on ``close[t] > upper``, −1 (or 0 with
``long_only``) on ``close[t] < lower``, and otherwise keeps its previous value (a breakout system
holds until the opposite breakout). The pod weight is the mean signal over lookbacks, scaled to
``vol_target`` by realised volatility and divided by the number of symbols listed by bar t.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from orchestra.strategies.common import Fields, StepForm, first_close_state, long_form
from orchestra.strategies.kernels import donchian_nb, donchian_size, donchian_step_nb
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

    def can_short(self) -> bool:
        return not self.long_only

    def warmup_bars(self) -> int:
        return max(*self.lookbacks, self.vol_window) + 1


def _run(p: DonchianParams, f: Fields, start, stop, per_year: float, listed, state) -> np.ndarray:
    return donchian_nb(
        f["high"], f["low"], f["close"], start, stop, np.asarray(p.lookbacks, dtype=np.int64),
        p.long_only, p.vol_window, p.vol_target, per_year, listed, state,
    )  # fmt: skip


def _step(p: DonchianParams, row, has, n: float, per_year: float, state) -> np.ndarray:
    return donchian_step_nb(
        row["high"], row["low"], row["close"], has, n, np.asarray(p.lookbacks, dtype=np.int64),
        p.long_only, p.vol_window, p.vol_target, per_year, state,
    )  # fmt: skip


def _init(p: DonchianParams, n_symbols: int) -> np.ndarray:
    width = donchian_size(np.asarray(p.lookbacks, dtype=np.int64), p.vol_window)
    return first_close_state(n_symbols, width)


@register("donchian-ensemble", DonchianParams)
@long_form(StepForm(("high", "low", "close"), _init, _run, _step, cost=2.1))
def donchian_ensemble(bars, params):
    """Mean of the breakout signals over ``lookbacks``, vol-targeted."""
