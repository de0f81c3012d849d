"""The bar schema and its validation (SPEC §5.1).

A bar frame has ``timestamp`` (Datetime[ms, UTC], the bar's open time), ``symbol`` (str), ``open``,
``high``, ``low``, ``close``, ``volume`` (Float64). Validation checks, per symbol: no nulls, no NaN or
±inf in any price or volume column, sorted unique timestamps, prices > 0, ``low ≤ min(open, close) ≤ max(open, close) ≤ high`` and
``volume ≥ 0``. Every violation is reported with symbol, timestamp and rule. Missing bars (gaps on
the timeframe's UTC grid) are reported, then either raise (``gaps: error``) or are filled with a
flat bar at the previous close and zero volume (``gaps: ffill``, with a warning).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import polars as pl

from orchestra.timeframes import timeframe_ms

BAR_COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close"]
BAR_SCHEMA = {
    "timestamp": pl.Datetime("ms", "UTC"),
    "symbol": pl.String,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}
MAX_LISTED = 5  # problems listed per rule before "... and N more"


class DataError(ValueError):
    """Invalid market data: each problem names the symbol, the timestamp and the rule."""

    def __init__(self, problems: list[str], where: str = ""):
        self.problems = problems
        self.where = where
        body = "\n  ".join(problems)
        super().__init__(f"{where}:\n  {body}" if where else body)

    def __reduce__(self):  # pickled whole (a sweep's worker process raises it to the parent)
        return type(self), (self.problems, self.where)


class GapWarning(UserWarning):
    """Missing bars were forward-filled."""


@dataclass
class GapReport:
    """Missing bars per symbol: ``{symbol: [timestamps]}``."""

    missing: dict[str, list[pl.Datetime]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.missing.values())

    def describe(self) -> list[str]:
        lines = []
        for sym, ts in self.missing.items():
            shown = ", ".join(str(t) for t in ts[:MAX_LISTED])
            more = f" ... and {len(ts) - MAX_LISTED} more" if len(ts) > MAX_LISTED else ""
            lines.append(f"{sym}: {len(ts)} missing bar(s): {shown}{more}")
        return lines


def _parse_timestamp_strings(col: pl.Series, where: str) -> pl.Series:
    """ISO-8601 strings → Datetime (UTC); a string that does not parse is a :class:`DataError`
    naming the row and the value."""
    try:
        parsed = col.str.to_datetime(time_zone="UTC", strict=False)
    except pl.exceptions.PolarsError:  # no format could be inferred from the first values
        parsed = pl.Series(col.name, [None] * col.len(), dtype=pl.Datetime("us", "UTC"))
    bad = (parsed.is_null() & col.is_not_null()).arg_true()
    if bad.len():
        shown = ", ".join(f"row {int(i) + 1}: {col[int(i)]!r}" for i in bad.head(MAX_LISTED))
        more = f" ... and {bad.len() - MAX_LISTED} more" if bad.len() > MAX_LISTED else ""
        raise DataError(
            [
                f"column timestamp: {bad.len()} value(s) are not dates/times ({shown}{more}); "
                "use ISO-8601 (2024-01-31 or 2024-01-31T00:00:00Z) or epoch numbers"
            ],
            where,
        )
    return parsed


def normalize_timestamp(col: pl.Series, where: str = "") -> pl.Series:
    """Cast a timestamp column of any unit to Datetime[ms, UTC].

    Integers are read as epoch seconds, milliseconds, microseconds or nanoseconds according to
    their magnitude; naive datetimes are taken as UTC; strings are parsed as ISO-8601 (a value
    that does not parse is a :class:`DataError` naming its row).
    """
    dtype = col.dtype
    if dtype == pl.String:
        col = _parse_timestamp_strings(col, where)
        dtype = col.dtype
    if dtype.is_integer() or dtype.is_float():
        ints = col.cast(pl.Int64)
        top = ints.abs().max()
        magnitude = int(top) if top is not None else 0  # type: ignore[arg-type]
        unit = "s"
        if magnitude > 10**17:
            unit = "ns"
        elif magnitude > 10**14:
            unit = "us"
        elif magnitude > 10**11:
            unit = "ms"
        mult = {"s": 1000, "ms": 1, "us": 1, "ns": 1}[unit]
        tu = "ms" if unit in ("s", "ms") else unit
        return (ints * mult).cast(pl.Datetime(tu, "UTC")).dt.cast_time_unit("ms").alias(col.name)  # type: ignore[arg-type]
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            col = col.dt.replace_time_zone("UTC")
        else:
            col = col.dt.convert_time_zone("UTC")
        return col.dt.cast_time_unit("ms")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    raise DataError([f"timestamp column has unsupported type {dtype}"], where)


def is_sorted_by_symbol_time(frame: pl.DataFrame) -> bool:
    """Whether rows are sorted by (symbol, timestamp), checked in one vectorised pass."""
    if frame.height < 2:
        return True
    if not frame["symbol"].is_sorted():
        return False
    step_ok = (pl.col("symbol") != pl.col("symbol").shift(1)) | (
        pl.col("timestamp") > pl.col("timestamp").shift(1)
    )
    return bool(frame.select(step_ok.slice(1).all()).item())


def coerce_bars(df: pl.DataFrame, where: str = "") -> pl.DataFrame:
    """Select and cast the bar columns; raise :class:`DataError` if one is missing."""
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError([f"missing column(s) {missing}; found {df.columns}"], where)
    try:
        out = df.select(BAR_COLUMNS).with_columns(
            normalize_timestamp(df["timestamp"], where),
            pl.col("symbol").cast(pl.String),
            *[pl.col(c).cast(pl.Float64) for c in [*PRICE_COLUMNS, "volume"]],
        )
    except pl.exceptions.PolarsError as exc:  # e.g. a price column of text that is not numbers
        first = str(exc).strip().splitlines()[0]
        raise DataError([f"columns cannot be read as numbers: {first}"], where) from None
    return out


def _fmt_rows(rows: pl.DataFrame, rule: str) -> list[str]:
    out = [
        f"{r['symbol']} {r['timestamp']}: {rule}"
        for r in rows.head(MAX_LISTED).iter_rows(named=True)
    ]
    if rows.height > MAX_LISTED:
        out.append(f"... and {rows.height - MAX_LISTED} more rows breaking '{rule}'")
    return out


def _previous_timestamp(grouped: bool) -> pl.Expr:
    """The previous row's timestamp of the same symbol (null on a symbol's first row)."""
    if grouped:  # rows of a symbol are contiguous: no group-by needed
        same = pl.col("symbol") == pl.col("symbol").shift(1)
        return pl.when(same).then(pl.col("timestamp").shift(1))
    return pl.col("timestamp").shift(1).over("symbol")


def _rules(grouped: bool = False) -> list[tuple[pl.Expr, str]]:
    prev = _previous_timestamp(grouped)
    return [
        (pl.any_horizontal(pl.all().is_null()), "null value"),
        (pl.any_horizontal([pl.col(c).is_nan() for c in [*PRICE_COLUMNS, "volume"]]), "NaN value"),
        *[(pl.col(c).is_infinite(), f"{c} is infinite") for c in [*PRICE_COLUMNS, "volume"]],
        (pl.col("timestamp") == prev, "duplicate timestamp"),
        (pl.col("timestamp") < prev, "timestamps not sorted ascending"),
        (pl.min_horizontal(PRICE_COLUMNS) <= 0, "prices must be > 0"),
        (pl.col("high") < pl.col("low"), "high < low"),
        (pl.col("low") > pl.min_horizontal("open", "close"), "low > min(open, close)"),
        (pl.col("high") < pl.max_horizontal("open", "close"), "high < max(open, close)"),
        (pl.col("volume") < 0, "volume < 0"),
    ]


def check_bars(df: pl.DataFrame, where: str = "") -> None:
    """Raise :class:`DataError` listing every broken rule (symbol, timestamp, rule).

    Clean data costs one pass (every rule evaluated together); the per-rule listing only runs
    when something is wrong.
    """
    grouped = df.height < 2 or bool(df["symbol"].is_sorted())
    rules = _rules(grouped)
    flags = df.select(
        [expr.fill_null(False).any().alias(str(i)) for i, (expr, _) in enumerate(rules)]
    )
    if not any(flags.row(0)):
        return
    problems: list[str] = []
    clean = df.drop_nulls()  # the value rules are checked on rows without nulls
    for i, (expr, rule) in enumerate(rules):
        if flags.row(0)[i]:
            bad = (df if i == 0 else clean).filter(expr.fill_null(False))
            if bad.height:
                problems += _fmt_rows(bad, rule)
    if problems:
        raise DataError(problems, where)


def find_gaps(df: pl.DataFrame, timeframe: str) -> GapReport:
    """Missing slots on the timeframe's grid between each symbol's first and last bar."""
    step = timeframe_ms(timeframe)
    report = GapReport()
    ts_int = df.select("symbol", pl.col("timestamp").dt.epoch("ms").alias("t"))
    if bool(df["symbol"].is_sorted()):  # rows of a symbol are contiguous: no group-by needed
        same = pl.col("symbol") == pl.col("symbol").shift(1)
        ts_int = ts_int.with_columns(
            pl.when(same).then(pl.col("t") - pl.col("t").shift(1)).alias("dt")
        )
    else:
        ts_int = ts_int.with_columns(
            (pl.col("t") - pl.col("t").shift(1).over("symbol")).alias("dt")
        )
    holes = ts_int.filter(pl.col("dt") > step)
    for row in holes.iter_rows(named=True):
        start = row["t"] - row["dt"] + step
        missing = list(range(start, row["t"], step))
        report.missing.setdefault(row["symbol"], []).extend(
            pl.Series(missing, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")).to_list()
        )
    return report


def fill_gaps(df: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Insert a flat bar (o=h=l=c=previous close, volume 0) at every missing slot."""
    every = f"{timeframe_ms(timeframe)}ms"
    filled = (
        df.sort("symbol", "timestamp")
        .upsample(time_column="timestamp", every=every, group_by="symbol", maintain_order=True)
        .with_columns(pl.col("symbol").forward_fill())
        .with_columns(pl.col("close").forward_fill().over("symbol"))
        .with_columns(
            *[pl.col(c).fill_null(pl.col("close")) for c in ("open", "high", "low")],
            pl.col("volume").fill_null(0.0),
        )
    )
    return filled.select(BAR_COLUMNS)


def validate_bars(
    df: pl.DataFrame, timeframe: str, gaps: str = "error", where: str = ""
) -> tuple[pl.DataFrame, GapReport]:
    """Coerce, check and gap-handle a bar frame; returns (bars sorted by symbol, time; gaps)."""
    df = coerce_bars(df, where)
    check_bars(df, where)
    step = timeframe_ms(timeframe)
    off_grid = df.filter(pl.col("timestamp").dt.epoch("ms") % step != 0)
    if off_grid.height:
        raise DataError(_fmt_rows(off_grid, f"timestamp not on the {timeframe} UTC grid"), where)
    if not is_sorted_by_symbol_time(df):
        df = df.sort("symbol", "timestamp")
    report = find_gaps(df, timeframe)
    if report.total:
        if gaps == "error":
            raise DataError(
                [*report.describe(), "set data.gaps: ffill to fill them with flat bars"], where
            )
        warnings.warn(
            f"{where + ': ' if where else ''}forward-filled {report.total} missing bar(s): "
            + "; ".join(report.describe()),
            GapWarning,
            stacklevel=2,
        )
        df = fill_gaps(df, timeframe)
    return df, report
