"""A sweep's ``ranking.html`` and its terminal tables: the ranking with each variant's deflated
Sharpe ratio, the probability of backtest overfitting, the metric over the grid, and the
walk-forward's stitched out-of-sample curve (``docs/sweeps.md``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from orchestra.results.report import TIME_AXIS, _fig_html, _table_html, plotly_script

PCT = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure",
       "out_of_sample_return", "deflated_sharpe"}  # fmt: skip


def short_names(columns: list[str]) -> dict[str, str]:
    """Dotted config paths by their last segment (two when the last is not unique)."""
    last = [c.split(".")[-1] for c in columns]
    out = {}
    for c, tail in zip(columns, last, strict=True):
        out[c] = tail if last.count(tail) == 1 else ".".join(c.split(".")[-2:])
    return out


def format_frame(frame: pl.DataFrame, short: bool = False) -> pl.DataFrame:
    """For reading: ratios as percentages (one decimal), other numbers to 2 decimals, money with
    thousands separators; with ``short`` dotted config paths by their last segment."""
    out: dict[str, list[str]] = {}
    for c in frame.columns:
        vals = frame[c].to_list()
        if frame[c].dtype.is_float():
            if c in PCT or c.endswith("_return") or c.endswith("drawdown"):
                out[c] = [f"{v:.1%}" if v is not None and np.isfinite(v) else "-" for v in vals]
            elif c in ("final_equity", "fees", "netting_savings"):
                out[c] = [f"{v:,.0f}" if v is not None and np.isfinite(v) else "-" for v in vals]
            else:
                out[c] = [f"{v:.2f}" if v is not None and np.isfinite(v) else "-" for v in vals]
        else:
            out[c] = [str(v) for v in vals]
    frame = pl.DataFrame(out)
    return frame.rename(short_names(frame.columns)) if short else frame


def grid_chart(results: pl.DataFrame, metric: str) -> go.Figure | None:
    """The metric over the grid: a heatmap over the first two swept fields (the best value over
    the others), a line over one field, else None."""
    params = [c for c in results.columns if "." in c and results[c].n_unique() > 1]
    if not params:
        return None
    if len(params) == 1:
        p = params[0]
        agg = results.group_by(p).agg(pl.col(metric).max()).sort(p)
        f = go.Figure(go.Scatter(x=agg[p].to_list(), y=agg[metric].to_list(), mode="lines+markers"))
        f.update_layout(title=f"{metric} over {p}", xaxis_title=p, yaxis_title=metric)
        return f
    a, b = params[:2]
    agg = results.group_by(a, b).agg(pl.col(metric).max())
    xs, ys = sorted(agg[a].unique().to_list()), sorted(agg[b].unique().to_list())
    z = np.full((len(ys), len(xs)), np.nan)
    for x, y, v in agg.iter_rows():
        z[ys.index(y), xs.index(x)] = v
    f = go.Figure(
        go.Heatmap(z=z, x=xs, y=ys, text=np.round(z, 2), texttemplate="%{text}",
                   colorbar={"title": {"text": metric}})
    )  # fmt: skip
    title = f"{metric} over {a} × {b}" + (
        " (best over the other fields)" if len(params) > 2 else ""
    )
    f.update_layout(title=title, xaxis={"title": {"text": a}, "type": "category"},
                    yaxis={"title": {"text": b}, "type": "category"})  # fmt: skip
    return f


def write_ranking(outcome: Any, spec: Any, name: str, path: Path) -> Path:
    """``ranking.html``: selection luck first, then the ranking, the grid chart and the
    walk-forward with its stitched out-of-sample curve."""
    results = outcome.results
    pbo = outcome.pbo
    best = results.row(0, named=True)
    parts = []
    luck = (
        f"<p><b>Selection luck.</b> {results.height} variants were tried. The best by "
        f"{html.escape(spec.metric)} (variant {best['variant']}) has a deflated Sharpe ratio of "
        f"<b>{best['deflated_sharpe']:.1%}</b>: the probability that its true Sharpe ratio beats "
        "what the best of this many trials reaches by luck (Bailey &amp; López de Prado 2014; "
        "0.95 is their bar; correlated variants make it conservative). Probability of backtest "
        "overfitting (CSCV over the variants' daily returns, "
        f"{pbo['blocks']:.0f} blocks, {pbo['splits']:.0f} splits): <b>"
        + (f"{pbo['pbo']:.0%}" if np.isfinite(pbo["pbo"]) else "n/a")
        + "</b> — how often the in-sample winner lands at or below the median out of sample.</p>"
    )
    parts.append(luck)
    parts.append(f"<h2>Ranking by {html.escape(spec.metric)}</h2>")
    parts.append(_table_html(format_frame(results.head(50))))
    fig = grid_chart(results, spec.metric)
    if fig is not None:
        parts.append(f"<section>{_fig_html(fig)}</section>")
    if outcome.folds is not None and outcome.oos is not None:
        parts.append(
            f"<h2>Walk-forward (out of sample)</h2>{_table_html(format_frame(outcome.folds))}"
        )
        oos = outcome.oos
        f = go.Figure(go.Scatter(x=oos["date"].to_list(), y=oos["equity"].to_list(),
                                 name="stitched out of sample"))  # fmt: skip
        f.update_layout(
            title=f"Stitched out-of-sample equity (Sharpe {outcome.oos_sharpe:.2f}): each fold's "
            "chosen variant on its test window",
            xaxis=TIME_AXIS,
            yaxis_title="value (start = 1)",
        )
        parts.append(f"<section>{_fig_html(f)}</section>")
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>sweep {html.escape(name)}</title>{plotly_script(path, path.parent)}"
        "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px}"
        "table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}</style>"
        f"</head><body><h1>Sweep of {html.escape(name)} ({results.height} variants)</h1>"
        + "".join(parts)
        + "</body></html>"
    )
    return path
