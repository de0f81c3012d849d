"""Engine-level properties: driver parity, single pod, pod order, netting savings, look-ahead."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.config import load_config, parse_config
from orchestra.data import LoadedData, load_bars
from orchestra.engine import Engine, prepare, run_backtest
from tests import reference
from tests.conftest import CONFIGS


def small_config(**over):
    raw = {
        "data": {"source": "synthetic", "seed": 11},
        "orchestrator": {
            "allocation_method": "risk_parity",
            "rebalance": {"trigger": "hybrid", "calendar_days": 5},
        },
        "pods": [
            {
                "pod_id": "a",
                "strategy": "tsmom",
                "params": {"lookback": 10},
                "symbols": ["BTC/USDT", "ETH/USDT"],
                "initial_fraction": 0.4,
                "max_fraction": 0.6,
                "initial_state": "production",
                "risk": {"rebalance_threshold": 0.02},
            },
            {
                "pod_id": "b",
                "strategy": "donchian-ensemble",
                "params": {"lookbacks": [10, 30]},
                "symbols": ["ETH/USDT", "SOL/USDT"],
                "initial_fraction": 0.3,
                "max_fraction": 0.6,
                "initial_state": "production",
            },
            {
                "pod_id": "c",
                "strategy": "vol-adaptive",
                "params": {"fast_lookback": 5, "slow_lookback": 20, "vol_long": 40},
                "symbols": ["BTC/USDT", "SOL/USDT"],
                "initial_fraction": 0.2,
                "max_fraction": 0.5,
            },
        ],
        "backtest": {"start": "2024-01-01", "end": "2024-09-30", "capital": 50_000},
        "portfolio": {"cost_bps": 5.0, "slippage_bps": 2.0},
    }
    raw.update(over)
    return parse_config(raw)


def test_bar_driver_equals_backtest_driver_bit_for_bit() -> None:
    """Parity (SPEC §3, §13.4): stepping bar by bar equals the segment driver exactly."""
    cfg = small_config()
    prep = prepare(cfg)
    a = Engine(prep)
    a.run()
    b = Engine(prepare(cfg))
    while b.next_bar < b.n_bars:
        b.step()
    for x, y in zip(a.state, b.state, strict=True):
        assert np.array_equal(x, y, equal_nan=True)
    for name in (
        "equity",
        "unallocated",
        "gross_leverage",
        "pod_equity",
        "pod_nav",
        "pod_fraction",
    ):
        assert np.array_equal(getattr(a.out, name), getattr(b.out, name), equal_nan=True), name
    fa, fb = a.fills(), b.fills()
    for k in fa:
        assert np.array_equal(fa[k], fb[k]), k
    assert [r.__dict__ for r in a.allocator.allocations] == [
        r.__dict__ for r in b.allocator.allocations
    ]
    assert len(a.allocator.allocations) > 0
    ea, eb = a.events(), b.events()
    for k in ea:
        assert np.array_equal(ea[k], eb[k]), k
    assert ea["bar"].size > 0  # the lifecycle state machine was active and moved pods


def test_one_pod_at_fraction_one_equals_the_pod_alone() -> None:
    """SPEC §9.3 (4): the orchestrated account is exactly the pod's standalone book."""
    cfg = small_config(
        orchestrator={
            "risk": {"max_portfolio_volatility": 100.0}
        },  # the vol cap would move cash out
        pods=[
            {
                "pod_id": "solo",
                "strategy": "tsmom",
                "params": {"lookback": 10},
                "symbols": ["BTC/USDT", "ETH/USDT"],
                "initial_fraction": 1.0,
                "max_fraction": 1.0,
                "min_fraction": 0.0,
                "initial_state": "production",
            }
        ],
    )
    prep = prepare(cfg)
    # the oracle has no lifecycle state machine: compare without it
    prep.inputs = prep.inputs._replace(lifecycle=prep.inputs.lifecycle._replace(enabled=0.0))
    eng = Engine(prep)
    eng.run()
    alone = reference.simulate(prep.inputs, cfg.backtest.capital, np.array([1.0]))
    eq = np.array(alone.equity)
    assert np.allclose(eng.out.equity, eq, rtol=1e-9)
    assert np.allclose(eng.out.pod_equity[:, 0], eq, rtol=1e-9)
    assert np.allclose(eng.out.unallocated, 0.0, atol=1e-6)
    assert eng.state.pod_fees[0] == pytest.approx(eng.state.account_fees[0], rel=1e-12)
    assert eng.state.pod_alone_fees[0] == pytest.approx(eng.state.account_fees[0], rel=1e-9)


