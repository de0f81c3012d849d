"""The capital model (SPEC §7.2, issue #9): fractions never over 1, unallocated never negative,
pod NAVs finite and meaningful, whatever the config.

Hypothesis draws configs where every mechanism that moves capital between rebalances fires:
warning → production recoveries, pods joining mid-run on a full book, the volatility cap pushing
fractions toward 0, ``min_fraction: 0`` probation, retirements — over the four allocation methods
and the three triggers. The invariants are checked at every bar.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.config import load_config, parse_config
from orchestra.engine import Engine, prepare, run_backtest
from tests.conftest import CONFIGS, needs_shared

METHODS = ["equal_weight", "inverse_volatility", "risk_parity", "adaptive_kelly"]
TRIGGERS = ["calendar", "threshold", "hybrid"]
STRATS = [
    ("tsmom", {"lookback": 10}),
    ("donchian-ensemble", {"lookbacks": [10, 30]}),
    ("vol-adaptive", {"fast_lookback": 5, "slow_lookback": 20, "vol_long": 40}),
    ("vw-tsmom", {"lookback": 15}),
]
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "AVAX/USDT"]


@st.composite
def churning_configs(draw):
    """Configs tuned so that lifecycle transitions, joins and the vol cap all happen."""
    n_pods = draw(st.integers(2, 4))
    pods = []
    for i in range(n_pods):
        name, params = STRATS[draw(st.integers(0, len(STRATS) - 1))]
        syms = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=3, unique=True))
        lo = draw(st.sampled_from([0.0, 0.0, 0.05]))
        init = draw(st.floats(max(lo, 0.1), 0.6))
        hi = draw(st.floats(init, 1.0))
        start = draw(st.sampled_from([None, None, "2024-03-01", "2024-05-15"]))
        pods.append(
            {
                "pod_id": f"p{i}",
                "strategy": name,
                "params": params,
                "symbols": syms,
                "initial_fraction": init,
                "max_fraction": hi,
                "min_fraction": lo,
                "start": start,
                "initial_state": draw(st.sampled_from(["production", "incubation"])),
                "risk": {
                    "drawdown_warning": 0.03,
                    "max_drawdown": draw(st.sampled_from([0.06, 0.5])),
                    "max_leverage": draw(st.sampled_from([1.0, 3.0])),
                    "rebalance_threshold": 0.0,
                },
            }
        )
    total = sum(p["initial_fraction"] for p in pods)
    if total > 1:  # a full book: joins then land on it
        for p in pods:
            p["initial_fraction"] = max(p["min_fraction"], p["initial_fraction"] / total * 0.999)
    raw = {
        "data": {"source": "synthetic", "seed": draw(st.integers(0, 50))},
        "orchestrator": {
            "allocation_method": draw(st.sampled_from(METHODS)),
            # 1,000 of 10,000: probation's 5 % and small slices go unfunded; 0: they trade
            "min_pod_capital": draw(st.sampled_from([0.0, 1000.0])),
            "min_history": 10,
            "allocation_lookback": 30,
            "rebalance": {
                "trigger": draw(st.sampled_from(TRIGGERS)),
                "calendar_days": draw(st.sampled_from([3, 7, 30])),
                "drift_threshold": 0.05,
            },
            "risk": {
                "max_portfolio_volatility": draw(st.sampled_from([0.01, 0.2, 5.0])),
                "daily_loss_limit": 0.5,
                "max_gross_leverage": 10.0,
            },
            "graduation": {
                "min_live_days": 20,
                "min_sharpe": -5.0,
                "min_calmar": -100.0,
                "min_trade_count": 0,
                "max_drawdown": 1.0,
                "max_portfolio_correlation": 1.0,
            },
            "retirement": {
                "min_dwell_days": 0,  # no hysteresis: these configs must churn
                "recovery_drawdown_ratio": 1.0,
                "rolling_sharpe_window": 20,
                "rolling_sharpe_floor": draw(st.sampled_from([-1.0, 0.5])),
                "warning_days": draw(st.sampled_from([5, 30])),
                "probation_days": draw(st.sampled_from([5, 60])),
                "max_drawdown_breach": draw(st.sampled_from([0.2, 0.9])),
            },
            "degradation": {"lambda_": 5.0, "min_instances": 10},
        },
        "pods": pods,
        "backtest": {"start": "2024-01-01", "end": "2024-10-31", "capital": 10_000},
        "portfolio": {"cost_bps": 5.0, "slippage_bps": 2.0},
    }
    return parse_config(raw)


def check_capital_invariants(eng: Engine) -> None:
    """At every bar: 0 ≤ f_p, Σ f ≤ 1, unallocated ≥ −1e-9·equity, NAV finite and ≥ 0."""
    out = eng.out
    T = eng.next_bar
    f = out.pod_fraction[:T]
    eq = out.equity[:T]
    assert np.all(np.isfinite(f))
    assert np.all(f >= 0.0)
    assert np.all(f.sum(axis=1) <= 1.0 + 1e-12), f.sum(axis=1).max()
    assert np.all(out.unallocated[:T] >= -1e-9 * np.abs(eq)), (out.unallocated[:T] / eq).min()
    nav = out.pod_nav[:T]
    assert np.all(np.isfinite(nav)) and np.all(nav >= 0.0)
    # a pod's NAV cannot move more than its leverage allows in one bar: no 1e12 explosions
    ratio = nav[1:] / np.where(nav[:-1] > 0, nav[:-1], 1.0)
    assert np.all(ratio[nav[:-1] > 0] < 50.0), ratio.max()
    assert np.all(np.isfinite(out.pod_equity[:T]))


@settings(max_examples=40)
@given(cfg=churning_configs())
def test_fractions_never_over_one_and_navs_stay_finite(cfg) -> None:
    eng = Engine(prepare(cfg))
    eng.run()
    check_capital_invariants(eng)
    from orchestra.results.result import build_result

    res = build_result(eng, cfg)
    m = res.metrics.drop("entity").to_numpy()
    assert np.all(np.isfinite(m)), res.metrics


def test_the_fixed_churn_config_does_churn() -> None:
    """The regression tests below are only as good as their config: recoveries, joins,
    probation and retirements must actually happen in it."""
    found: set[str] = set()
    cfg = _fixed_churn_config()
    res = run_backtest(cfg)
    ev = res.lifecycle_events
    pairs = set(zip(ev["from_state"], ev["to_state"], strict=True))
    if ("warning", "production") in pairs:
        found.add("recovery")
    if ("warning", "probation") in pairs:
        found.add("probation")
    if any(t == "retired" for _, t in pairs):
        found.add("retired")
    joined = res.pod_equity.filter(pl.col("pod_id") == "late").sort("timestamp")
    if joined["fraction"].max() > 0 and joined["fraction"][0] == 0:
        found.add("join")
    assert found == {"recovery", "probation", "retired", "join"}, found


def _fixed_churn_config():
    """A deterministic config where every capital move between rebalances happens."""
    base = {
        "risk": {
            "drawdown_warning": 0.03,
            "max_drawdown": 0.06,
            "rebalance_threshold": 0.0,
            "max_leverage": 3.0,
        },
        "min_fraction": 0.0,
        "initial_state": "production",
    }
    return parse_config(
        {
            "data": {"source": "synthetic", "seed": 3},
            "orchestrator": {
                "allocation_method": "risk_parity",
                "min_history": 10,
                "rebalance": {"trigger": "calendar", "calendar_days": 30},
                "risk": {"max_portfolio_volatility": 5.0, "daily_loss_limit": 0.5},
                "retirement": {
                    "min_dwell_days": 0,  # no hysteresis: these configs must churn
                    "recovery_drawdown_ratio": 1.0,
                    "rolling_sharpe_window": 20,
                    "rolling_sharpe_floor": -1.0,
                    "warning_days": 10,
                    "probation_days": 10,
                    "max_drawdown_breach": 0.9,
                },
                "degradation": {"lambda_": 5.0, "min_instances": 10},
            },
            "pods": [
                {
                    "pod_id": "a",
                    "strategy": "tsmom",
                    "params": {"lookback": 10},
                    "symbols": ["BTC/USDT", "ETH/USDT"],
                    "initial_fraction": 0.35,
                    "max_fraction": 1.0,
                    **base,
                },
                {
                    "pod_id": "b",
                    "strategy": "donchian-ensemble",
                    "params": {"lookbacks": [10, 30]},
                    "symbols": ["SOL/USDT", "AVAX/USDT"],
                    "initial_fraction": 0.35,
                    "max_fraction": 1.0,
                    **base,
                },
                {
                    "pod_id": "late",
                    "strategy": "tsmom",
                    "params": {"lookback": 10},
                    "symbols": ["BNB/USDT"],
                    "start": "2024-04-01",
                    "initial_fraction": 0.3,
                    "max_fraction": 1.0,
                    **base,
                },
            ],
            "backtest": {"start": "2024-01-01", "end": "2024-12-31", "capital": 10_000},
        }
    )


def test_fixed_churn_config_keeps_the_invariants() -> None:
    cfg = _fixed_churn_config()
    eng = Engine(prepare(cfg))
    eng.run()
    check_capital_invariants(eng)


def _full_book_config(method: str = "equal_weight"):
    """Two production pods that the first rebalance gives the whole book; no lifecycle moves."""
    calm = {"drawdown_warning": 0.99, "max_drawdown": 0.99, "rebalance_threshold": 0.0}
    pod = {"initial_state": "production", "max_fraction": 1.0, "min_fraction": 0.0, "risk": calm}
    return parse_config(
        {
            "data": {"source": "synthetic", "seed": 5},
            "orchestrator": {
                "allocation_method": method,
                "rebalance": {"trigger": "calendar", "calendar_days": 7},
                "risk": {"max_portfolio_volatility": 50.0, "daily_loss_limit": 0.9},
                "retirement": {
                    "rolling_sharpe_floor": -100.0,
                    "max_drawdown_breach": 0.99,
                    "consecutive_loss_months": 99,
                },
                "degradation": {"lambda_": 1e9},
            },
            "pods": [
                {
                    "pod_id": "a",
                    "strategy": "tsmom",
                    "symbols": ["BTC/USDT"],
                    **pod,
                    "initial_fraction": 0.35,
                },
                {
                    "pod_id": "b",
                    "strategy": "tsmom",
                    "symbols": ["ETH/USDT"],
                    **pod,
                    "initial_fraction": 0.35,
                },
                {
                    "pod_id": "late",
                    "strategy": "tsmom",
                    "symbols": ["SOL/USDT"],
                    **pod,
                    "initial_fraction": 0.3,
                    "start": "2024-03-01",
                },
            ],
            "backtest": {"start": "2024-01-01", "end": "2024-06-30", "capital": 10_000},
        }
    )


def test_joining_pod_on_a_full_book_is_funded_from_unallocated_only() -> None:
    """The first rebalance gives pods a and b the whole book; 'late' then joins asking for 0.3:
    before the fix, Σ f went to 1.3 and unallocated to −30 % of equity. Now it gets what is
    unallocated (nothing) and the next rebalance sizes it."""
    eng = Engine(prepare(_full_book_config()))
    eng.run()
    join = int(eng.prepared.pod_join_bar[2])
    f, u, eq = eng.out.pod_fraction, eng.out.unallocated, eng.out.equity
    assert f[join - 2, :2].sum() == pytest.approx(1.0)  # the book is full before the join
    assert f[join - 2, 2] == 0.0
    check_capital_invariants(eng)
    assert np.all(u >= -1e-9 * eq)
    assert f[-1, 2] > 0.2  # a later rebalance gave the joined pod its share


def test_unfunded_pod_nav_is_frozen_not_exploding() -> None:
    """A pod cut to fraction 0 (probation with min_fraction 0, or retired) is flattened and its
    NAV frozen; its leftover equity goes back to unallocated (before: NAV −2.76e12)."""
    cfg = _fixed_churn_config()
    res = run_backtest(cfg)
    pe = res.pod_equity
    zero = pe.filter(pl.col("fraction") == 0.0).sort("pod_id", "timestamp")
    assert zero.height > 0
    for (pid,), rows in zero.group_by("pod_id"):
        if pid == "late":
            rows = rows.filter(pl.col("timestamp") >= pl.datetime(2024, 4, 1, time_zone="UTC"))
        if rows.height < 3:
            continue
        # after the bar where it is flattened, the pod holds no capital and its NAV stands still
        tail = rows[2:]
        assert np.allclose(tail["equity"].to_numpy(), 0.0, atol=1e-6), pid
        assert tail["nav"].n_unique() == 1, pid
    assert np.all(np.isfinite(res.metrics.drop("entity").to_numpy()))


@needs_shared
def test_binance_majors_never_over_allocates() -> None:
    """Issue #9: on binance-majors Σ f reached 1.188 (2022-08-27 .. 2022-09-09)."""
    cfg = load_config(CONFIGS / "binance-majors.yaml")
    eng = Engine(prepare(cfg))
    eng.run()
    check_capital_invariants(eng)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_method_and_trigger_keeps_the_invariants(method: str, trigger: str) -> None:
    raw = _fixed_churn_config().model_dump(mode="json")
    raw["orchestrator"]["allocation_method"] = method
    raw["orchestrator"]["rebalance"]["trigger"] = trigger
    raw["orchestrator"]["rebalance"]["calendar_days"] = 7
    raw["orchestrator"]["risk"]["max_portfolio_volatility"] = 0.05  # the vol cap binds
    eng = Engine(prepare(parse_config(raw)))
    eng.run()
    check_capital_invariants(eng)


