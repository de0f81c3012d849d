"""What the lifecycle defaults cost on the real Binance candles: false retirements and time in
cash under each ``orchestrator.lifecycle_profile`` (``study``, the default, and ``plan``).

Two books a new user would write, with no lifecycle settings of their own (so the profile's
defaults decide): the original plan's example pods (its §9.1 config: trend on BTC/ETH, breakouts
on SOL/BNB/AVAX, vol-adaptive on BTC/SOL) on daily candles, and a single 4h trend pod on
BTC/ETH. Per profile: when each pod was retired (if ever), its NAV return over the run, and how
long the whole book sat in cash.

    uv run python research/lifecycle_defaults.py

Needs ``../shared/data`` (the real candles); ``docs/lifecycle.md`` records the result.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestra import run_backtest  # noqa: E402
from orchestra.config import parse_config  # noqa: E402

DATA = ROOT.parent / "shared" / "data"

PLAN_PODS = [
    {
        "pod_id": "trend-majors",
        "strategy": "tsmom",
        "params": {"lookback": 30, "vol_target": 0.35},
        "symbols": ["BTC/USDT", "ETH/USDT"],
        "initial_fraction": 0.15,
        "max_fraction": 0.40,
        "min_fraction": 0.05,
        "initial_state": "production",
        "risk": {"max_leverage": 2.0, "system_stop_loss": 0.10, "use_trailing_stop": True},
    },
    {
        "pod_id": "breakout-alts",
        "strategy": "donchian-ensemble",
        "params": {"lookbacks": [20, 60, 150]},
        "symbols": ["SOL/USDT", "BNB/USDT", "AVAX/USDT"],
        "initial_fraction": 0.10,
        "max_fraction": 0.30,
        "min_fraction": 0.05,
        "initial_state": "production",
        "risk": {"max_leverage": 1.5},
    },
    {
        "pod_id": "voladapt-cross",
        "strategy": "vol-adaptive",
        "params": {},
        "symbols": ["BTC/USDT", "SOL/USDT"],
        "initial_fraction": 0.10,
        "max_fraction": 0.35,
        "min_fraction": 0.05,
        "initial_state": "production",
    },
]

NEW_USER_POD = [
    {
        "pod_id": "trend-4h",
        "strategy": "tsmom",
        "params": {"lookback": 180, "vol_target": 0.35},  # 30 days of 4h bars
        "symbols": ["BTC/USDT", "ETH/USDT"],
        "timeframe": "4h",
        "initial_fraction": 0.5,
        "max_fraction": 1.0,
        "initial_state": "production",
    }
]

BOOKS = {
    "plan's example pods, 1d": ("binance-1d", "1d", PLAN_PODS),
    "a 4h BTC/ETH trend pod": ("binance-4h", "4h", NEW_USER_POD),
}


def run(book: str, profile: str) -> list[dict]:
    folder, tf, pods = BOOKS[book]
    raw = {
        "data": {"source": "files", "path": str(DATA / folder), "timeframe": tf, "market": "swap"},
        "orchestrator": {"lifecycle_profile": profile},
        "pods": pods,
        "backtest": {"start": "2021-01-01", "end": "2025-12-31", "capital": 100_000},
        "portfolio": {"cost_bps": 4.0, "slippage_bps": 1.0},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_backtest(parse_config(raw))
    retired = res.lifecycle_events.filter(pl.col("to_state") == "retired")
    cash = res.summary["time_in_cash"]
    rows = []
    for pid in [p["pod_id"] for p in pods]:
        when = retired.filter(pl.col("pod_id") == pid)["timestamp"]
        why = retired.filter(pl.col("pod_id") == pid)["reason"]
        rows.append(
            {
                "book": book,
                "profile": profile,
                "pod": pid,
                "retired on": str(when[0])[:10] if when.len() else "never",
                "why": why[0] if why.len() else "",
                "pod return": f"{res.pod_metrics(pid)['total_return']:+.0%}",
                "book in cash": f"{cash['days']:.0f} days ({cash['share']:.0%})",
            }
        )
    return rows


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"needs the real candles in {DATA}")
    rows = [r for book in BOOKS for profile in ("plan", "study") for r in run(book, profile)]
    table = pl.DataFrame(rows)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True):
        print(table)


if __name__ == "__main__":
    main()