@pytest.mark.parametrize(
    ("method", "rel"),
    [
        ("equal_weight", 1e-9),
        ("inverse_volatility", 1e-9),
        ("risk_parity", 1e-9),
        ("adaptive_kelly", 1e-6),
    ],
)
def test_reordering_pods_changes_nothing(method: str, rel: float) -> None:
    """SPEC §9.3 (5): pod order (and hence slot order) does not change any pod's book.

    Exact to 1e-9 where the allocator is closed-form or polished (ERC is Newton-polished to machine
    precision); the Kelly problem is held to its interior-point tolerance: a permutation changes
    float round-off at 1e-16 in the inputs, which the solver turns into ~1e-8 in the fractions.
    """
    cfg = small_config(
        orchestrator={
            "allocation_method": method,
            "rebalance": {"trigger": "hybrid", "calendar_days": 5},
        }
    )
    raw = cfg.model_dump(mode="json")
    raw["pods"] = list(reversed(raw["pods"]))
    rev = parse_config(raw)
    r1, r2 = run_backtest(cfg), run_backtest(rev)
    assert np.allclose(r1.equity["equity"].to_numpy(), r2.equity["equity"].to_numpy(), rtol=rel)
    for pid in ("a", "b", "c"):
        e1 = r1.pod_equity.filter(pl.col("pod_id") == pid)["equity"].to_numpy()
        e2 = r2.pod_equity.filter(pl.col("pod_id") == pid)["equity"].to_numpy()
        assert np.allclose(e1, e2, rtol=rel), pid
    m1 = r1.metrics.sort("entity").drop("entity").to_numpy()
    m2 = r2.metrics.sort("entity").drop("entity").to_numpy()
    assert np.allclose(m1, m2, rtol=max(rel, 1e-7) * 100, atol=1e-6)


def test_netting_savings_are_the_fees_saved() -> None:
    """Savings ≥ 0, equal to (fees the pods would pay alone) − (fees paid), per pod and in total."""
    res = run_backtest(small_config())
    m = res.metrics
    acct = m.filter(pl.col("entity") == "account")
    pods = m.filter(pl.col("entity") != "account")
    assert acct["netting_savings"][0] >= 0
    assert (pods["netting_savings"] >= -1e-9).all()
    assert acct["netting_savings"][0] == pytest.approx(
        pods["netting_savings"].sum(), rel=1e-9, abs=1e-9
    )
    assert acct["fees"][0] == pytest.approx(pods["fees"].sum(), rel=1e-9)
    assert acct["fees"][0] == pytest.approx(res.fills["fee"].sum(), rel=1e-9)
    # overlapping pods (a and c both trade BTC, a and b both ETH) do cross internally here
    assert res.fills.filter(pl.col("venue") == "internal").height > 0
    assert acct["netting_savings"][0] > 0


def test_changing_the_next_bars_close_never_changes_its_fills() -> None:
    """Look-ahead guard through data → strategies → kernels: with next_open, fills at bar t+1
    do not depend on bar t+1's close (nor on anything after it)."""
    cfg = small_config()
    loaded = load_bars(cfg)
    base = prepare(cfg, loaded=loaded)
    t1 = base.inputs.timestamps.shape[0] // 2
    ts1 = int(base.inputs.timestamps[t1])
    bars = loaded.bars
    rng = np.random.default_rng(5)
    after = pl.col("timestamp").dt.epoch("ms") >= ts1
    factor = pl.Series(rng.uniform(0.7, 1.3, bars.height))
    shocked = bars.with_columns(
        pl.when(after).then(pl.col("close") * factor).otherwise(pl.col("close")).alias("close"),
    ).with_columns(
        pl.when(after)
        .then(pl.max_horizontal("high", "close", "open"))
        .otherwise(pl.col("high"))
        .alias("high"),
        pl.when(after)
        .then(pl.min_horizontal("low", "close", "open"))
        .otherwise(pl.col("low"))
        .alias("low"),
    )
    other = prepare(cfg, loaded=LoadedData(shocked, loaded.source_label, loaded.gaps))
    e1, e2 = Engine(base), Engine(other)
    e1.run()
    e2.run()
    f1, f2 = e1.fills(), e2.fills()
    s1, s2 = f1["bar"] <= t1, f2["bar"] <= t1
    assert s1.sum() > 0
    for k in ("bar", "slot", "units", "price", "fee", "venue"):
        assert np.array_equal(f1[k][s1], f2[k][s2]), k
    assert not np.array_equal(e1.out.equity[t1:], e2.out.equity[t1:])  # the shock did matter later


