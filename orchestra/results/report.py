"""The HTML report (plotly; opens offline: one plotly.js copy beside the run folders).

Charts (SPEC §11), as far as the result has data for them: account equity, pod NAVs rebased to 1,
drawdowns, allocation history (stacked), PRC over time, diversification, a lifecycle Gantt (one
row per pod), net exposure per symbol, the pod correlation heatmap with its values, netting
savings, and tables of metrics (percentages where they are ratios) and events. Every chart has
axis titles with units.

Long runs are **thinned for display only** (:func:`thin`): a line of more than
``MAX_POINTS`` points keeps, per bucket, its first, lowest and highest points (so peaks and
troughs survive) — the run directory's data is never touched.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.io import to_html

from orchestra.results.result import OrchestratedResult

MAX_POINTS = 2000  # per line, for display
PCT_METRICS = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure",
               "rolling_volatility", "current_drawdown"}  # fmt: skip
TIME_AXIS = {"title": {"text": "date (UTC)"}}


def thin(x: list, y, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """``(x, y)`` with at most about ``max_points`` points: per bucket the first, lowest and
    highest points, in time order (display only)."""
    y = np.asarray(y, dtype=float)
    n = y.size
    if n <= max_points:
        return list(x), y.tolist()
    size = int(np.ceil(n / (max_points / 3)))
    keep = set()
    for lo in range(0, n, size):
        seg = y[lo : lo + size]
        keep.add(lo)
        if np.isfinite(seg).any():
            keep.add(lo + int(np.nanargmin(seg)))
            keep.add(lo + int(np.nanargmax(seg)))
    keep.add(n - 1)
    idx = sorted(keep)
    return [x[i] for i in idx], y[idx].tolist()


def _line(fig: go.Figure, x: list, y, name: str, **kw) -> None:
    tx, ty = thin(x, y)
    fig.add_scatter(x=tx, y=ty, name=name, **kw)


def _fig_html(fig: go.Figure, first: bool = False) -> str:
    fig.update_layout(
        height=380, margin={"l": 60, "r": 20, "t": 50, "b": 45}, template="plotly_white"
    )
    return to_html(fig, full_html=False, include_plotlyjs=False)


def plotly_script(report: Path, folder: Path | None = None) -> str:
    """The ``<script>`` that loads plotly.js for a report written to ``report``: one copy,
    ``plotly-<version>.min.js``, in ``folder`` — by default the folder that holds the run
    folders (``runs/``) — shared by every report there (5 MB once instead of in every report).
    The reports stay offline; a report moved elsewhere needs that file at the same relative
    place."""
    import os

    import plotly
    from plotly.offline import get_plotlyjs

    name = f"plotly-{plotly.__version__}.min.js"
    shared = (folder if folder is not None else report.parent.parent) / name
    if not shared.is_file():
        shared.parent.mkdir(parents=True, exist_ok=True)
        tmp = shared.with_suffix(".tmp")
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
        tmp.replace(shared)
    src = Path(os.path.relpath(shared.resolve(), report.parent.resolve())).as_posix()
    return f'<script src="{src}" charset="utf-8"></script>'


def _metrics_table(frame: pl.DataFrame) -> pl.DataFrame:
    """Metrics for reading: ratios as percentages, money with thousands separators."""
    out = {}
    for c in frame.columns:
        col = frame[c]
        if c in PCT_METRICS:
            out[c] = [f"{v:.1%}" for v in col.to_list()]
        elif c in ("fees", "netting_savings"):
            out[c] = [f"{v:,.2f}" for v in col.to_list()]
        elif c == "trade_count":
            out[c] = [f"{v:,.0f}" for v in col.to_list()]
        elif col.dtype == pl.Float64:
            out[c] = [f"{v:.2f}" for v in col.to_list()]
        else:
            out[c] = col.to_list()
    return pl.DataFrame(out)


def _table_html(frame: pl.DataFrame, floats: str = "{:.4g}") -> str:
    if frame.height == 0:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for r in frame.iter_rows():
        cells = "".join(
            f"<td>{floats.format(v) if isinstance(v, float) else html.escape(str(v))}</td>"
            for v in r
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def allocation_shares(result: OrchestratedResult) -> pl.DataFrame:
    """What was in force at each UTC day's last bar: each pod's equity and the unallocated cash
    as shares of the account's equity (they sum to 1; a pod below zero counts 0). The pods'
    *decided* fractions (``pod_equity.fraction``) can differ until the next execution moves the
    cash, and stacking them on the actual cash went above 100 %."""
    eq = result.equity.select("timestamp", "equity", "unallocated")
    wide = result.pod_equity.pivot(on="pod_id", index="timestamp", values="equity")
    pods = [c for c in wide.columns if c != "timestamp"]
    both = eq.join(wide, on="timestamp", how="left").sort("timestamp")
    daily = both.group_by_dynamic("timestamp", every="1d").agg(pl.all().last())
    total = pl.col("equity")
    return daily.select(
        "timestamp",
        *[(pl.col(p).clip(0, None) / total).fill_null(0.0).alias(p) for p in pods],
        (pl.col("unallocated").clip(0, None) / total).alias("(unallocated)"),
    )


def _pod_fraction_frame(result: OrchestratedResult) -> pl.DataFrame:
    """A pod's report: its decided fraction at each day's close (one series)."""
    pe = result.pod_equity.select("timestamp", "fraction").sort("timestamp")
    return pe.group_by_dynamic("timestamp", every="1d").agg(pl.col("fraction").last())


TOP_SYMBOLS = 6


def exposure_lines(expo: pl.DataFrame, top: int = TOP_SYMBOLS) -> pl.DataFrame:
    """The exposure chart's lines: the ``top`` symbols by mean |net weight| and, when there are
    more, one ``others (n)`` line with the rest's net weight summed (ten lines were unreadable)."""
    if expo["symbol"].n_unique() <= top + 1:
        return expo
    rank = (
        expo.group_by("symbol").agg(pl.col("weight").abs().mean()).sort("weight", descending=True)
    )
    keep = rank["symbol"].head(top).to_list()
    rest = rank.height - top
    others = (
        expo.filter(~pl.col("symbol").is_in(keep))
        .group_by("timestamp")
        .agg(pl.col("weight").sum())
        .with_columns(pl.lit(f"others ({rest})").alias("symbol"))
        .select("timestamp", "symbol", "weight")
        .sort("timestamp")
    )
    return pl.concat([expo.filter(pl.col("symbol").is_in(keep)), others])


