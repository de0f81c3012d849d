"""Issue #25: governance that does not churn or hoard cash, and the plan's last risk checks —
dwell on every transition, strong recovery stricter than the floor, the minimum pod capital,
gross leverage above its cap between executions, effective N, all pods out and time in cash,
and the lifecycle profiles."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from orchestra.config import LIFECYCLE_PROFILES, load_config, parse_config
from orchestra.engine import run_backtest
from tests.test_lifecycle import drift, one_pod_config, transitions, write_bars

ROOT = Path(__file__).resolve().parents[1]


def example_raw() -> dict:
    return load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")


def run(raw: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_backtest(parse_config(raw))


# ---------------------------------------------------------------- lifecycle


def test_every_soft_transition_waits_the_dwell() -> None:
    """A churn-prone example (warning at 6 % drawdown, a high Sharpe floor, short windows):
    consecutive transitions of a pod are at least min_dwell_days apart, hard stops excepted —
    probation → production included (it used to follow 1–2 days after entering probation)."""
    raw = example_raw()
    for pod in raw["pods"]:
        pod["risk"].update(drawdown_warning=0.06, max_drawdown=0.12)
    raw["orchestrator"]["retirement"].update(
        rolling_sharpe_floor=0.5, rolling_sharpe_window=60, warning_days=20, probation_days=400,
        max_drawdown_breach=0.95, consecutive_loss_months=99, min_dwell_days=10,
    )  # fmt: skip
    ev = run(raw).lifecycle_events.sort("pod_id", "timestamp")
    assert ev.height >= 6, ev  # the config does move pods around
    soft = ev.filter(~pl.col("reason").str.starts_with("hard stop"))
    gaps = soft.group_by("pod_id").agg(pl.col("timestamp").diff().drop_nulls().alias("gap"))
    for g in gaps["gap"].to_list():
        assert all(x >= dt.timedelta(days=10) for x in g), g
    assert {"probation"} <= set(ev["to_state"]) or {"probation"} <= set(ev["from_state"])


@pytest.mark.parametrize(("late", "recovers"), [(0.006, False), (0.02, True)])
def test_strong_recovery_is_stricter_than_a_negative_floor(
    tmp_path: Path, late: float, recovers: bool
) -> None:
    """Floor −0.5: the plan's rule "≥ 2 × floor" would accept a rolling Sharpe of −0.9, worse
    than the floor. Strong recovery needs floor + margin = 0.0: a probation whose rolling Sharpe
    climbs to ~−0.3 stays in probation; one that climbs above 0 recovers, after the dwell."""
    r = np.concatenate(
        [drift(60, 0.001, 0.003), np.full(4, -0.032), np.zeros(35), np.full(20, late)]
    )
    write_bars(tmp_path, r)
    orch = {
        "retirement": {
            "rolling_sharpe_window": 60, "rolling_sharpe_floor": -0.5,
            "strong_recovery_margin": 0.5, "warning_days": 30, "probation_days": 60,
        }
    }  # fmt: skip
    res = run_backtest(one_pod_config(tmp_path, r.size, state="production", orch=orch))
    moves = transitions(res)
    assert ("warning", "probation") in moves
    back = res.lifecycle_events.filter(
        (pl.col("from_state") == "probation") & (pl.col("to_state") == "production")
    )
    assert (back.height > 0) == recovers, moves
    entered = res.lifecycle_events.filter(pl.col("to_state") == "probation")["timestamp"][0]
    for row in back.iter_rows(named=True):
        assert row["threshold"] == pytest.approx(0.0) and row["value"] >= 0.0
        assert row["timestamp"] - entered >= dt.timedelta(days=5)


def test_the_plan_profile_fills_only_what_a_config_leaves_out() -> None:
    pods = [{"pod_id": "a", "strategy": "tsmom", "symbols": ["BTC/USDT"]},
            {"pod_id": "b", "strategy": "tsmom", "symbols": ["ETH/USDT"],
             "risk": {"max_drawdown": 0.3}}]  # fmt: skip
    study = parse_config({"pods": pods})
    plan = parse_config(
        {"orchestrator": {"lifecycle_profile": "plan", "retirement": {"probation_days": 45}},
         "pods": pods}
    )  # fmt: skip
    for key, value in LIFECYCLE_PROFILES["study"]["retirement"].items():
        assert getattr(study.orchestrator.retirement, key) == value
    for key, value in LIFECYCLE_PROFILES["plan"]["retirement"].items():
        expected = 45 if key == "probation_days" else value  # the config's own value wins
        assert getattr(plan.orchestrator.retirement, key) == expected
    assert plan.orchestrator.graduation.min_sharpe == 1.0
    assert (study.pods[0].risk.max_drawdown, study.pods[0].risk.drawdown_warning) == (0.5, 0.35)
    assert (plan.pods[0].risk.max_drawdown, plan.pods[0].risk.drawdown_warning) == (0.15, 0.1)
    assert plan.pods[1].risk.drawdown_warning == pytest.approx(0.2)  # 2/3 of its own 0.3
    assert study.pods[1].risk.drawdown_warning == pytest.approx(0.21)
    # a dumped config re-parses to itself under either profile (live state, run summaries)
    assert parse_config(plan.model_dump(mode="json")) == plan


# ---------------------------------------------------------------- capital and risk checks


def test_a_pod_cut_below_the_minimum_capital_is_not_funded_with_one_alert(tmp_path: Path) -> None:
    """The warning halves the pod's 50,000 slice to 25,000, below a 30,000 minimum: the pod is
    flattened and unfunded, and one WARNING names it and the amount."""
    r = np.concatenate([drift(60, 0.003, 0.003), np.full(4, -0.03), drift(30, 0.0, 0.003, 1)])
    write_bars(tmp_path, r)
    cfg = one_pod_config(tmp_path, r.size, state="production", orch={"min_pod_capital": 30_000})
    res = run_backtest(cfg)
    t_warn = res.lifecycle_events.filter(pl.col("to_state") == "warning")["timestamp"][0]
    alerts = res.alerts.filter(pl.col("alert_type") == "pod_below_min_capital")
    assert alerts.height == 1
    (a,) = alerts.iter_rows(named=True)
    assert a["pod_id"] == "p" and a["severity"] == "WARNING" and a["threshold"] == 30_000
    assert 20_000 < a["current_value"] < 30_000 and "min_pod_capital" in a["message"]
    after = res.pod_equity.filter(pl.col("timestamp") > a["timestamp"])
    assert a["timestamp"] > t_warn and (after["equity"] == 0.0).all()
    assert (after["fraction"] == 0.0).all()


def test_an_initial_slice_below_the_minimum_is_a_warning_and_stays_unfunded() -> None:
    raw = example_raw()
    raw["backtest"]["capital"] = 20_000  # the vol-adaptive pod's 10 % is 2,000
    raw["orchestrator"]["min_pod_capital"] = 2_500
    with pytest.warns(UserWarning, match=r"pods\[2\] \(pod-voladapt-cross\): initial_fraction"):
        res = run_backtest(parse_config(raw))
    pe = res.pod_equity.filter(pl.col("pod_id") == "pod-voladapt-cross")
    assert pe["equity"][0] == 0.0


def test_gross_leverage_above_the_cap_at_a_close_is_one_alert_per_episode() -> None:
    raw = example_raw()
    raw["orchestrator"]["risk"]["max_gross_leverage"] = 0.3  # binds: prices carry it above
    res = run(raw)
    cap = 0.3
    gross = res.equity["gross_leverage"].to_numpy()
    over = gross > cap * (1 + 1e-6)
    starts = np.flatnonzero(over & ~np.concatenate([[False], over[:-1]]))
    alerts = res.alerts.filter(pl.col("alert_type") == "gross_leverage_above_cap")
    assert starts.size >= 2 and alerts.height == starts.size
    assert alerts["timestamp"].to_list() == res.equity["timestamp"].gather(starts).to_list()
    assert (alerts["current_value"] > alerts["threshold"]).all()


def test_effective_n_below_the_minimum_is_one_warning_per_episode() -> None:
    res = run(example_raw())
    pr = res.portfolio_risk
    eff = pr["effective_n"].to_numpy()
    low = (eff > 0) & (eff < 2.0)
    starts = np.flatnonzero(low & ~np.concatenate([[False], low[:-1]]))
    alerts = res.alerts.filter(pl.col("alert_type") == "effective_n_low")
    assert starts.size >= 1 and alerts.height == starts.size
    assert alerts["timestamp"].to_list() == pr["timestamp"].gather(starts).to_list()
    assert np.allclose(alerts["current_value"].to_numpy(), eff[starts])


def test_all_pods_out_is_critical_and_the_summary_says_how_long(tmp_path: Path) -> None:
    """The only pod is retired: one CRITICAL alert, and the time in cash runs from then."""
    r = np.concatenate([drift(60, 0.001, 0.003), np.full(4, -0.032), np.zeros(75)])
    write_bars(tmp_path, r)
    res = run_backtest(one_pod_config(tmp_path, r.size, state="production"))
    t_ret = res.lifecycle_events.filter(pl.col("to_state") == "retired")["timestamp"][0]
    out = res.alerts.filter(pl.col("alert_type") == "all_pods_out")
    assert out.height == 1 and out["severity"][0] == "CRITICAL"
    assert out["timestamp"][0] == t_ret
    cash = res.summary["time_in_cash"]
    last = res.equity["timestamp"][-1]
    assert cash["since"].startswith(str(t_ret.date()))
    assert cash["days"] == (last - t_ret).days + 1
    assert 0 < cash["share"] < 1


def test_a_book_invested_to_the_end_has_no_time_in_cash() -> None:
    res = run(example_raw())
    assert res.summary["time_in_cash"] == {"days": 0.0, "share": 0.0, "since": None}
    assert res.alerts.filter(pl.col("alert_type") == "all_pods_out").height == 0
