"""Clock alignment and resampling (SPEC §5.3).

All symbols share one clock: the finest pod timeframe. :func:`resample` builds coarser bars with
``group_by_dynamic`` (label = bar open, closed on the left). :func:`to_matrices` turns a long bar
frame into ``(n_bars, n_symbols)`` numpy arrays on the clock: prices are NaN before a symbol's first
bar (it is not listed yet) and forward-filled after its last one, with ``tradable`` False there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from orchestra.data.schema import BAR_COLUMNS, is_sorted_by_symbol_time
from orchestra.timeframes import polars_every, timeframe_ms


def resample(bars: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Aggregate bars to ``timeframe``: first open, max high, min low, last close, sum volume.

    The label is the coarse bar's open time; a coarse bar holds the fine bars with
    ``label ≤ t < label + timeframe``. A partial coarse bar (at the start or end of the data) is
    kept; whoever uses its close must respect that it closes at ``label + timeframe``.
    """
    return (
        bars.sort("symbol", "timestamp")
        .group_by_dynamic(
            "timestamp",
            every=polars_every(timeframe),
            closed="left",
            label="left",
            group_by="symbol",
        )
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
        )
        .select(BAR_COLUMNS)
        .sort("symbol", "timestamp")
    )


@dataclass(frozen=True)
class Market:
    """Bars aligned on one clock: arrays of shape ``(n_bars, n_symbols)``."""

    timestamps: np.ndarray  # int64 epoch ms, bar open times, shape (n_bars,)
    symbols: list[str]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    tradable: np.ndarray  # bool: a real (or gap-filled) bar exists for this symbol at this time
    timeframe: str

    @property
    def n_bars(self) -> int:
        return int(self.timestamps.shape[0])

    def timestamp_series(self) -> pl.Series:
        return pl.Series("timestamp", self.timestamps).cast(pl.Datetime("ms", "UTC"))


def clock(bars: pl.DataFrame, timeframe: str) -> np.ndarray:
    """Every slot of ``timeframe`` from the first to the last bar of any symbol (epoch ms)."""
    ts = bars["timestamp"].dt.epoch("ms")
    step = timeframe_ms(timeframe)
    lo, hi = int(ts.min()), int(ts.max())  # type: ignore[arg-type]
    return np.arange(lo, hi + step, step, dtype=np.int64)


def to_matrices(bars: pl.DataFrame, symbols: list[str], timeframe: str) -> Market:
    """Pivot a long bar frame onto the clock (see module docstring for NaN/ffill rules)."""
    times = clock(bars, timeframe)
    n, k = times.size, len(symbols)
    step = timeframe_ms(timeframe)
    index = {s: j for j, s in enumerate(symbols)}
    sub = bars.filter(pl.col("symbol").is_in(symbols))
    if sub.height == bars.height:
        sub = bars  # keeps polars' sortedness flags
    fields = ("open", "high", "low", "close", "volume")
    out = {c: np.full((n, k), np.nan) for c in fields}
    tradable = np.zeros((n, k), dtype=np.bool_)
    last = np.full(k, -1, dtype=np.int64)
    ts = sub["timestamp"].dt.epoch("ms").to_numpy()
    values = {c: sub[c].to_numpy() for c in fields}
    if is_sorted_by_symbol_time(sub):  # validated data: one run of rows per symbol
        runs = sub["symbol"].rle()
        ends = np.cumsum(runs.struct.field("len").to_numpy())
        starts = np.r_[0, ends[:-1]]
        for sym, a, b in zip(runs.struct.field("value"), starts, ends, strict=True):
            j = index[sym]
            rows = (ts[a:b] - times[0]) // step
            gapless = rows[-1] - rows[0] == b - a - 1
            where = slice(int(rows[0]), int(rows[-1]) + 1) if gapless else rows
            for c in fields:
                out[c][where, j] = values[c][a:b]
            tradable[where, j] = True
            last[j] = rows[-1]
    else:
        rows = ((ts - times[0]) // step).astype(np.int64)
        cols = sub["symbol"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
        for c in fields:
            out[c][rows, cols] = values[c]
        tradable[rows, cols] = True
        np.maximum.at(last, cols, rows)
    # after a symbol's last bar: hold the last close for marking (not tradable)
    for j in np.flatnonzero((last >= 0) & (last + 1 < n)):
        last_close = out["close"][last[j], j]
        for c in ("open", "high", "low", "close"):
            out[c][last[j] + 1 :, j] = last_close
        out["volume"][last[j] + 1 :, j] = 0.0
    return Market(
        times,
        list(symbols),
        out["open"],
        out["high"],
        out["low"],
        out["close"],
        out["volume"],
        tradable,
        timeframe,
    )


def bars_of(market: Market) -> pl.DataFrame:
    """The long bar frame (SPEC §5.1) of a market's tradable bars, by symbol then time: the
    inverse of :func:`to_matrices` where every bar is tradable (the synthetic source's)."""
    fields = ("open", "high", "low", "close", "volume")
    frames = []
    for j, s in enumerate(market.symbols):
        rows = np.flatnonzero(market.tradable[:, j])
        columns = {
            "timestamp": pl.Series(market.timestamps[rows]).cast(pl.Datetime("ms", "UTC")),
            "symbol": pl.Series([s], dtype=pl.String).gather(np.zeros(rows.size, int)),
            **{f: getattr(market, f)[rows, j] for f in fields},
        }
        frames.append(pl.DataFrame(columns))
    return pl.concat(frames).sort("symbol", "timestamp", maintain_order=True)
