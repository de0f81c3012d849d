"""Lifecycle tuning study: which retirement settings keep sound pods alive through normal crypto
drawdowns and still retire a broken pod?

Sound pods: the shipped configs' pods (trend following, breakouts, vol-adaptive). Broken pod: the
same trend signal **inverted** (:func:`inverted_tsmom`), which loses whenever trend following
wins, and pays costs. Each retirement setting of the grid runs on several datasets (synthetic
seeds, and the real Binance candles in ``../shared/data/binance-1d`` when present); per run we
record the share of days each sound pod spent retired and the day the broken pod was retired.

Ranking: settings that retire the broken pod on every dataset first, then the smallest mean share
of days the sound pods spend retired, then the fastest retirement of the broken pod.

    uv run python research/lifecycle_study.py [--quick]

Prints the table; ``docs/lifecycle.md`` ("Tuning the shipped configs") records the result.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import polars as pl
from pydantic import Field

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestra.strategies import StrategyParams, compute_weights, strategy  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "binance-1d"


class InvertedParams(StrategyParams):
    lookback: int = Field(30, ge=2)

    def warmup_bars(self) -> int:
        return self.lookback + 61


@strategy(InvertedParams)
def inverted_tsmom(bars: pl.DataFrame, params: InvertedParams) -> pl.DataFrame:
    """A broken pod: minus time-series momentum's weights."""
    w = compute_weights("tsmom", bars, {"lookback": params.lookback})
    return w.with_columns(-pl.col("weight"))


SOUND = [
    {
        "pod_id": "trend",
        "strategy": "tsmom",
        "params": {"lookback": 30, "vol_target": 0.35},
        "symbols": ["BTC/USDT", "ETH/USDT"],
        "initial_fraction": 0.25,
        "risk": {"max_leverage": 2.0, "system_stop_loss": 0.10, "use_trailing_stop": True},
    },
    {
        "pod_id": "breakout",
        "strategy": "donchian-ensemble",
        "params": {"lookbacks": [20, 60, 150]},
        "symbols": ["SOL/USDT", "BNB/USDT", "AVAX/USDT"],
        "initial_fraction": 0.25,
        "risk": {"max_leverage": 1.5},
    },
    {
        "pod_id": "adaptive",
        "strategy": "vol-adaptive",
        "params": {},
        "symbols": ["BTC/USDT", "SOL/USDT"],
        "initial_fraction": 0.2,
        "risk": {},
    },
]
BROKEN = {
    "pod_id": "broken",
    "strategy": "research.lifecycle_study:inverted_tsmom",
    "params": {"lookback": 30},
    "symbols": ["ETH/USDT", "SOL/USDT"],
    "initial_fraction": 0.2,
    "risk": {},
}


def datasets(quick: bool) -> list[tuple[str, dict, str, str]]:
    seeds = [7] if quick else [3, 7, 11]
    out = [
        (f"synthetic seed {s}", {"source": "synthetic", "seed": s}, "2022-01-01", "2025-12-31")
        for s in seeds
    ]
    if SHARED.is_dir():
        out.append(
            ("binance 1d", {"source": "files", "path": str(SHARED)}, "2022-01-01", "2025-12-31")
        )
    return out


GRID = {
    "rolling_sharpe_floor": [0.0, -0.5, -1.0],
    "rolling_sharpe_window": [180, 365],
    "warning_days": [30, 90],
    "probation_days": [30, 90],
    "max_drawdown_breach": [0.45, 0.6],
}
# the second pass: around the first pass's best, with the pods' drawdown limits and the
# losing-months hard stop (``pod.`` keys set every pod's risk)
GRID2 = {
    "rolling_sharpe_floor": [-0.25, -0.5],
    "rolling_sharpe_window": [365],
    "warning_days": [90],
    "probation_days": [60, 90],
    "max_drawdown_breach": [0.6],
    "consecutive_loss_months": [6, 9],
    "pod.drawdown_warning": [0.25, 0.35],
    "pod.max_drawdown": [0.35, 0.5],
}


def config(data: dict, start: str, end: str, setting: dict):
    from orchestra.config import parse_config

    retirement = {k: v for k, v in setting.items() if not k.startswith("pod.")}
    pod_risk = {k[4:]: v for k, v in setting.items() if k.startswith("pod.")}
    pods = []
    for pod in [*SOUND, BROKEN]:
        pods.append(
            {
                **pod,
                "initial_state": "production",
                "max_fraction": 0.5,
                "min_fraction": 0.05,
                "risk": {
                    "drawdown_warning": 0.25,
                    "max_drawdown": 0.35,
                    **pod["risk"],
                    **pod_risk,
                },
            }
        )
    return parse_config(
        {
            "data": data,
            "orchestrator": {
                "allocation_method": "risk_parity",
                "rebalance": {"trigger": "hybrid", "calendar_days": 7},
                "risk": {"max_portfolio_volatility": 0.25, "max_gross_leverage": 2.5},
                "retirement": retirement,
                "graduation": {"max_drawdown": 0.30, "min_sharpe": 0.8, "min_calmar": 0.5},
            },
            "pods": pods,
            "backtest": {"start": start, "end": end, "capital": 100_000},
            "portfolio": {"cost_bps": 5.0, "slippage_bps": 1.0},
        },
        source="lifecycle study",
    )


def measure(res) -> dict[str, float]:
    pe = res.pod_equity
    days = pe["timestamp"].n_unique()
    retired = pe.filter(pl.col("state") == "retired").group_by("pod_id").len()
    share = dict(zip(retired["pod_id"], retired["len"], strict=True))
    sound = [share.get(p["pod_id"], 0) / days for p in SOUND]
    broken = pe.filter((pl.col("pod_id") == "broken") & (pl.col("state") == "retired"))
    retired_after = (
        (broken["timestamp"].min() - pe["timestamp"].min()).days if broken.height else None
    )
    return {
        "sound_retired": sum(sound) / len(sound),
        "sound_worst": max(sound),
        "broken_retired_day": retired_after,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one synthetic seed and a smaller grid")
    ap.add_argument("--second", action="store_true", help="the second pass (GRID2)")
    args = ap.parse_args()
    from orchestra.engine import run_backtest

    grid = dict(GRID2 if args.second else GRID)
    if args.quick:
        grid = {k: v[:2] for k, v in grid.items()}
    rows = []
    sets = datasets(args.quick)
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        retirement = dict(zip(keys, values, strict=True))
        per = [measure(run_backtest(config(d, s, e, retirement))) for _, d, s, e in sets]
        for (name, *_), m in zip(sets, per, strict=True):
            print(f"  {name}: {m}", file=sys.stderr)
        days = [m["broken_retired_day"] for m in per]
        rows.append(
            {
                **retirement,
                "broken_retired_everywhere": all(d is not None for d in days),
                "sound_retired_share": sum(m["sound_retired"] for m in per) / len(per),
                "sound_worst_share": max(m["sound_worst"] for m in per),
                "broken_days_to_retire": (
                    sum(d for d in days if d is not None) / max(1, sum(d is not None for d in days))
                ),
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    table = pl.DataFrame(rows).sort(
        ["broken_retired_everywhere", "sound_retired_share", "broken_days_to_retire"],
        descending=[True, False, False],
    )
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(200)
    pl.Config.set_tbl_rows(20)
    print(f"datasets: {', '.join(n for n, *_ in sets)}")
    print(table.head(12))


if __name__ == "__main__":
    main()
