"""Monitoring of the live loop (SPEC §14, issue #12): the real /metrics endpoint scraped during a
paper replay, a real local HTTP server receiving the Discord webhooks (429 and 500 retried, each
message once, also across restarts), an unreachable webhook that does not slow the loop, and the
daily report equal between the live loop and `orch-bt report --daily`."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from orchestra import load_run
from orchestra.engine import run_backtest
from orchestra.kernels.state import STATE_NAMES
from orchestra.live import LiveSession
from orchestra.live.feeds import ReplayFeed
from orchestra.live.store import Store
from orchestra.monitoring import Monitor, day_view_from_result, format_daily_report
from orchestra.monitoring.notify import WebhookSender
from orchestra.monitoring.prom import LiveMetrics
from tests.test_live import churn_raw, config_for, write_market


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    return write_market(tmp_path_factory.mktemp("market") / "bars")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open(cfg, market: Path, state: Path, monitor=None) -> tuple[LiveSession, ReplayFeed]:
    feed = ReplayFeed(cfg, market)
    s = LiveSession.open(feed.config, state, feed.label, feed.start_ms, feed.warmup, identity=cfg)
    s.monitor = monitor
    return s, feed


def _bars(session, feed, n=None):
    import itertools

    last = session.last_ts if session.last_ts is not None else session.start_ms - 1
    it = feed.bars_after(last)
    return it if n is None else itertools.islice(it, n)


class Webhook:
    """A local HTTP server that speaks Discord's webhook protocol: 204 on success, scripted 429
    (with ``retry_after``) and 500 answers; it records every delivered body."""

    def __init__(self, script: list[int] | None = None):
        self.script = list(script or [])
        self.received: list[dict] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.attempts += 1
                code = hook.script.pop(0) if hook.script else 204
                if code == 429:
                    data = json.dumps({"message": "rate limited", "retry_after": 0.3}).encode()
                    self.send_response(429)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if code >= 500:
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                hook.received.append(body)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/1/token"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_metrics_endpoint_during_a_paper_replay(market: Path, tmp_path: Path) -> None:
    """Scrape the real /metrics over HTTP mid-replay: every metric of SPEC §14 (and the loop's
    own), every pod label, one state label set to 1 per pod, values equal to the engine's."""
    cfg = config_for(market)
    metrics = LiveMetrics(cfg, [p.pod_id for p in cfg.pods], "test")
    port = _free_port()
    metrics.serve(port)
    session, feed = _open(cfg, market, tmp_path / "s", Monitor(metrics, None))
    scraped = {}

    def scrape(s) -> None:
        if s.next_bar in (5, 120):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            scraped[s.next_bar] = (text, s.engine.rows(s.next_bar - 1, s.next_bar)["equity"][0])

    session.run(_bars(session, feed, 130), on_bar=scrape)
    session.close()
    metrics.close()
    text, equity = scraped[120]
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    pods = {p.pod_id for p in cfg.pods}
    for name in (
        "orchestra_pod_equity",
        "orchestra_pod_allocation_fraction",
        "orchestra_pod_capital_share",
        "orchestra_pod_rolling_sharpe",
        "orchestra_pod_drawdown",
        "orchestra_pod_risk_contribution",
    ):
        assert {s.labels["pod_id"] for s in fams[name].samples} == pods, name
    assert {s.labels["strategy"] for s in fams["orchestra_pod_equity"].samples} == {
        p.strategy for p in cfg.pods
    }
    states = fams["orchestra_pod_lifecycle_state"].samples
    assert {s.labels["state"] for s in states} == set(STATE_NAMES)
    for pid in pods:
        assert sum(s.value for s in states if s.labels["pod_id"] == pid) == 1.0
    (eq,) = fams["orchestra_portfolio_equity"].samples
    assert eq.value == equity
    # the decided fraction and the slice in force, each what its name says
    share = {s.labels["pod_id"]: s.value for s in fams["orchestra_pod_capital_share"].samples}
    held = {s.labels["pod_id"]: s.value for s in fams["orchestra_pod_equity"].samples}
    assert share == pytest.approx({p: v / equity for p, v in held.items()})
    decided = {
        s.labels["pod_id"]: s.value for s in fams["orchestra_pod_allocation_fraction"].samples
    }
    assert set(decided) == pods and all(0 <= v <= 1 for v in decided.values())
    for name in (
        "orchestra_portfolio_effective_n",
        "orchestra_portfolio_avg_correlation",
        "orchestra_portfolio_gross_leverage",
        "orchestra_portfolio_unallocated",
        "orchestra_portfolio_drawdown",
        "orchestra_trading_halted",
        "orchestra_last_bar_timestamp_seconds",
        "orchestra_notifications_pending",
    ):
        assert len(fams[name].samples) == 1, name
    prc = [s.value for s in fams["orchestra_pod_risk_contribution"].samples]
    assert sum(prc) == pytest.approx(1.0)  # the risk contributions were computed
    assert fams["orchestra_portfolio_effective_n"].samples[0].value == pytest.approx(
        1.0 / sum(x * x for x in prc)
    )
    (info,) = fams["orchestra_build_info"].samples
    assert info.labels == {"version": "test", "config_hash": cfg.config_hash[:12]}
    assert fams["orchestra_bars_processed"].type == "counter"
    assert [
        s.value for s in fams["orchestra_bars_processed"].samples if s.name.endswith("_total")
    ] == [120.0]
    venues = {
        s.labels["venue"]: s.value
        for s in fams["orchestra_fills"].samples
        if s.name.endswith("_total")
    }
    assert venues["external"] > 0 and set(venues) == {"external", "internal"}
    assert any(
        s.name == "orchestra_order_errors_total" for s in fams["orchestra_order_errors"].samples
    )
    hist = fams["orchestra_bar_duration_seconds"]
    assert hist.type == "histogram"
    assert [s.value for s in hist.samples if s.name.endswith("_count")] == [120.0]


