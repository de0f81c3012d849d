"""The two layouts a built-in strategy runs on, and the long-frame contract built from them.

A built-in strategy is written once, as a **wide** function
``wide(params, fields, start, stop, per_year, listed) -> (S, L) weights`` over ``(S, L)`` arrays
(one row per symbol in time order; symbol s has bars in columns ``start[s] .. stop[s]-1``), calling
the numba kernels of :mod:`orchestra.strategies.kernels`. ``listed[s, j]`` is the number of the
pod's symbols listed by the time of symbol s's bar j (their first bar at or before it, symbol s
included): the ``N`` a weight is divided by. On the engine's clock every symbol shares one
count per bar, so the built-ins receive it as a single row, ``(1, L)``, which the kernels read
for every symbol (a user's wide strategy always gets the ``(S, L)`` matrix). It counts listings
so far, never symbols that list later, so a weight at bar t does not depend on what the data holds after t (a symbol listing
later lowers the others' weights from its first bar on, not before). It runs on two layouts of
the same numbers:

* :class:`SymbolRows` — a long bar frame sorted by ``symbol, timestamp``: each symbol's rows,
  left-aligned. This gives the public contract ``fn(bars, params) -> weights`` (:func:`long_form`).
* :class:`MarketFields` — the engine's ``(T, S)`` market matrices on the clock, a pod's symbols
  transposed: no frame is built, and nothing is pivoted back and forth.

Both hand the kernels the same rows, so the weights are equal bit for bit (tested).

The wide function is the whole-history pass of the strategy's :class:`StepForm`: its state, a
whole-history run that leaves the state after the last bar, and a one-bar step (the live loop,
:mod:`orchestra.strategies.live`). The run is a loop over the step's per-symbol kernel, so the
two agree bit for bit by construction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl

from orchestra.data.schema import is_sorted_by_symbol_time
from orchestra.strategies.kernels import VOL_FLOOR
from orchestra.timeframes import DAYS_PER_YEAR

__all__ = [
    "VOL_FLOOR",
    "MarketFields",
    "StepForm",
    "SymbolRows",
    "bars_per_year",
    "long_form",
    "per_year_from_step",
]

DAY_MS = 86_400_000


class Fields(Protocol):
    def __getitem__(self, field: str) -> np.ndarray: ...


WideFn = Callable[[Any, Fields, np.ndarray, np.ndarray, float, np.ndarray], np.ndarray | None]


def per_year_from_step(step_ms: float | None) -> float:
    """Annualisation factor, 365 × bars per day, for bars ``step_ms`` apart (daily if unknown)."""
    return DAYS_PER_YEAR * DAY_MS / (step_ms or float(DAY_MS))


def bars_per_year(bars: pl.DataFrame) -> float:
    """Annualisation factor (365 × bars per day) inferred from the frame's bar spacing: the
    smallest positive step between consecutive bars of a symbol."""
    ts = bars.select(pl.col("timestamp").dt.epoch("ms").diff().over("symbol").alias("d"))["d"]
    ts = ts.filter(ts > 0)
    return per_year_from_step(float(ts.min()) if ts.len() else None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class StepForm:
    """A built-in strategy in step form (see :mod:`orchestra.strategies.kernels`).

    * ``init(params, n_symbols) -> state``: the state before any bar (an array, or for the
      ensemble a list of its parts);
    * ``run(params, fields, start, stop, per_year, listed, state) -> (S, L) weights``: the whole
      history in the ``(S, L)`` layout, leaving ``state`` after each symbol's last bar;
    * ``step(params, row, has, n, per_year, state) -> (S,) weights``: one bar, where ``row``
      maps a field to its ``(S,)`` values, ``has`` marks the symbols with a bar now and ``n``
      is the number of the pod's symbols listed so far (weight 0 where ``has`` is False);
    * ``supports(params)``: whether these params have a step form (an ensemble of a user's
      long-frame strategy has none; ``run`` then returns None);
    * ``cost``: its whole-history pass's time per bar and symbol relative to tsmom's (measured
      on L: tsmom 1, vw-tsmom and vol-adaptive 1.4, donchian-ensemble 2.1; the ensemble's
      depends on its sub-strategies and is set to 5, not measured), so that the engine hands
      the costliest pods to its threads first and none is left alone at the end.
    """

    fields: tuple[str, ...]
    init: Callable[[Any, int], Any]
    run: Callable[..., np.ndarray | None]
    step: Callable[..., np.ndarray]
    supports: Callable[[Any], bool] = lambda params: True  # False: use the long form
    cost: float = 1.0

    def wide(
        self, params: Any, f: Fields, start, stop, per_year: float, listed: np.ndarray
    ) -> np.ndarray | None:
        """The whole history from a fresh state (the engine's and the long form's path)."""
        return self.run(params, f, start, stop, per_year, listed, self.init(params, len(start)))


def first_close_state(n_symbols: int, width: int) -> np.ndarray:
    """A built-in's state before any bar: zeros, and NaN for the previous close (column 0)."""
    state = np.zeros((n_symbols, width))
    state[:, 0] = np.nan
    return state


