"""The live–model gap (SPEC §13.5): a replay through a paper broker that fills every order a known
number of bps worse than the model; the gap frames, the Prometheus gauges and the alert measure
exactly that, and with no extra slippage they are 0 and the books equal the model's."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestra import load_run
from orchestra.engine import run_backtest
from orchestra.live import LiveSession
from orchestra.live.broker import SlippagePaperBroker
from orchestra.live.feeds import ReplayFeed
from orchestra.monitoring import Monitor
from orchestra.monitoring.prom import LiveMetrics
from tests.test_live import churn_raw, config_for, write_market


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    return write_market(tmp_path_factory.mktemp("market") / "bars")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cfg, market: Path, state: Path, extra_bps: float, metrics=None, bars=None):
    p = cfg.portfolio
    broker = SlippagePaperBroker(p.cost_bps / 1e4, p.slippage_bps / 1e4, extra_bps)
    feed = ReplayFeed(cfg, market)
    session = LiveSession.open(
        feed.config, state, feed.label, feed.start_ms, feed.warmup, broker=broker, identity=cfg
    )
    session.monitor = Monitor(metrics, None)
    stream = feed.bars_after(session.last_ts or feed.start_ms - 1)
    session.run(stream if bars is None else itertools.islice(stream, bars))
    return session


def _gauges(port: int) -> dict[str, dict[str, float]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            label = s.labels.get("pod_id") or s.labels.get("symbol") or ""
            out.setdefault(s.name, {})[label] = s.value
    return out


def test_known_slippage_is_measured_exactly(market: Path, tmp_path: Path) -> None:
    extra = 7.5  # bps worse than the model on every fill
    cfg = config_for(market)
    metrics = LiveMetrics(cfg, [p.pod_id for p in cfg.pods], "test")
    port = _port()
    metrics.serve(port)
    # stopped and resumed on the way: the model beside the books is rebuilt at the restart
    _run(cfg, market, tmp_path / "s", extra, bars=40).close()
    session = _run(cfg, market, tmp_path / "s", extra, metrics)
    gauges = _gauges(port)
    gap_now = session.gap.nav_gap.copy()
    session.close()
    metrics.close()
    res = load_run(tmp_path / "s")
    fills = res.live_gap
    assert fills.height > 50  # every external fill of the run, per pod and symbol
    np.testing.assert_allclose(fills["slippage_bps"].to_numpy(), extra, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fills["fee_bps"].to_numpy(), 0.0, rtol=0, atol=1e-9)
    # the books drift from the model's (worse fills, other equities, other order sizes): the
    # model's own trade of the bar is there to compare, the reference price is the live order's
    assert (fills["units"] != 0).all() and fills["model_units"].null_count() == 0
    # the gauges: the last fill per symbol, the last bar's NAV gap per pod
    for sym, bps in gauges["orchestra_symbol_slippage_bps"].items():
        assert bps == pytest.approx(extra, abs=1e-9), sym
    navs = res.live_nav_gap
    last = navs.filter(pl.col("timestamp") == navs["timestamp"].max()).sort("pod_id")
    pods = [p.pod_id for p in cfg.pods]
    want = dict(zip(last["pod_id"], last["gap"], strict=True))
    for p, pid in enumerate(pods):
        assert gauges["orchestra_pod_live_model_gap"][pid] == want[pid]
        assert gap_now[p] == want[pid]
    assert min(want.values()) < 0  # worse fills cost NAV: traded pods end below their model


def test_the_gap_alert_fires_once_per_crossing(market: Path, tmp_path: Path) -> None:
    raw = churn_raw()
    raw["data"]["path"] = str(market)
    raw["orchestrator"].setdefault("graduation", {})["max_backtest_live_gap"] = 0.001
    from orchestra.config import parse_config
    from orchestra.live.store import Store

    cfg = parse_config(raw)
    _run(cfg, market, tmp_path / "s", 25.0).close()
    with Store(tmp_path / "s", readonly=True) as store:
        gap_alerts = [m for m in store.outbox() if m["kind"] == "live_model_gap"]
    navs = load_run(tmp_path / "s").live_nav_gap
    crossed = (
        navs.sort("timestamp")
        .with_columns((pl.col("gap").abs() > 0.001).alias("over"))
        .with_columns(pl.col("over").shift(1).over("pod_id").fill_null(False).alias("before"))
        .filter(pl.col("over") & ~pl.col("before"))
    )
    assert crossed.height >= 1
    assert len(gap_alerts) == crossed.height
    assert all(m["severity"] == "WARNING" for m in gap_alerts)


def test_no_extra_slippage_gives_no_gap_and_the_models_books(market: Path, tmp_path: Path) -> None:
    cfg = config_for(market)
    _run(cfg, market, tmp_path / "s", 0.0).close()
    res = load_run(tmp_path / "s")
    assert res.live_gap.height > 50
    assert (res.live_gap["slippage_bps"] == 0.0).all()
    # a pod's share of the order's fee over its share of the notional: cost_bps to the rounding
    # of the split (~1e-15 bps)
    np.testing.assert_allclose(res.live_gap["fee_bps"].to_numpy(), 0.0, rtol=0, atol=1e-9)
    assert (res.live_nav_gap["gap"] == 0.0).all()
    bt = run_backtest(cfg)
    for name in ("equity", "pod_equity", "fills", "positions", "lifecycle_events", "allocations"):
        assert getattr(bt, name).equals(getattr(res, name)), name


def test_the_paper_slippage_flag_measures_its_own_gap(market: Path, tmp_path: Path) -> None:
    """`orch-live --paper --paper-slippage-bps 3` through the CLI: the run's gap frames show
    exactly 3 bps on every fill."""
    import yaml
    from click.testing import CliRunner

    from orchestra.cli import live

    raw = churn_raw()
    raw["data"]["path"] = str(market)
    cfg_file = tmp_path / "churn.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(
        live.main,
        ["--paper", str(cfg_file), "--replay", str(market), "--state", str(tmp_path / "s"),
         "--max-bars", "60", "--quiet", "--paper-slippage-bps", "3"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    gap = load_run(tmp_path / "s").live_gap
    assert gap.height > 10
    np.testing.assert_allclose(gap["slippage_bps"].to_numpy(), 3.0, rtol=0, atol=1e-9)
