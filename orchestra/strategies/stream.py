"""Signals one clock bar at a time: the live loop's side of the strategies (SPEC §13.1).

The backtest computes every pod's weights over the whole history (:mod:`orchestra.engine.build`);
the live loop must not, or its cost per bar grows with the history. :class:`SignalBook` carries
each pod's signal state from bar to bar instead and turns one clock bar into that bar's weights:

* a built-in strategy on the clock's timeframe runs its step form
  (:class:`~orchestra.strategies.common.StepForm`): the per-symbol kernel the whole-history pass
  loops over, so each weight equals the backtest's bit for bit, in O(1) per bar;
* a built-in on a coarser timeframe (a ``1d`` pod on a ``1h`` clock) collects the clock bars of
  the coarse bar in progress and steps once it closes; its weight becomes visible at the clock
  bar that closes it and holds until the next (:func:`~orchestra.strategies.weights_on_clock`'s
  rule);
* any other strategy (a user's long-frame function, an ensemble of one) is recomputed on a
  trailing window of ``params.history_bars()`` bars at its timeframe, or on the whole history
  when it declares none (today's cost, which grows with the history: :attr:`SignalBook.warnings`
  says so).

:meth:`SignalBook.warm` builds the state from a history in one whole-history pass (the same
kernels), so a restart costs one pass over the stored bars, not one step per stored bar.

:class:`ClockRows` turns a clock bar's market rows into the row the engine reads, with
:func:`~orchestra.data.align.to_matrices`'s rules (NaN before a symbol's first bar; its last close
held, not tradable, after its last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from orchestra.data.align import Market, resample
from orchestra.data.schema import BAR_COLUMNS
from orchestra.strategies import StrategyError, cap_matrix, pod_params, weights_on_clock
from orchestra.strategies.common import SymbolRows, per_year_from_step
from orchestra.strategies.registry import get_strategy
from orchestra.timeframes import polars_every, timeframe_ms

FIELDS = ("open", "high", "low", "close", "volume")


@dataclass
class Row:
    """One clock bar for every symbol: ``(S,)`` prices and volume, and where a bar traded."""

    ts: int
    fields: dict[str, np.ndarray]
    tradable: np.ndarray
    frame: pl.DataFrame  # the clock bar's rows at the clock's timeframe (empty when none)


def truncate_ms(ts: int, timeframe: str) -> int:
    """The open of the ``timeframe`` bar holding ``ts`` (the resampler's label)."""
    s = pl.Series([ts], dtype=pl.Int64).cast(pl.Datetime("ms", "UTC"))
    return int(s.dt.truncate(polars_every(timeframe)).dt.epoch("ms")[0])


class ClockRows:
    """The feed's rows of one clock bar → a :class:`Row` on the config's symbols."""

    def __init__(self, symbols: list[str], clock_tf: str, data_tf: str):
        self.symbols = list(symbols)
        self.index = {s: j for j, s in enumerate(self.symbols)}
        self.clock_tf = clock_tf
        self.resample = timeframe_ms(clock_tf) != timeframe_ms(data_tf)
        self.last_close = np.full(len(self.symbols), np.nan)

    def warm(self, market: Market) -> None:
        """Continue after the history ``market`` (its last row's closes are held)."""
        if market.n_bars:
            self.last_close = market.close[-1].copy()

    def row(self, ts: int, bars: pl.DataFrame | None) -> Row:
        """The clock bar opened at ``ts`` whose rows (at the data's timeframe) are ``bars``."""
        n = len(self.symbols)
        frame = _empty_frame() if bars is None else bars
        if frame.height:
            if not all(s in self.index for s in frame["symbol"].unique().to_list()):
                frame = frame.filter(pl.col("symbol").is_in(self.symbols))
            if self.resample:
                frame = resample(frame, self.clock_tf)
        held = self.last_close
        fields = {f: held.copy() for f in ("open", "high", "low", "close")}
        fields["volume"] = np.where(np.isnan(held), np.nan, 0.0)
        tradable = np.zeros(n, dtype=np.bool_)
        if frame.height:
            cols = np.array([self.index[s] for s in frame["symbol"].to_list()], dtype=np.int64)
            for f in FIELDS:
                fields[f][cols] = frame[f].to_numpy()
            tradable[cols] = True
        self.last_close = fields["close"].copy()
        return Row(ts, fields, tradable, frame)


def _empty_frame() -> pl.DataFrame:
    from orchestra.data.schema import BAR_SCHEMA

    return pl.DataFrame(schema=BAR_SCHEMA)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ pods
class _StepPod:
    """A built-in on the clock's timeframe, one step per clock bar."""

    def __init__(self, form, params, cols: np.ndarray, clock_ms: int):
        self.form, self.params, self.cols = form, params, cols
        self.per_year = per_year_from_step(clock_ms)
        self.state = form.init(params, cols.size)
        self.seen = np.zeros(cols.size, dtype=np.bool_)

    def warm(self, market: Market, frame: pl.DataFrame) -> np.ndarray:
        tradable = market.tradable[:, self.cols]
        n = self.cols.size
        last = np.zeros(n)
        if market.n_bars == 0 or n == 0:
            return last
        rows = [np.flatnonzero(tradable[:, j]) for j in range(n)]
        lengths = np.array([r.size for r in rows], dtype=np.int64)
        width = int(lengths.max())
        firsts = np.sort([r[0] for r in rows if r.size])
        fields = {}
        for f in self.form.fields:
            arr = np.zeros((n, width))
            src = getattr(market, f)
            for j in range(n):
                arr[j, : lengths[j]] = src[rows[j], self.cols[j]]
            fields[f] = arr
        listed = np.zeros((n, width))
        for j in range(n):
            listed[j, : lengths[j]] = np.searchsorted(firsts, rows[j], side="right")
        start = np.zeros(n, dtype=np.int64)
        w = self.form.run(self.params, fields, start, lengths, self.per_year, listed, self.state)
        self.seen = lengths > 0
        at_end = tradable[-1]
        last[at_end] = w[at_end, lengths[at_end] - 1]
        return last

    def update(self, row: Row) -> np.ndarray:
        has = row.tradable[self.cols]
        self.seen |= has
        fields = {f: row.fields[f][self.cols] for f in self.form.fields}
        n = float(np.count_nonzero(self.seen))
        return self.form.step(self.params, fields, has, n, self.per_year, self.state)


class _CoarsePod:
    """A built-in on a coarser timeframe: steps when its coarse bar closes on the clock."""

    def __init__(self, form, params, symbols: list[str], pod_tf: str, clock_tf: str):
        self.form, self.params, self.symbols = form, params, symbols
        self.index = {s: j for j, s in enumerate(symbols)}
        self.pod_tf, self.pod_ms, self.clock_ms = (
            pod_tf,
            timeframe_ms(pod_tf),
            timeframe_ms(clock_tf),
        )
        self.per_year = per_year_from_step(self.pod_ms)
        self.state = form.init(params, len(symbols))
        self.seen = np.zeros(len(symbols), dtype=np.bool_)
        self.held = np.zeros(len(symbols))  # each symbol's last visible coarse weight
        self.label: int | None = None  # open of the coarse bar in progress
        self.parts: list[pl.DataFrame] = []  # its clock bars so far

    def _closes_at(self, label: int) -> int:
        return label + self.pod_ms - self.clock_ms

    def warm(self, market: Market, frame: pl.DataFrame) -> np.ndarray:
        n = len(self.symbols)
        if market.n_bars == 0:
            return np.zeros(n)
        last_ts = int(market.timestamps[-1])
        own = frame.filter(pl.col("symbol").is_in(self.symbols))
        coarse = resample(own, self.pod_tf) if own.height else own
        labels = coarse["timestamp"].dt.epoch("ms")
        done = coarse.filter((labels + (self.pod_ms - self.clock_ms)) <= last_ts)
        if done.height:
            rows = SymbolRows(done)
            order = np.array([self.index[s] for s in done["symbol"].unique(maintain_order=True)])
            fields = {f: rows[f] for f in self.form.fields}
            sub = [p[order] for p in _parts(self.state)]
            w = self.form.run(
                self.params, fields, rows.start, rows.stop, self.per_year, rows.listed(),
                _rebuild(self.state, sub),
            )  # fmt: skip
            _scatter(self.state, sub, order)
            self.seen[order] = True
            self.held[order] = w[np.arange(order.size), rows.stop - 1]
        current = truncate_ms(last_ts, self.pod_tf)
        if self._closes_at(current) > last_ts:  # a coarse bar in progress
            self.label = current
            start = pl.lit(current).cast(pl.Datetime("ms", "UTC"))
            self.parts = [own.filter(pl.col("timestamp") >= start)]
        return self._visible(market.tradable[-1, self._cols_in(market)])

    def _cols_in(self, market: Market) -> np.ndarray:
        index = {s: j for j, s in enumerate(market.symbols)}
        return np.array([index[s] for s in self.symbols], dtype=np.int64)

    def _visible(self, tradable: np.ndarray) -> np.ndarray:
        return np.where(tradable, self.held, 0.0)

    def update(self, row: Row, tradable: np.ndarray) -> np.ndarray:
        if self.label is None or row.ts >= self.label + self.pod_ms:
            self.label = truncate_ms(row.ts, self.pod_tf)
            self.parts = []
        own = row.frame.filter(pl.col("symbol").is_in(self.symbols))
        if own.height:
            self.parts.append(own)
        if row.ts == self._closes_at(self.label):
            bars = pl.concat(self.parts) if self.parts else _empty_frame()
            self.label, self.parts = None, []
            if bars.height:
                coarse = resample(bars, self.pod_tf)
                cols = np.array([self.index[s] for s in coarse["symbol"].to_list()])
                has = np.zeros(len(self.symbols), dtype=np.bool_)
                has[cols] = True
                self.seen |= has
                fields = {}
                for f in self.form.fields:
                    values = np.zeros(len(self.symbols))
                    values[cols] = coarse[f].to_numpy()
                    fields[f] = values
                n = float(np.count_nonzero(self.seen))
                w = self.form.step(self.params, fields, has, n, self.per_year, self.state)
                self.held[has] = w[has]
        return self._visible(tradable)


def _parts(state: Any) -> list[np.ndarray]:
    return list(state) if isinstance(state, list) else [state]


def _rebuild(state: Any, parts: list[np.ndarray]) -> Any:
    return parts if isinstance(state, list) else parts[0]


def _scatter(state: Any, parts: list[np.ndarray], order: np.ndarray) -> None:
    for whole, part in zip(_parts(state), parts, strict=True):
        whole[order] = part


class _WindowPod:
    """Any other strategy: the long-frame function on a trailing window (or the whole history)."""

    def __init__(self, pod, params, history_bars: int | None, clock_tf: str):
        self.pod, self.params = pod, params
        self.symbols = list(pod.symbols)
        self.index = {s: j for j, s in enumerate(self.symbols)}
        self.history_bars = history_bars
        self.clock_tf = clock_tf
        self.pod_ms = timeframe_ms(pod.timeframe)
        self.bars = _empty_frame()

    def _trim(self, ts: int) -> None:
        """Keep each symbol's last ``history_bars`` bars at the pod's timeframe (plus the one in
        progress on a coarser pod): the rows the strategy sees, holes and listings included."""
        if self.history_bars is None or not self.bars.height:
            return
        label = pl.col("timestamp").dt.truncate(polars_every(self.pod.timeframe))
        recent = label.rank("dense", descending=True).over("symbol") <= self.history_bars + 1
        self.bars = self.bars.filter(recent)

    def _weights_at(self, ts: int) -> np.ndarray:
        out = np.zeros(len(self.symbols))
        if not self.bars.height:
            return out
        w = weights_on_clock(
            self.pod.strategy, self.bars, self.params, self.pod.timeframe, self.clock_tf
        )
        now = w.filter(pl.col("timestamp").dt.epoch("ms") == ts)
        for sym, weight in zip(now["symbol"].to_list(), now["weight"].to_list(), strict=True):
            out[self.index[sym]] = weight
        return out

    def warm(self, market: Market, frame: pl.DataFrame) -> np.ndarray:
        self.bars = frame.filter(pl.col("symbol").is_in(self.symbols)).sort("symbol", "timestamp")
        if market.n_bars == 0:
            return np.zeros(len(self.symbols))
        ts = int(market.timestamps[-1])
        self._trim(ts)
        return self._weights_at(ts)

    def update(self, row: Row) -> np.ndarray:
        own = row.frame.filter(pl.col("symbol").is_in(self.symbols))
        if own.height:
            self.bars = pl.concat([self.bars, own]).sort("symbol", "timestamp")
        self._trim(row.ts)
        return self._weights_at(row.ts)


# ------------------------------------------------------------------------------------ book
class SignalBook:
    """Every pod's carried signal state; one clock bar in, that bar's slot weights out.

    ``weights`` (``(K,)``, the pods' slots in order, each pod capped at its ``max_leverage``)
    are the weights decided at the last processed clock bar: exactly the row of the backtest's
    weight matrix (:func:`~orchestra.engine.build.pod_weight_matrix`) for that bar.
    """

    def __init__(self, config, symbols: list[str]):
        self.config = config
        self.clock_tf = config.clock_timeframe
        clock_ms = timeframe_ms(self.clock_tf)
        index = {s: j for j, s in enumerate(symbols)}
        self.pods: list[Any] = []
        self.kinds: list[str] = []
        self.warnings: list[str] = []
        widths = [len(p.symbols) for p in config.pods]
        self.offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        self.cols = [np.array([index[s] for s in p.symbols], dtype=np.int64) for p in config.pods]
        for i, pod in enumerate(config.pods):
            spec = get_strategy(pod.strategy)
            params = spec.parse_params(pod_params(pod))
            form = getattr(spec.func, "step_form", None)
            if form is not None and form.supports(params):
                if timeframe_ms(pod.timeframe) == clock_ms:
                    self.pods.append(_StepPod(form, params, self.cols[i], clock_ms))
                    self.kinds.append("step")
                else:
                    self.pods.append(
                        _CoarsePod(form, params, list(pod.symbols), pod.timeframe, self.clock_tf)
                    )
                    self.kinds.append("coarse step")
                continue
            history = params.history_bars()
            if history is None:
                self.warnings.append(
                    f"pods[{i}] ({pod.pod_id}): strategy {pod.strategy!r} declares no "
                    "history_bars(): it is recomputed on the whole history at every bar, so its "
                    "cost per bar grows with the history (see docs/live.md)"
                )
            self.pods.append(_WindowPod(pod, params, history, self.clock_tf))
            self.kinds.append("whole history" if history is None else f"window {history}")
        self.weights = np.zeros(int(self.offsets[-1]))

    def _guard(self, i: int, fn, *args) -> np.ndarray:
        try:
            return fn(*args)
        except StrategyError as exc:
            pod = self.config.pods[i]
            raise StrategyError(f"pods[{i}] ({pod.pod_id}): {exc}") from None

    def _set(self, i: int, w: np.ndarray) -> None:
        block = np.asarray(w, dtype=np.float64).reshape(1, -1).copy()
        cap_matrix(block, self.config.pods[i].risk.max_leverage)
        self.weights[self.offsets[i] : self.offsets[i + 1]] = block[0]

    def warm(self, market: Market, frame: pl.DataFrame) -> None:
        """Start after the history ``market`` (clock matrices) / ``frame`` (its rows at the
        clock's timeframe): one whole-history pass per pod."""
        for i, pod in enumerate(self.pods):
            self._set(i, self._guard(i, pod.warm, market, frame))

    def update(self, row: Row) -> np.ndarray:
        """The weights decided at clock bar ``row`` (``(K,)``; also kept as :attr:`weights`)."""
        for i, pod in enumerate(self.pods):
            if isinstance(pod, _CoarsePod):
                w = self._guard(i, pod.update, row, row.tradable[self.cols[i]])
            else:
                w = self._guard(i, pod.update, row)
            self._set(i, w)
        return self.weights


__all__ = ["BAR_COLUMNS", "FIELDS", "ClockRows", "Row", "SignalBook", "truncate_ms"]
