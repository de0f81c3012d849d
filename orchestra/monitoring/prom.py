"""Prometheus metrics of the live loop (SPEC §14), served by prometheus-client.

Names follow Prometheus conventions: the ``orchestra_`` prefix, base units (seconds, ratios as
fractions, equity in the account's quote currency), ``_total`` for counters, and only bounded
labels (``pod_id``, ``strategy``, ``state``, ``venue``, ``version``, ``config_hash``). Updated after
each committed bar; the risk figures (PRC, effective N, correlation, rolling Sharpe) at each UTC
day end, as the risk monitor computes them.

==========================================  =====  ===========================================
metric                                      type   meaning
==========================================  =====  ===========================================
orchestra_build_info{version,config_hash}   gauge  1
orchestra_pod_equity{pod_id,strategy}       gauge  pod equity (quote currency)
orchestra_pod_allocation_fraction{pod_id}   gauge  fraction decided (allocator / lifecycle)
orchestra_pod_capital_share{pod_id}         gauge  pod equity / account equity (in force)
orchestra_pod_rolling_sharpe{pod_id}        gauge  Sharpe over retirement.rolling_sharpe_window
orchestra_pod_drawdown{pod_id}              gauge  NAV below its peak (fraction)
orchestra_pod_lifecycle_state{pod_id,state} gauge  1 for the pod's current state, else 0
orchestra_pod_risk_contribution{pod_id}     gauge  percentage risk contribution (fraction)
orchestra_portfolio_equity                  gauge  account equity
orchestra_portfolio_unallocated             gauge  cash not assigned to a pod
orchestra_portfolio_gross_leverage          gauge  Σ|positions| / equity
orchestra_portfolio_drawdown                gauge  equity below its peak (fraction)
orchestra_portfolio_effective_n             gauge  1 / Σ PRC²
orchestra_portfolio_avg_correlation         gauge  mean pairwise pod correlation
orchestra_trading_halted                    gauge  1 when flattened for good (drawdown/bust)
orchestra_last_bar_timestamp_seconds        gauge  open time of the last committed bar
orchestra_bar_duration_seconds              hist.  wall time per bar (inputs, step, commit)
orchestra_bars_processed_total              count  bars committed by this process
orchestra_fills_total{venue}                count  pod fills (external / internal)
orchestra_order_errors_total                count  orders the broker could not execute
orchestra_notifications_pending             gauge  outbox messages not yet delivered
==========================================  =====  ===========================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from orchestra.kernels.state import EXTERNAL, STATE_NAMES


class LiveMetrics:
    """The live loop's metrics in their own registry (several runs in one process stay apart)."""

    def __init__(self, config, pod_ids: list[str], version: str):
        self.registry = r = CollectorRegistry()
        self.pod_ids = pod_ids
        self.strategies = [p.strategy for p in config.pods]
        Gauge(
            "orchestra_build_info",
            "orchestra version and config hash",
            ["version", "config_hash"],
            registry=r,
        ).labels(version, config.config_hash[:12]).set(1)
        pod = ["pod_id"]
        self.pod_equity = Gauge(
            "orchestra_pod_equity",
            "Pod equity (quote currency)",
            ["pod_id", "strategy"],
            registry=r,
        )
        self.fraction = Gauge(
            "orchestra_pod_allocation_fraction",
            "Pod fraction decided by the allocator / lifecycle (its cash moves at the next "
            "execution)",
            pod,
            registry=r,
        )
        self.share = Gauge(
            "orchestra_pod_capital_share",
            "Pod equity / account equity at the last close (the slice in force)",
            pod,
            registry=r,
        )
        self.rolling_sharpe = Gauge(
            "orchestra_pod_rolling_sharpe", "Pod rolling Sharpe ratio", pod, registry=r
        )
        self.pod_dd = Gauge(
            "orchestra_pod_drawdown", "Pod NAV drawdown (fraction)", pod, registry=r
        )
        self.state = Gauge(
            "orchestra_pod_lifecycle_state",
            "Pod lifecycle state (1 = current)",
            ["pod_id", "state"],
            registry=r,
        )
        self.prc = Gauge(
            "orchestra_pod_risk_contribution", "Pod percentage risk contribution", pod, registry=r
        )
        self.equity = Gauge("orchestra_portfolio_equity", "Account equity", registry=r)
        self.unallocated = Gauge("orchestra_portfolio_unallocated", "Unallocated cash", registry=r)
        self.gross = Gauge("orchestra_portfolio_gross_leverage", "Gross leverage", registry=r)
        self.dd = Gauge("orchestra_portfolio_drawdown", "Account drawdown (fraction)", registry=r)
        self.eff_n = Gauge(
            "orchestra_portfolio_effective_n", "Effective number of strategies", registry=r
        )
        self.avg_corr = Gauge(
            "orchestra_portfolio_avg_correlation", "Average pod correlation", registry=r
        )
        self.halted = Gauge("orchestra_trading_halted", "1 when trading stopped", registry=r)
        self.nav_gap = Gauge(
            "orchestra_pod_live_model_gap",
            "Live NAV / model NAV - 1 (the pod on the exchange's fills against the model's)",
            ["pod_id"],
            registry=r,
        )
        self.slippage = Gauge(
            "orchestra_symbol_slippage_bps",
            "The last fill's price against the model's, bps (positive: worse)",
            ["symbol"],
            registry=r,
        )
        self.margin_ratio = Gauge(
            "orchestra_margin_ratio",
            "Perpetuals: maintenance margin / margin balance on the exchange (1 = liquidation)",
            registry=r,
        )
        self.liquidation = Gauge(
            "orchestra_liquidation_price",
            "Perpetuals: the exchange's liquidation price of the position",
            ["symbol"],
            registry=r,
        )
        self.fee_gap = Gauge(
            "orchestra_symbol_fee_gap_bps",
            "The last fill's fee per notional above the model's, bps",
            ["symbol"],
            registry=r,
        )
        self.last_bar = Gauge(
            "orchestra_last_bar_timestamp_seconds", "Open time of the last bar", registry=r
        )
        self.duration = Histogram(
            "orchestra_bar_duration_seconds",
            "Wall time per bar",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.bars = Counter("orchestra_bars_processed", "Bars committed", registry=r)
        self.fills = Counter("orchestra_fills", "Pod fills", ["venue"], registry=r)
        self.order_errors = Counter("orchestra_order_errors", "Order errors", registry=r)
        self.pending = Gauge(
            "orchestra_notifications_pending", "Outbox messages not yet delivered", registry=r
        )
        for venue in ("external", "internal"):
            self.fills.labels(venue)
        self.order_errors.inc(0)
        self.server: Any = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``addr:port`` (a daemon thread)."""
        self.server, _ = start_http_server(port, addr=addr, registry=self.registry)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def update(
        self,
        engine,
        view=None,
        fills=None,
        seconds: float | None = None,
        bars: int = 0,
        order_errors: int = 0,
        pending: int = 0,
        gap=None,
        margin: dict | None = None,
    ) -> None:
        """After a committed step: the engine's last bar (and the day's view at a day end)."""
        st = engine.state
        t = engine.next_bar - 1
        out = engine.rows(t, t + 1)
        for p, pid in enumerate(self.pod_ids):
            self.pod_equity.labels(pid, self.strategies[p]).set(float(out["pod_equity"][0, p]))
            self.fraction.labels(pid).set(float(st.pod_fraction[p]))
            total = float(out["equity"][0])
            held = float(out["pod_equity"][0, p])
            self.share.labels(pid).set(held / total if total > 0 else 0.0)
            peak = float(st.pod_nav_peak[p])
            self.pod_dd.labels(pid).set(1.0 - float(st.pod_nav[p]) / peak if peak > 0 else 0.0)
            for s, name in enumerate(STATE_NAMES):
                self.state.labels(pid, name).set(1.0 if int(st.pod_state[p]) == s else 0.0)
        eq = float(out["equity"][0])
        self.equity.set(eq)
        self.unallocated.set(float(out["unallocated"][0]))
        g = float(out["gross_leverage"][0])
        self.gross.set(g if np.isfinite(g) else 0.0)
        peak = float(st.equity_peak[0])
        self.dd.set(1.0 - eq / peak if peak > 0 else 0.0)
        self.halted.set(1.0 if int(st.halted[0]) else 0.0)
        self.last_bar.set(engine.timestamp(t) / 1000.0)
        if view is not None:
            for row in view.pods:
                self.rolling_sharpe.labels(row.pod_id).set(row.rolling_sharpe)
                self.prc.labels(row.pod_id).set(row.prc)
            self.eff_n.set(view.effective_n)
            self.avg_corr.set(view.avg_correlation)
        if fills is not None and fills["venue"].size:
            ext = int(np.count_nonzero(fills["venue"] == EXTERNAL))
            self.fills.labels("external").inc(ext)
            self.fills.labels("internal").inc(int(fills["venue"].size) - ext)
        if seconds is not None:
            self.duration.observe(seconds)
        if bars:
            self.bars.inc(bars)
        if order_errors:
            self.order_errors.inc(order_errors)
        self.pending.set(pending)
        if margin:  # perpetuals
            self.margin_ratio.set(float(margin["ratio"]))
            for sym, price in margin.get("liquidation_price", {}).items():
                self.liquidation.labels(sym).set(float(price))
        if gap is not None:  # a broker fills (live, or paper with slippage): the live–model gap
            for p, pid in enumerate(self.pod_ids):
                self.nav_gap.labels(pid).set(float(gap.nav_gap[p]))
            for sym, bps in gap.slippage_bps.items():
                self.slippage.labels(sym).set(bps)
            for sym, bps in gap.fee_bps.items():
                self.fee_gap.labels(sym).set(bps)
