"""Ensemble of sub-strategies, combined per symbol.

Each sub-strategy ``i`` gives weights ``w_i[t,s]``. Aggregation:

* ``equal``: ``w[t,s] = mean_i w_i[t,s]``;
* ``inverse_volatility``: ``w[t,s] = Σ_i c_i[t,s] · w_i[t,s]`` with ``c_i ∝ 1/σ_i`` normalised to
  sum to 1, where ``σ_i[t,s]`` is the rolling standard deviation over ``vol_window`` bars of the
  sub-strategy's own return stream on that symbol, ``w_i[t-1,s] · r[t,s]`` (known at t's close)
  with ``r`` the simple return. While any sub-strategy's σ is unknown (too little history) or
  zero (a flat stream), the symbol falls back to ``equal``.

The sub-strategies come from the pod's ``sub_strategies`` list (the engine passes them in as
``params.sub_strategies``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from orchestra.data.schema import is_sorted_by_symbol_time
from orchestra.strategies.common import Fields, StepForm, SymbolRows, first_close_state
from orchestra.strategies.kernels import combine_nb, combine_size, combine_step_nb
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

    def can_short(self) -> bool:
        return any(
            get_strategy(s.name).parse_params(s.params).can_short() for s in self.sub_strategies
        )

    def warmup_bars(self) -> int:
        subs = [
            get_strategy(s.name).parse_params(s.params).warmup_bars() for s in self.sub_strategies
        ]
        return max([*subs, 0]) + (
            self.vol_window if self.aggregation == "inverse_volatility" else 0
        )


def _subs(params: EnsembleParams) -> list[tuple[Any, Any]]:
    """Each sub-strategy's (step form or None, parsed params)."""
    out = []
    for sub in params.sub_strategies:
        spec = get_strategy(sub.name)
        out.append((getattr(spec.func, "step_form", None), spec.parse_params(sub.params)))
    return out


def _supports(params: EnsembleParams) -> bool:
    subs = _subs(params)
    return bool(subs) and all(form is not None and form.supports(p) for form, p in subs)


def _init(params: EnsembleParams, n_symbols: int) -> list[np.ndarray]:
    """Each sub-strategy's state, then the combination's."""
    parts = [form.init(p, n_symbols) for form, p in _subs(params)]
    k = len(parts)
    return [*parts, first_close_state(n_symbols, combine_size(k, params.vol_window))]


def _run(
    params: EnsembleParams, f: Fields, start, stop, per_year: float, listed: np.ndarray, state
) -> np.ndarray | None:
    """Each sub-strategy's wide weights, combined; None if one is a user's long-frame function."""
    if not params.sub_strategies:
        raise ValueError("ensemble needs at least one sub-strategy")
    if not _supports(params):
        return None
    subs = [
        form.run(p, f, start, stop, per_year, listed, part)
        for (form, p), part in zip(_subs(params), state, strict=False)
    ]
    return _combine(params, subs, f["close"], start, stop, state[-1])


def _step(params: EnsembleParams, row, has, n: float, per_year: float, state) -> np.ndarray:
    subs = [
        form.step(p, row, has, n, per_year, part)
        for (form, p), part in zip(_subs(params), state, strict=False)
    ]
    inverse = params.aggregation == "inverse_volatility"
    return combine_step_nb(np.stack(subs), row["close"], has, inverse, params.vol_window, state[-1])


def _combine(params: EnsembleParams, subs, close, start, stop, state) -> np.ndarray:
    return combine_nb(
        np.stack(subs), close, start, stop, params.aggregation == "inverse_volatility",
        params.vol_window, state,
    )  # fmt: skip


FORM = StepForm(("open", "high", "low", "close", "volume"), _init, _run, _step, _supports, cost=5.0)


@register("ensemble", EnsembleParams)
def ensemble(bars: pl.DataFrame, params: EnsembleParams) -> pl.DataFrame:
    """Combine the sub-strategies' weights per symbol (see module docstring).

    Each sub-strategy's weights come from :func:`~orchestra.strategies.compute_weights` (so a
    user's own strategy can be a sub-strategy); the combination is the same kernel either way.
    """
    if not params.sub_strategies:
        raise ValueError("ensemble needs at least one sub-strategy")
    from orchestra.strategies import compute_weights

    if not is_sorted_by_symbol_time(bars):
        bars = bars.sort("symbol", "timestamp")
    rows = SymbolRows(bars)
    subs = [
        rows.pivot(compute_weights(sub.name, bars, sub.params)["weight"].to_numpy())
        for sub in params.sub_strategies
    ]
    state = first_close_state(rows.n_symbols, combine_size(len(subs), params.vol_window))
    w = _combine(params, subs, rows["close"], rows.start, rows.stop, state)
    return bars.select("timestamp", "symbol", pl.Series("weight", rows.unpivot(w)))


ensemble.wide = FORM.wide  # type: ignore[attr-defined]
ensemble.step_form = FORM  # type: ignore[attr-defined]
