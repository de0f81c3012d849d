"""The self-contained HTML report (plotly; opens offline: plotly.js is embedded).

Charts (SPEC §11), as far as the result has data for them: account and pod equity, drawdowns,
allocation history (stacked), PRC over time, lifecycle timeline, net exposure per symbol, pod
correlation heatmap, netting savings, and tables of metrics and events.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.io import to_html

from orchestra.results.result import OrchestratedResult


def _fig_html(fig: go.Figure, first: bool) -> str:
    fig.update_layout(
        height=380, margin={"l": 50, "r": 20, "t": 50, "b": 40}, template="plotly_white"
    )
    return to_html(fig, full_html=False, include_plotlyjs=True if first else False)


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


def charts(result: OrchestratedResult) -> dict[str, go.Figure]:
    """The report's figures by id (tests check that each expected one is present)."""
    figs: dict[str, go.Figure] = {}
    eq = result.equity
    pe = result.pod_equity
    pods = pe["pod_id"].unique(maintain_order=True).to_list()
    ts = eq["timestamp"].to_list()

    f = go.Figure()
    f.add_scatter(x=ts, y=eq["equity"].to_list(), name="account")
    for pid in pods:
        sub = pe.filter(pl.col("pod_id") == pid)
        f.add_scatter(x=sub["timestamp"].to_list(), y=sub["equity"].to_list(), name=pid)
    f.update_layout(title="Equity: account and pods")
    figs["equity"] = f

    f = go.Figure()
    f.add_scatter(x=ts, y=(-eq["drawdown"]).to_list(), name="account", fill="tozeroy")
    for pid in pods:
        nav = pe.filter(pl.col("pod_id") == pid)
        v = nav["nav"].to_numpy()
        dd = 1 - v / np.maximum.accumulate(v)
        f.add_scatter(x=nav["timestamp"].to_list(), y=(-dd).tolist(), name=pid)
    f.update_layout(title="Drawdowns (pods on NAV, transfers removed)", yaxis_tickformat=".0%")
    figs["drawdowns"] = f

    f = go.Figure()
    daily = pe.group_by_dynamic("timestamp", every="1d", group_by="pod_id").agg(
        pl.col("fraction").last()
    )
    for pid in pods:
        sub = daily.filter(pl.col("pod_id") == pid)
        f.add_scatter(
            x=sub["timestamp"].to_list(), y=sub["fraction"].to_list(), name=pid, stackgroup="alloc"
        )
    un = eq.group_by_dynamic("timestamp", every="1d").agg(
        (pl.col("unallocated") / pl.col("equity")).last().alias("u")
    )
    f.add_scatter(
        x=un["timestamp"].to_list(),
        y=un["u"].clip(0, None).to_list(),
        name="(unallocated)",
        stackgroup="alloc",
    )
    f.update_layout(title="Allocation history (fractions)", yaxis_tickformat=".0%")
    figs["allocation"] = f

    rc = result.risk_contributions
    if rc.height:
        f = go.Figure()
        for pid in pods:
            sub = rc.filter(pl.col("pod_id") == pid)
            f.add_scatter(x=sub["timestamp"].to_list(), y=sub["prc"].to_list(), name=pid)
        f.update_layout(title="Percentage risk contribution (PRC)", yaxis_tickformat=".0%")
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
        f.update_layout(
            title="Diversification: effective number of strategies and average pod correlation",
            yaxis2={"overlaying": "y", "side": "right", "range": [-1, 1]},
        )
        figs["diversification"] = f

    f = go.Figure()
    codes = {"incubation": 0, "production": 1, "warning": 2, "probation": 3, "retired": 4}
    for pid in pods:
        sub = (
            pe.filter(pl.col("pod_id") == pid)
            .group_by_dynamic("timestamp", every="1d")
            .agg(pl.col("state").last())
        )
        f.add_scatter(
            x=sub["timestamp"].to_list(),
            y=[codes[s] for s in sub["state"].to_list()],
            name=pid,
            mode="lines",
            line_shape="hv",
        )
    f.update_layout(
        title="Lifecycle timeline",
        yaxis={"tickvals": list(codes.values()), "ticktext": list(codes)},
    )
    figs["lifecycle"] = f

    expo = result.exposures
    if expo.height:
        f = go.Figure()
        for sym in expo["symbol"].unique(maintain_order=True).to_list():
            s = expo.filter(pl.col("symbol") == sym)
            f.add_scatter(
                x=s["timestamp"].to_list(), y=s["weight"].to_list(), name=sym, line_shape="hv"
            )
        f.update_layout(
            title="Net exposure per symbol (account weight, daily)", yaxis_tickformat=".0%"
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
            )
        )
        f.update_layout(title="Pod return correlation")
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
        f.add_scatter(
            x=per_day["timestamp"].to_list(),
            y=per_day["saved"].to_list(),
            name="cumulative savings",
        )
    f.update_layout(
        title=f"Netting savings (fees not paid thanks to internal crossing): {result.summary.get('netting_savings', 0):,.2f}"
    )
    figs["netting"] = f
    return figs


def write_html(result: OrchestratedResult, path: str | Path, title: str | None = None) -> Path:
    """Write the report to ``path`` and return it."""
    s = result.summary
    title = title or f"orchestra report — {s.get('config_hash', '')[:8]}"
    parts = []
    for i, (fid, fig) in enumerate(charts(result).items()):
        parts.append(f'<section id="chart-{fid}">{_fig_html(fig, first=i == 0)}</section>')
    metrics = result.metrics
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 6px;text-align:right}}th{{background:#f4f4f4}}.warn{{color:#a60}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Data: <b>{html.escape(str(s.get("data_source", "?")))}</b> · range {html.escape(str(s.get("data_range", {}).get("first_bar")))} →
{html.escape(str(s.get("data_range", {}).get("last_bar")))} · config hash <code>{html.escape(str(s.get("config_hash", "")))}</code> · orchestra {html.escape(str(s.get("version", "")))}</p>
<p class="warn">Execution: {html.escape(str(s.get("execution_note", "")))}</p>
<h2>Metrics</h2>{_table_html(metrics)}
{"".join(parts)}
<h2>Lifecycle events</h2>{_table_html(result.lifecycle_events)}
<h2>Alerts</h2>{_table_html(result.alerts)}
<h2>Last allocations</h2>{_table_html(result.allocations.tail(3 * max(1, metrics.height - 1)))}
</body></html>"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    return out
