"""Compare the four allocation methods on configs/binance-majors.yaml.

Prints account Sharpe, max drawdown, annualised turnover, fees and the mean effective number of
strategies (1 / Σ PRC²) per method. Needs ../shared/data (or edit the config's data.path).

  python research/allocators.py [--config configs/binance-majors.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from orchestra import load_config, run_backtest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["equal_weight", "inverse_volatility", "risk_parity", "adaptive_kelly"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "binance-majors.yaml"))
    args = ap.parse_args()
    base = load_config(args.config)
    table = Table(
        title=f"allocators on {Path(args.config).name} ({base.backtest.start} → {base.backtest.end})"
    )
    for col in [
        "method",
        "Sharpe",
        "CAGR",
        "max DD",
        "turnover/yr",
        "fees",
        "effective N",
        "fallbacks",
    ]:
        table.add_column(col, justify="right")
    for method in METHODS:
        orch = base.orchestrator.model_copy(update={"allocation_method": method})
        cfg = type(base).model_validate({**base.model_dump(), "orchestrator": orch.model_dump()})
        res = run_backtest(cfg)
        m = res.metrics.filter(pl.col("entity") == "account").row(0, named=True)
        prc = res.risk_contributions.group_by("timestamp").agg(
            (1 / (pl.col("prc") ** 2).sum()).alias("n")
        )
        eff_n = float(prc.filter(pl.col("n").is_finite())["n"].mean() or np.nan)
        fallbacks = res.allocations.filter(pl.col("fallback").is_not_null())["timestamp"].n_unique()
        table.add_row(
            method,
            f"{m['sharpe']:.2f}",
            f"{m['cagr']:+.1%}",
            f"{m['max_drawdown']:.1%}",
            f"{m['turnover']:.1f}x",
            f"{m['fees']:,.0f}",
            f"{eff_n:.2f}",
            str(fallbacks),
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
