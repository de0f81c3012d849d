"""Strategies: whole-history functions from a pod's bars to internal target weights.

Contract (SPEC §6): ``fn(bars, params) -> DataFrame[timestamp, symbol, weight]`` where ``bars`` is
the pod's bar frame (all its symbols, whole history) and ``params`` its validated params model. The
weight at bar t may use data up to bar t's close only. :func:`compute_weights` is the one entry
point: it validates params, calls the strategy, fills weights with 0 where it has no opinion yet,
and applies the pod's leverage cap ``Σ_s |w| ≤ max_leverage`` pro rata.

Multi-timeframe (SPEC §5.3): :func:`weights_on_clock` computes a pod on its own timeframe and makes
each weight visible on the fine clock only once the coarse bar has closed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from orchestra.data.align import Market
from orchestra.data.schema import is_sorted_by_symbol_time
from orchestra.strategies import donchian, ensemble, tsmom, vol_adaptive, vw_tsmom  # noqa: F401  (registers)
from orchestra.strategies.common import Fields, MarketFields, long_form, per_year_from_step
from orchestra.strategies.registry import (
    StrategyError,
    StrategyNotFound,
    StrategyParams,
    StrategySpec,
    StrategyWarning,
    call_user_strategy,
    get_strategy,
    registered_names,
    strategy,
)
from orchestra.timeframes import timeframe_ms

__all__ = [
    "StrategyError",
    "StrategyNotFound",
    "StrategyParams",
    "StrategySpec",
    "StrategyWarning",
    "apply_leverage_cap",
    "cap_matrix",
    "compute_weights",
    "get_strategy",
    "is_sorted_by_symbol_time",
    "long_form",
    "registered_names",
    "strategy",
    "weights_matrix",
    "weights_on_clock",
]

WEIGHT_SCHEMA = {"timestamp": pl.Datetime("ms", "UTC"), "symbol": pl.String, "weight": pl.Float64}


def apply_leverage_cap(weights: pl.DataFrame, max_leverage: float) -> pl.DataFrame:
    """Scale each timestamp's weights down pro rata so that ``Σ_s |w| ≤ max_leverage``."""
    gross = pl.col("weight").abs().sum().over("timestamp")
    scale = pl.when(gross > max_leverage).then(max_leverage / gross).otherwise(1.0)
    return weights.with_columns((pl.col("weight") * scale).alias("weight"))


def cap_matrix(
    weights: np.ndarray, max_leverage: float, rough: np.ndarray | None = None
) -> tuple[int, float]:
    """In place: scale each row of ``(T, n_symbols)`` weights so that ``Σ|w| ≤ max_leverage``.

    The same rule as :func:`apply_leverage_cap`, on a dense matrix (the engine's layout).
    Returns how many rows were scaled down and the largest gross weight seen (0 for none).

    A row's gross is numpy's ``np.abs(row).sum()`` (its pairwise summation). On long histories
    most rows are far below the cap: ``rough`` (each row's absolute sum in any order, within
    ~n·eps of numpy's; :func:`~orchestra.kernels.layout.place_weights_nb` leaves it as it
    places a strategy's weights) screens them, and numpy's exact sum is taken only for the rows
    that may reach the cap or the largest gross. So the result is the same as summing every row
    with numpy, without a ``(T, S)`` temporary (tested against that).
    """
    if not weights.size:
        return 0, 0.0
    if rough is None:
        rough = np.abs(weights).sum(axis=1)
    slack = 1e-9  # far above the sums' relative difference (≤ n·eps, n the row length)
    top = float(rough.max())
    if not np.isfinite(top):  # not a built-in's weights (they are checked finite): all rows
        rough = np.full(rough.shape, np.inf)
    rows = np.flatnonzero((rough > max_leverage * (1 - slack)) | (rough >= top * (1 - slack)))
    gross = np.abs(weights[rows]).sum(axis=1)
    over = gross > max_leverage
    scaled = rows[over]
    weights[scaled] *= (max_leverage / gross[over])[:, None]
    return int(scaled.size), float(gross.max())