def test_example_config_runs_and_accounts() -> None:
    cfg = load_config(CONFIGS / "example.yaml")
    res = run_backtest(cfg)
    eq = res.equity
    pods = res.pod_equity.group_by("timestamp", maintain_order=True).agg(pl.col("equity").sum())
    total = pods["equity"].to_numpy() + eq["unallocated"].to_numpy()
    assert np.allclose(total, eq["equity"].to_numpy(), rtol=1e-9)
    assert res.summary["data_source"].startswith("synthetic")


def test_some_fill_fields_equal_those_of_all_fills() -> None:
    """``Engine.fills(only)`` (a sweep's point reads three of the seven fields) gives those
    fields of ``fills()`` exactly, across several flushes of a small fill buffer, and the
    account's metrics from them equal the full result's."""
    from orchestra.results.result import ACCOUNT_FILL_FIELDS, account_metrics

    cfg = load_config(CONFIGS / "example.yaml")
    eng = Engine(prepare(cfg), fill_capacity=64)
    eng.run()
    part = eng.fills(ACCOUNT_FILL_FIELDS)
    whole = eng.fills()
    assert sorted(part) == sorted(ACCOUNT_FILL_FIELDS) and len(eng._fills) > 3
    assert all(np.array_equal(part[f], whole[f]) for f in part)
    assert (whole["venue"] != 0).any()  # some fills crossed inside the account (masked path)
    light = account_metrics(eng, cfg, part)
    full = run_backtest(cfg).metrics.filter(pl.col("entity") == "account").row(0, named=True)
    assert all(full[k] == v for k, v in light.items() if k in full)


def test_funding_is_charged_to_the_holding_pods(tmp_path) -> None:
    """SPEC §9.4: q · mark · rate at each funding time, attributed to the pods that hold it."""
    import datetime as dt

    from orchestra.data.synthetic import generate

    bars = generate(["BTC/USDT"], dt.date(2024, 1, 1), dt.date(2024, 3, 31))
    bars.drop("symbol").write_parquet(tmp_path / "BTC-USDT_1d.parquet")
    base = {
        "data": {"source": "files", "path": str(tmp_path)},
        # a lenient lifecycle, so that funding is the only difference between the two runs
        "orchestrator": {
            "allocation_method": "equal_weight",
            "rebalance": {"trigger": "calendar", "calendar_days": 1000},
            "retirement": {"max_drawdown_breach": 0.99},
            "degradation": {"lambda_": 1e9},
        },
        "pods": [
            {
                "pod_id": "long",
                "strategy": "tests.user_strategy:always_long",
                "params": {"weight": 0.5},
                "symbols": ["BTC/USDT"],
                "initial_fraction": 0.4,
                "max_fraction": 0.5,
                "risk": {"use_trailing_stop": False, "system_stop_loss": None},
            },
            {
                "pod_id": "flat",
                "strategy": "tests.user_strategy:always_long",
                "params": {"weight": 0.0},
                "symbols": ["BTC/USDT"],
                "initial_fraction": 0.4,
                "max_fraction": 0.5,
            },
        ],
        "backtest": {"start": "2024-02-01", "end": "2024-03-31", "warmup_days": 0},
        "portfolio": {"cost_bps": 0.0, "funding": True},
    }
    with pytest.raises(Exception, match=r"no BTC-USDT_funding\.parquet"):
        run_backtest(parse_config(base))
    times = [
        dt.datetime(2024, 2, 1, tzinfo=dt.UTC) + dt.timedelta(hours=8 * i) for i in range(3 * 60)
    ]
    pl.DataFrame({"timestamp": times, "rate": [0.0001] * len(times)}).write_parquet(
        tmp_path / "BTC-USDT_funding.parquet"
    )
    prep = prepare(parse_config(base))
    eng = Engine(prep)
    eng.run()
    paid = eng.state.pod_funding
    assert paid[0] > 0 and paid[1] == 0.0  # longs pay positive funding; the flat pod pays nothing
    free = parse_config({**base, "portfolio": {"cost_bps": 0.0, "funding": False}})
    e2 = Engine(prepare(free))
    e2.run()
    assert eng.out.pod_equity[-1, 1] == e2.out.pod_equity[-1, 1]
    assert eng.out.equity[-1] == pytest.approx(e2.out.equity[-1] - paid[0], rel=1e-3)


