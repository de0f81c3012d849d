"""Issue #24: round trips per pod and symbol from the attributed fills; summed they give each
pod's trading P&L and the account's P&L exactly (fees and funding included)."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from orchestra import run_backtest
from orchestra.config import load_config, parse_config
from orchestra.results.trades import trade_summary

ROOT = Path(__file__).resolve().parents[1]


def run(raw: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_backtest(parse_config(raw))


def check_trips(res) -> None:
    trips = res.trades
    assert trips.height > 0
    account_pnl = res.summary["final_equity"] - res.summary["capital"]
    assert trips["pnl"].sum() == pytest.approx(account_pnl, rel=1e-9, abs=1e-6)
    fills = res.fills
    for (pod, sym), group in trips.group_by("pod_id", "symbol"):
        mine = fills.filter((pl.col("pod_id") == pod) & (pl.col("symbol") == sym))
        assert group["fees"].sum() == pytest.approx(mine["fee"].sum(), rel=1e-9, abs=1e-9)
        # at most one open trip per pod and symbol, the last; closed trips end before the next
        assert group["open"].sum() <= 1
        ordered = group.sort("entry_time")
        exits = ordered["exit_time"].to_list()[:-1]
        entries = ordered["entry_time"].to_list()[1:]
        assert all(x is not None and x <= e for x, e in zip(exits, entries, strict=True))
    assert (trips["mae"] <= 0).all() and (trips["mfe"] >= 0).all()
    assert (trips["holding_days"] >= 0).all()


@pytest.mark.parametrize("variant", ["example", "long-short-costs", "hourly"])
def test_round_trips_reconstruct_the_account_pnl(variant: str) -> None:
    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    if variant == "long-short-costs":
        raw["portfolio"].update(cost_bps=30.0, slippage_bps=20.0)
        for pod in raw["pods"]:
            pod["risk"]["rebalance_threshold"] = 0.0  # trade every bar: partial closes, flips
    if variant == "hourly":
        raw["data"]["timeframe"] = "4h"
        raw["backtest"].update(start="2024-01-01", end="2024-06-30")
        for pod in raw["pods"]:
            pod["timeframe"] = "4h"
    res = run(raw)
    check_trips(res)
    summary = trade_summary(res.trades)
    assert summary["trips"].sum() == res.trades.height
    assert summary["pnl"].sum() == pytest.approx(res.trades["pnl"].sum())


def test_funding_is_in_the_trips(tmp_path: Path) -> None:
    from orchestra.data.synthetic import generate

    bars = generate(["BTC/USDT"], dt.date(2024, 1, 1), dt.date(2024, 3, 31))
    bars.drop("symbol").write_parquet(tmp_path / "BTC-USDT_1d.parquet")
    times = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=8 * i) for i in range(270)]
    rates = np.random.default_rng(1).normal(1e-4, 3e-4, len(times))
    pl.DataFrame({"timestamp": times, "rate": rates}).write_parquet(
        tmp_path / "BTC-USDT_funding.parquet"
    )
    raw = {
        "data": {"source": "files", "path": str(tmp_path), "market": "swap"},
        "pods": [
            {"pod_id": "trend", "strategy": "tsmom", "params": {"lookback": 5, "vol_window": 5},
             "symbols": ["BTC/USDT"], "initial_fraction": 0.4,
             "risk": {"rebalance_threshold": 0.0}},
        ],
        "backtest": {"start": "2024-02-01", "end": "2024-03-31"},
        "portfolio": {"cost_bps": 4.0, "funding": True},
    }  # fmt: skip
    res = run(raw)
    check_trips(res)
    assert res.trades["funding"].abs().sum() > 0


def test_position_books_agree_with_the_round_trips() -> None:
    """Two computations of the same P&L: a slot's realised P&L (average cost) after its last
    fill equals the sum of its trips' P&L plus their funding when the slot ends flat; the pods'
    metrics carry live days, rolling volatility and the drawdown now."""
    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    raw["portfolio"].update(cost_bps=30.0, slippage_bps=20.0)
    res = run(raw)
    pos = res.positions
    assert {"target_weight", "notional", "avg_entry", "realised_pnl", "unrealised_pnl"} <= set(
        pos.columns
    )
    last = pos.group_by("pod_id", "symbol").agg(pl.all().sort_by("timestamp").last())
    checked = 0
    for row in last.iter_rows(named=True):
        trips = res.trades.filter(
            (pl.col("pod_id") == row["pod_id"]) & (pl.col("symbol") == row["symbol"])
        )
        if row["units"] == 0.0:
            want = float((trips["pnl"] + trips["funding"]).sum())
            assert row["realised_pnl"] == pytest.approx(want, rel=1e-9, abs=1e-6)
            assert row["unrealised_pnl"] == 0.0
            checked += 1
    assert checked >= 1
    # notional = units × close = weight × the account's equity at that bar
    both = pos.join(res.equity.select("timestamp", "equity"), on="timestamp")
    assert np.allclose(both["notional"], both["weight"] * both["equity"], rtol=1e-9, atol=1e-6)
    m = res.metrics.filter(pl.col("entity") != "account")
    assert (m["live_days"] > 0).all() and (m["rolling_volatility"] > 0).all()
    assert ((m["current_drawdown"] >= 0) & (m["current_drawdown"] < 1)).all()


# ---------------------------------------------------------------- account positions (issue #26)
def _account_positions_reference(rows: list[tuple[int, str, str, float]]) -> dict:
    """Slow reference: walk the bars in time order, carry each pod's last units, sum them in
    pod-id order; keep a row where the sum changes; cancelling round-off (≤ 1e-9 of the gross)
    is 0."""
    out: dict[tuple[int, str], float] = {}
    last: dict[str, dict[str, float]] = {}
    prev: dict[str, float] = {}
    for ts in sorted({r[0] for r in rows}):
        for t, pod, sym, units in rows:
            if t == ts:
                last.setdefault(sym, {})[pod] = units
        for sym in sorted({r[2] for r in rows if r[0] == ts}):
            total, gross = 0.0, 0.0
            for pod in sorted(last[sym]):
                total += last[sym][pod]
                gross += abs(last[sym][pod])
            if abs(total) <= 1e-9 * gross:
                total = 0.0
            if total != prev.get(sym, 0.0):
                out[(ts, sym)] = total
            prev[sym] = total
    return out


@settings(max_examples=200, deadline=None)
@example([(0, "a", "X/USDT", 0.1), (0, "b", "X/USDT", 0.2), (1, "c", "X/USDT", -0.3)])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["X/USDT", "Y/USDT"]),
            st.sampled_from([0.0, 0.1, 0.2, -0.3, 0.30000000000000004, 1.5, -2.25, 1e-3]),
        ),
        max_size=40,
        unique_by=lambda r: (r[0], r[1], r[2]),
    )
)
def test_account_positions_equal_the_slow_reference(rows) -> None:
    """Σ of the pods' carried units per symbol at every change bar, exactly; 0.1 + 0.2 − 0.3
    (5.6e-17 by float addition) is a flat account."""
    from orchestra.results.result import _account_positions

    frame = pl.DataFrame(
        {
            "timestamp": pl.Series([r[0] * 3_600_000 for r in rows], dtype=pl.Int64).cast(
                pl.Datetime("ms", "UTC")
            ),
            "pod_id": [r[1] for r in rows],
            "symbol": [r[2] for r in rows],
            "units": [r[3] for r in rows],
        },
        schema={"timestamp": pl.Datetime("ms", "UTC"), "pod_id": pl.String,
                "symbol": pl.String, "units": pl.Float64},
    )  # fmt: skip
    got = _account_positions(frame)
    have = {
        (int(t.timestamp() * 1000) // 3_600_000, s): u
        for t, s, u in zip(got["timestamp"], got["symbol"], got["units"], strict=True)
    }
    assert have == _account_positions_reference(rows)


def test_excursions_equal_the_per_bar_definition_bit_for_bit() -> None:
    """MAE/MFE are the extremes of side·(close/entry − 1) over the trip's bars (0 bounds them).
    The kernel takes them at the extreme closes (the map is monotone); they must equal the
    per-bar fold exactly, sign of zero included, on long and short trips."""
    from orchestra.engine import Engine, prepare

    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    raw["portfolio"].update(cost_bps=30.0, slippage_bps=20.0)
    for pod in raw["pods"]:
        pod["risk"]["rebalance_threshold"] = 0.0  # partial closes and flips
    cfg = parse_config(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_backtest(cfg)
        eng = Engine(prepare(cfg))
        eng.run()
    inp = eng.inputs
    T = eng.next_bar
    sym_index = {s: j for j, s in enumerate(eng.prepared.market.symbols)}
    trips = res.trades
    assert set(trips["side"]) == {"long", "short"}
    for row in trips.iter_rows(named=True):
        s = sym_index[row["symbol"]]
        b0 = int(np.searchsorted(inp.timestamps[:T], row["entry_time"].timestamp() * 1000))
        end = (
            T - 1
            if row["open"]
            else int(np.searchsorted(inp.timestamps[:T], row["exit_time"].timestamp() * 1000))
        )
        side = 1.0 if row["side"] == "long" else -1.0
        lo = hi = 0.0
        for t in range(b0, end + 1):
            c = inp.close[t, s]
            if c == c:
                x = side * (c / row["entry_price"] - 1.0)
                lo = min(lo, x)
                hi = max(hi, x)
        assert (row["mae"], np.signbit(row["mae"])) == (lo, np.signbit(lo))
        assert (row["mfe"], np.signbit(row["mfe"])) == (hi, np.signbit(hi))


@pytest.mark.parametrize("variant", ["example", "hourly-costs"])
def test_the_runs_account_positions_are_the_pods_positions_summed(variant: str) -> None:
    """A run builds the account's units from the fills as codes (symbol and pod ranks); they
    must equal the same rule applied to the run's own positions frame (itself checked against
    the slow reference above): Q[s] = Σ_p q[p,s] in pod-id order, at every change."""
    from orchestra.results.result import _account_positions

    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    if variant == "hourly-costs":
        raw["data"]["timeframe"] = "4h"
        raw["backtest"].update(start="2024-01-01", end="2024-06-30")
        raw["portfolio"].update(cost_bps=30.0, slippage_bps=20.0)
        raw["pods"][0]["pod_id"] = "zz-last"  # pod-id order differs from config order
        for pod in raw["pods"]:
            pod["timeframe"] = "4h"
    res = run(raw)
    assert res.account_positions.height > 0
    assert res.account_positions.equals(_account_positions(res.positions))
