"""Lifecycle (SPEC §8): Page-Hinkley against river, every transition on constructed return
streams (through the real files → strategy → kernel pipeline), risk actions, parity."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.drift import PageHinkley

from orchestra import run_backtest
from orchestra.config import parse_config
from orchestra.kernels.state import lifecycle_off
from orchestra.lifecycle import page_hinkley_alarms
from tests.kernel_cases import kernel_cases, run_kernel

START = dt.date(2024, 1, 1)


def river_alarms(values, delta, lam, alpha, min_instances):
    ph = PageHinkley(
        min_instances=min_instances, delta=delta, threshold=lam, alpha=alpha, mode="down"
    )
    out = []
    for i, v in enumerate(values):
        ph.update(float(v))
        if ph.drift_detected:
            out.append(i)
    return out


@settings(max_examples=200)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 600),
    shift=st.floats(-3, 1),
    at=st.floats(0, 1),
    delta=st.sampled_from([0.0, 0.005, 0.05]),
    lam=st.sampled_from([5.0, 20.0, 50.0]),
    alpha=st.sampled_from([0.9999, 0.99, 1.0]),
    min_instances=st.sampled_from([1, 30]),
)
def test_page_hinkley_matches_river(seed, n, shift, at, delta, lam, alpha, min_instances) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    x[int(at * n) :] += shift  # a mean shift (down when negative)
    assert page_hinkley_alarms(x, delta, lam, alpha, min_instances).tolist() == river_alarms(
        x, delta, lam, alpha, min_instances
    )


def test_page_hinkley_defaults_match_river_on_a_long_stream() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [rng.standard_normal(1000), rng.standard_normal(1000) - 1.0, rng.standard_normal(500)]
    )
    mine = page_hinkley_alarms(x)
    assert mine.tolist() == river_alarms(x, 0.005, 50.0, 0.9999, 30) and mine.size > 0


# ------------------------------------------------------------------------- constructed streams


def write_bars(
    folder: Path,
    log_returns: np.ndarray,
    symbol: str = "X-USDT",
    start: dt.date = START,
    hourly: bool = False,
) -> None:
    close = 100 * np.exp(np.cumsum(log_returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    step = dt.timedelta(hours=1) if hourly else dt.timedelta(days=1)
    ts = [dt.datetime.combine(start, dt.time(), dt.UTC) + i * step for i in range(close.size)]
    pl.DataFrame(
        {
            "timestamp": ts,
            "open": open_,
            "high": np.maximum(open_, close) * 1.0001,
            "low": np.minimum(open_, close) * 0.9999,
            "close": close,
            "volume": np.ones(close.size),
        }
    ).write_parquet(folder / f"{symbol}_{'1h' if hourly else '1d'}.parquet")


def one_pod_config(
    folder: Path,
    days: int,
    state: str = "incubation",
    orch: dict | None = None,
    hourly: bool = False,
    **pod,
):
    raw = {
        "data": {"source": "files", "path": str(folder), "timeframe": "1h" if hourly else "1d"},
        "orchestrator": {
            # the state machine's mechanics on the plan's limits (warning at 10 % drawdown...)
            "lifecycle_profile": "plan",
            "allocation_method": "equal_weight",
            "rebalance": {"trigger": "calendar", "calendar_days": 10_000},
            "risk": {
                "max_portfolio_volatility": 100.0,
                "daily_loss_limit": 0.5,
                "max_portfolio_drawdown": 0.9,
            },
            **(orch or {}),
        },
        "pods": [
            {
                "pod_id": "p",
                "strategy": "tests.user_strategy:always_long",
                "params": {"weight": 1.0},
                "symbols": ["X/USDT"],
                "timeframe": "1h" if hourly else "1D",
                "initial_fraction": 0.5,
                "max_fraction": 0.5,
                "min_fraction": 0.1,
                "initial_state": state,
                "risk": {
                    "rebalance_threshold": 0.0,
                    "system_stop_loss": None,
                    "use_trailing_stop": False,
                },
                **pod,
            }
        ],
        "backtest": {
            "start": str(START),
            "end": str(START + dt.timedelta(days=days - 1)),
            "warmup_days": 0,
            "capital": 100_000,
        },
        "portfolio": {"cost_bps": 1.0},
    }
    return parse_config(raw)


def transitions(res) -> list[tuple[str, str]]:
    return list(
        zip(res.lifecycle_events["from_state"], res.lifecycle_events["to_state"], strict=True)
    )


def fraction_at(res, ts) -> float:
    return res.pod_equity.filter(pl.col("timestamp") == ts)["fraction"][0]


def drift(n: int, mu: float, sigma: float, seed: int = 0) -> np.ndarray:
    return mu + sigma * np.random.default_rng(seed).standard_normal(n)


def test_graduation_after_min_live_days_of_good_returns(tmp_path: Path) -> None:
    write_bars(tmp_path, drift(120, 0.004, 0.004))
    # a fully invested weight-1 long never drifts off target, so it trades rarely: lower the bar
    res = run_backtest(one_pod_config(tmp_path, 120, orch={"graduation": {"min_trade_count": 2}}))
    ev = res.lifecycle_events
    assert transitions(res) == [("incubation", "production")]
    assert ev["reason"][0].startswith("graduation")
    # live_days reaches min_live_days (90) at the 90th day end: day index 89
    assert ev["timestamp"][0].date() == START + dt.timedelta(days=89)
    assert (
        res.pod_equity.filter(pl.col("timestamp") == ev["timestamp"][0])["state"][0] == "production"
    )


def test_no_graduation_with_too_few_trades(tmp_path: Path) -> None:
    write_bars(tmp_path, drift(120, 0.004, 0.004))
    res = run_backtest(
        one_pod_config(tmp_path, 120, orch={"graduation": {"min_trade_count": 1000}})
    )
    assert transitions(res) == []


def test_warning_then_recovery_halves_then_keeps_the_fraction(tmp_path: Path) -> None:
    r = np.concatenate(
        [drift(60, 0.003, 0.003), np.full(4, -0.03), np.full(12, 0.025), drift(10, 0.002, 0.002, 1)]
    )
    write_bars(tmp_path, r)
    res = run_backtest(one_pod_config(tmp_path, r.size, state="production"))
    assert transitions(res) == [("production", "warning"), ("warning", "production")]
    ev = res.lifecycle_events
    t_warn = ev["timestamp"][0]
    before = res.pod_equity.filter(pl.col("timestamp") < t_warn)["fraction"][-1]
    assert fraction_at(res, t_warn) == pytest.approx(0.5 * before)  # at the transition bar
    assert ev["reason"][1].startswith("recovered")


def test_warning_probation_retired(tmp_path: Path) -> None:
    r = np.concatenate([drift(60, 0.001, 0.003), np.full(4, -0.032), np.zeros(75)])
    write_bars(tmp_path, r)
    res = run_backtest(one_pod_config(tmp_path, r.size, state="production"))
    assert transitions(res) == [
        ("production", "warning"),
        ("warning", "probation"),
        ("probation", "retired"),
    ]
    ev = res.lifecycle_events
    assert "warning_days" in ev["reason"][1] and ev["value"][1] == 30
    assert "probation_days" in ev["reason"][2] and ev["value"][2] == 30
    assert fraction_at(res, ev["timestamp"][1]) == pytest.approx(0.1)  # probation → min_fraction
    assert fraction_at(res, ev["timestamp"][2]) == 0.0
    # a retired pod is flattened at the next execution and stays retired
    after = res.positions.filter(pl.col("timestamp") > ev["timestamp"][2])
    assert after.height == 1 and after["units"][0] == 0.0
    assert (
        res.pod_equity.filter(pl.col("timestamp") >= ev["timestamp"][2])["state"] == "retired"
    ).all()


def test_probation_to_production_on_strong_recovery(tmp_path: Path) -> None:
    r = np.concatenate(
        [drift(60, 0.001, 0.003), np.full(4, -0.032), np.zeros(35), np.full(20, 0.02)]
    )
    write_bars(tmp_path, r)
    # the rolling Sharpe needs a full window: 60 days here (the default 180 exceeds this path)
    cfg = one_pod_config(
        tmp_path, r.size, state="production", orch={"retirement": {"rolling_sharpe_window": 60}}
    )
    res = run_backtest(cfg)
    assert transitions(res)[:3] == [
        ("production", "warning"),
        ("warning", "probation"),
        ("probation", "production"),
    ]
    assert res.lifecycle_events["reason"][2].startswith("strong recovery")


@pytest.mark.parametrize("state", ["incubation", "production"])
def test_hard_stop_from_any_state(tmp_path: Path, state: str) -> None:
    r = np.concatenate([drift(40, 0.002, 0.002), np.full(10, -0.04)])
    write_bars(tmp_path, r)
    res = run_backtest(
        one_pod_config(
            tmp_path,
            r.size,
            state=state,
            risk={
                "max_drawdown": 0.5,
                "drawdown_warning": 0.5,
                "rebalance_threshold": 0.0,
                "use_trailing_stop": False,
                "system_stop_loss": None,
            },
        )
    )
    last = transitions(res)[-1]
    assert last[1] == "retired"
    assert "max_drawdown_breach" in res.lifecycle_events["reason"][-1]
    assert res.lifecycle_events["value"][-1] > 0.25


def test_hard_stop_on_consecutive_losing_months(tmp_path: Path) -> None:
    r = np.full(220, -0.0005)  # a slow bleed: every month loses, drawdown stays small
    write_bars(tmp_path, r)
    res = run_backtest(one_pod_config(tmp_path, r.size, state="incubation"))
    ev = res.lifecycle_events
    assert transitions(res) == [("incubation", "retired")]
    assert "losing months" in ev["reason"][0] and ev["value"][0] == 6
    assert ev["timestamp"][0].date() == dt.date(2024, 6, 30)  # the 6th month's last day


def test_late_pod_joins_in_incubation(tmp_path: Path) -> None:
    write_bars(tmp_path, drift(60, 0.001, 0.01))
    cfg = one_pod_config(tmp_path, 60, start=str(START + dt.timedelta(days=20)))
    res = run_backtest(cfg)
    pe = res.pod_equity
    assert (
        pe.filter(pl.col("timestamp") < dt.datetime(2024, 1, 20, tzinfo=dt.UTC))["fraction"] == 0
    ).all()
    assert pe.filter(pl.col("timestamp") >= dt.datetime(2024, 1, 21, tzinfo=dt.UTC))["fraction"][
        0
    ] == pytest.approx(0.5)
    assert res.fills["timestamp"].min() >= dt.datetime(2024, 1, 21, tzinfo=dt.UTC)


# ----------------------------------------------------------------------------- risk actions


def test_circuit_breaker_flattens_at_next_execution_and_resumes_next_day(tmp_path: Path) -> None:
    r = drift(72, 0.0, 0.001)
    r[24 + 10] = -0.12  # day 2, 10:00 bar: a crash
    write_bars(tmp_path, r, hourly=True)
    cfg = one_pod_config(
        tmp_path,
        3,
        state="production",
        hourly=True,
        orch={
            "risk": {
                "daily_loss_limit": 0.03,
                "max_portfolio_volatility": 100.0,
                "max_portfolio_drawdown": 0.9,
            }
        },
    )
    res = run_backtest(cfg)
    crash = dt.datetime(2024, 1, 2, 10, tzinfo=dt.UTC)
    alerts = res.alerts.filter(pl.col("alert_type") == "daily_loss_circuit_breaker")
    assert alerts.height == 1 and alerts["timestamp"][0] == crash
    pos = res.positions.sort("timestamp")
    flat = pos.filter(pl.col("timestamp") == crash + dt.timedelta(hours=1))
    assert flat.height == 1 and flat["units"][0] == 0.0  # flattened at the next bar's open
    blocked = res.fills.filter(
        (pl.col("timestamp") > crash + dt.timedelta(hours=1))
        & (pl.col("timestamp") < dt.datetime(2024, 1, 3, tzinfo=dt.UTC))
    )
    assert blocked.height == 0
    resumed = res.fills.filter(pl.col("timestamp") == dt.datetime(2024, 1, 3, tzinfo=dt.UTC))
    assert resumed.height >= 1 and resumed["units"].sum() > 0


@pytest.mark.parametrize("action", ["alert", "derisk", "flatten"])
def test_portfolio_drawdown_actions(tmp_path: Path, action: str) -> None:
    r = np.concatenate([drift(30, 0.002, 0.002), np.full(6, -0.03), drift(30, 0.003, 0.002, 2)])
    write_bars(tmp_path, r)

    def cfg(limit: float):
        # the lifecycle is made lenient so that only the portfolio rule acts
        return one_pod_config(
            tmp_path,
            r.size,
            state="production",
            params={"weight": 0.8},
            risk={
                "max_drawdown": 0.9,
                "drawdown_warning": 0.9,
                "rebalance_threshold": 0.0,
                "use_trailing_stop": False,
                "system_stop_loss": None,
            },
            orch={
                "risk": {
                    "max_portfolio_drawdown": limit,
                    "drawdown_action": action,
                    "daily_loss_limit": 0.5,
                    "max_portfolio_volatility": 100.0,
                },
                "retirement": {"max_drawdown_breach": 0.9, "rolling_sharpe_floor": -100.0},
                "degradation": {"lambda_": 1e9},
            },
        )

    res, base = run_backtest(cfg(0.04)), run_backtest(cfg(0.99))
    dd = res.alerts.filter(pl.col("alert_type") == "portfolio_drawdown")
    assert dd.height >= 1 and dd["severity"][0] == "CRITICAL"
    assert base.alerts.filter(pl.col("alert_type") == "portfolio_drawdown").height == 0
    after = pl.col("timestamp") == dd["timestamp"][0] + dt.timedelta(days=1)
    g, g0 = (
        res.equity.filter(after)["gross_leverage"][0],
        base.equity.filter(after)["gross_leverage"][0],
    )
    if action == "flatten":
        assert (
            res.equity.filter(pl.col("timestamp") > dd["timestamp"][0])["gross_leverage"] == 0
        ).all()
    elif action == "derisk":
        assert g == pytest.approx(0.5 * g0, rel=0.05)
    else:
        assert g == pytest.approx(g0, rel=1e-9)


def test_bad_pod_is_demoted_and_retired_on_real_data(shared_data: Path, tmp_path: Path) -> None:
    """A reversed tsmom on binance-majors: demoted and retired, with reasons, in the report."""
    from orchestra import load_config
    from orchestra.results.report import write_html
    from tests.conftest import CONFIGS

    cfg = load_config(CONFIGS / "binance-majors.yaml")
    raw = cfg.model_dump(mode="json")
    raw["pods"].append(
        {
            "pod_id": "bad-reversed-tsmom",
            "strategy": "tests.user_strategy:reversed_tsmom",
            "params": {"lookback": 20},
            "symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
            "initial_fraction": 0.15,
            "max_fraction": 0.3,
            "min_fraction": 0.05,
            "initial_state": "production",
            # the plan's pod limits: the study's (a 50 % drawdown) take years to retire it
            "risk": {"max_drawdown": 0.15, "drawdown_warning": 0.10},
        }
    )
    for p in raw["pods"][:-1]:
        p["initial_fraction"] = round(p["initial_fraction"] * 0.8, 4)
    res = run_backtest(parse_config(raw, base_dir=CONFIGS))
    ev = res.lifecycle_events.filter(pl.col("pod_id") == "bad-reversed-tsmom")
    assert "warning" in ev["to_state"].to_list() and ev["to_state"][-1] == "retired"
    assert all(isinstance(x, str) and x for x in ev["reason"])
    html = write_html(res, tmp_path / "r.html").read_text()
    assert "bad-reversed-tsmom" in html and "retired" in html


def close(a, b, abs_):
    return np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-9, atol=abs_)


@settings(max_examples=300)
@given(case=st.data())
def test_invariants_hold_under_lifecycle_and_risk_actions(case) -> None:
    """Attribution invariants at every bar with the state machine and drawdown actions active."""
    inp, fractions = case.draw(kernel_cases(max_bars=60))
    inp = aggressive_lifecycle(
        inp, case.draw(st.sampled_from([0.0, 0.02, 0.1])), case.draw(st.sampled_from([0, 1, 2]))
    )

    def check(t: int, s) -> None:
        prices = np.nan_to_num(inp.close[t])
        pod_units = np.zeros_like(s.account_units)
        np.add.at(pod_units, inp.slot_sym, s.units)
        assert close(
            pod_units, s.account_units, abs_=1e-9 * max(1.0, np.abs(s.account_units).max(initial=0))
        )
        held = np.where(s.units != 0, s.units * prices[inp.slot_sym], 0.0)
        pod_eq = s.pod_cash.copy()
        np.add.at(pod_eq, inp.slot_pod, held)
        acct = s.account_cash[0] + np.sum(
            np.where(s.account_units != 0, s.account_units * prices, 0.0)
        )
        assert close(pod_eq.sum() + s.unallocated[0], acct, abs_=1e-6)
        assert close(s.pod_fees.sum(), s.account_fees[0], abs_=1e-9)

    run_kernel(inp, fractions, per_bar=check)


def aggressive_lifecycle(inp, max_dd: float, action: int):
    lc = lifecycle_off(
        enabled=1,
        min_live_days=5,
        min_sharpe=0.0,
        grad_max_dd=0.5,
        min_trades=0,
        min_calmar=-10,
        max_corr=1.0,
        breach_dd=0.08,
        loss_months=2,
        sharpe_floor=0.3,
        sharpe_window=10,
        probation_days=3,
        warning_days=3,
        ph_delta=0.005,
        ph_lambda=3.0,
        ph_alpha=0.9999,
        ph_min=5,
        corr_lookback=20,
        min_history=3,
        period_days=1.0,
        recovery_ratio=1.0,  # no hysteresis band, no dwell (min_dwell 0)
        strong_margin=0.3,  # the plan's 2 × 0.3
    )
    params = inp.params._replace(max_drawdown=max_dd, drawdown_action=action)
    return inp._replace(
        lifecycle=lc, params=params, month_end=(np.arange(inp.timestamps.size) % 7 == 6)
    )


def test_the_random_lifecycle_cases_do_exercise_transitions() -> None:
    """Guard against a vacuous property test: such cases do move pods between states and fire
    drawdown actions."""
    from tests.kernel_cases import make_inputs

    events = alerts = halts = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        inp = make_inputs(
            rng, 3, 3, 60, exec_close=False, cost=0.001, slip=0.0, max_gross=3.0, daily_loss=0.05
        )
        inp = aggressive_lifecycle(inp, 0.02, seed % 3)
        state, out = run_kernel(inp, np.array([0.3, 0.3, 0.3]))
        events += out.ev_count[0] > 0
        alerts += out.al_count[0] > 0
        halts += state.halted[0] > 0
    assert events > 20 and alerts > 10 and halts > 3, (events, alerts, halts)


def _pw_transitions(res) -> pl.DataFrame:
    ev = res.lifecycle_events
    return ev.filter(
        pl.col("from_state").is_in(["production", "warning"])
        & pl.col("to_state").is_in(["production", "warning"])
    ).sort("pod_id", "timestamp")


def test_hysteresis_bounds_the_production_warning_churn() -> None:
    """min_dwell_days keeps a pod at least that long in production / warning before it moves
    between the two, and recovery needs the drawdown under recovery_drawdown_ratio × warning."""
    from orchestra.config import load_config
    from orchestra.engine import run_backtest

    base = load_config(Path(__file__).parents[1] / "configs" / "example.yaml")
    raw = base.model_dump(mode="json")
    for pod in raw["pods"]:
        pod["risk"]["drawdown_warning"] = 0.06  # a low warning level: pods cross it often
        pod["risk"]["max_drawdown"] = 0.9
    raw["orchestrator"]["retirement"].update(max_drawdown_breach=0.95, warning_days=400)
    counts = {}
    for dwell, ratio in ((0, 1.0), (10, 0.8)):
        raw["orchestrator"]["retirement"].update(
            min_dwell_days=dwell, recovery_drawdown_ratio=ratio
        )
        res = run_backtest(parse_config(raw))
        moves = _pw_transitions(res)
        counts[dwell] = moves.height
        if dwell:
            gaps = moves.group_by("pod_id").agg(
                pl.col("timestamp").diff().drop_nulls().alias("gap")
            )
            for g in gaps["gap"].to_list():
                assert all(x >= dt.timedelta(days=dwell) for x in g), g
    assert counts[0] >= 6, counts  # the config does churn without hysteresis
    assert counts[10] < counts[0], counts