def test_bust_account_stops_trading_with_a_critical_alert() -> None:
    """Account equity ≤ 0: flattened at the next execution, never trades again, one CRITICAL
    alert, gross leverage NaN (not inf), NAV 0 (not negative)."""
    from orchestra.kernels.state import A_ACCOUNT_BUST, ALERT_TYPES
    from tests.kernel_cases import make_inputs, run_kernel

    T = 12
    inp = make_inputs(
        np.random.default_rng(0), 1, 1, T, exec_close=False, cost=0.0, slip=0.0,
        max_gross=0.0, daily_loss=0.0, stop=False, trailing=False, late_listing=False,
    )  # fmt: skip
    px = np.full((T, 1), 100.0)
    px[5:] = 40.0  # a 60 % crash against a 3x long
    inp = inp._replace(
        open=px.copy(),
        close=px.copy(),
        target=np.full((T, 1), 3.0),
        pod_max_leverage=np.array([3.0]),
        pod_threshold=np.array([0.0]),
    )
    st_, out = run_kernel(inp, np.array([1.0]))
    n = int(out.al_count[0])
    kinds = out.al_type[:n].tolist()
    assert kinds.count(A_ACCOUNT_BUST) == 1 and ALERT_TYPES[A_ACCOUNT_BUST]
    bust_bar = int(out.al_bar[:n][kinds.index(A_ACCOUNT_BUST)])
    assert bust_bar == 5 and out.equity[5] <= 0
    assert np.isnan(out.gross_leverage[5]) and not np.isinf(out.gross_leverage).any()
    fills = out.fill_bar[: int(out.fill_count[0])]
    assert fills.max() <= bust_bar + 1  # flattened (here already at bar 5's open), then nothing
    assert st_.units[0] == 0.0 and st_.account_units[0] == 0.0
    assert np.all(out.pod_nav >= 0.0) and out.pod_nav[-1, 0] == 0.0


