"""Market data: schema and validation, sources (synthetic, files, ccxt), clock alignment.

Public helpers: :func:`read_files` (SPEC §11.1) and :func:`load_bars` (the bars a config uses).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from orchestra.data.align import Market, resample, to_matrices
from orchestra.data.files import read_files
from orchestra.data.schema import BAR_COLUMNS, BAR_SCHEMA, DataError, GapReport, validate_bars

__all__ = [
    "BAR_COLUMNS",
    "BAR_SCHEMA",
    "DataError",
    "GapReport",
    "LoadedData",
    "Market",
    "load_bars",
    "read_files",
    "resample",
    "to_matrices",
    "validate_bars",
]


@dataclass(frozen=True)
class LoadedData:
    """The validated bars a config uses, with where they came from."""

    bars: pl.DataFrame
    source_label: str  # "synthetic (seed 7)", "files: /path", "ccxt: binance spot"
    gaps: GapReport


def load_bars(config, start: dt.date | None = None, end: dt.date | None = None) -> LoadedData:
    """Load and validate every symbol of ``config`` at ``data.timeframe``.

    The range is ``[start - warmup, end]`` (inclusive day); ``start``/``end`` default to the
    backtest's. Files and ccxt may hold less history than asked for: a symbol simply starts later.
    """
    from orchestra.engine.warmup import warmup_days  # late import: engine depends on data

    d = config.data
    start = start or config.backtest.start
    end = end or config.backtest.end
    first_day = start - dt.timedelta(days=warmup_days(config))
    symbols = config.symbols
    if d.source == "synthetic":
        from orchestra.data.synthetic import generate

        bars = generate(symbols, first_day, end, d.timeframe, d.seed)
        bars, gaps = validate_bars(bars, d.timeframe, "error", where="synthetic")
        label = f"synthetic (seed {d.seed})"
    elif d.source == "files":
        bars = read_files(d.path, symbols, d.timeframe, d.gap_policy)
        gaps = GapReport()
        label = f"files: {d.path}"
    else:
        from orchestra.data.ccxt_source import fetch_cached, make_exchange
        from orchestra.timeframes import epoch_ms

        exchange = make_exchange(d.exchange, d.market)
        parts = [
            fetch_cached(
                exchange,
                s,
                d.timeframe,
                epoch_ms(first_day),
                d.cache,
                epoch_ms(end + dt.timedelta(days=1)),
                market=d.market,
            )
            for s in symbols
        ]
        bars, gaps = validate_bars(
            pl.concat(parts), d.timeframe, d.gap_policy, where=f"ccxt {d.exchange}"
        )
        label = f"ccxt: {d.exchange} {d.market}"
    lo = pl.lit(dt.datetime.combine(first_day, dt.time(), dt.UTC)).cast(pl.Datetime("ms", "UTC"))
    hi = pl.lit(dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)).cast(
        pl.Datetime("ms", "UTC")
    )
    bars = bars.filter((pl.col("timestamp") >= lo) & (pl.col("timestamp") < hi))
    missing = [s for s in symbols if bars.filter(pl.col("symbol") == s).height == 0]
    if missing:
        raise DataError([f"{s}: no bars between {first_day} and {end}" for s in missing], label)
    return LoadedData(bars, label, gaps)