def charts(result: OrchestratedResult) -> dict[str, go.Figure]:
    """The report's figures by id (tests check that each expected one is present)."""
    figs: dict[str, go.Figure] = {}
    eq = result.equity
    pe = result.pod_equity
    pods = pe["pod_id"].unique(maintain_order=True).to_list()
    ts = eq["timestamp"].to_list()

    currency = "quote currency"
    pod_view = result.summary.get("pod")
    f = go.Figure()
    if pod_view:  # the pod's capital: capital moves show as steps, its NAV is the performance
        _line(f, ts, eq["equity"].to_numpy(), f"{pod_view} equity")
        title = f"Pod {pod_view}: its capital (steps are capital moves; NAV below is performance)"
    else:
        _line(f, ts, eq["equity"].to_numpy(), "account equity")
        _line(f, ts, eq["unallocated"].to_numpy(), "unallocated cash", line={"dash": "dot"})
        title = "Account equity"
    f.update_layout(title=title, xaxis=TIME_AXIS, yaxis_title=f"equity ({currency})")
    figs["equity"] = f

    f = go.Figure()
    for pid in pods:
        sub = pe.filter(pl.col("pod_id") == pid)
        _line(f, sub["timestamp"].to_list(), sub["nav"].to_numpy(), pid)
    f.update_layout(
        title="Pod NAV, rebased to 1 (performance with capital moves removed)",
        xaxis=TIME_AXIS,
        yaxis_title="NAV (start = 1)",
    )
    figs["pod_nav"] = f

    f = go.Figure()
    _line(f, ts, (-eq["drawdown"]).to_numpy(), "account", fill="tozeroy")
    for pid in pods:
        nav = pe.filter(pl.col("pod_id") == pid)
        v = nav["nav"].to_numpy()
        peak = np.maximum.accumulate(v)
        dd = np.where(peak > 0, 1 - v / np.where(peak > 0, peak, 1.0), 0.0)
        _line(f, nav["timestamp"].to_list(), -dd, pid)
    f.update_layout(
        title="Drawdowns (account on equity, pods on NAV)",
        xaxis=TIME_AXIS,
        yaxis={"title": {"text": "drawdown from peak"}, "tickformat": ".0%"},
    )
    figs["drawdowns"] = f

    f = go.Figure()
    shares = allocation_shares(result) if not pod_view else _pod_fraction_frame(result)
    for col in shares.columns[1:]:
        f.add_scatter(
            x=shares["timestamp"].to_list(), y=shares[col].to_list(), name=col, stackgroup="alloc"
        )
    f.update_layout(
        title="Allocation in force (daily close): each pod's equity and the unallocated cash",
        xaxis=TIME_AXIS,
        yaxis={"title": {"text": "share of account equity"}, "tickformat": ".0%"},
    )
    figs["allocation"] = f

    rc = result.risk_contributions
    if rc.height:
        f = go.Figure()
        for pid in pods:
            sub = rc.filter(pl.col("pod_id") == pid)
            _line(f, sub["timestamp"].to_list(), sub["prc"].to_numpy(), pid)
        f.update_layout(
            title="Percentage risk contribution (PRC, daily)",
            xaxis=TIME_AXIS,
            yaxis={"title": {"text": "share of portfolio risk"}, "tickformat": ".0%"},
        )
        figs["prc"] = f

    pr = result.portfolio_risk
    if pr.height:
        f = go.Figure()
        f.add_scatter(
            x=pr["timestamp"].to_list(), y=pr["effective_n"].to_list(), name="effective N (1/ΣPRC²)"
        )
        f.add_scatter(
            x=pr["timestamp"].to_list(),
            y=pr["avg_correlation"].to_list(),
            name="average pod correlation",
            yaxis="y2",
        )
        n_max = max(2.0, float(np.nanmax(pr["effective_n"].to_numpy(), initial=1.0)))
        f.update_layout(
            title="Diversification: effective number of strategies and average pod correlation",
            xaxis=TIME_AXIS,
            yaxis={
                "title": {"text": "effective N (strategies)"},
                "range": [0, np.ceil(n_max) + 0.5],
                "dtick": 1,
            },
            yaxis2={
                "overlaying": "y",
                "side": "right",
                "range": [-1, 1],
                "tickvals": [-1, -0.5, 0, 0.5, 1],
                "title": {"text": "average correlation"},
            },
            legend={"orientation": "h", "y": -0.2},
        )
        figs["diversification"] = f

    f = go.Figure()
    colors = {
        "incubation": "#9e9e9e",
        "production": "#2e7d32",
        "warning": "#f9a825",
        "probation": "#ef6c00",
        "retired": "#c62828",
    }
    end = eq["timestamp"].max() if eq.height else None
    shown = set()
    for pid in pods:  # one row per pod: a bar per stretch of days in one state
        sub = pe.filter(pl.col("pod_id") == pid).select("timestamp", "state")
        runs = (
            sub.with_columns((pl.col("state") != pl.col("state").shift(1)).cum_sum().alias("run"))
            .group_by("run", maintain_order=True)
            .agg(pl.col("state").first(), pl.col("timestamp").first().alias("start"))
        )
        starts = runs["start"].to_list()
        stops = [*starts[1:], end]
        for state, a, b in zip(runs["state"].to_list(), starts, stops, strict=True):
            f.add_bar(
                base=[a],
                x=[(b - a).total_seconds() * 1000 if b is not None else 0],
                y=[pid],
                orientation="h",
                marker_color=colors.get(state, "#607d8b"),
                name=state,
                legendgroup=state,
                showlegend=state not in shown,
                hovertemplate=f"{pid}: {state}<br>%{{base|%Y-%m-%d}} → {b:%Y-%m-%d}<extra></extra>"
                if b is not None
                else None,
            )
            shown.add(state)
    f.update_layout(
        title="Lifecycle: state of each pod over time",
        barmode="overlay",
        xaxis={"type": "date", "title": {"text": "date (UTC)"}},
        yaxis={"title": {"text": "pod"}, "autorange": "reversed"},
    )
    figs["lifecycle"] = f

    expo = exposure_lines(result.exposures)
    if expo.height:
        f = go.Figure()
        for sym in expo["symbol"].unique(maintain_order=True).to_list():
            s = expo.filter(pl.col("symbol") == sym)
            _line(f, s["timestamp"].to_list(), s["weight"].to_numpy(), sym, line_shape="hv")
        f.update_layout(
            title=f"Net exposure per symbol (daily; the {TOP_SYMBOLS} largest, the rest summed)"
            if expo["symbol"].n_unique() > TOP_SYMBOLS
            else "Net exposure per symbol (daily)",
            xaxis=TIME_AXIS,
            yaxis={"title": {"text": "net weight of equity"}, "tickformat": ".0%"},
            legend={"orientation": "h", "y": -0.2},
        )
        figs["net_exposure"] = f

    navs = pe.pivot(on="pod_id", index="timestamp", values="nav").drop("timestamp")
    if navs.width >= 2 and navs.height > 2:
        v = navs.to_numpy()
        r = v[1:] / np.where(v[:-1] > 0, v[:-1], np.nan) - 1.0
        r = np.nan_to_num(r)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.corrcoef(r.T)
        f = go.Figure(
            go.Heatmap(
                z=np.nan_to_num(c).tolist(),
                x=navs.columns,
                y=navs.columns,
                zmin=-1,
                zmax=1,
                colorscale="RdBu",
                texttemplate="%{z:.2f}",
                colorbar={"title": {"text": "correlation"}},
            )
        )
        f.update_layout(
            title="Pod return correlation (bar returns of NAV, whole run)",
            xaxis_title="pod",
            yaxis_title="pod",
        )
        figs["correlation"] = f

    fills = result.fills
    f = go.Figure()
    if fills.height:
        cost = result.summary.get("config", {}).get("portfolio", {}).get("cost_bps", 0.0) / 1e4
        per_day = (
            fills.with_columns((pl.col("units").abs() * pl.col("price") * cost).alias("alone"))
            .group_by_dynamic("timestamp", every="1d")
            .agg(pl.col("alone").sum(), pl.col("fee").sum())
            .with_columns((pl.col("alone") - pl.col("fee")).clip(0, None).cum_sum().alias("saved"))
        )
        days = per_day["timestamp"].to_list()
        if ts and days and days[-1] < ts[-1]:  # the line runs to the end of the run
            days.append(ts[-1])
            saved = [*per_day["saved"].to_list(), per_day["saved"][-1]]
        else:
            saved = per_day["saved"].to_list()
        _line(f, days, saved, "cumulative savings", line_shape="hv")
    f.update_layout(
        title="Netting savings (fees not paid thanks to internal crossing): "
        f"{result.summary.get('netting_savings', 0):,.2f}",
        xaxis={**TIME_AXIS, "range": [ts[0], ts[-1]] if ts else None},
        yaxis_title="fees saved, cumulative (quote currency)",
    )
    figs["netting"] = f
    figs.update(return_charts(result))
    return figs


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def return_charts(result: OrchestratedResult) -> dict[str, go.Figure]:
    """The return analytics' charts: log-scale growth against the benchmark, monthly returns
    heatmap, rolling Sharpe and volatility, the daily return distribution."""
    from orchestra.results import analytics as an

    entity = result.summary.get("pod") or "account"
    figs: dict[str, go.Figure] = {}
    if not result.equity.height:
        return figs
    f = go.Figure()
    days, start = an.day_end_values(result, entity)
    _line(f, days["date"].to_list(), days["value"].to_numpy() / start, entity)
    if result.benchmark.height:
        b, _ = an.day_end_values(result, "benchmark")
        _line(f, b["date"].to_list(), b["value"].to_numpy(), str(result.benchmark["name"][0]),
              line={"dash": "dot"})  # fmt: skip
    f.update_layout(
        title="Growth of 1, log scale (the benchmark dotted)",
        xaxis=TIME_AXIS,
        yaxis={"title": {"text": "value (start = 1, log scale)"}, "type": "log"},
    )
    figs["growth_log"] = f

    m = an.monthly_returns(result, entity)
    if m.height:
        years = sorted(set(m["year"].to_list()))
        z = np.full((len(years), 12), np.nan)
        for y, mo, v in m.iter_rows():
            z[years.index(y), mo - 1] = v
        text = [[f"{v:+.1%}" if np.isfinite(v) else "" for v in row] for row in z]
        lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.1
        f = go.Figure(
            go.Heatmap(
                z=z, x=MONTHS, y=[str(y) for y in years], text=text, texttemplate="%{text}",
                colorscale="RdYlGn", zmid=0, zmin=-lim, zmax=lim,
                colorbar={"title": {"text": "return"}, "tickformat": ".0%"},
            )
        )  # fmt: skip
        f.update_layout(
            title="Monthly returns (compounded daily, UTC months)",
            xaxis_title="month",
            yaxis={"title": {"text": "year"}, "autorange": "reversed", "type": "category"},
        )
        figs["monthly"] = f

    roll = an.rolling(result, entity, window=90)
    f = go.Figure()
    _line(f, roll["date"].to_list(), roll["sharpe"].to_numpy(), "Sharpe (90 d)")
    _line(f, roll["date"].to_list(), roll["volatility"].to_numpy(), "volatility (90 d)",
          yaxis="y2")  # fmt: skip
    f.update_layout(
        title="Rolling 90-day Sharpe ratio and volatility (annualised)",
        xaxis=TIME_AXIS,
        yaxis={"title": {"text": "Sharpe ratio"}},
        yaxis2={
            "overlaying": "y",
            "side": "right",
            "title": {"text": "volatility"},
            "tickformat": ".0%",
            "rangemode": "tozero",
        },
        legend={"orientation": "h", "y": -0.2},
    )
    figs["rolling"] = f

    r = an.daily_returns(result, entity)["return"].to_numpy()
    st = an.return_stats(r)
    f = go.Figure(go.Histogram(x=r, nbinsx=80, name="daily returns"))
    for key, label, where in (("var_95_hist", "VaR 95 %", "top right"),
                              ("cvar_95", "CVaR 95 %", "top left")):  # fmt: skip
        if np.isfinite(st[key]):
            f.add_vline(x=st[key], line_dash="dash", annotation_text=label,
                        annotation_position=where)  # fmt: skip
    f.update_layout(
        title=f"Daily returns: skew {st['skew']:.2f}, excess kurtosis {st['kurtosis']:.2f}, "
        f"VaR 95 % {st['var_95_hist']:.2%}, CVaR 95 % {st['cvar_95']:.2%}",
        xaxis={"title": {"text": "daily return"}, "tickformat": ".1%"},
        yaxis_title="days",
        showlegend=False,
    )
    figs["distribution"] = f
    return figs