def test_a_bust_account_with_an_unfunded_pod_does_not_divide_by_zero() -> None:
    """Found by hypothesis: a short doubling wipes the account out while another pod holds
    nothing; re-anchoring an empty pod against a negative account equity marked it funded, and
    its NAV divided by zero."""
    from orchestra.kernels.state import Inputs, lifecycle_off, zero_params
    from tests.kernel_cases import run_kernel

    close = np.array(
        [
            [862.47145715, 34.02148685, 733.33009224],
            [926.10157465, 34.965043 * 2.0, 726.7192034],
            [864.28965036, 34.3411885, 727.10576728],
        ]
    )
    inp = Inputs(
        timestamps=np.array([1641600000000, 1641686400000, 1641772800000]),
        day_id=np.array([19000, 19001, 19002]),
        day_end=np.ones(3, dtype=bool),
        month_end=np.zeros(3, dtype=bool),
        open=np.array(
            [
                [856.17892741, 33.83682482, 731.01423247],
                [929.92154823, 35.33146493, 725.78571738],
                [876.18091256, 34.11351083, 729.66611458],
            ]
        ),
        close=close,
        tradable=np.ones((3, 3), dtype=bool),
        atr=np.full((3, 3), np.nan),
        target=np.array(
            [
                [0.45137783, 0.56534019, 0.0, -1.09471048, 0.0],
                [0.45137783, 0.56534019, 0.0, -1.09471048, 0.0],
                [0.45137783, 0.0, 0.0, 0.28290009, 0.0],
            ]
        ),
        funding=np.zeros((3, 3)),
        slot_pod=np.array([0, 0, 1, 1, 1]),
        slot_sym=np.array([1, 2, 0, 1, 2]),
        pod_ptr=np.array([0, 2, 5]),
        sym_ptr=np.array([0, 1, 3, 5]),
        sym_slots=np.array([2, 0, 3, 1, 4]),
        pod_max_leverage=np.array([2.72483889, 2.55593457]),
        pod_threshold=np.array([0.0, 0.02]),
        pod_stop_loss=np.array([0.18623543, np.nan]),
        pod_trailing=np.array([False, True]),
        pod_trail_mult=np.array([3.75856061, 0.64178749]),
        pod_max_drawdown=np.array([0.15, 0.15]),
        pod_drawdown_warning=np.array([0.1, 0.1]),
        pod_min_fraction=np.array([0.05, 0.05]),
        params=zero_params(funding=1.0),
        lifecycle=lifecycle_off(),
    )
    st_, out = run_kernel(inp, np.array([0.0, 1.0]))
    assert st_.halted[0] != 0 and out.equity[1] <= 0.0  # the account is bust
    assert np.all(np.isfinite(out.pod_nav)) and np.all(out.pod_nav >= 0.0)


