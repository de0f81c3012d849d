"""Data layer: schema validation, the files source, synthetic data, gaps, resampling, alignment."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from orchestra.data import DataError, read_files, resample, to_matrices, validate_bars
from orchestra.data.schema import GapWarning, normalize_timestamp
from orchestra.data.synthetic import generate
from tests.conftest import needs_shared

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def good_bars(n: int = 6, symbol: str = "BTC/USDT") -> pl.DataFrame:
    ts = [T0 + dt.timedelta(days=i) for i in range(n)]
    c = np.linspace(100, 110, n)
    return pl.DataFrame(
        {
            "timestamp": ts,
            "symbol": symbol,
            "open": c,
            "high": c + 2,
            "low": c - 2,
            "close": c + 1,
            "volume": np.ones(n),
        }
    )


@pytest.mark.parametrize(
    ("mutate", "rule", "row"),
    [
        (
            lambda d: d.with_columns(
                pl.when(pl.int_range(pl.len()) == 2)
                .then(50.0)
                .otherwise(pl.col("high"))
                .alias("high")
            ),
            "high < low",
            2,
        ),
        (
            lambda d: d.with_columns(
                pl.when(pl.int_range(pl.len()) == 3)
                .then(-1.0)
                .otherwise(pl.col("low"))
                .alias("low")
            ),
            "prices must be > 0",
            3,
        ),
        (
            lambda d: d.with_columns(
                pl.when(pl.int_range(pl.len()) == 1)
                .then(None)
                .otherwise(pl.col("close"))
                .alias("close")
            ),
            "null value",
            1,
        ),
        (
            lambda d: d.with_columns(
                pl.when(pl.int_range(pl.len()) == 4)
                .then(-5.0)
                .otherwise(pl.col("volume"))
                .alias("volume")
            ),
            "volume < 0",
            4,
        ),
        (
            lambda d: d.with_columns(
                pl.when(pl.int_range(pl.len()) == 2)
                .then(200.0)
                .otherwise(pl.col("close"))
                .alias("close")
            ),
            "high < max(open, close)",
            2,
        ),
        (
            lambda d: d.with_columns(
                pl.when(pl.int_range(pl.len()) == 5)
                .then(float("nan"))
                .otherwise(pl.col("open"))
                .alias("open")
            ),
            "NaN value",
            5,
        ),
    ],
)
def test_validation_names_symbol_timestamp_and_rule(mutate, rule: str, row: int) -> None:
    bars = mutate(good_bars())
    with pytest.raises(DataError) as info:
        validate_bars(bars, "1d")
    msg = str(info.value)
    assert rule in msg
    assert "BTC/USDT" in msg and str((T0 + dt.timedelta(days=row)).date()) in msg


def test_duplicate_and_unsorted_timestamps() -> None:
    d = good_bars()
    dup = pl.concat([d, d.slice(3, 1)])
    with pytest.raises(DataError, match="duplicate timestamp"):
        validate_bars(dup.sort("timestamp"), "1d")
    from orchestra.data.schema import check_bars, coerce_bars

    with pytest.raises(DataError, match="timestamps not sorted ascending"):
        check_bars(coerce_bars(d.reverse()))
    unsorted = pl.concat([d.slice(0, 3), d.slice(4, 1), d.slice(3, 1), d.slice(5, 1)])
    with pytest.raises(DataError, match=r"BTC/USDT 2024-01-04 .*timestamps not sorted"):
        check_bars(coerce_bars(unsorted))


def test_gaps_are_reported_or_filled() -> None:
    d = good_bars(8).filter(
        ~pl.col("timestamp").is_in([T0 + dt.timedelta(days=3), T0 + dt.timedelta(days=4)])
    )
    with pytest.raises(DataError, match=r"BTC/USDT: 2 missing bar\(s\): 2024-01-04"):
        validate_bars(d, "1d", gaps="error")
    with pytest.warns(GapWarning, match="forward-filled 2 missing bar"):
        filled, report = validate_bars(d, "1d", gaps="ffill")
    assert report.total == 2 and filled.height == 8
    row = filled.filter(pl.col("timestamp") == T0 + dt.timedelta(days=3)).row(0, named=True)
    prev_close = d.filter(pl.col("timestamp") == T0 + dt.timedelta(days=2))["close"][0]
    assert (
        row["open"] == row["high"] == row["low"] == row["close"] == prev_close
        and row["volume"] == 0
    )


def test_off_grid_timestamps_are_rejected() -> None:
    d = good_bars().with_columns(pl.col("timestamp") + pl.duration(hours=3))
    with pytest.raises(DataError, match="not on the 1d UTC grid"):
        validate_bars(d, "1d")


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_any_timestamp_unit_is_read_as_utc(unit: str) -> None:
    mult = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    epoch_s = int(T0.timestamp())
    col = normalize_timestamp(pl.Series("timestamp", [epoch_s * mult]))
    assert col.dtype == pl.Datetime("ms", "UTC") and col[0] == T0


def test_naive_and_string_timestamps() -> None:
    assert normalize_timestamp(pl.Series("timestamp", [dt.datetime(2024, 1, 1)]))[0] == T0
    assert normalize_timestamp(pl.Series("timestamp", ["2024-01-01T00:00:00Z"]))[0] == T0


def test_files_source_parquet_and_csv(tmp_path: Path) -> None:
    a = good_bars(5, "BTC/USDT").drop("symbol")
    a.write_parquet(tmp_path / "BTC-USDT_1d.parquet")
    b = good_bars(5).drop("symbol").with_columns(pl.col("timestamp").dt.epoch("ms"))
    b.write_csv(tmp_path / "ETH-USDT_1d.csv")
    bars = read_files(tmp_path, ["BTC/USDT", "ETH/USDT"], "1d")
    assert bars.columns == ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    assert bars.height == 10 and bars["timestamp"].dtype == pl.Datetime("ms", "UTC")
    with pytest.raises(
        DataError,
        match=r"no file for SOL/USDT .* expected SOL-USDT_1d.parquet .* BTC-USDT_1d.parquet",
    ):
        read_files(tmp_path, ["SOL/USDT"], "1d")


def test_broken_file_names_the_file(tmp_path: Path) -> None:
    good_bars(5).drop("symbol").with_columns(pl.lit(-1.0).alias("low")).write_parquet(
        tmp_path / "BTC-USDT_1d.parquet"
    )
    with pytest.raises(DataError, match=r"(?s)BTC-USDT_1d.parquet.*prices must be > 0"):
        read_files(tmp_path, ["BTC/USDT"], "1d")


def test_synthetic_is_deterministic_and_crypto_like() -> None:
    syms = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "AVAX/USDT"]
    a = generate(syms, dt.date(2020, 1, 1), dt.date(2025, 12, 31), seed=7)
    assert a.equals(generate(syms, dt.date(2020, 1, 1), dt.date(2025, 12, 31), seed=7))
    assert not a.equals(generate(syms, dt.date(2020, 1, 1), dt.date(2025, 12, 31), seed=8))
    validate_bars(a, "1d")
    wide = a.pivot(on="symbol", index="timestamp", values="close").drop("timestamp").to_numpy()
    r = np.diff(np.log(wide), axis=0)
    vols = r.std(axis=0) * np.sqrt(365)
    assert ((vols > 0.5) & (vols < 1.15)).all(), vols
    c = np.corrcoef(r.T)[np.triu_indices(5, 1)]
    assert (c > 0.5).all() and (c < 0.85).all(), c
    kurt = ((r - r.mean(0)) ** 4).mean(0) / r.var(0) ** 2
    assert (kurt > 3.5).all()  # fat tails
    # a symbol does not depend on its companions
    solo = generate(["ETH/USDT"], dt.date(2020, 1, 1), dt.date(2025, 12, 31), seed=7)
    assert solo.equals(a.filter(pl.col("symbol") == "ETH/USDT"))


def test_resample_and_matrices() -> None:
    hourly = generate(["BTC/USDT"], dt.date(2024, 1, 1), dt.date(2024, 1, 3), "1h")
    daily = resample(hourly, "1D")
    assert daily.height == 3
    first = hourly.head(24)
    row = daily.row(0, named=True)
    assert row["open"] == first["open"][0] and row["close"] == first["close"][-1]
    assert row["high"] == first["high"].max() and row["low"] == first["low"].min()
    assert row["volume"] == pytest.approx(first["volume"].sum())
    late = generate(["ETH/USDT"], dt.date(2024, 1, 2), dt.date(2024, 1, 3), "1h")
    m = to_matrices(pl.concat([hourly, late]), ["BTC/USDT", "ETH/USDT"], "1h")
    assert m.n_bars == 72
    assert (
        np.isnan(m.close[:24, 1]).all()
        and not m.tradable[:24, 1].any()
        and m.tradable[24:, 1].all()
    )


@needs_shared
def test_shared_hourly_resampled_matches_the_daily_files(shared_data: Path) -> None:
    syms = ["BTC/USDT", "ETH/USDT"]
    with pytest.warns(GapWarning):
        hourly = read_files(shared_data / "binance-1h", syms, "1h", gaps="ffill")
    daily = read_files(shared_data / "binance-1d", syms, "1d")
    # a gap-filled hour has zero volume and the previous close, so compare closes and volumes
    mine = resample(hourly, "1d").join(daily, on=["timestamp", "symbol"], suffix="_d")
    assert mine.height == daily.height
    assert np.allclose(mine["close"], mine["close_d"], rtol=0, atol=0)
    assert np.allclose(mine["volume"], mine["volume_d"], rtol=1e-9)


@needs_shared
def test_shared_hourly_gaps_are_reported(shared_data: Path) -> None:
    with pytest.raises(DataError, match=r"BTC/USDT: 32 missing bar\(s\): 2020-02-09 02:00"):
        read_files(shared_data / "binance-1h", ["BTC/USDT"], "1h")


def test_interleaved_symbols_are_checked_per_symbol() -> None:
    """Frames sorted by time across symbols (not grouped) still catch per-symbol problems."""
    a, b = good_bars(5, "BTC/USDT"), good_bars(5, "ETH/USDT")
    mixed = pl.concat([a, b, b.slice(2, 1)]).sort("timestamp", "symbol")
    with pytest.raises(DataError, match=r"ETH/USDT 2024-01-03 .*duplicate timestamp"):
        validate_bars(mixed, "1d")
    ok, _ = validate_bars(pl.concat([a, b]).sort("timestamp", "symbol"), "1d")
    assert ok["symbol"].is_sorted() and ok.height == 10
    gap = pl.concat([a.filter(pl.col("timestamp") != T0 + dt.timedelta(days=2)), b]).sort(
        "timestamp", "symbol"
    )
    with pytest.raises(DataError, match=r"BTC/USDT: 1 missing bar"):
        validate_bars(gap, "1d")