ANALYTICS_PCT = {"volatility", "var_95", "var_95_hist", "cvar_95", "best_day", "worst_day",
                 "win_days", "alpha", "tracking_error", "mean_daily"}  # fmt: skip


def analytics_table(result: OrchestratedResult) -> pl.DataFrame:
    """The analytics frame for reading: percentages where they are ratios, 2 decimals else."""
    frame = result.analytics.drop("days", "mean_daily")
    if result.summary.get("pod"):
        keep = {result.summary["pod"], "benchmark"}
        frame = frame.filter(pl.col("entity").is_in(keep))
    out: dict[str, list] = {}
    for c in frame.columns:
        vals = frame[c].to_list()
        if c == "entity":
            out[c] = vals
        elif c in ANALYTICS_PCT:
            out[c] = [f"{v:.2%}" if v is not None and np.isfinite(v) else "-" for v in vals]
        else:
            out[c] = [f"{v:.2f}" if v is not None and np.isfinite(v) else "-" for v in vals]
    return pl.DataFrame(out)


def _returns_html(result: OrchestratedResult) -> str:
    """The return analytics section: figures against the benchmark, yearly returns and the
    worst drawdowns (the charts follow with the others)."""
    from orchestra.results import analytics as an

    if not result.equity.height:
        return ""
    entity = result.summary.get("pod") or "account"
    bench = result.benchmark["name"][0] if result.benchmark.height else "none"
    years = an.yearly_returns(result, entity)
    years = years.with_columns(
        [pl.col(c).map_elements(lambda v: f"{v:+.1%}", return_dtype=pl.String)
         for c in years.columns if c != "year"]
    )  # fmt: skip
    dd = an.drawdowns(result, entity, top=5).with_columns(
        pl.col("depth").map_elements(lambda v: f"{v:.1%}", return_dtype=pl.String),
        pl.col("recovery").cast(pl.String).fill_null("not yet"),
    )
    return (
        f"<h2>Returns</h2><p>Daily returns at each UTC day's close, 365 a year; benchmark: "
        f"<b>{html.escape(str(bench))}</b> (<code>backtest.benchmark</code>). Definitions: "
        "docs/results.md (they equal QuantStats').</p>"
        f"{_table_html(analytics_table(result))}"
        f"<h3>Calendar years</h3>{_table_html(years)}"
        f"<h3>Worst drawdowns ({html.escape(entity)})</h3>{_table_html(dd)}"
    )


