"""The daily report (SPEC §14, the seed's format), from a live engine or from a saved run.

One function, :func:`day_view`, computes a UTC day's figures from day-end arrays; the live loop
feeds it the engine's output rows (:func:`day_view_from_engine`), ``orch-bt report RUN --daily
DATE`` the saved frames (:func:`day_view_from_result`), so a backtest shows exactly what the live
loop would have sent that day (tested). Only data up to the day's close is used.

Figures: equity at the day's last bar and its change against the previous day end; gross
leverage; effective number of strategies ``1/Σ PRC²``; per pod its state, allocation (share of
account equity), P&L since the start (NAV − 1), Sharpe of its day-end NAV returns since the start;
the unallocated share; the portfolio drawdown against ``max_portfolio_drawdown``; the average pod
correlation and the largest risk contribution (Ledoit–Wolf over ``correlation.lookback``, as the
risk monitor computes them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from orchestra.kernels.state import STATE_NAMES
from orchestra.results.summary import STATE_SHORT
from orchestra.timeframes import DAY_MS, DAYS_PER_YEAR, period_days, timeframe_ms


@dataclass(frozen=True)
class PodRow:
    pod_id: str
    strategy: str
    state: str
    alloc: float  # share of account equity
    fraction: float  # the fraction the allocator / lifecycle set
    pnl: float  # NAV - 1 since the start
    sharpe: float  # annualised, day-end NAV returns since the start
    rolling_sharpe: float  # over retirement.rolling_sharpe_window days
    drawdown: float  # NAV below its running peak (day ends)
    prc: float  # percentage risk contribution (0 without enough history)


@dataclass(frozen=True)
class DayView:
    day: dt.date
    timestamp: int  # open of the day's last bar (ms)
    equity: float
    change: float  # against the previous day end (the starting capital on the first day)
    gross_leverage: float
    unallocated: float  # share of equity
    drawdown: float
    drawdown_limit: float
    effective_n: float
    avg_correlation: float
    pods: list[PodRow] = field(default_factory=list)
    alerts: list = field(default_factory=list)  # the risk monitor's alerts of the day (RiskAlert)
    live_gap: dict[str, float] | None = None  # live NAV / model NAV - 1 per pod (live runs)

    @property
    def top_prc(self) -> PodRow | None:
        live = [p for p in self.pods if p.prc > 0]
        return max(live, key=lambda p: p.prc) if live else None


def day_view(
    config,
    pod_ids: list[str],
    timestamps: np.ndarray,  # (D,) day-end bars, up to and including the day reported
    equity: np.ndarray,  # (D,)
    unallocated: np.ndarray,  # (D,)
    gross: np.ndarray,  # (D,)
    drawdown: np.ndarray,  # (D,) account drawdown at those bars (running peak over every bar)
    pod_equity: np.ndarray,  # (D, P)
    pod_nav: np.ndarray,  # (D, P)
    pod_fraction: np.ndarray,  # (D, P)
    pod_state: np.ndarray,  # (D, P) int
) -> DayView:
    """The figures of the last day in the arrays (see the module docstring)."""
    from orchestra.results.metrics import sharpe
    from orchestra.risk import daily_monitor
    from orchestra.timeframes import days_to_periods

    o = config.orchestrator
    period = period_days(config.clock_timeframe)
    per_year = DAYS_PER_YEAR / period
    lookback = days_to_periods(o.correlation.lookback, period)
    min_hist = days_to_periods(o.min_history, period)
    tail = max(lookback, min_hist) + 3  # enough for the last day's window and its predecessor
    snaps, alerts = daily_monitor(
        timestamps[-tail:],
        pod_nav[-tail:],
        pod_fraction[-tail:],
        pod_ids,
        o.correlation.lookback,
        o.correlation.stress_threshold,
        o.risk.max_single_pod_risk_pct,
        o.min_history,
        period,
        last_days=2,
        min_effective_n=o.risk.min_effective_n,
        states=pod_state[-tail:],
    )
    last = snaps[-1] if snaps and snaps[-1].timestamp == int(timestamps[-1]) else None
    prc = last.prc if last is not None else np.zeros(len(pod_ids))
    eq = float(equity[-1])
    prev = float(equity[-2]) if equity.size > 1 else float(config.backtest.capital)
    window = days_to_periods(o.retirement.rolling_sharpe_window, period)
    pods = []
    for p, pid in enumerate(pod_ids):
        navs = np.concatenate([[1.0], pod_nav[:, p]])
        rets = navs[1:] / np.where(navs[:-1] > 0, navs[:-1], 1.0) - 1.0
        peak = np.maximum.accumulate(navs)
        pods.append(
            PodRow(
                pod_id=pid,
                strategy=config.pods[p].strategy,
                state=STATE_NAMES[int(pod_state[-1, p])],
                alloc=float(pod_equity[-1, p]) / eq if eq > 0 else 0.0,
                fraction=float(pod_fraction[-1, p]),
                pnl=float(pod_nav[-1, p]) - 1.0,
                sharpe=sharpe(rets, per_year),
                rolling_sharpe=sharpe(rets[-window:], per_year),
                drawdown=float(1.0 - navs[-1] / peak[-1]) if peak[-1] > 0 else 0.0,
                prc=float(prc[p]),
            )
        )
    ts = int(timestamps[-1])
    return DayView(
        day=dt.datetime.fromtimestamp(ts / 1000, dt.UTC).date(),
        timestamp=ts,
        equity=eq,
        change=eq / prev - 1.0 if prev > 0 else 0.0,
        gross_leverage=float(gross[-1]),
        unallocated=float(unallocated[-1]) / eq if eq > 0 else 0.0,
        drawdown=float(drawdown[-1]),
        drawdown_limit=float(o.risk.max_portfolio_drawdown),
        effective_n=last.effective_n if last is not None else 0.0,
        avg_correlation=last.avg_correlation if last is not None else 0.0,
        pods=pods,
        alerts=[a for a in alerts if a.timestamp == ts],
    )


def day_view_from_engine(engine, t: int) -> DayView:
    """The day ending at bar ``t`` (a day-end bar) of a running engine (its day log and
    window: :meth:`~orchestra.engine.core.Engine.day_rows`)."""
    d = engine.day_rows(t)
    return day_view(
        engine.prepared.config,
        engine.prepared.pod_ids,
        d["timestamp"],
        d["equity"],
        d["unallocated"],
        d["gross_leverage"],
        d["drawdown"],
        d["pod_equity"],
        d["pod_nav"],
        d["pod_fraction"],
        d["pod_state"],
    )


def day_view_from_result(result, day: dt.date) -> DayView:
    """The UTC day ``day`` of a saved run (raises ``ValueError`` when the run has no such day)."""
    from orchestra.config import parse_config

    cfg = parse_config(result.summary["config"], source="summary.json")
    step = timeframe_ms(cfg.clock_timeframe)
    eq = result.equity
    ts = eq["timestamp"].dt.epoch("ms").to_numpy()
    day_end = ((ts + step) // DAY_MS) > (ts // DAY_MS)
    upto = ts < (day - dt.date(1970, 1, 1)).days * DAY_MS + DAY_MS
    rows = np.flatnonzero(day_end & upto)
    if rows.size == 0 or dt.datetime.fromtimestamp(ts[rows[-1]] / 1000, dt.UTC).date() != day:
        first = dt.datetime.fromtimestamp(ts[0] / 1000, dt.UTC).date() if ts.size else None
        last = dt.datetime.fromtimestamp(ts[-1] / 1000, dt.UTC).date() if ts.size else None
        raise ValueError(f"no completed UTC day {day} in this run (it covers {first} → {last})")
    pod_ids = result.metrics["entity"].to_list()[1:]
    P = len(pod_ids)
    pe = result.pod_equity
    T = eq.height

    def per_pod(col: str) -> np.ndarray:
        return pe[col].to_numpy().reshape(T, P)[rows]

    index = {name: i for i, name in enumerate(STATE_NAMES)}
    states = np.array([index[s] for s in pe["state"].to_list()], dtype=np.int64).reshape(T, P)
    return day_view(
        cfg,
        pod_ids,
        ts[rows],
        eq["equity"].to_numpy()[rows],
        eq["unallocated"].to_numpy()[rows],
        eq["gross_leverage"].to_numpy()[rows],
        eq["drawdown"].to_numpy()[rows],
        per_pod("equity"),
        per_pod("nav"),
        per_pod("fraction"),
        states[rows],
    )


def _pct(x: float, signed: bool = False) -> str:
    if abs(x) < 5e-7:
        x = 0.0
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def format_daily_report(view: DayView) -> str:
    """The seed's daily report as plain text (monospace)."""
    rows = [("Pod", "State", "Alloc", "PnL", "Sharpe")]
    for p in view.pods:
        rows.append(
            (
                p.pod_id,
                STATE_SHORT.get(p.state, p.state),
                _pct(p.alloc),
                _pct(p.pnl, signed=True),
                f"{p.sharpe:.2f}",
            )
        )
    rows.append(("(unallocated)", "-", _pct(view.unallocated), "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def line(left: str, mid: str, right: str) -> str:
        return "  " + left + mid.join("─" * (w + 2) for w in widths) + right

    def cells(r: tuple[str, ...]) -> str:
        parts = [
            f" {c.ljust(w)} " if i < 2 else f" {c.rjust(w)} "
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  │" + "│".join(parts) + "│"

    table = [line("┌", "┬", "┐"), cells(rows[0]), line("├", "┼", "┤")]
    table += [cells(r) for r in rows[1:]]
    table.append(line("└", "┴", "┘"))
    top = view.top_prc
    limit = f"{view.drawdown_limit:.1%} limit" if view.drawdown_limit > 0 else "no limit"
    lines = [
        f"📊 Orchestrator Daily Report ({view.day.isoformat()})",
        "",
        "Portfolio:",
        f"  Equity: ${view.equity:,.0f}  ({_pct(view.change, signed=True)})",
        f"  Gross Leverage: {view.gross_leverage:.1f}x"
        if np.isfinite(view.gross_leverage)
        else "  Gross Leverage: n/a",
        f"  Effective Strategies: {view.effective_n:.1f}",
        "",
        "Pod Performance:",
        *table,
        "",
        "Risk:",
        f"  Portfolio DD: {_pct(view.drawdown)} / {limit}",
        "  Avg Correlation: "
        + (f"{view.avg_correlation:.2f}" if np.isfinite(view.avg_correlation) else "n/a"),
        f"  Top PRC: {top.pod_id} ({top.prc:.1%})" if top else "  Top PRC: -",
    ]
    if view.live_gap is not None:
        gaps = ", ".join(f"{pid} {g:+.2%}" for pid, g in view.live_gap.items())
        lines.append(f"  Live vs model NAV: {gaps or '-'}")
    return "\n".join(lines)