def test_exposures_match_gross_leverage_at_day_ends() -> None:
    res = run_backtest(small_config())
    gross = res.exposures.group_by("timestamp").agg(pl.col("weight").abs().sum().alias("g"))
    joined = gross.join(res.equity, on="timestamp")
    assert joined.height > 100
    assert np.allclose(
        joined["g"].to_numpy(), joined["gross_leverage"].to_numpy(), rtol=1e-9, atol=1e-12
    )


def test_daily_risk_monitor_matches_its_definitions() -> None:
    """PRC rows sum to 1 where pods are at risk; effective N = 1/ΣPRC²; no look-ahead by
    construction (trailing windows), checked against a direct recomputation on one day."""
    from orchestra.allocation.moments import risk_contributions, shrunk_covariance

    cfg = small_config()
    res = run_backtest(cfg)
    prc = res.risk_contributions
    sums = prc.group_by("timestamp").agg(
        pl.col("prc").sum().alias("s"), (pl.col("prc") ** 2).sum().alias("q")
    )
    live = sums.filter(pl.col("s") > 0)
    assert live.height > 50 and np.allclose(live["s"].to_numpy(), 1.0)
    pr = res.portfolio_risk.join(live, on="timestamp")
    assert np.allclose(pr["effective_n"].to_numpy(), 1 / pr["q"].to_numpy())
    # recompute one day by hand from the pods' NAVs at day ends
    day = live["timestamp"].sort()[live.height // 2]
    pe = res.pod_equity.filter(pl.col("timestamp").dt.hour() == 0)
    navs = pe.pivot(on="pod_id", index="timestamp", values="nav").sort("timestamp")
    fr = pe.pivot(on="pod_id", index="timestamp", values="fraction").sort("timestamp")
    i = navs["timestamp"].to_list().index(day)
    ids = ["a", "b", "c"]
    v = navs.select(ids).to_numpy()[: i + 1]
    r = v[1:] / v[:-1] - 1
    window = r[-cfg.orchestrator.correlation.lookback :]
    f = fr.select(ids).to_numpy()[i]
    keep = (f > 0) & (window.std(axis=0) > 0)
    expect = np.zeros(3)
    expect[keep] = risk_contributions(f[keep], shrunk_covariance(window[:, keep]))
    got = prc.filter(pl.col("timestamp") == day).sort("pod_id")["prc"].to_numpy()
    assert np.allclose(got, expect, atol=1e-12)


def test_atr_equals_wilders_ewm_and_is_known_for_a_symbol_listed_late() -> None:
    """ATR(14) equals polars' Wilder EWM of the true range bit for bit; a symbol listed after the
    first bar gets its ATR 14 bars after its listing (regression: the NaNs before its listing
    used to poison the average, so its trailing stop could never fire), and none before."""
    from orchestra.data import Market
    from orchestra.engine.build import atr_matrix

    rng = np.random.default_rng(3)
    n, late = 300, 120
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, 2)), axis=0))
    high = close * (1 + np.abs(rng.normal(0, 0.01, (n, 2))))
    low = close * (1 - np.abs(rng.normal(0, 0.01, (n, 2))))
    tradable = np.ones((n, 2), dtype=bool)
    for m in (close, high, low):
        m[:late, 1] = np.nan
    tradable[:late, 1] = False
    market = Market(
        np.arange(n, dtype=np.int64), ["A", "B"], close, high, low, close, close, tradable, "1d"
    )
    atr = atr_matrix(market, 14)
    prev = np.r_[np.nan, close[:-1, 0]]
    tr = np.fmax(high[:, 0] - low[:, 0], np.fmax(abs(high[:, 0] - prev), abs(low[:, 0] - prev)))
    want = pl.Series(tr).ewm_mean(alpha=1 / 14, adjust=False, min_samples=14).to_numpy()
    assert np.array_equal(atr[:, 0], want, equal_nan=True)
    assert np.isnan(atr[: late + 13, 1]).all() and not np.isnan(atr[late + 13 :, 1]).any()
    prev_b = np.r_[np.nan, close[late:-1, 1]]
    tr_b = np.fmax(
        high[late:, 1] - low[late:, 1],
        np.fmax(abs(high[late:, 1] - prev_b), abs(low[late:, 1] - prev_b)),
    )
    want_b = pl.Series(tr_b).ewm_mean(alpha=1 / 14, adjust=False, min_samples=14).to_numpy()
    assert np.array_equal(atr[late:, 1], want_b, equal_nan=True)