def pod_section(result: OrchestratedResult) -> pl.DataFrame:
    """One row per pod: what it trades, where it ended, how it did and what it went through."""
    cfg = result.summary.get("config", {})
    pods_cfg = {p["pod_id"]: p for p in cfg.get("pods", [])}
    last = result.pod_equity.group_by("pod_id", maintain_order=True).last()
    equity = float(result.equity["equity"][-1]) if result.equity.height else 0.0
    rows = []
    for r in last.iter_rows(named=True):
        pid = r["pod_id"]
        m = result.pod_metrics(pid)
        ev = result.lifecycle_events.filter(pl.col("pod_id") == pid)
        pc = pods_cfg.get(pid, {})
        rows.append(
            {
                "pod": pid,
                "strategy": str(pc.get("strategy", "")),
                "symbols": ", ".join(pc.get("symbols", [])),
                "state at end": r["state"],
                "share of equity": f"{r['equity'] / equity:.1%}" if equity else "-",
                "fraction (decided)": f"{r['fraction']:.1%}",
                "return (NAV)": f"{m.get('total_return', 0.0):.1%}",
                "Sharpe": f"{m.get('sharpe', 0.0):.2f}",
                "max DD": f"{m.get('max_drawdown', 0.0):.1%}",
                "trades": f"{m.get('trade_count', 0.0):,.0f}",
                "fees": f"{m.get('fees', 0.0):,.2f}",
                "netting savings": f"{m.get('netting_savings', 0.0):,.2f}",
                "lifecycle moves": str(ev.height),
            }
        )
    frame = pl.DataFrame(rows)
    if result.summary.get("pod"):  # a pod's own report: its share of itself says nothing
        frame = frame.drop("share of equity")
    return frame


