"""Perpetual funding rates (SPEC §9.4).

``files``: one file per symbol next to the bars, ``<BASE>-<QUOTE>_funding.parquet`` (or ``.csv``)
with columns ``timestamp`` (the funding time, any unit, UTC) and ``rate`` (the fraction paid by
longs to shorts at that time; negative when shorts pay). ``ccxt``: ``fetch_funding_rate_history``,
cached like bars.

On the clock, the rate of a funding time ``F`` is charged at the close of the first bar whose close
is at or after ``F`` (for F on a bar boundary: the bar that ends at F), on the units held through
that bar: ``q · close · rate``, paid by the pod that holds them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from orchestra.data.files import symbol_to_stem
from orchestra.data.schema import DataError, normalize_timestamp


def read_funding_file(folder: Path, symbol: str) -> pl.DataFrame:
    """``timestamp, rate`` for ``symbol`` from ``folder``; a clear error when it is missing."""
    stem = symbol_to_stem(symbol)
    for ext in (".parquet", ".csv"):
        path = Path(folder) / f"{stem}_funding{ext}"
        if path.is_file():
            raw = pl.read_parquet(path) if ext == ".parquet" else pl.read_csv(path)
            missing = {"timestamp", "rate"} - set(raw.columns)
            if missing:
                raise DataError([f"{path.name}: missing column(s) {sorted(missing)}"], str(path))
            out = raw.select(normalize_timestamp(raw["timestamp"]), pl.col("rate").cast(pl.Float64))
            bad = out.filter(pl.col("rate").is_null() | pl.col("rate").is_nan())
            if bad.height:
                raise DataError([f"{symbol} {bad['timestamp'][0]}: null funding rate"], str(path))
            return out.sort("timestamp")
    raise DataError(
        [
            f"portfolio.funding is true but there is no {stem}_funding.parquet (or .csv) in {folder}"
            " (columns: timestamp, rate)"
        ],
        str(folder),
    )


def funding_matrix(
    rates: dict[str, pl.DataFrame], symbols: list[str], timestamps: np.ndarray, step_ms: int
) -> np.ndarray:
    """Place each funding rate on the clock bar whose close is the first at or after it."""
    out = np.zeros((timestamps.size, len(symbols)))
    if timestamps.size == 0:
        return out
    closes = timestamps + step_ms
    for j, sym in enumerate(symbols):
        frame = rates.get(sym)
        if frame is None or frame.height == 0:
            continue
        f_ts = frame["timestamp"].dt.epoch("ms").to_numpy()
        rows = np.searchsorted(closes, f_ts, side="left")
        keep = (rows < timestamps.size) & (f_ts > timestamps[0])
        np.add.at(out[:, j], rows[keep], frame["rate"].to_numpy()[keep])
    return out