class SymbolRows:
    """A long frame sorted by ``symbol, timestamp`` as ``(S, L)`` rows, one per symbol."""

    def __init__(self, bars: pl.DataFrame):
        self.bars = bars
        runs = bars["symbol"].rle()
        self.lengths = runs.struct.field("len").to_numpy().astype(np.int64)
        self.n_symbols = self.lengths.size
        self.width = int(self.lengths.max()) if self.n_symbols else 0
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.start = np.zeros(self.n_symbols, dtype=np.int64)
        self.stop = self.lengths.copy()
        self._cache: dict[str, np.ndarray] = {}

    def pivot(self, values: np.ndarray) -> np.ndarray:
        """A column in the frame's row order → ``(S, L)`` (columns past a symbol's end are 0)."""
        values = np.asarray(values, dtype=np.float64)
        if not values.flags.writeable:  # one numba specialisation: writable arrays, as the engine's
            values = values.copy()
        if self.n_symbols and (self.lengths == self.width).all():
            return values.reshape(self.n_symbols, self.width)
        out = np.zeros((self.n_symbols, self.width))
        for s in range(self.n_symbols):
            out[s, : self.lengths[s]] = values[self.offsets[s] : self.offsets[s + 1]]
        return out

    def listed(self) -> np.ndarray:
        """``(S, L)``: at each symbol's bar, how many of the frame's symbols have a bar at or
        before its timestamp (see the module docstring)."""
        ts = self.bars["timestamp"].dt.epoch("ms").to_numpy()
        first = np.sort(ts[self.offsets[:-1]])
        return self.pivot(np.searchsorted(first, ts, side="right").astype(np.float64))

    def unpivot(self, wide: np.ndarray) -> np.ndarray:
        """``(S, L)`` → a column in the frame's row order."""
        if self.n_symbols and (self.lengths == self.width).all():
            return wide.reshape(-1)
        return np.concatenate([wide[s, : self.lengths[s]] for s in range(self.n_symbols)])

    def __getitem__(self, field: str) -> np.ndarray:
        if field not in self._cache:
            self._cache[field] = self.pivot(self.bars[field].to_numpy())
        return self._cache[field]


class MarketFields:
    """A pod's symbols of ``(T, S_all)`` market matrices, transposed to ``(S, T)`` on demand."""

    def __init__(self, matrices: dict[str, np.ndarray], columns: list[int]):
        self.matrices = matrices
        self.columns = columns
        self._needed = max(columns) + 1 if columns else 0  # columns a matrix must have
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, field: str) -> np.ndarray:
        if field not in self._cache:
            from orchestra.kernels.layout import gather_transpose_nb

            mat = np.ascontiguousarray(self.matrices[field], dtype=np.float64)
            if mat.shape[1] < self._needed:  # the gather below reads without bounds checks
                raise ValueError(
                    f"the market's {field!r} matrix has {mat.shape[1]} columns, not one per "
                    "symbol (a Prepared.market keeps no highs, lows or volumes: build the "
                    "matrices with orchestra.data.to_matrices or synthetic_window)"
                )
            self._cache[field] = gather_transpose_nb(mat, np.asarray(self.columns, np.int64))
        return self._cache[field]


def long_form(form: StepForm) -> Callable[[Callable], Callable[[pl.DataFrame, Any], pl.DataFrame]]:
    """The long-frame strategy function (SPEC §6 contract) of a step form.

    The decorated function (whose docstring and name the result takes) carries the form as
    ``.step_form`` and its whole-history pass as ``.wide``, so the engine can run it on the
    market matrices and the live loop one bar at a time.
    """

    def deco(doc: Callable) -> Callable[[pl.DataFrame, Any], pl.DataFrame]:
        func = _long_form(form.wide, doc)
        func.step_form = form  # type: ignore[attr-defined]
        return func

    return deco


def _long_form(wide: WideFn, doc: Callable) -> Callable[[pl.DataFrame, Any], pl.DataFrame]:
    @functools.wraps(doc)
    def func(bars: pl.DataFrame, params: Any) -> pl.DataFrame:
        if not is_sorted_by_symbol_time(bars):
            bars = bars.sort("symbol", "timestamp")
        rows = SymbolRows(bars)
        w = wide(params, rows, rows.start, rows.stop, bars_per_year(bars), rows.listed())
        if w is None:
            raise ValueError(f"{doc.__name__} cannot run on these params")
        return bars.select("timestamp", "symbol", pl.Series("weight", rows.unpivot(w)))

    func.wide = wide  # type: ignore[attr-defined]
    return func