@settings(max_examples=150)
@given(
    seed=st.integers(0, 2**32 - 1),
    cost=st.sampled_from([0.0, 0.0004, 0.01, 0.03, 0.1]),  # up to the config's 1000 bps
    slip=st.sampled_from([0.0, 0.0001, 0.02, 0.1]),
    exec_close=st.booleans(),
    cuts=st.lists(
        st.tuples(st.integers(0, 28), st.lists(st.floats(1e-4, 1.0), min_size=4, max_size=4)),
        min_size=1,
        max_size=6,
    ),
)
def test_a_cut_pod_is_never_driven_below_zero_by_its_own_exit(
    seed: int, cost: float, slip: float, exec_close: bool, cuts: list
) -> None:
    """Issue #25: prices never move (open = close = constant), so a pod's equity changes only
    by its own trading costs. Fractions are cut by up to 10,000× at random bars while pods hold
    positions, at costs up to the config's limits. A pod that could pay for its own re-targeting
    before a cut (equity ≥ k·G / (1 − k·L)) still can after it: at the cut's execution its
    equity after the cash left and it re-targeted is ≥ 0 — the cash that leaves keeps what the
    exit costs.
    (Before: 0.15 → 0.0036 at 500 bps took a pod's equity to −1e12.)"""
    from tests.kernel_cases import make_inputs, run_kernel

    rng = np.random.default_rng(seed)
    n_pods, n_bars = 4, 30
    inp = make_inputs(
        rng, n_pods, 3, n_bars, exec_close=exec_close, cost=cost, slip=slip, max_gross=0.0,
        daily_loss=0.0, stop=False, trailing=False, late_listing=False,
    )  # fmt: skip
    flat = np.broadcast_to(inp.close[0], inp.close.shape).copy()
    inp = inp._replace(open=flat, close=flat, atr=flat * 0.01, funding=np.zeros_like(flat))
    fractions = np.full(n_pods, 0.24)
    transfers: dict[int, np.ndarray] = {}
    current = fractions.copy()
    for bar, factors in sorted(cuts):
        current = current * np.asarray(factors)
        transfers[bar] = current.copy()
    equity = np.zeros((n_bars, n_pods))
    gross = np.zeros((n_bars, n_pods))

    def record(t, s) -> None:
        notional = s.units * flat[t, inp.slot_sym]
        equity[t] = s.pod_cash + np.bincount(inp.slot_pod, weights=notional, minlength=n_pods)
        gross[t] = np.bincount(inp.slot_pod, weights=np.abs(notional), minlength=n_pods)

    run_kernel(inp, fractions, per_bar=record, transfers=transfers)
    k = slip + cost * (1 + slip)  # the most a unit of traded notional costs
    room = 1 - k * inp.pod_max_leverage
    for bar in transfers:  # requested at this close, executed at the next bar
        # a pod holding positions that could pay for its own re-targeting before the cut (at
        # extreme costs a pod's own turnover can exhaust it with or without a cut)
        can_pay = (room > 0) & (equity[bar] * room >= k * gross[bar])
        held = (equity[bar] > 0) & (gross[bar] > 0) & can_pay
        after = equity[bar + 1][held]
        assert np.all(after >= -1e-9 * 100_000.0), (bar, after)
