"""Issue #26: synthetic bars go straight into the market matrices; equal, array for array, to
the long frame's path (load_bars → validate → to_matrices), and the long frame a user's
strategy asks for is the one load_bars gives."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from orchestra.config import parse_config
from orchestra.data import load_bars, to_matrices
from orchestra.data.synthetic import generate_market
from orchestra.engine import prepare
from orchestra.engine.build import synthetic_window

SYMBOLS = ["SOL/USDT", "BTC/USDT", "ZZZ/USDT", "ETH/USDT"]  # not sorted: columns keep this order


def _config(tf: str, start: str = "2024-03-01", end: str = "2024-03-20"):
    return parse_config(
        {
            "data": {"source": "synthetic", "timeframe": tf, "seed": 3, "market": "swap"},
            "pods": [
                {
                    "pod_id": "a",
                    "strategy": "tsmom",
                    "params": {"lookback": 5},
                    "symbols": SYMBOLS,
                    "timeframe": tf,
                    "initial_state": "production",
                }
            ],
            "backtest": {"start": start, "end": end},
        }
    )


@pytest.mark.parametrize("tf", ["1d", "4h", "1h", "15m", "1m"])
def test_the_direct_market_equals_the_long_frames(tf: str) -> None:
    cfg = _config(tf, end="2024-03-04" if tf == "1m" else "2024-03-20")
    start, end = cfg.backtest.start, cfg.backtest.end
    got = synthetic_window(cfg, start, end)
    assert got is not None
    _, bars_factory, direct = got
    loaded = load_bars(cfg, start, end)
    slow = to_matrices(loaded.bars, cfg.symbols, tf)
    assert direct.symbols == slow.symbols == cfg.symbols
    assert np.array_equal(direct.timestamps, slow.timestamps)
    for f in ("open", "high", "low", "close", "volume", "tradable"):
        a, b = getattr(direct, f), getattr(slow, f)
        assert a.dtype == b.dtype and a.flags.c_contiguous and np.array_equal(a, b), f
    assert bars_factory().equals(loaded.bars.sort("symbol", "timestamp"))


def test_timeframes_that_need_resampling_take_the_long_frame() -> None:
    assert generate_market(SYMBOLS, dt.date(2024, 1, 1), dt.date(2024, 2, 1), "3d", 3) is None
    assert generate_market(SYMBOLS, dt.date(2024, 1, 1), dt.date(2024, 1, 3), "7m", 3) is None


def test_a_run_on_the_direct_market_equals_one_on_the_long_frame() -> None:
    """A second pod on 4h bars goes through the long-frame contract (built on demand)."""
    raw = _config("1h").model_dump(mode="json")
    raw["pods"].append({**raw["pods"][0], "pod_id": "b", "timeframe": "4h"})
    cfg = parse_config(raw)
    fast = prepare(cfg)
    slow = prepare(cfg, loaded=load_bars(cfg))
    for name in fast.inputs._fields:
        a, b = getattr(fast.inputs, name), getattr(slow.inputs, name)
        assert np.array_equal(np.asarray(a), np.asarray(b)), name


@pytest.mark.parametrize("tf", ["1d", "4h"])
def test_kept_daily_chunks_change_nothing(tf: str) -> None:
    """The daily stream chunks a process keeps (a sweep's windows share them) give the numbers a
    fresh process draws: a window served from chunks kept by a longer one equals it drawn fresh,
    and a kept chunk cannot be written to."""
    from orchestra.data import synthetic

    synthetic._chunk.cache_clear()
    generate_market(SYMBOLS, dt.date(2022, 1, 1), dt.date(2024, 12, 31), tf, 3)
    kept = generate_market(SYMBOLS, dt.date(2023, 1, 1), dt.date(2023, 3, 31), tf, 3)
    assert synthetic._chunk.cache_info().hits > 0
    synthetic._chunk.cache_clear()
    fresh = generate_market(SYMBOLS, dt.date(2023, 1, 1), dt.date(2023, 3, 31), tf, 3)
    assert kept is not None and fresh is not None
    for field in ("open", "high", "low", "close", "volume"):
        assert getattr(kept, field).tobytes() == getattr(fresh, field).tobytes(), field
    block = synthetic._chunk(3, (10,), 0, "t", 1)
    with pytest.raises(ValueError):
        block[0, 0] = 1.0