def _cash_html(cash: dict | None) -> str:
    """A line on how long every pod was retired or unfunded (a warning when it is the end)."""
    if not cash or not cash.get("days"):
        return ""
    from orchestra.results.summary import _cash_line

    css = ' class="warn"' if cash.get("since") else ""
    return (
        f"<p{css}>Time in cash (every pod retired or unfunded): {html.escape(_cash_line(cash))}</p>"
    )


def _trades_html(result: OrchestratedResult) -> str:
    """Round trips per pod and symbol (``trades.parquet``): count, win rate, expectancy, P&L,
    average holding time, fees, funding."""
    from orchestra.results.trades import trade_summary

    if not result.trades.height:
        return ""
    table = trade_summary(result.trades)
    shown = table.with_columns(
        pl.col("win_rate").map_elements(lambda v: f"{v:.0%}", return_dtype=pl.String),
        *[
            pl.col(c).map_elements(lambda v: f"{v:,.2f}", return_dtype=pl.String)
            for c in ("expectancy", "pnl", "fees", "funding")
        ],
        pl.col("avg_holding_days").map_elements(lambda v: f"{v:.1f}", return_dtype=pl.String),
    )
    still = int(result.trades["open"].sum())
    return (
        "<h2>Trades</h2><p>Round trips per pod and symbol, from each pod's attributed fills "
        "(P&amp;L net of its fees and funding; "
        f"{still} trip(s) still open, marked at the last close). Every trip: trades.parquet.</p>"
        f"{_table_html(shown)}"
    )