def _day_end_calls(eng: Engine) -> list[int]:
    calls: list[int] = []
    inner = eng._day_end
    eng._day_end = lambda t: (calls.append(t), inner(t))[1]  # type: ignore[method-assign]
    return calls


def _against_every_check_day(cfg) -> tuple[Engine, list[int], list[int]]:
    """Run ``cfg`` as shipped and with a driver that stops at every check day; assert the two are
    equal bit for bit (state, outputs, journal, allocation records; the kernel's derived
    ``scratch_``/``memo_`` arrays aside). Returns the first engine and both day-end call lists."""
    from orchestra.engine.core import MEMO_PREFIX, SCRATCH_PREFIX
    from orchestra.kernels.state import STOP_ALWAYS, STOP_IF_SHARED

    prep = prepare(cfg)
    fast, every = Engine(prep), Engine(prep)
    every._stops[every._stops == STOP_IF_SHARED] = STOP_ALWAYS  # the driver before the change
    fast_calls, every_calls = _day_end_calls(fast), _day_end_calls(every)
    fast.run()
    every.run()
    for name, x in fast.state._asdict().items():
        if not name.startswith((SCRATCH_PREFIX, MEMO_PREFIX)):
            assert np.array_equal(x, getattr(every.state, name), equal_nan=True), name
    for x, y in zip(fast.out, every.out, strict=True):
        assert np.array_equal(x, y, equal_nan=True)
    for name in ("fills", "events", "alerts"):
        a, b = getattr(fast, name)(), getattr(every, name)()
        assert all(np.array_equal(a[k], b[k]) for k in a), name
    assert [r.__dict__ for r in fast.allocator.allocations] == [
        r.__dict__ for r in every.allocator.allocations
    ]
    assert set(fast_calls) <= set(every_calls)
    return fast, fast_calls, every_calls


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    trigger=st.sampled_from(["threshold", "hybrid"]),
    threshold=st.sampled_from([0.005, 0.02, 0.05, 0.2]),
    lookback=st.integers(5, 60),
    min_history=st.integers(2, 60),
    method=st.sampled_from(["risk_parity", "inverse_volatility", "adaptive_kelly"]),
    n_pods=st.integers(2, 3),
)
def test_the_bar_loops_drift_check_is_the_allocators(
    seed: int, trigger: str, threshold: float, lookback: int, min_history: int, method: str,
    n_pods: int,
) -> None:  # fmt: skip
    """Property: whatever the market, trigger, threshold, window (shorter or longer than
    min_history), allocation method and number of pods, the run whose bar loop checks the PRC
    drift itself equals the run whose driver checks at every day end, bit for bit."""
    raw = small_config().model_dump(mode="json")
    raw["data"]["seed"] = seed
    raw["pods"] = raw["pods"][:n_pods]
    raw["orchestrator"]["allocation_method"] = method
    raw["orchestrator"]["rebalance"].update(trigger=trigger, drift_threshold=threshold)
    raw["orchestrator"].update(allocation_lookback=lookback, min_history=min_history)
    _against_every_check_day(parse_config(raw))


