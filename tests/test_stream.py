"""Signals one bar at a time (orchestra.strategies.stream) against the backtest's whole-history
weights: bit for bit, for every built-in strategy, a coarser pod and user strategies, over random
listings, delistings and holes in a symbol's bars; and the state rebuilt from a history (a
restart) continues exactly like the state stepped through it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.config import parse_config
from orchestra.data import to_matrices
from orchestra.data.align import Market
from orchestra.engine.build import pod_weight_matrix
from orchestra.strategies.stream import ClockRows, SignalBook
from tests.test_strategies import CONTRACT_PARAMS, _ragged, random_bars

USER = {
    "tests.user_strategy:lag_momentum": {"lookback": 4},
    "tests.user_strategy:lag_momentum_whole": {"lookback": 4},
}


def _pod(i: int, name: str, params: dict, symbols: list[str], tf: str = "1h") -> dict:
    params = dict(params)
    subs = params.pop("sub_strategies", None)
    pod = {
        "pod_id": f"p{i}",
        "strategy": name,
        "params": params,
        "timeframe": tf,
        "symbols": symbols,
        "risk": {"max_leverage": 0.8},  # the cap binds: it is part of what must match
    }
    if subs:
        pod["sub_strategies"] = subs
    return pod


def _config(symbols: list[str]):
    pods = [
        _pod(i, case.split("/")[0], params, symbols)
        for i, (case, params) in enumerate(CONTRACT_PARAMS.items())
    ]
    n = len(pods)
    pods.append(_pod(n, "tsmom", {"lookback": 3, "vol_window": 3}, symbols, "4h"))
    pods.append(
        _pod(n + 1, "donchian-ensemble", {"lookbacks": [2, 3], "vol_window": 3}, symbols, "4h")
    )
    for j, (name, params) in enumerate(USER.items()):
        pods.append(_pod(n + 2 + j, name, params, symbols))
    for p in pods:
        p["initial_fraction"] = 1.0 / len(pods)
    return parse_config(
        {
            "data": {"source": "synthetic", "timeframe": "1h"},
            "orchestrator": {"max_pods": len(pods)},
            "pods": pods,
            "backtest": {"start": "2023-01-02", "end": "2023-03-01"},
        }
    )


def _holes(bars: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Drop a few bars inside the runs of every symbol but the first (which stays whole, so the
    long form's inferred bar step is the clock's)."""
    first = bars["symbol"].min()
    keep = (pl.col("symbol") == first) | pl.Series(rng.random(bars.height) > 0.08)
    return bars.filter(keep)


def _rows(market: Market, t: int, frame: pl.DataFrame, rows: ClockRows):
    ts = int(market.timestamps[t])
    part = frame.filter(pl.col("timestamp").dt.epoch("ms") == ts)
    return rows.row(ts, part if part.height else None)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_syms=st.integers(1, 4),
    n_bars=st.integers(2, 90),
    cut=st.floats(0, 1),
)
def test_step_form_equals_the_whole_history_bit_for_bit(
    seed: int, n_syms: int, n_bars: int, cut: float
) -> None:
    rng = np.random.default_rng(seed)
    bars = _holes(_ragged(random_bars(seed, n_syms, n_bars, step_h=1), rng), rng)
    symbols = sorted(bars["symbol"].unique())
    cfg = _config(symbols)
    market = to_matrices(bars, symbols, "1h")
    expected = pod_weight_matrix(cfg, bars, market, "1h")
    # stepped from the first bar, and warmed on the first k bars then stepped (a restart)
    k = int(cut * market.n_bars)
    for warm_bars in (0, k):
        book = SignalBook(cfg, symbols)
        rows = ClockRows(symbols, "1h", "1h")
        if warm_bars:
            head_ts = market.timestamps[warm_bars - 1]
            head = bars.filter(pl.col("timestamp").dt.epoch("ms") <= head_ts)
            head_market = to_matrices(head, symbols, "1h")
            rows.warm(head_market)
            book.warm(head_market, head)
            assert np.array_equal(book.weights, expected[warm_bars - 1])
        for t in range(warm_bars, market.n_bars):
            got = book.update(_rows(market, t, bars, rows))
            if not np.array_equal(got, expected[t]):
                bad = np.flatnonzero(got != expected[t])
                pytest.fail(
                    f"bar {t} (warm {warm_bars}), slots {bad}: {got[bad]} != {expected[t][bad]}"
                )


def test_clock_rows_follow_to_matrices() -> None:
    """Before a listing NaN, a traded bar as is, after the last bar the close held, volume 0,
    not tradable (the engine's row of the truncated history at each bar)."""
    rng = np.random.default_rng(3)
    bars = _ragged(random_bars(3, 3, 40, step_h=1), rng)
    symbols = sorted(bars["symbol"].unique())
    market = to_matrices(bars, symbols, "1h")
    rows = ClockRows(symbols, "1h", "1h")
    for t in range(market.n_bars):
        row = _rows(market, t, bars, rows)
        assert np.array_equal(row.tradable, market.tradable[t])
        for f in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(row.fields[f], getattr(market, f)[t], equal_nan=True), (t, f)


def test_a_strategy_without_history_bars_is_named_at_start() -> None:
    cfg = _config(["S0/USDT"])
    book = SignalBook(cfg, ["S0/USDT"])
    assert len(book.warnings) == 1 and "lag_momentum_whole" in book.warnings[0]
    assert "grows with the history" in book.warnings[0]
    kinds = dict(zip([p.pod_id for p in cfg.pods], book.kinds, strict=True))
    assert kinds["p0"] == "step" and "coarse step" in kinds.values()
    assert "window 5" in kinds.values() and "whole history" in kinds.values()