def test_webhooks_arrive_once_with_their_severity_across_restarts(
    market: Path, tmp_path: Path
) -> None:
    """Every event type reaches a real HTTP server exactly once with the right severity; a 429
    (retry_after honoured) and 500s are retried; a restart does not resend anything."""
    cfg = config_for(market)
    state = tmp_path / "s"
    with Webhook(script=[429, 500, 500]) as hook:
        for chunk in (150, None):  # stop mid-run, then resume in a new session
            session, feed = _open(cfg, market, state)
            sender = WebhookSender(state / "live.sqlite", hook.url, session.meta["run_id"])
            sender.start()
            session.monitor = Monitor(None, sender)
            session.run(_bars(session, feed, chunk))
            session.monitor.close(flush_s=20.0)
            session.close()
        with Store(state, readonly=True) as store:
            outbox = store.outbox()
    assert outbox and all(m["status"] == "sent" for m in outbox), {m["status"] for m in outbox}
    ids = [b["embeds"][0]["footer"]["text"].rsplit(" · ", 1)[1] for b in hook.received]
    assert sorted(ids) == sorted(m["id"] for m in outbox)  # each exactly once
    assert hook.attempts == len(outbox) + 3  # the 429 and the two 500s were retried
    by_kind: dict[str, set[str]] = {}
    for body in hook.received:
        sev, kind = body["embeds"][0]["footer"]["text"].split(" · ")[:2]
        by_kind.setdefault(kind, set()).add(sev)
        assert body["content"].startswith(f"[{sev}]")
    assert by_kind["promotion"] == {"INFO"} and by_kind["reallocation"] == {"INFO"}
    assert by_kind["warning"] == {"WARNING"} and by_kind["probation"] == {"WARNING"}
    assert by_kind["retirement"] == {"CRITICAL"} and by_kind["risk_breach"] == {"CRITICAL"}
    assert by_kind["daily_report"] == {"INFO"}
    days = sum(1 for m in outbox if m["kind"] == "daily_report")
    assert days == ReplayFeed(cfg, market).n_bars  # one report per UTC day end
    report = next(b for b in hook.received if "daily report" in b["content"])
    assert "Orchestrator Daily Report" in report["embeds"][0]["description"]
    fields = {f["name"] for f in report["embeds"][0]["fields"]}
    assert {"equity", "change", "drawdown", "effective_n"} <= fields


