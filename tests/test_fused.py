"""Issue #26: the synthetic intraday fast path (orchestra/engine/fused.py) generates the bars
chunk by chunk straight into the pods' signals. Its kernel inputs must equal the matrices'
path's array for array, whatever the pods, their symbols' order, the execution, the threads."""

from __future__ import annotations

import numpy as np
import pytest

from orchestra.config import parse_config
from orchestra.engine import build, fused, prepare
from orchestra.strategies import StrategyError

SYMBOLS = ["SOL/USDT", "BTC/USDT", "ZZZ/USDT", "ETH/USDT", "AVAX/USDT"]


def _config(tf: str, pods: list[dict], execution: str = "close", end: str = "2024-02-20"):
    for i, pod in enumerate(pods):
        pod.setdefault("pod_id", f"p{i}")
        pod.setdefault("timeframe", tf)
        pod.setdefault("initial_state", "production")
        pod.setdefault("initial_fraction", 0.2)
    return parse_config(
        {
            "data": {"source": "synthetic", "timeframe": tf, "seed": 5},
            "pods": pods,
            "backtest": {"start": "2024-01-10", "end": end, "execution": execution},
        }
    )


CASES = {
    "hourly, caps hit, a late pod, a duplicate": lambda: _config(
        "1h",
        [
            {"strategy": "tsmom", "params": {"lookback": 12}, "symbols": SYMBOLS[:3],
             "risk": {"max_leverage": 0.3}},
            {"strategy": "donchian-ensemble", "params": {"lookbacks": [5, 20], "long_only": True},
             "symbols": SYMBOLS[::-1], "start": "2024-02-01"},
            {"strategy": "vw-tsmom", "params": {"lookback": 8}, "symbols": SYMBOLS[1:]},
            {"strategy": "tsmom", "params": {"lookback": 12}, "symbols": SYMBOLS[:3],
             "risk": {"max_leverage": 0.3}},
        ],
        execution="next_open",
    ),
    "5 minutes, vol-adaptive and an ensemble": lambda: _config(
        "5m",
        [
            {"strategy": "vol-adaptive", "params": {"fast_lookback": 6, "slow_lookback": 30,
             "vol_short": 6, "vol_long": 40}, "symbols": SYMBOLS[2:]},
            {"strategy": "ensemble", "symbols": SYMBOLS[:2],
             "sub_strategies": [{"name": "tsmom", "params": {"lookback": 10}},
                                {"name": "donchian-ensemble", "params": {"lookbacks": [7]}}]},
        ],
        end="2024-01-25",
    ),
}  # fmt: skip


def _prepared(cfg, on: bool, monkeypatch, cpus: int = 2):
    monkeypatch.setattr(build, "FUSED", on)
    monkeypatch.setattr(fused.os, "cpu_count", lambda: cpus)
    calls: list[bool] = []
    real = build.fused_window

    def spy(*args):
        got = real(*args)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(build, "fused_window", spy)
    prep = prepare(cfg)
    return prep, calls


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cpus", [1, 3])
@pytest.mark.parametrize("step_bars", [8_192, 700, 100])  # hourly: 1 step; 2 chunks a step; 1
def test_the_fast_path_equals_the_matrices_path(
    case: str, cpus: int, step_bars: int, monkeypatch
) -> None:
    import orchestra.strategies

    monkeypatch.setattr(orchestra.strategies, "CHUNK_BARS", step_bars)
    cfg = CASES[case]()
    fast, calls = _prepared(cfg, True, monkeypatch, cpus)
    assert calls == [True]  # the fast path ran
    slow, calls = _prepared(cfg, False, monkeypatch)
    assert calls == []
    for name, a in fast.inputs._asdict().items():
        b = getattr(slow.inputs, name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
    for f in ("timestamps", "open", "close", "tradable"):
        assert np.array_equal(getattr(fast.market, f), getattr(slow.market, f)), f
    assert fast.market.symbols == slow.market.symbols == cfg.symbols
    assert np.array_equal(fast.pod_join_bar, slow.pod_join_bar)
    assert fast.data_label == slow.data_label
    if case.startswith("hourly"):  # the cap changed weights: the comparison covers it
        block = slow.inputs.target[:, :3]
        assert np.abs(block).sum(axis=1).max() == pytest.approx(0.3)


def test_a_pod_off_the_clock_takes_the_matrices_path(monkeypatch) -> None:
    cfg = _config(
        "1h",
        [
            {"strategy": "tsmom", "params": {"lookback": 12}, "symbols": SYMBOLS[:2]},
            {"strategy": "tsmom", "params": {"lookback": 3}, "symbols": SYMBOLS[:2],
             "timeframe": "4h"},
        ],
    )  # fmt: skip
    _, calls = _prepared(cfg, True, monkeypatch)
    assert calls == [False]


def test_a_pods_error_stops_every_thread_and_names_the_first_pod(monkeypatch) -> None:
    cfg = CASES["hourly, caps hit, a late pod, a duplicate"]()
    real = fused._pod_task
    made: list[int] = []

    def failing(pod):
        task = real(pod)
        made.append(1)
        if len(made) in (2, 3):  # the second and third pods fail on their third chunk
            seen: list[int] = []

            def broken(stage, s0, s1, c0, c1):
                seen.append(c0)
                if len(seen) == 3:
                    raise StrategyError("weights went wrong")  # (steps of 100 bars, below)
                task(stage, s0, s1, c0, c1)

            return broken
        return task

    import orchestra.strategies

    monkeypatch.setattr(orchestra.strategies, "CHUNK_BARS", 100)  # a step per generator chunk
    monkeypatch.setattr(fused, "_pod_task", failing)
    monkeypatch.setattr(fused.os, "cpu_count", lambda: 2)
    with pytest.raises(StrategyError, match=r"^pods\[1\] \(p1\): weights went wrong"):
        prepare(cfg)
