"""One contract suite for every registered strategy, plus golden tests of each formula."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.config import parse_config
from orchestra.data import read_files, resample
from orchestra.strategies import (
    StrategyNotFound,
    compute_weights,
    get_strategy,
    registered_names,
    weights_on_clock,
)
from tests.conftest import needs_shared

# short-lookback params so that hypothesis' short series exercise real signals
CONTRACT_PARAMS = {
    "tsmom": {"lookback": 5, "vol_window": 5},
    "vw-tsmom": {"lookback": 5, "vol_window": 5},
    "donchian-ensemble": {"lookbacks": [3, 8], "vol_window": 5},
    "donchian-ensemble/long_only": {"lookbacks": [3, 8], "vol_window": 5, "long_only": True},
    "vol-adaptive": {"fast_lookback": 3, "slow_lookback": 10, "vol_short": 4, "vol_long": 12},
    "ensemble": {
        "aggregation": "inverse_volatility",
        "vol_window": 6,
        "sub_strategies": [
            {"name": "tsmom", "params": {"lookback": 4, "vol_window": 4}},
            {"name": "donchian-ensemble", "params": {"lookbacks": [5], "vol_window": 4}},
        ],
    },
    "ensemble/equal": {
        "aggregation": "equal",
        "sub_strategies": [
            {"name": "vw-tsmom", "params": {"lookback": 4}},
            {
                "name": "vol-adaptive",
                "params": {"fast_lookback": 3, "slow_lookback": 8, "vol_short": 3, "vol_long": 9},
            },
        ],
    },
}
CASES = list(CONTRACT_PARAMS)


def test_every_registered_strategy_is_in_the_contract_suite() -> None:
    assert set(registered_names()) <= {c.split("/")[0] for c in CASES}


def random_bars(
    seed: int, n_syms: int, n_bars: int, step_h: int = 24, zero_volume: bool = False
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    t0 = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    ts = [t0 + dt.timedelta(hours=step_h * i) for i in range(n_bars)]
    for j in range(n_syms):
        r = rng.standard_t(3, n_bars) * rng.uniform(0.005, 0.06) + rng.normal(0, 0.003)
        close = 100 * np.exp(np.cumsum(r))
        open_ = np.concatenate([[100.0], close[:-1]])
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, n_bars)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, n_bars)))
        vol = rng.lognormal(5, 1, n_bars)
        if zero_volume:
            vol[rng.random(n_bars) < 0.2] = 0.0
        frames.append(
            pl.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": f"S{j}/USDT",
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": vol,
                }
            )
        )
    return pl.concat(frames).with_columns(pl.col("timestamp").dt.cast_time_unit("ms"))


def _run(case: str, bars: pl.DataFrame, max_leverage: float | None = None) -> pl.DataFrame:
    return compute_weights(case.split("/")[0], bars, CONTRACT_PARAMS[case], max_leverage)


def _check_contract(
    case: str, bars: pl.DataFrame, t_index: int, max_leverage: float, seed: int
) -> None:
    full = _run(case, bars, max_leverage)
    # schema, one row per bar, no nulls
    assert full.schema == pl.Schema(
        {"timestamp": pl.Datetime("ms", "UTC"), "symbol": pl.String, "weight": pl.Float64}
    )
    assert full.height == bars.height
    assert full["weight"].null_count() == 0 and np.isfinite(full["weight"].to_numpy()).all()
    # leverage cap
    gross = full.group_by("timestamp").agg(pl.col("weight").abs().sum())["weight"]
    assert gross.max() <= max_leverage * (1 + 1e-12)
    # determinism
    assert full.equals(_run(case, bars, max_leverage))
    # no look-ahead: truncation, and random bars after t
    times = bars["timestamp"].unique().sort()
    cut = times[t_index]
    trunc = _run(case, bars.filter(pl.col("timestamp") <= cut), max_leverage)
    rng = np.random.default_rng(seed)
    after = pl.col("timestamp") > cut
    noise = pl.Series(rng.uniform(0.2, 5.0, bars.height))
    scrambled = bars.with_columns(
        *[
            pl.when(after).then(pl.col(c) * noise).otherwise(pl.col(c)).alias(c)
            for c in ("open", "high", "low", "close")
        ],
        pl.when(after).then(pl.col("volume") * noise).otherwise(pl.col("volume")).alias("volume"),
    )
    noisy = _run(case, scrambled, max_leverage)
    head = full.filter(pl.col("timestamp") <= cut).sort("symbol", "timestamp")
    assert head.equals(trunc.sort("symbol", "timestamp"))
    assert head.equals(noisy.filter(pl.col("timestamp") <= cut).sort("symbol", "timestamp"))


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31),
    n_syms=st.integers(1, 3),
    n_bars=st.integers(2, 80),
    frac=st.floats(0, 1),
    lev=st.sampled_from([0.1, 1.0, 2.5]),
    zero_vol=st.booleans(),
    ragged=st.booleans(),
)
def test_contract_on_generated_bars(
    case: str,
    seed: int,
    n_syms: int,
    n_bars: int,
    frac: float,
    lev: float,
    zero_vol: bool,
    ragged: bool,
) -> None:
    """The contract, with every symbol trading from the first bar or (``ragged``) listed later and
    delisted earlier than the others: a truncation before a listing must not change a weight."""
    bars = random_bars(seed, n_syms, n_bars, zero_volume=zero_vol)
    if ragged:
        bars = _ragged(bars, np.random.default_rng(seed))
    n_times = bars["timestamp"].n_unique()
    _check_contract(case, bars, int(frac * (n_times - 1)), lev, seed)


@pytest.mark.parametrize("case", CASES)
def test_a_later_listing_does_not_change_earlier_weights(case: str) -> None:
    """A symbol listing at bar 30 (and another at 50) must not change any weight before it: the
    weights are divided across the symbols listed so far, not across every symbol the data will
    ever hold (which is what a live loop, seeing bars up to t only, would compute)."""
    bars = random_bars(11, 3, 80)
    t0 = bars["timestamp"].min()
    listing = {"S1/USDT": 30, "S2/USDT": 50}
    bars = bars.filter(
        pl.col("timestamp")
        >= pl.col("symbol").replace_strict(listing, default=0, return_dtype=pl.Int64)
        * pl.duration(days=1)
        + t0
    )
    full = _run(case, bars, 2.0)
    for cut in (20, 40, 60):
        when = t0 + dt.timedelta(days=cut)
        early = bars.filter(pl.col("timestamp") <= when)
        head = full.filter(pl.col("timestamp") <= when)
        assert head.equals(_run(case, early, 2.0)), f"cut at bar {cut}"
        assert (head["weight"] != 0).any()  # the check compares real positions
        _check_contract(case, bars, cut, 2.0, cut)


@needs_shared
@pytest.mark.parametrize("case", CASES)
def test_contract_on_real_binance_bars(case: str, shared_data) -> None:
    # SOL lists on 2020-08-11, bar 223: the first cut is before it
    bars = read_files(shared_data / "binance-1d", ["BTC/USDT", "SOL/USDT", "DOGE/USDT"], "1d")
    for i, t in enumerate([150, 250, 900, 1800]):
        _check_contract(case, bars, t, 2.0, i)


@needs_shared
def test_coarse_pod_on_real_hourly_bars(shared_data) -> None:
    bars = read_files(shared_data / "binance-1h", ["ETH/USDT"], "1h", gaps="ffill").filter(
        pl.col("timestamp") < dt.datetime(2021, 3, 1, tzinfo=dt.UTC)
    )
    _check_visibility(bars, "tsmom", {"lookback": 5, "vol_window": 5})


def _check_visibility(bars: pl.DataFrame, name: str, params: dict) -> None:
    """A 1D pod on 1h bars: the daily weight shows from the fine bar that closes the day, never before."""
    fine = weights_on_clock(name, bars, params, "1D", "1h")
    coarse = compute_weights(name, resample(bars, "1D"), params)
    day = coarse.with_columns((pl.col("timestamp") + pl.duration(hours=23)).alias("visible"))
    joined = fine.join(
        day.select("symbol", "visible", pl.col("weight").alias("daily")),
        left_on=["symbol", "timestamp"],
        right_on=["symbol", "visible"],
        how="inner",
    )
    assert joined.height > 0
    assert np.array_equal(joined["weight"].to_numpy(), joined["daily"].to_numpy())
    # within the day (before its last hour) the weight is the previous day's
    hour = fine.with_columns(
        pl.col("timestamp").dt.hour().alias("h"), pl.col("timestamp").dt.truncate("1d").alias("d")
    )
    prev = coarse.with_columns((pl.col("timestamp") + pl.duration(days=1)).alias("d")).select(
        "symbol", "d", pl.col("weight").alias("prev")
    )
    inside = hour.filter(pl.col("h") < 23).join(prev, on=["symbol", "d"], how="inner")
    assert np.array_equal(inside["weight"].to_numpy(), inside["prev"].to_numpy())
    # and truncating the fine bars inside a day does not change what was visible
    cut = bars["timestamp"].sort()[bars.height // 2]
    trunc = weights_on_clock(name, bars.filter(pl.col("timestamp") <= cut), params, "1D", "1h")
    assert fine.filter(pl.col("timestamp") <= cut).equals(trunc)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31))
def test_coarse_timeframe_visibility_rule(seed: int) -> None:
    bars = random_bars(seed, 2, 24 * 20, step_h=1)
    _check_visibility(bars, "tsmom", {"lookback": 3, "vol_window": 3})


# ---------------------------------------------------------------------------------- golden tests


def _series(close: list[float], high=None, low=None, volume=None) -> pl.DataFrame:
    n = len(close)
    ts = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=i) for i in range(n)]
    c = np.asarray(close, float)
    return pl.DataFrame(
        {
            "timestamp": ts,
            "symbol": "X/USDT",
            "open": c,
            "high": c if high is None else np.asarray(high, float),
            "low": c if low is None else np.asarray(low, float),
            "close": c,
            "volume": np.ones(n) if volume is None else np.asarray(volume, float),
        }
    ).with_columns(pl.col("timestamp").dt.cast_time_unit("ms"))


def test_tsmom_long_on_rising_and_short_on_falling() -> None:
    rng = np.random.default_rng(0)
    up = 100 * np.exp(np.cumsum(0.01 + rng.normal(0, 0.002, 60)))
    w = compute_weights("tsmom", _series(list(up)), {"lookback": 10, "vol_window": 10})[
        "weight"
    ].to_numpy()
    assert (w[:10] == 0).all() and (w[11:] > 0).all()
    w = compute_weights("tsmom", _series(list(up[::-1])), {"lookback": 10, "vol_window": 10})[
        "weight"
    ].to_numpy()
    assert (w[11:] < 0).all()
    # vol targeting: weight = vol_target / σ_annual
    r = np.diff(np.log(up[::-1]))[-10:]
    assert w[-1] == pytest.approx(-0.35 / (np.std(r, ddof=1) * np.sqrt(365)), rel=1e-9)


def test_donchian_triggers_on_the_breakout_bar_not_before() -> None:
    close = [10.0] * 10 + [10.5, 11.0, 10.8, 10.9, 9.0, 10.0]
    bars = _series(close, high=[c + 0.2 for c in close], low=[c - 0.2 for c in close])
    w = compute_weights("donchian-ensemble", bars, {"lookbacks": [5], "vol_window": 3})[
        "weight"
    ].to_numpy()
    # bar 10 closes at 10.5 above the prior 5-bar high 10.2: long from bar 10, not bar 9
    assert w[9] == 0 and w[10] > 0
    assert (w[10:14] > 0).all()  # held until the opposite breakout
    assert w[14] < 0  # 9.0 < prior 5-bar low
    w_lo = compute_weights(
        "donchian-ensemble", bars, {"lookbacks": [5], "vol_window": 3, "long_only": True}
    )["weight"].to_numpy()
    assert w_lo[10] > 0 and w_lo[14] == 0


def test_vw_tsmom_weights_returns_by_volume() -> None:
    # price up on tiny volume, down on heavy volume: volume-weighted momentum is negative
    close = [100, 101, 102, 103, 104, 103, 104, 105, 106, 105]
    volume = [1, 1, 1, 1, 1, 100, 1, 1, 1, 100]
    w = compute_weights(
        "vw-tsmom", _series(close, volume=volume), {"lookback": 9, "vol_window": 3}
    )["weight"].to_numpy()
    assert w[-1] < 0
    w2 = compute_weights("tsmom", _series(close), {"lookback": 9, "vol_window": 3})[
        "weight"
    ].to_numpy()
    assert w2[-1] > 0


def test_vol_adaptive_uses_the_fast_lookback_in_turbulence() -> None:
    rng = np.random.default_rng(1)
    calm = list(100 * np.exp(np.cumsum(0.002 + rng.normal(0, 0.002, 40))))  # slow uptrend
    crash = [
        calm[-1] * np.exp(-0.08 * (i + 1) + 0.03 * (-1) ** i) for i in range(6)
    ]  # violent drop
    w = compute_weights(
        "vol-adaptive",
        _series(calm + crash),
        {"fast_lookback": 3, "slow_lookback": 30, "vol_short": 5, "vol_long": 20},
    )["weight"].to_numpy()
    assert w[39] > 0  # calm: slow lookback, long
    assert w[-1] < 0  # turbulent: fast lookback sees the crash


def test_ensemble_equal_is_the_mean_of_its_parts() -> None:
    bars = random_bars(3, 2, 120)
    subs = [
        {"name": "tsmom", "params": {"lookback": 5}},
        {"name": "donchian-ensemble", "params": {"lookbacks": [10]}},
    ]
    e = compute_weights("ensemble", bars, {"aggregation": "equal", "sub_strategies": subs})
    a = compute_weights("tsmom", bars, {"lookback": 5})
    b = compute_weights("donchian-ensemble", bars, {"lookbacks": [10]})
    assert np.allclose(
        e["weight"].to_numpy(), (a["weight"].to_numpy() + b["weight"].to_numpy()) / 2
    )


def test_leverage_cap_scales_pro_rata() -> None:
    bars = random_bars(4, 3, 100)
    raw = compute_weights("tsmom", bars, {"lookback": 5, "vol_target": 5.0})
    capped = compute_weights("tsmom", bars, {"lookback": 5, "vol_target": 5.0}, max_leverage=1.0)
    j = raw.join(capped, on=["timestamp", "symbol"], suffix="_c")
    g = j.group_by("timestamp").agg(
        pl.col("weight").abs().sum().alias("g"), pl.col("weight_c").abs().sum().alias("gc")
    )
    assert (g["gc"] <= 1 + 1e-12).all()
    over = j.join(g, on="timestamp").filter(pl.col("g") > 1)
    assert np.allclose(over["weight_c"], over["weight"] / over["g"])


def test_user_strategy_by_import_path() -> None:
    spec = get_strategy("tests.user_strategy:always_long")
    assert spec.params_model.__name__ == "AlwaysLongParams"
    w = compute_weights(
        "tests.user_strategy:always_long", random_bars(1, 2, 5), {"weight": 0.7}, max_leverage=1.0
    )
    assert np.allclose(w["weight"], 0.5)  # 0.7 + 0.7 capped to 1.0 gross


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("nope.module:fn", "cannot import module 'nope.module'"),
        ("tests.user_strategy:missing", "has no function 'missing'"),
        ("tests.user_strategy:no_params_model", "has no params model"),
        ("tsmomm", "unknown strategy 'tsmomm'; registered: donchian-ensemble, ensemble, tsmom"),
    ],
)
def test_strategy_lookup_errors(name: str, fragment: str) -> None:
    with pytest.raises(StrategyNotFound, match=fragment.replace("(", r"\(")):
        get_strategy(name)


def test_user_strategy_in_a_config() -> None:
    cfg = parse_config(
        {
            "pods": [
                {
                    "pod_id": "u",
                    "strategy": "tests.user_strategy:always_long",
                    "params": {"weight": 0.2},
                    "symbols": ["BTC/USDT"],
                }
            ]
        }
    )
    assert cfg.pods[0].strategy_params().weight == 0.2


def test_matrix_cap_equals_frame_cap() -> None:
    """The engine's dense-matrix leverage cap is the same rule as compute_weights' frame cap."""
    from orchestra.strategies import cap_matrix

    bars = random_bars(9, 3, 150)
    raw = compute_weights("tsmom", bars, {"lookback": 5, "vol_target": 4.0})
    capped = compute_weights("tsmom", bars, {"lookback": 5, "vol_target": 4.0}, max_leverage=0.7)
    mat = (
        raw.pivot(on="symbol", index="timestamp", values="weight")
        .sort("timestamp")
        .drop("timestamp")
        .to_numpy()
    )
    cap_matrix(mat, 0.7)
    expected = (
        capped.pivot(on="symbol", index="timestamp", values="weight")
        .sort("timestamp")
        .drop("timestamp")
        .to_numpy()
    )
    assert np.allclose(mat, expected, rtol=1e-12, atol=1e-15)


def test_sortedness_check() -> None:
    from orchestra.strategies import is_sorted_by_symbol_time

    bars = random_bars(2, 2, 10).sort("symbol", "timestamp")
    assert is_sorted_by_symbol_time(bars)
    assert not is_sorted_by_symbol_time(bars.reverse())
    assert not is_sorted_by_symbol_time(bars.sort("timestamp", "symbol"))
    # unsorted input still gives the same weights (sorted internally)
    assert compute_weights(
        "tsmom", bars.sample(fraction=1.0, shuffle=True, seed=1), {"lookback": 3}
    ).equals(compute_weights("tsmom", bars, {"lookback": 3}))


# ------------------------------------------------ kernels against the polars reference; layouts


def _ragged(bars: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Each symbol listed later and/or delisted earlier than the others (at random)."""
    parts = []
    for sym in bars["symbol"].unique().sort():
        b = bars.filter(pl.col("symbol") == sym)
        lo = int(rng.integers(0, max(1, b.height // 3)))
        hi = b.height - int(rng.integers(0, max(1, b.height // 3)))
        parts.append(b.slice(lo, max(1, hi - lo)))
    return pl.concat(parts)


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=20)
@given(
    seed=st.integers(0, 2**31),
    n_syms=st.integers(1, 3),
    n_bars=st.integers(2, 120),
    zero_vol=st.booleans(),
    ragged=st.booleans(),
)
def test_kernels_match_the_polars_reference(
    case: str, seed: int, n_syms: int, n_bars: int, zero_vol: bool, ragged: bool
) -> None:
    from tests.strategy_reference import reference_weights

    bars = random_bars(seed, n_syms, n_bars, zero_volume=zero_vol)
    if ragged:
        bars = _ragged(bars, np.random.default_rng(seed))
    got = _run(case, bars)
    want = reference_weights(case.split("/")[0], bars, CONTRACT_PARAMS[case])
    assert got.select("timestamp", "symbol").equals(want.select("timestamp", "symbol"))
    np.testing.assert_allclose(got["weight"], want["weight"], rtol=1e-9, atol=1e-12)


@needs_shared
@pytest.mark.parametrize("name", ["tsmom", "vw-tsmom", "donchian-ensemble", "vol-adaptive"])
def test_kernels_match_the_polars_reference_on_real_bars(name: str, shared_data) -> None:
    from tests.strategy_reference import reference_weights

    # symbols listed at different dates (SOL and AVAX start in 2020)
    bars = read_files(shared_data / "binance-1d", ["BTC/USDT", "SOL/USDT", "AVAX/USDT"], "1d")
    got = compute_weights(name, bars, {})
    want = reference_weights(name, bars, {})
    np.testing.assert_allclose(got["weight"], want["weight"], rtol=1e-9, atol=1e-12)
    assert (got["weight"] != 0).mean() > 0.5  # the defaults' long windows do fill


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**31),
    n_syms=st.integers(1, 4),
    n_bars=st.integers(2, 150),
    chunk=st.one_of(st.integers(1, 160), st.just(16_384)),
)
def test_engine_wide_form_equals_the_long_form_bit_for_bit(
    case: str, seed: int, n_syms: int, n_bars: int, chunk: int
) -> None:
    """The engine's fast path on the clock's matrices gives exactly the contract's weights,
    with symbols listed and delisted at different times, whatever the chunks of bars its
    kernels run in (the state carried across them; listings and delistings fall anywhere)."""
    from unittest import mock

    from orchestra import strategies
    from orchestra.data import to_matrices
    from orchestra.strategies import weights_matrix

    bars = _ragged(random_bars(seed, n_syms, n_bars, step_h=1), np.random.default_rng(seed))
    symbols = sorted(bars["symbol"].unique())
    market = to_matrices(bars, symbols, "1h")
    with mock.patch.object(strategies, "CHUNK_BARS", chunk):
        wide = weights_matrix(case.split("/")[0], CONTRACT_PARAMS[case], market, symbols)
    assert wide is not None
    long = _run(case, bars)
    expected = np.zeros_like(wide)
    rows = (long["timestamp"].dt.epoch("ms").to_numpy() - market.timestamps[0]) // 3_600_000
    cols = long["symbol"].replace_strict({s: j for j, s in enumerate(symbols)}).to_numpy()
    expected[rows, cols] = long["weight"].to_numpy()
    assert np.array_equal(wide, expected)


@settings(max_examples=50)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 60),
    window=st.integers(2, 12),
    zeros=st.floats(0, 1),
    nans=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_rolling_kernels_against_direct_windows(
    seed: int, n: int, window: int, zeros: float, nans: float
) -> None:
    from orchestra.strategies.kernels import prior_extreme, rolling_std, rolling_sum

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n) * (rng.random(n) > zeros)  # runs of exact zeros
    x[0] = np.nan  # like a first log-return
    x[rng.random(n) < nans] = np.nan  # and NaNs anywhere: a window holding one gives NaN
    std, total = rolling_std(x, window), rolling_sum(x, window)
    hi, lo = prior_extreme(x, window, True), prior_extreme(x, window, False)
    for t in range(n):
        win = x[max(0, t - window + 1) : t + 1]
        if t + 1 < window or np.isnan(win).any():
            assert np.isnan(std[t]) and np.isnan(total[t])
        else:
            # Welford's update with removal: the variance's error is absolute, ~eps x the data's
            # squared scale so far, so a window far calmer than the data before it has a larger
            # relative error in its std (seen: 6e-9 for a std of 3e-4 in unit-variance data)
            ref = np.std(win, ddof=1)
            scale = np.nanmean(x[: t + 1] ** 2)
            assert abs(std[t] ** 2 - ref**2) <= 1e-9 * ref**2 + 1e-13 * scale
            assert total[t] == pytest.approx(win.sum(), rel=1e-9, abs=1e-12)
            if not win.any():  # all exact zeros: exactly 0, not a rounding residue
                assert std[t] == 0.0 and total[t] == 0.0
        prior = x[t - window : t] if t >= window else None
        if prior is None:
            assert np.isnan(hi[t]) and np.isnan(lo[t])
        else:
            if np.isnan(prior).any():
                assert np.isnan(hi[t]) and np.isnan(lo[t])
            else:
                assert hi[t] == np.max(prior) and lo[t] == np.min(prior)


def test_a_window_of_zero_volume_gives_zero_in_kernel_and_reference() -> None:
    """Issue #25: after real volumes, a window of zero volume has weight 0 (the documented rule)
    in both the kernel and the polars reference (whose rolling sum used to leave a residue and a
    sign out of noise: −0.504 on one drawn window)."""
    from tests.strategy_reference import reference_weights

    bars = random_bars(22, 2, 60)
    # volumes of very different sizes, then zero from bar 25 on (for this seed polars' rolling
    # sums of the zero windows leave residues whose ratio has a sign: the old reference gave
    # weights up to 0.37 there)
    i = np.arange(bars.height) % 60
    vol = np.where(i < 25, np.random.default_rng(22).lognormal(5, 3, bars.height), 0.0)
    bars = bars.with_columns(pl.Series("volume", vol))
    for case in ("vw-tsmom", "ensemble/equal"):
        params = CONTRACT_PARAMS[case]
        got = _run(case, bars)
        want = reference_weights(case.split("/")[0], bars, params)
        np.testing.assert_allclose(got["weight"], want["weight"], rtol=1e-9, atol=1e-12)
    vw = _run("vw-tsmom", bars).with_columns(bar=pl.int_range(pl.len()).over("symbol"))
    assert (vw.filter(pl.col("bar") >= 25 + 4)["weight"] == 0.0).all()


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 30),
    st.floats(0.05, 5.0),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["normal", "ties", "zeros"]),
)
def test_matrix_cap_equals_numpys_row_sums_bit_for_bit(
    n_rows: int, n_cols: int, cap: float, seed: int, kind: str
) -> None:
    """cap_matrix screens rows with a rough sum and takes numpy's pairwise sum only where a
    row may reach the cap: the same bits as capping every row by numpy's sums."""
    from orchestra.strategies import cap_matrix

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_rows, n_cols)) * cap / np.sqrt(n_cols) * 1.5
    if kind == "ties":  # rows whose gross is the cap to the last bit, and just around it
        w[::2] = cap / n_cols
        w[1::3] = np.nextafter(cap / n_cols, np.inf)
    elif kind == "zeros":
        w[::2] = 0.0
    from orchestra.kernels.layout import place_weights_nb

    wide = np.zeros((n_rows, n_cols + 3))
    view = wide[:, 1 : n_cols + 1]  # a pod's columns of the slot matrix
    rough = np.empty(n_rows)
    assert place_weights_nb(np.ascontiguousarray(w.T), view, rough)  # as the engine places them
    assert np.array_equal(view, w)
    expected = w.copy()
    gross = np.abs(expected).sum(axis=1)
    over = gross > cap
    expected[over] *= (cap / gross[over])[:, None]
    assert cap_matrix(view, cap, rough) == (int(over.sum()), float(gross.max()))
    assert np.array_equal(view, expected)
    assert not wide[:, 0].any() and not wide[:, -2:].any()
    w[n_rows // 2, n_cols - 1] = np.nan  # placing reports a non-finite weight
    assert not place_weights_nb(np.ascontiguousarray(w.T), view, rough)


def test_a_wide_form_of_the_wrong_shape_is_refused_not_written() -> None:
    """The weights are placed by a numba kernel without bounds checks: a user's wide form that
    returns another shape is an error naming the strategy and both shapes."""
    from orchestra.data import to_matrices
    from orchestra.strategies import StrategyError, weights_matrix

    bars = random_bars(3, 2, 20, step_h=1)
    symbols = sorted(bars["symbol"].unique())
    market = to_matrices(bars, symbols, "1h")
    out = np.full((market.n_bars, 3), 7.0)
    with pytest.raises(StrategyError, match=r"bad_wide.*shape \(3, 20\), expected \(2, 20\)"):
        weights_matrix("tests.user_strategy:bad_wide", {}, market, symbols, out[:, :2])
    assert (out == 7.0).all()


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda t: st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=1, max_size=5)
    )
)
def test_bar_spans_are_each_symbols_first_and_last_bar_and_its_holes(cols: list[list[bool]]):
    """The wide path's listing spans (numba) against a direct reading of the presence matrix;
    a symbol missing a bar between its first and last sends the pod to the long path."""
    from orchestra.kernels.layout import bar_spans_nb

    present = np.array(cols, dtype=bool).T  # (T, S)
    present = np.concatenate([present, np.ones((present.shape[0], 1), bool)], axis=1)
    columns = np.arange(len(cols), dtype=np.int64)
    start, stop, holes = bar_spans_nb(present, columns)
    want_holes = False
    for j in range(len(cols)):
        where = np.flatnonzero(present[:, j])
        assert (start[j], stop[j]) == ((where[0], where[-1] + 1) if where.size else (0, 0))
        want_holes |= bool(where.size) and where.size != where[-1] + 1 - where[0]
    assert holes == want_holes


def test_a_symbol_with_a_hole_takes_the_long_path() -> None:
    from orchestra.data import to_matrices
    from orchestra.strategies import weights_matrix

    bars = random_bars(5, 2, 30, step_h=1)
    symbols = sorted(bars["symbol"].unique())
    market = to_matrices(bars, symbols, "1h")
    assert weights_matrix("tsmom", CONTRACT_PARAMS["tsmom"], market, symbols) is not None
    market.tradable[10, 1] = False  # a missing bar inside the symbol's run
    assert weights_matrix("tsmom", CONTRACT_PARAMS["tsmom"], market, symbols) is None
