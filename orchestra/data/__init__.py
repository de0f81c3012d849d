"""Market data: schema and validation, sources (synthetic, files, ccxt), clock alignment.

Public helpers: :func:`read_files` (SPEC §11.1) and :func:`load_bars` (the bars a config uses).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

import polars as pl

from orchestra.data.align import Market, resample, to_matrices
from orchestra.data.files import read_files
from orchestra.data.schema import BAR_COLUMNS, BAR_SCHEMA, DataError, GapReport, validate_bars

__all__ = [
    "BAR_COLUMNS",
    "BAR_SCHEMA",
    "DataError",
    "DataRangeWarning",
    "GapReport",
    "LoadedData",
    "Market",
    "load_bars",
    "read_files",
    "resample",
    "to_matrices",
    "validate_bars",
]


class DataRangeWarning(UserWarning):
    """The data does not cover the range the config asks for (the run uses what exists)."""


@dataclass(frozen=True)
class LoadedData:
    """The validated bars a config uses, with where they came from."""

    bars: pl.DataFrame
    source_label: str  # "synthetic (seed 7)", "files: /path", "ccxt: binance spot"
    gaps: GapReport
    notes: tuple[str, ...] = ()  # range warnings: the data does not cover what was asked for


def _fetch_hint(config, first_day: dt.date) -> str:
    d = config.data
    return (
        "get the data with: orch-bt data fetch --exchange binance --symbols "
        f"{','.join(config.symbols)} --timeframe {d.timeframe} --since {first_day} "
        f"--out {d.path}"
    )


def range_notes(bars: pl.DataFrame, first_day: dt.date, start: dt.date, end: dt.date) -> list[str]:
    """Readable warnings when ``bars`` do not cover ``[first_day (warm-up), start, end]``."""
    if bars.height == 0:
        return []
    first = bars["timestamp"].min()
    last = bars["timestamp"].max()
    assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
    notes = []
    if first.date() > start:
        notes.append(
            f"the data starts {first.date()}, after backtest.start {start}: "
            f"the backtest runs from {first.date()}, without warm-up"
        )
    elif first.date() > first_day:
        notes.append(
            f"the data starts {first.date()}: only {(start - first.date()).days} of the "
            f"{(start - first_day).days} warm-up days before backtest.start {start} exist"
        )
    if last.date() < end:
        notes.append(
            f"the data ends {last.date()}, before backtest.end {end}: "
            f"the backtest stops at {last.date()}"
        )
    return notes


def load_bars(config, start: dt.date | None = None, end: dt.date | None = None) -> LoadedData:
    """Load and validate every symbol of ``config`` at ``data.timeframe``.

    The range is ``[start - warmup, end]`` (inclusive day); ``start``/``end`` default to the
    backtest's. Files and ccxt may hold less history than asked for: a symbol simply starts later.
    """
    from orchestra.strategies.warmup import warmup_days  # late: strategies depend on data

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
        window = (
            dt.datetime.combine(first_day, dt.time(), dt.UTC),
            dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC),
        )
        try:
            bars = read_files(d.path, symbols, d.timeframe, d.gap_policy, *window)
        except DataError as exc:
            if any("does not exist" in p or "no file for" in p for p in exc.problems):
                exc = DataError([*exc.problems, _fetch_hint(config, first_day)], exc.where)
            raise DataError(exc.problems, f"{config.source}: data.path {d.path}") from None
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
    present = set(bars["symbol"].unique())
    missing = [s for s in symbols if s not in present]
    if missing:
        raise DataError([f"{s}: no bars between {first_day} and {end}" for s in missing], label)
    notes = range_notes(bars, first_day, start, end)
    for note in notes:
        warnings.warn(f"{label}: {note}", DataRangeWarning, stacklevel=2)
    return LoadedData(bars, label, gaps, tuple(notes))