def test_an_unreachable_webhook_does_not_slow_the_loop(market: Path, tmp_path: Path) -> None:
    """A webhook URL nobody answers: messages stay pending (delivered after a restart with a
    working URL), the bar loop's time per bar barely moves, and closing waits a bounded time."""
    cfg = config_for(market, backtest={**churn_raw()["backtest"], "end": "2024-04-30"})
    dead = f"http://127.0.0.1:{_free_port()}/api/webhooks/1/x"
    base, _ = _open(cfg, market, tmp_path / "base", Monitor(None, None))  # messages, no sender
    base.run(_bars(base, ReplayFeed(cfg, market)))
    base.close()
    session, feed = _open(cfg, market, tmp_path / "dead")
    sender = WebhookSender(tmp_path / "dead" / "live.sqlite", dead, session.meta["run_id"])
    sender.start()
    session.monitor = Monitor(None, sender)
    session.run(_bars(session, feed))
    t = time.perf_counter()
    session.monitor.close(flush_s=1.0)
    closing = time.perf_counter() - t
    session.close()
    with_dead = float(np.median(session.bar_seconds))
    without = float(np.median(base.bar_seconds))
    print(f"median ms/bar: {1e3 * without:.1f} without webhook, {1e3 * with_dead:.1f} unreachable")
    assert with_dead < without + 0.02  # bounded: 20 ms per bar at most (measured ~1-2 ms)
    assert closing < 1.0 + 5.0 + 1.5  # flush window + one request timeout + join margin
    assert sender.failures > 0
    with Store(tmp_path / "dead", readonly=True) as store:
        pending = store.outbox("pending")
    assert pending  # nothing lost: still there for the next start


def test_daily_report_of_the_live_loop_equals_orch_bt_report_daily(
    market: Path, tmp_path: Path
) -> None:
    from orchestra.cli import bt

    cfg = config_for(market)
    session, feed = _open(cfg, market, tmp_path / "s", Monitor(None, None))
    session.run(_bars(session, feed))
    session.close()
    bt_result = run_backtest(cfg)
    bt_result.save(tmp_path / "bt")
    with Store(tmp_path / "s", readonly=True) as store:
        reports = [m for m in store.outbox() if m["kind"] == "daily_report"]
    assert all(m["status"] == "unsent" for m in reports)  # no webhook: recorded, not sent
    for m in reports[::37] + reports[-1:]:
        day = dt.datetime.fromtimestamp(m["ts"] / 1000, dt.UTC).date()
        assert m["text"] == format_daily_report(day_view_from_result(bt_result, day)), day
        res = CliRunner().invoke(bt.main, ["report", str(tmp_path / "bt"), "--daily", str(day)])
        assert res.exit_code == 0 and res.output.strip() == m["text"].strip()
    assert "Top PRC: " in reports[-1]["text"] and "(unallocated)" in reports[-1]["text"]
    # the report's risk figures are the risk monitor's (computed on the last days only)
    import polars as pl

    for m in reports[60::50]:
        day = dt.datetime.fromtimestamp(m["ts"] / 1000, dt.UTC).date()
        view = day_view_from_result(bt_result, day)
        ts = pl.lit(dt.datetime.fromtimestamp(m["ts"] / 1000, dt.UTC)).cast(
            pl.Datetime("ms", "UTC")
        )
        prc = bt_result.risk_contributions.filter(pl.col("timestamp") == ts)["prc"].to_list()
        assert prc and prc == [p.prc for p in view.pods], day
        risk = bt_result.portfolio_risk.filter(pl.col("timestamp") == ts)
        assert risk["effective_n"][0] == view.effective_n
        corr = risk["avg_correlation"][0]
        assert corr == view.avg_correlation or (np.isnan(corr) and np.isnan(view.avg_correlation))
    res = CliRunner().invoke(bt.main, ["report", str(tmp_path / "bt"), "--daily", "2030-01-01"])
    assert res.exit_code == 2 and "no completed UTC day 2030-01-01" in res.output
    # the same from the live state directory
    live = load_run(tmp_path / "s")
    last = dt.datetime.fromtimestamp(reports[-1]["ts"] / 1000, dt.UTC).date()
    assert format_daily_report(day_view_from_result(live, last)) == reports[-1]["text"]