@pytest.mark.parametrize("trigger", ["calendar", "threshold", "hybrid"])
@pytest.mark.parametrize("n_pods", [1, 3, "example", "3d-kelly"])
def test_the_bar_loop_returns_only_where_the_allocator_can_act(trigger: str, n_pods) -> None:
    """The kernel skips the driver's threshold checks while fewer than two joined pods are in
    production (PRC drift is undefined there), and computes the PRC drift itself otherwise (the
    allocator's function on the same numbers), returning only when the allocator would
    rebalance: the run equals a driver that stops at every check day, bit for bit, allocation
    records included (the kernel's derived ``scratch_``/``memo_`` arrays aside)."""
    if n_pods == "example":
        raw = load_config(CONFIGS / "example.yaml").model_dump(mode="json")
    else:
        raw = small_config().model_dump(mode="json")
        if n_pods == "3d-kelly":  # a coarse clock (a return covers 3 days) and Kelly weights
            raw["data"]["timeframe"] = "3d"
            for pod in raw["pods"]:
                pod["timeframe"] = "3d"
            raw["orchestrator"]["allocation_method"] = "adaptive_kelly"
            raw["backtest"]["start"] = "2022-01-01"
            n_pods = 3
        raw["pods"] = raw["pods"][:n_pods]
        if n_pods == 1:
            raw["pods"][0].update(initial_fraction=1.0, max_fraction=1.0)
        else:  # drift rebalances happen (the check decides something), some on a window
            # shorter than the lookback (min_history < lookback: the run's first days)
            raw["orchestrator"]["rebalance"]["drift_threshold"] = 0.02
            raw["orchestrator"]["allocation_lookback"] = 40
            raw["orchestrator"]["min_history"] = 15
    raw["orchestrator"]["rebalance"]["trigger"] = trigger
    fast, fast_calls, every_calls = _against_every_check_day(parse_config(raw))
    if trigger != "calendar":
        assert len(fast_calls) < len(every_calls)  # the skip happened
    if trigger != "calendar" and n_pods != 1:
        drift = [r for r in fast.allocator.allocations if r.trigger.startswith("threshold")]
        assert drift, "no drift rebalance: the check decided nothing"


def test_pods_with_the_same_signal_compute_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #26: pods with the same strategy, params, symbols, timeframe and leverage cap share
    one computation of their weights (copied into each pod's block); the others compute their
    own. The blocks equal what each pod computes alone."""
    import orchestra.strategies as strategies
    from orchestra.engine.build import pod_weight_matrix, synthetic_window

    raw = small_config().model_dump(mode="json")
    twin = {**raw["pods"][0], "pod_id": "a2", "initial_fraction": 0.1}
    other_cap = {**raw["pods"][0], "pod_id": "a3", "initial_fraction": 0.1}
    other_cap["risk"] = {**other_cap["risk"], "max_leverage": 0.5}
    raw["pods"] = [raw["pods"][0], raw["pods"][1], twin, other_cap]
    cfg = parse_config(raw)
    calls: list[str] = []
    real = strategies.weights_matrix

    def counted(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(strategies, "weights_matrix", counted)
    prep = prepare(cfg)
    assert len(calls) == 3  # a, b, a3 (another cap): a2 is a's copy
    monkeypatch.setattr(strategies, "weights_matrix", real)
    _, _, market = synthetic_window(cfg, cfg.backtest.start, cfg.backtest.end)
    mat = pod_weight_matrix(cfg, None, market, cfg.clock_timeframe)
    for i, pod in enumerate(cfg.pods):  # each pod alone, as a one-pod config
        alone = parse_config({**raw, "pods": [{**raw["pods"][i], "initial_fraction": 0.5}]})
        own = pod_weight_matrix(alone, None, market, cfg.clock_timeframe)
        lo = sum(len(p.symbols) for p in cfg.pods[:i])
        assert np.array_equal(mat[:, lo : lo + len(pod.symbols)], own), pod.pod_id
    run = Engine(prep)
    run.run()
    assert np.isfinite(run.out.equity).all()


def test_a_prepared_market_without_highs_is_refused_by_the_signals() -> None:
    """Prepared.market keeps no highs, lows or volumes (freed after the signals); computing a
    strategy that reads them on it is an error, not an unchecked read by a numba kernel."""
    from orchestra.engine.build import pod_weight_matrix
    from orchestra.strategies import StrategyError

    cfg = small_config()
    prep = prepare(cfg)
    assert prep.market.high.shape == (prep.market.n_bars, 0)
    raw = cfg.model_dump(mode="json")
    raw["pods"] = [{**raw["pods"][0], "strategy": "donchian-ensemble", "params": {}}]
    with pytest.raises((ValueError, StrategyError), match="matrix has 0 columns"):
        pod_weight_matrix(parse_config(raw), None, prep.market, cfg.clock_timeframe)