def compute_weights(
    name: str,
    bars: pl.DataFrame,
    params: dict[str, Any] | StrategyParams | None = None,
    max_leverage: float | None = None,
) -> pl.DataFrame:
    """Internal target weights of strategy ``name`` on ``bars``.

    Returns ``timestamp, symbol, weight`` with one row per input bar, sorted by symbol and
    timestamp, no nulls; with ``max_leverage`` the gross weight per timestamp is capped.

    >>> import datetime as dt
    >>> from orchestra.data.synthetic import generate
    >>> bars = generate(["BTC/USDT"], dt.date(2024, 1, 1), dt.date(2024, 6, 30))
    >>> w = compute_weights("tsmom", bars, {"lookback": 20})
    >>> w.columns, w["weight"].null_count(), bool((w["weight"].head(20) == 0).all())
    (['timestamp', 'symbol', 'weight'], 0, True)
    """
    spec = get_strategy(name)
    model = params if isinstance(params, StrategyParams) else spec.parse_params(params)
    if not is_sorted_by_symbol_time(bars):
        bars = bars.sort("symbol", "timestamp")
    if name in _builtin_names():
        out = spec.func(bars, model)
    else:  # a user's strategy: its failure is a user error, reported in one line
        out = call_user_strategy(name, spec.func, bars, model)
    out = check_weights(name, out, bars)
    if max_leverage is not None:
        out = apply_leverage_cap(out, max_leverage)
    return out


def check_weights(name: str, out: Any, bars: pl.DataFrame) -> pl.DataFrame:
    """Enforce the output contract on a strategy's result ``out`` for input ``bars``.

    The contract (``docs/strategies.md``): a polars frame with ``timestamp``, ``symbol`` and a
    numeric ``weight`` column holding **one row per input row** (any order) and no other rows.
    Each weight is a finite number; a null or NaN is allowed only in a symbol's leading warm-up
    (before its first number) and read as 0 (no opinion yet). Anything else is a
    :class:`StrategyError` naming the first offending symbol and timestamp. Returns
    ``timestamp, symbol, weight`` in the input's row order.
    """
    if not isinstance(out, pl.DataFrame):
        raise StrategyError(
            f"strategy {name!r} returned {type(out).__name__}, not a polars DataFrame"
        )
    missing = {"timestamp", "symbol", "weight"} - set(out.columns)
    if missing:
        raise StrategyError(f"strategy {name!r} returned no column(s) {sorted(missing)}")
    dtype = out.schema["weight"]
    if not (dtype.is_numeric() or dtype == pl.Null):
        raise StrategyError(
            f"strategy {name!r} returned weights of type {dtype}: return numbers (Float64)"
        )
    try:
        weights = out.select(
            pl.col("timestamp").cast(bars.schema["timestamp"]),
            pl.col("symbol").cast(pl.String),
            pl.col("weight").cast(pl.Float64),
        )
    except pl.exceptions.PolarsError as exc:
        raise StrategyError(f"strategy {name!r} returned unusable columns: {exc}") from None
    aligned = (
        weights.height == bars.height
        and weights["timestamp"].equals(bars["timestamp"])
        and weights["symbol"].equals(bars["symbol"])
    )
    if not aligned:  # the strategy returned other rows or another order: align on the keys
        # (aligned rows mirror the validated bars' unique keys: only other rows need the check)
        weights = _align_rows(name, weights, bars)
    return _fill_warmup(name, weights)