def test_cli_serves_metrics_and_posts_alerts_without_leaking_the_webhook(
    market: Path, tmp_path: Path
) -> None:
    """`orch-live --paper ... --metrics-port N` with ORCHESTRA_DISCORD_WEBHOOK set: the alerts
    reach the server by the time the command returns, and the webhook URL (a secret) appears in
    no output and no file of the state directory."""
    import yaml

    from orchestra.cli import live

    raw = churn_raw()
    raw["data"]["path"] = str(market)
    cfg_file = tmp_path / "churn.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    state = tmp_path / "state"
    port = _free_port()
    with Webhook() as hook:
        res = CliRunner().invoke(
            live.main,
            [
                "--paper",
                str(cfg_file),
                "--replay",
                str(market),
                "--state",
                str(state),
                "--metrics-port",
                str(port),
                "--max-bars",
                "40",
            ],
            env={"ORCHESTRA_DISCORD_WEBHOOK": hook.url},
        )
        assert res.exit_code == 0, res.output
        assert f"127.0.0.1:{port}/metrics" in res.output
        with Store(state, readonly=True) as store:
            outbox = store.outbox()
        assert outbox and all(m["status"] == "sent" for m in outbox)
        assert len(hook.received) == len(outbox)
    secret = hook.url.split("/api/")[1].encode()
    assert secret.decode() not in res.output
    for f in state.rglob("*"):
        if f.is_file():
            assert secret not in f.read_bytes(), f


def test_alerts_trades_and_daily_reports_go_to_their_own_channels(
    market: Path, tmp_path: Path
) -> None:
    """ORCHESTRA_DISCORD_WEBHOOK_{ALERTS,TRADES,DAILY}: each kind of message reaches its own
    webhook (the plan's three channels); with only ORCHESTRA_DISCORD_WEBHOOK all reach it."""
    import yaml

    from orchestra.cli import live

    raw = churn_raw()
    raw["data"]["path"] = str(market)
    cfg_file = tmp_path / "churn.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))

    def kinds(hook: Webhook) -> set[str]:
        return {b["embeds"][0]["footer"]["text"].split(" · ")[1] for b in hook.received}

    with Webhook() as alerts, Webhook() as trades, Webhook() as daily:
        env = {
            "ORCHESTRA_DISCORD_WEBHOOK": "",
            "ORCHESTRA_DISCORD_WEBHOOK_ALERTS": alerts.url,
            "ORCHESTRA_DISCORD_WEBHOOK_TRADES": trades.url,
            "ORCHESTRA_DISCORD_WEBHOOK_DAILY": daily.url,
        }
        args = ["--paper", str(cfg_file), "--replay", str(market), "--max-bars", "60"]
        res = CliRunner().invoke(live.main, [*args, "--state", str(tmp_path / "a")], env=env)
        assert res.exit_code == 0, res.output
    assert kinds(daily) == {"daily_report"} and len(daily.received) >= 50
    assert kinds(trades) == {"trade_log"}
    assert "trade_log" not in kinds(alerts) and "daily_report" not in kinds(alerts)
    assert alerts.received  # lifecycle moves, reallocations, breaches of the churn config
    log = trades.received[0]["embeds"][0]["description"]
    assert ("BUY " in log or "SELL " in log) and " @ " in log and "fee" in log
    assert any(p["pod_id"] in log for p in raw["pods"])  # each pod's share
    with Webhook() as one:
        env = {"ORCHESTRA_DISCORD_WEBHOOK": one.url}
        res = CliRunner().invoke(live.main, [*args, "--state", str(tmp_path / "b")], env=env)
        assert res.exit_code == 0, res.output
    assert {"daily_report", "trade_log"} <= kinds(one)
    assert len(one.received) == len(alerts.received) + len(trades.received) + len(daily.received)
    with Store(tmp_path / "b", readonly=True) as store:
        assert all(m["status"] == "sent" for m in store.outbox())
