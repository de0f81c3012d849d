"""The terminal summary (SPEC §12): the seed's daily-report table plus the account figures."""

from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table

from orchestra.results.result import OrchestratedResult

STATE_SHORT = {
    "incubation": "INCUB",
    "production": "PROD",
    "warning": "WARN",
    "probation": "PROB",
    "retired": "RETIRED",
}


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    if abs(x) < 5e-7:  # float round-off of an exact zero (e.g. unallocated after a rebalance)
        x = 0.0
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def pod_table(result: OrchestratedResult, pod: str | None = None) -> Table:
    """Pod, State, Alloc, PnL, Sharpe (+ max DD, fees) and the unallocated row."""
    last = result.pod_equity.group_by("pod_id", maintain_order=True).last()
    table = Table(title="Pods", title_justify="left")
    for col, justify in [
        ("Pod", "left"),
        ("State", "left"),
        ("Alloc", "right"),
        ("PnL", "right"),
        ("Sharpe", "right"),
        ("Max DD", "right"),
        ("Fees", "right"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    equity = float(result.equity["equity"][-1]) if result.equity.height else 0.0
    for row in last.iter_rows(named=True):
        if pod is not None and row["pod_id"] != pod:
            continue
        m = result.pod_metrics(row["pod_id"])
        table.add_row(
            row["pod_id"],
            STATE_SHORT.get(row["state"], row["state"]),
            _pct(row["equity"] / equity if equity else None),
            _pct(m.get("total_return"), signed=True),
            f"{m.get('sharpe', 0.0):.2f}",
            _pct(m.get("max_drawdown")),
            f"{m.get('fees', 0.0):,.0f}",
        )
    if pod is None:
        unalloc = float(result.equity["unallocated"][-1]) if result.equity.height else 0.0
        table.add_row(
            "(unallocated)", "-", _pct(unalloc / equity if equity else None), "-", "-", "-", "-"
        )
    return table


def account_table(result: OrchestratedResult) -> Table:
    m = result.metrics.filter(pl.col("entity") == "account").to_dicts()[0]
    s = result.summary
    table = Table(
        title=f"Account — data: {s.get('data_source', '?')}",
        title_justify="left",
        show_header=False,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    rng = s.get("data_range", {})
    rows = [
        (
            "Period",
            f"{str(rng.get('first_bar', '?'))[:10]} → {str(rng.get('last_bar', '?'))[:10]} ({rng.get('timeframe', '?')})",
        ),
        ("Equity", f"{s.get('capital', 0):,.0f} → {s.get('final_equity', 0):,.0f}"),
        ("Total return", _pct(m["total_return"], signed=True)),
        ("CAGR", _pct(m["cagr"], signed=True)),
        ("Volatility", _pct(m["volatility"])),
        ("Sharpe / Sortino", f"{m['sharpe']:.2f} / {m['sortino']:.2f}"),
        ("Max drawdown", _pct(m["max_drawdown"])),
        ("Calmar", f"{m['calmar']:.2f}"),
        ("Orders / turnover", f"{m['trade_count']:.0f} / {m['turnover']:.1f}x per year"),
        ("Fees", f"{m['fees']:,.2f}"),
        ("Netting savings", f"{m['netting_savings']:,.2f}"),
        ("Avg gross leverage", f"{m['exposure']:.2f}x"),
        ("Time in cash", _cash_line(s.get("time_in_cash"))),
        ("Execution", s.get("execution_note", "")),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


def _cash_line(cash: dict | None) -> str:
    """Days every pod was retired or unfunded (after the book was first invested)."""
    if not cash:
        return "-"
    line = f"{cash['days']:,.0f} days ({cash['share']:.0%} of the run)"
    if cash.get("since"):
        line += f", every pod out since {str(cash['since'])[:10]}"
    return line


def print_summary(
    result: OrchestratedResult, console: Console | None = None, pod: str | None = None
) -> None:
    console = console or Console()
    if pod is None:
        console.print(account_table(result))
    console.print(pod_table(result, pod))
    if pod is not None:
        ev = result.lifecycle_events.filter(pl.col("pod_id") == pod)
        console.print(f"{ev.height} lifecycle event(s) for {pod}")
        for r in ev.iter_rows(named=True):
            console.print(
                f"  {r['timestamp']}: {r['from_state']} → {r['to_state']} ({r['reason']})"
            )