def collapse_alerts(alerts: pl.DataFrame) -> pl.DataFrame:
    """One row per (alert type, severity, pod): how many, first and last time, the first
    message — 23 near-identical risk-concentration alerts read as one line."""
    if not alerts.height:
        return alerts
    return (
        alerts.sort("timestamp")
        .group_by("alert_type", "severity", "pod_id", maintain_order=True)
        .agg(
            pl.len().alias("count"),
            pl.col("timestamp").first().alias("first"),
            pl.col("timestamp").last().alias("last"),
            pl.col("message").first().alias("first message"),
        )
        .sort("first")
    )


def write_html(result: OrchestratedResult, path: str | Path, title: str | None = None) -> Path:
    """Write the report to ``path`` and return it."""
    s = result.summary
    title = title or f"orchestra report — {s.get('config_hash', '')[:8]}"
    parts = []
    for i, (fid, fig) in enumerate(charts(result).items()):
        parts.append(f'<section id="chart-{fid}">{_fig_html(fig, first=i == 0)}</section>')
    metrics = result.metrics
    pods_html = _table_html(pod_section(result))
    hint = (
        "<p>One pod's own report: <code>orch-bt report RUN --html --pod POD_ID</code> "
        "(report-POD_ID.html).</p>"
        if not s.get("pod")
        else ""
    )
    out = Path(path)
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
{plotly_script(out)}
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 6px;text-align:right}}th{{background:#f4f4f4}}.warn{{color:#a60}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Data: <b>{html.escape(str(s.get("data_source", "?")))}</b> · range {html.escape(str(s.get("data_range", {}).get("first_bar")))} →
{html.escape(str(s.get("data_range", {}).get("last_bar")))} · config hash <code>{html.escape(str(s.get("config_hash", "")))}</code> · orchestra {html.escape(str(s.get("version", "")))}</p>
<p class="warn">Execution: {html.escape(str(s.get("execution_note", "")))}</p>
{_cash_html(s.get("time_in_cash"))}
<h2>Metrics</h2>{_table_html(_metrics_table(metrics))}
{_returns_html(result)}
<h2>Pods</h2>{pods_html}
{_trades_html(result)}
{hint}
{"".join(parts)}
<h2>Lifecycle events</h2>{_table_html(result.lifecycle_events)}
<h2>Alerts</h2><p>Alerts of one kind about one pod collapsed with a count (every alert: alerts.parquet).</p>{_table_html(collapse_alerts(result.alerts))}
<h2>Last allocations</h2>{_table_html(result.allocations.tail(3 * max(1, metrics.height - 1)))}
</body></html>"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    return out


COMPARE_METRICS = ["total_return", "cagr", "volatility", "sharpe", "max_drawdown", "calmar"]


def compare_table(results: dict[str, OrchestratedResult]) -> pl.DataFrame:
    """One row per run: its data, window and account metrics, formatted for reading."""
    rows = []
    for label, res in results.items():
        m = res.metrics.filter(pl.col("entity") == "account").row(0, named=True)
        s = res.summary
        row = {
            "run": label,
            "data": str(s.get("data_source", "?")),
            "window": f"{str(s.get('data_range', {}).get('first_bar'))[:10]} → "
            f"{str(s.get('data_range', {}).get('last_bar'))[:10]}",
            "final equity": f"{s.get('final_equity', float('nan')):,.0f}",
        }
        for k in COMPARE_METRICS:
            v = m[k]
            row[k] = f"{v:.1%}" if k in PCT_METRICS else f"{v:.2f}"
        row["fees"] = f"{m['fees']:,.0f}"
        row["pods"] = str(res.metrics.height - 1)
        rows.append(row)
    return pl.DataFrame(rows)


def write_compare_html(results: dict[str, OrchestratedResult], path: str | Path) -> Path:
    """Several runs side by side: equity rebased to 1, drawdowns, and the metrics table."""
    f = go.Figure()
    g = go.Figure()
    for label, res in results.items():
        eq = res.equity
        ts = eq["timestamp"].to_list()
        start = float(res.summary.get("capital") or eq["equity"][0])
        _line(f, ts, eq["equity"].to_numpy() / start, label)
        _line(g, ts, (-eq["drawdown"]).to_numpy(), label)
    f.update_layout(
        title="Account equity, rebased to 1", xaxis=TIME_AXIS, yaxis_title="equity (start = 1)"
    )
    g.update_layout(
        title="Account drawdown",
        xaxis=TIME_AXIS,
        yaxis={"title": {"text": "drawdown from peak"}, "tickformat": ".0%"},
    )
    parts = [_fig_html(f, first=True), _fig_html(g, first=False)]
    out = Path(path)
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>orchestra — comparison</title>
{plotly_script(out, out.parent)}
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 6px;text-align:right}}th{{background:#f4f4f4}}</style></head><body>
<h1>orchestra — {len(results)} runs compared</h1>
<h2>Account metrics</h2>{_table_html(compare_table(results))}
{"".join(f"<section>{p}</section>" for p in parts)}
</body></html>"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    return out
