"""Issue #24: return analytics equal QuantStats on the same daily series (three runs), the
benchmark, and ``res.returns()`` for those who want QuantStats itself."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from orchestra import run_backtest
from orchestra.config import load_config, parse_config
from orchestra.results.analytics import daily_returns, drawdowns, monthly_returns, yearly_returns

ROOT = Path(__file__).resolve().parents[1]
qs = pytest.importorskip("quantstats", reason="QuantStats is a dev dependency (uv sync)")


def _runs():
    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    yield "example", raw
    basket = {**raw, "backtest": {**raw["backtest"], "benchmark": "basket"}}
    yield "basket", basket
    kelly = {**raw, "orchestrator": {**raw["orchestrator"], "allocation_method": "adaptive_kelly"},
             "data": {**raw["data"], "seed": 3}}  # fmt: skip
    yield "kelly-seed3", kelly


RUNS = {}


def result(name: str):
    if name not in RUNS:
        raw = dict(_runs())[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            RUNS[name] = run_backtest(parse_config(raw))
    return RUNS[name]


@pytest.mark.parametrize("name", ["example", "basket", "kelly-seed3"])
def test_analytics_equal_quantstats(name: str) -> None:
    res = result(name)
    table = res.analytics
    bench = res.returns("benchmark")
    for entity in ["account", *res.pod_equity["pod_id"].unique().to_list()]:
        row = table.filter(pl.col("entity") == entity).row(0, named=True)
        r = res.returns(entity)
        assert r.index.is_monotonic_increasing and r.notna().all()
        rel = {"rel": 1e-9, "abs": 1e-12}
        assert row["sharpe"] == pytest.approx(qs.stats.sharpe(r, periods=365), **rel)
        assert row["volatility"] == pytest.approx(qs.stats.volatility(r, periods=365), **rel)
        assert row["skew"] == pytest.approx(qs.stats.skew(r), **rel)
        assert row["kurtosis"] == pytest.approx(qs.stats.kurtosis(r), **rel)
        assert row["var_95"] == pytest.approx(qs.stats.value_at_risk(r), **rel)
        assert row["cvar_95"] == pytest.approx(
            qs.stats.conditional_value_at_risk(r, method="historical"), **rel
        )
        greeks = qs.stats.greeks(r, bench, periods=365)
        assert row["beta"] == pytest.approx(greeks["beta"], **rel)
        assert row["alpha"] == pytest.approx(greeks["alpha"], **rel)
        ir = qs.stats.information_ratio(r, bench)
        assert row["information_ratio"] == pytest.approx(ir * np.sqrt(365), **rel)
    # monthly and yearly returns: compounded like QuantStats'
    r = res.returns()
    ours = monthly_returns(res)
    theirs = qs.stats.monthly_returns(r, eoy=False, compounded=True)
    for y, m, v in ours.iter_rows():
        assert v == pytest.approx(theirs.loc[str(y)].iloc[m - 1], rel=1e-9, abs=1e-12)
    yearly = yearly_returns(res)
    for y, v in zip(yearly["year"], yearly["return"], strict=True):
        assert v == pytest.approx((1 + r[r.index.year == y]).prod() - 1, rel=1e-12)
    # the deepest drawdowns: start, trough and depth as QuantStats finds them
    qd = qs.stats.drawdown_details(qs.stats.to_drawdown_series(r))
    qd = qd.sort_values("max drawdown").head(3)
    dd = drawdowns(res, top=3)
    assert dd["depth"].to_list() == pytest.approx((-qd["max drawdown"] / 100).tolist(), rel=1e-9)
    assert [str(d) for d in dd["start"]] == [str(s)[:10] for s in qd["start"]]
    assert [str(d) for d in dd["trough"]] == [str(s)[:10] for s in qd["valley"]]


def test_benchmark_is_btc_buy_and_hold_by_default_and_configurable() -> None:
    res = result("example")
    assert res.benchmark["name"][0] == "BTC/USDT buy and hold" and res.benchmark["value"][0] == 1.0
    r = daily_returns(res, "benchmark")
    assert r.height >= 700
    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    raw["backtest"]["benchmark"] = "none"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        none = run_backtest(parse_config(raw))
    assert none.benchmark.height == 0 and "beta" not in none.analytics.columns
    raw["backtest"]["benchmark"] = "DOGE/USDT"
    with pytest.raises(Exception, match="not traded by any pod"):
        parse_config(raw)
    basket = result("basket")
    assert basket.benchmark["name"][0].startswith("basket of ")


def test_the_benchmark_survives_save_and_load(tmp_path: Path) -> None:
    from orchestra.results.result import OrchestratedResult

    res = result("example")
    res.save(tmp_path / "run")
    back = OrchestratedResult.load(tmp_path / "run")
    assert back.benchmark.equals(res.benchmark)
    assert back.analytics.equals(res.analytics)