def _align_rows(name: str, weights: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """``weights`` in the order of ``bars``' rows, or a StrategyError for duplicate, foreign or
    missing rows."""
    dup = weights.filter(pl.struct("timestamp", "symbol").is_duplicated())
    if dup.height:
        first = dup.row(0, named=True)
        raise StrategyError(
            f"strategy {name!r} returned {dup.height} rows with a duplicate (timestamp, "
            f"symbol), first {first['symbol']} {first['timestamp']}: return one weight per bar"
        )
    keys = bars.select("timestamp", "symbol")
    foreign = weights.join(keys, on=["timestamp", "symbol"], how="anti")
    if foreign.height:
        first = foreign.row(0, named=True)
        given = set(bars["symbol"].unique().to_list())
        why = (
            "a symbol the pod does not trade"
            if first["symbol"] not in given
            else "a bar the strategy was not given"
        )
        raise StrategyError(
            f"strategy {name!r} returned {foreign.height} row(s) for bars it was not given, "
            f"first {first['symbol']} {first['timestamp']} ({why}): return one row per input "
            "row and no others"
        )
    if weights.height < keys.height:
        lost = keys.join(weights, on=["timestamp", "symbol"], how="anti")
        first = lost.row(0, named=True)
        raise StrategyError(
            f"strategy {name!r} returned no row for {lost.height} of its {keys.height} input "
            f"rows, first {first['symbol']} {first['timestamp']}: return one row per input row "
            "(a null weight during warm-up reads as 0)"
        )
    return keys.join(weights, on=["timestamp", "symbol"], how="left", maintain_order="left")


def _fill_warmup(name: str, weights: pl.DataFrame) -> pl.DataFrame:
    """Leading nulls/NaNs of each symbol → 0; a later one, or an infinity, is an error."""
    w = pl.col("weight")
    gap = w.is_null() | w.is_nan()
    if int(weights.select(gap.sum()).item()) == 0 and not weights["weight"].is_infinite().any():
        return weights
    bad = weights.filter(w.is_infinite())
    if bad.height:
        first = bad.row(0, named=True)
        raise StrategyError(
            f"strategy {name!r} returned {bad.height} infinite weight(s), first "
            f"{first['symbol']} {first['timestamp']}: {first['weight']}"
        )
    seen = (~gap).cast(pl.Int64).cum_sum().over("symbol") > 0
    late = weights.filter(gap & seen)
    if late.height:
        first = late.row(0, named=True)
        raise StrategyError(
            f"strategy {name!r} returned {late.height} missing weight(s) (null or NaN) after "
            f"its first number, first {first['symbol']} {first['timestamp']}: only a "
            "symbol's leading warm-up may be null (read as 0); return finite numbers after it"
        )
    return weights.with_columns(w.fill_nan(0.0).fill_null(0.0))


CHUNK_BARS = 8_192  # bars per pass of a built-in's kernel in weights_matrix


class StepRun:
    """A built-in's whole-history pass on the clock, fed chunk by chunk of bars (its state
    carried from one to the next: the same operations on the same numbers as one pass), its
    weights written into a ``(T, S)`` ``out`` and each bar's rough gross into ``gross`` (for
    :func:`cap_matrix`'s ``rough``). Made by :func:`step_run`; :func:`weights_matrix` feeds it
    the market matrices' rows, the engine's synthetic fast path the generator's chunks."""

    def __init__(self, name, form, model, symbols, timestamps, spans, out, gross):
        self.name, self.form, self.model, self.symbols = name, form, model, symbols
        self.timestamps, self.out, self.gross = timestamps, out, gross
        self.start, self.stop, self.by_bar, self.per_year = spans
        self.state = form.init(model, len(symbols))

    def chunk(self, fields: Fields, c0: int, c1: int, into=None) -> bool:
        """Bars ``c0 .. c1-1`` (``fields``: each field's ``(S, c1 - c0)`` rows); False when the
        step form cannot run these params (then use the long form). The weights go to rows
        ``c0 .. c1-1`` of ``out`` and ``gross``, or to ``into``: ``(weights, gross)`` of
        ``c1 - c0`` rows (a streamed run's step buffer)."""
        w = self.form.run(
            self.model,
            fields,
            np.clip(self.start - c0, 0, c1 - c0),
            np.clip(self.stop - c0, 0, c1 - c0),
            self.per_year,
            self.by_bar[None, c0:c1],  # one row, read for every symbol (the kernels' contract)
            self.state,
        )
        if w is None:
            return False
        out, gross = into if into is not None else (self.out[c0:c1], self.gross[c0:c1])
        place_weights(self.name, self.symbols, self.timestamps, w, out, gross, c0)
        return True


def place_weights(name, symbols, timestamps, w, out, gross, c0: int) -> None:
    """A strategy's weights of bars ``c0 .. c0+n-1``, ``w`` ``(S, n)``, into ``out`` (those
    bars' ``(n, S)`` rows) and ``gross`` (``(n,)``); a wrong shape or a non-finite weight is the
    strategy's error."""
    from orchestra.kernels.layout import place_weights_nb

    w = np.ascontiguousarray(w, dtype=np.float64)
    c1 = c0 + out.shape[0]
    if w.shape != (len(symbols), c1 - c0):  # the kernel below writes without bounds checks
        raise StrategyError(
            f"strategy {name!r}: its wide form returned weights of shape {w.shape}, "
            f"expected {(len(symbols), c1 - c0)} (one row per symbol, one column per bar)"
        )
    if not place_weights_nb(w, out, gross) and not np.isfinite(w).all():
        j, t = np.argwhere(~np.isfinite(w))[0]
        when = np.datetime64(int(timestamps[c0 + t]), "ms")
        raise StrategyError(
            f"strategy {name!r} returned {int((~np.isfinite(w)).sum())} non-finite "
            f"weight(s), first {symbols[j]} {when}: {w[j, t]}"
        )


def _spans(market: Market, symbols: list[str]):
    """``columns, holes, (start, stop, by_bar, per_year)`` of ``symbols`` on the market's clock:
    their columns, whether a symbol's bars have holes, each one's first and one-past-last bar,
    how many are listed by each bar (see :mod:`orchestra.strategies.common`) and the bars a
    year."""
    from orchestra.kernels.layout import bar_spans_nb

    index = {s: j for j, s in enumerate(market.symbols)}
    columns = [index[s] for s in symbols]
    start, stop, holes = bar_spans_nb(market.tradable, np.asarray(columns, dtype=np.int64))
    n_bars = market.tradable.shape[0]
    by_bar = np.cumsum(np.bincount(start[stop > start], minlength=n_bars)).astype(np.float64)
    # the long form infers the bar step from consecutive bars of any symbol
    step = timeframe_ms(market.timeframe) if bool(((stop - start) >= 2).any()) else None
    return columns, holes, (start, stop, by_bar, per_year_from_step(step))


def step_run(
    name: str,
    params: dict[str, Any] | StrategyParams | None,
    market: Market,
    symbols: list[str],
    out: np.ndarray | None = None,
    gross: np.ndarray | None = None,
) -> StepRun | None:
    """A :class:`StepRun` of built-in ``name`` for ``symbols`` on the market's clock (only its
    timestamps, timeframe and tradable flags are read), or None when the strategy has no step
    form, a symbol's bars have holes, or the params have no step form. Without ``out`` and
    ``gross``, every :meth:`StepRun.chunk` call is given its rows (``into``)."""
    spec = get_strategy(name)
    form = getattr(spec.func, "step_form", None)
    if name not in _builtin_names() or form is None:
        return None
    model = params if isinstance(params, StrategyParams) else spec.parse_params(params)
    if not form.supports(model):
        return None
    _, holes, spans = _spans(market, symbols)
    if holes:
        return None
    return StepRun(name, form, model, symbols, market.timestamps, spans, out, gross)


def weights_matrix(
    name: str,
    params: dict[str, Any] | StrategyParams | None,
    market: Market,
    symbols: list[str],
    out: np.ndarray | None = None,
    gross: np.ndarray | None = None,
) -> np.ndarray | None:
    """The engine's fast path: a strategy's weights for ``symbols`` on the market's clock.

    A strategy with a wide form (every built-in: ``func.wide``, see
    :mod:`orchestra.strategies.common`) runs on the pod's rows of the ``(T, S)`` market matrices
    instead of a long frame: the same kernels on the same numbers, so the weights equal
    :func:`compute_weights`'s bit for bit (tested). Returns ``(T, len(symbols))`` weights, 0
    where a symbol has no bar, or None when the strategy has no wide form or a symbol's bars
    have holes (then use :func:`compute_weights`). With ``out`` (a ``(T, len(symbols))`` float64
    array or view, such as a pod's columns of the engine's slot matrix) the weights are written
    there and ``out`` is returned (no ``(T, S)`` temporary); ``out`` is left as it was when the
    strategy has no wide form. ``gross`` (``(T,)``), if given, receives each bar's rough gross
    weight, for :func:`cap_matrix`'s ``rough``.
    """
    spec = get_strategy(name)
    wide = getattr(spec.func, "wide", None)
    if wide is None:
        return None
    model = params if isinstance(params, StrategyParams) else spec.parse_params(params)
    columns, holes, spans = _spans(market, symbols)
    if holes:
        return None  # a symbol's bars have holes: the long form sees rows, not the clock
    n_bars = market.tradable.shape[0]
    matrices = {
        "open": market.open,
        "high": market.high,
        "low": market.low,
        "close": market.close,
        "volume": market.volume,
    }
    out = np.empty((n_bars, len(columns))) if out is None else out
    gross = np.empty(n_bars) if gross is None else gross
    form = getattr(spec.func, "step_form", None)
    if name in _builtin_names() and form is not None:
        # the step form's whole-history pass in chunks of bars, each field's rows gathered a
        # chunk at a time (kept in cache, and no (S, T) copy of every field: 0.3 GB a thread
        # on L)
        run = StepRun(name, form, model, symbols, market.timestamps, spans, out, gross)
        for c0 in range(0, max(n_bars, 1), CHUNK_BARS):
            c1 = min(n_bars, c0 + CHUNK_BARS)
            if not run.chunk(MarketFields({k: m[c0:c1] for k, m in matrices.items()}, columns),
                             c0, c1):  # fmt: skip
                return None
        return out
    start, stop, by_bar, per_year = spans
    fields = MarketFields(matrices, columns)
    w = call_user_strategy(
        name, wide, model, fields, start, stop, per_year, np.tile(by_bar, (len(columns), 1))
    )
    if w is None:
        return None
    place_weights(name, symbols, market.timestamps, w, out, gross, 0)
    return out


def _builtin_names() -> set[str]:
    from orchestra.strategies.registry import _REGISTRY

    return set(_REGISTRY)


def pod_params(pod: Any) -> dict[str, Any]:
    """A pod config's params, with ``sub_strategies`` passed through for ``ensemble``."""
    params = dict(pod.params)
    if pod.sub_strategies:
        params["sub_strategies"] = [s.model_dump() for s in pod.sub_strategies]
    return params


def weights_on_clock(
    name: str,
    bars: pl.DataFrame,
    params: dict[str, Any] | StrategyParams | None,
    pod_timeframe: str,
    clock_timeframe: str,
    max_leverage: float | None = None,
) -> pl.DataFrame:
    """Weights of a pod on the fine clock; ``bars`` are on the clock timeframe.

    With a coarser ``pod_timeframe`` the strategy runs on resampled bars; the weight of the coarse
    bar opened at ``T`` becomes visible at the fine bar whose **close** is ``T + pod_tf``, i.e. the
    fine bar opened at ``T + pod_tf - clock_tf``, and holds until the next coarse weight.
    """
    from orchestra.data.align import resample

    pod_ms, clock_ms = timeframe_ms(pod_timeframe), timeframe_ms(clock_timeframe)
    if pod_ms == clock_ms:
        return compute_weights(name, bars, params, max_leverage)
    coarse = resample(bars, pod_timeframe)
    w = compute_weights(name, coarse, params, max_leverage)
    w = w.with_columns(
        (pl.col("timestamp").dt.epoch("ms") + (pod_ms - clock_ms))
        .cast(pl.Datetime("ms", "UTC"))
        .alias("visible")
    ).drop("timestamp")
    fine = bars.select("timestamp", "symbol").sort("symbol", "timestamp")
    out = fine.join_asof(
        w.sort("symbol", "visible"),
        left_on="timestamp",
        right_on="visible",
        by="symbol",
        strategy="backward",
        check_sortedness=False,
    )
    return out.select("timestamp", "symbol", pl.col("weight").fill_null(0.0)).sort(
        "symbol", "timestamp"
    )
