"""The ``files`` source: one parquet or csv file per symbol and timeframe.

Files are named ``<BASE>-<QUOTE>_<tf>.parquet`` (or ``.csv``), e.g. ``BTC-USDT_1d.parquet``, with
columns ``timestamp, open, high, low, close, volume`` (a ``symbol`` column is optional and ignored:
the file name says which symbol it is). Timestamps may be in any unit; they are read as UTC.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from orchestra.data.schema import DataError, coerce_bars, validate_bars
from orchestra.timeframes import file_suffix


def symbol_to_stem(symbol: str) -> str:
    """``BTC/USDT`` → ``BTC-USDT`` (``BTC/USDT:USDT`` → ``BTC-USDT-USDT``)."""
    return symbol.replace("/", "-").replace(":", "-")


def symbol_file(path: Path, symbol: str, timeframe: str) -> Path | None:
    """The file for ``symbol`` at ``timeframe`` in ``path``, or None. Two files for one symbol
    (a parquet and a CSV, or two spellings of the timeframe) are a :class:`DataError`: which
    one holds the bars is the user's call, not ours."""
    stem = symbol_to_stem(symbol)
    found: list[Path] = []
    for tf in dict.fromkeys([file_suffix(timeframe), timeframe, timeframe.lower()]):
        for ext in (".parquet", ".csv"):
            candidate = path / f"{stem}_{tf}{ext}"
            # (on a case-insensitive disk two spellings may be one file)
            if candidate.is_file() and not any(f.samefile(candidate) for f in found):
                found.append(candidate)
    if len(found) > 1:
        names = " and ".join(f.name for f in found)
        raise DataError(
            [f"{symbol}: {names} both hold its {timeframe} bars: keep one of them"], str(path)
        )
    return found[0] if found else None


def read_symbol_file(file: Path, symbol: str) -> pl.DataFrame:
    """Read one file into bar columns (not yet validated)."""
    try:
        raw = pl.read_parquet(file) if file.suffix == ".parquet" else pl.read_csv(file)
    except Exception as exc:
        raise DataError([f"cannot read {file.name}: {exc}"], str(file)) from None
    raw = raw.with_columns(pl.lit(symbol).alias("symbol"))
    return coerce_bars(raw, str(file))


def read_files(
    path: str | Path,
    symbols: list[str],
    timeframe: str,
    gaps: str = "error",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """Load and validate the bars of ``symbols`` from a folder.

    With ``start``/``end`` (UTC, end exclusive) only the bars in that window are validated and
    returned, so a gap or a broken row years before the window does not stop a run that never
    uses it. Returns the bar frame of SPEC §5.1 sorted by symbol and timestamp. Raises
    :class:`~orchestra.data.schema.DataError` naming the file and problem (a missing file lists
    what the folder holds).
    """
    folder = Path(path).expanduser()
    if folder.is_file():
        raise DataError(
            [
                f"{folder} is a file, not a folder: data.path must be a folder holding one file "
                "per symbol (e.g. BTC-USDT_1d.parquet)"
            ]
        )
    if not folder.is_dir():
        raise DataError([f"data folder {folder} does not exist"])
    frames = []
    for sym in symbols:
        file = symbol_file(folder, sym, timeframe)
        if file is None:
            have = sorted(p.name for p in folder.iterdir() if p.suffix in (".parquet", ".csv"))
            raise DataError(
                [
                    f"no file for {sym} at timeframe {timeframe}: expected "
                    f"{symbol_to_stem(sym)}_{file_suffix(timeframe)}.parquet (or .csv); "
                    f"the folder has: {', '.join(have[:12]) or 'no data files'}"
                ],
                str(folder),
            )
        raw = read_symbol_file(file, sym)
        if start is not None:
            raw = raw.filter(pl.col("timestamp") >= start)
        if end is not None:
            raw = raw.filter(pl.col("timestamp") < end)
        if raw.height == 0:
            frames.append(raw)
            continue
        bars, _ = validate_bars(raw, timeframe, gaps, where=str(file))
        frames.append(bars)
    return pl.concat(frames).sort("symbol", "timestamp")


def write_files(bars: pl.DataFrame, path: str | Path, timeframe: str) -> list[Path]:
    """Write a bar frame as a files-source folder: one ``<BASE>-<QUOTE>_<tf>.parquet`` per
    symbol (what :func:`read_files` reads back bit for bit). Returns the files written."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (symbol,), part in (
        bars.sort("symbol", "timestamp")
        .partition_by("symbol", as_dict=True, maintain_order=True)
        .items()
    ):
        file = folder / f"{symbol_to_stem(str(symbol))}_{file_suffix(timeframe)}.parquet"
        tmp = file.with_suffix(".parquet.tmp")
        part.drop("symbol").write_parquet(tmp)
        tmp.replace(file)
        written.append(file)
    return written
