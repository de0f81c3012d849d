"""Issue #26: the synthetic intraday fast path (orchestra/engine/fused.py) generates the bars
chunk by chunk straight into the pods' signals. Its kernel inputs must equal the matrices'
path's array for array, whatever the pods, their symbols' order, the execution, the threads;
and a streamed run (the bar loop consuming each step's rows as the next step is made) must
give the same results, frame for frame."""

from __future__ import annotations

import numpy as np
import pytest

from orchestra.config import parse_config
from orchestra.engine import build, fused, prepare
from orchestra.strategies import StrategyError

SYMBOLS = ["SOL/USDT", "BTC/USDT", "ZZZ/USDT", "ETH/USDT", "AVAX/USDT"]


def _config(
    tf: str,
    pods: list[dict],
    execution: str = "close",
    end: str = "2024-02-20",
    orchestrator: dict | None = None,
):
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
            **({"orchestrator": orchestrator} if orchestrator else {}),
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
    "15 minutes at the close, stops and the account's limits": lambda: _config(
        "15m",
        [
            {"strategy": "tsmom", "params": {"lookback": 16}, "symbols": SYMBOLS,
             "risk": {"system_stop_loss": 0.03, "trailing_stop_atr_multiplier": 1.5,
                      "max_leverage": 3.0}},
            {"strategy": "vw-tsmom", "params": {"lookback": 24}, "symbols": SYMBOLS[:3],
             "start": "2024-01-20"},
        ],
        end="2024-02-05",
        orchestrator={"risk": {"max_gross_leverage": 1.5, "daily_loss_limit": 0.02,
                               "max_portfolio_drawdown": 0.05, "drawdown_action": "derisk"}},
    ),
}  # fmt: skip


def _spy(monkeypatch, on: bool, cpus: int) -> list[bool]:
    """Whether prepare took the fast path, once per call."""
    monkeypatch.setattr(build, "FUSED", on)
    monkeypatch.setattr(fused.os, "cpu_count", lambda: cpus)
    calls: list[bool] = []
    real = build.fused_plan

    def spy(*args, **kwargs):
        got = real(*args, **kwargs)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(build, "fused_plan", spy)
    return calls


def _prepared(cfg, on: bool, monkeypatch, cpus: int = 2):
    calls = _spy(monkeypatch, on, cpus)
    return prepare(cfg), calls


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


def _failing_pods(monkeypatch, pods: tuple[int, ...], error: BaseException) -> None:
    """``pods``' step tasks raise ``error`` on their third step (of 100 bars)."""
    import collections

    import orchestra.strategies

    real = fused._PodTask.__call__
    seen: collections.Counter = collections.Counter()

    def failing(self, *args):
        if self.index in pods:
            seen[self.index] += 1
            if seen[self.index] == 3:
                raise error
        return real(self, *args)

    monkeypatch.setattr(orchestra.strategies, "CHUNK_BARS", 100)  # a step per generator chunk
    monkeypatch.setattr(fused._PodTask, "__call__", failing)
    monkeypatch.setattr(fused.os, "cpu_count", lambda: 2)


@pytest.mark.parametrize("stream", [False, True])
def test_a_pods_error_stops_every_thread_and_names_the_first_pod(monkeypatch, stream) -> None:
    from orchestra.engine import run_backtest

    cfg = CASES["hourly, caps hit, a late pod, a duplicate"]()
    _failing_pods(monkeypatch, (1, 2), StrategyError("weights went wrong"))
    with pytest.raises(StrategyError, match=r"^pods\[1\] \(p1\): weights went wrong"):
        run_backtest(cfg) if stream else prepare(cfg)


# ------------------------------------------------------------------------- streamed runs
def _frames(result) -> dict:
    import dataclasses

    return {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if f.name not in ("summary", "metrics")  # (metrics hold the run's timings)
    }


@pytest.mark.parametrize("case", [*CASES, "hourly, no warm-up, next open"])
@pytest.mark.parametrize("cpus", [1, 3])
@pytest.mark.parametrize("step_bars", [8_192, 700, 100])
def test_a_streamed_run_equals_the_whole_matrices_run(
    case: str, cpus: int, step_bars: int, monkeypatch
) -> None:
    """run_backtest streams (prepare(stream=True)): every frame equals the run on whole
    matrices, the positions' target weights (kept per fill) included. The steps' edges fall
    anywhere in the run: next-open bars read the previous step's last row of weights, a late
    pod's rows are zeroed in the step that holds its start, and with no warm-up the first bar
    reads the zero row before the first step."""
    import orchestra.strategies
    from orchestra.engine import Engine, run_backtest
    from orchestra.results.result import build_result

    monkeypatch.setattr(orchestra.strategies, "CHUNK_BARS", step_bars)
    if case == "hourly, no warm-up, next open":
        cfg = CASES["hourly, caps hit, a late pod, a duplicate"]()
        cfg = cfg.model_copy(
            update={"backtest": cfg.backtest.model_copy(update={"warmup_days": 0})}
        )
    else:
        cfg = CASES[case]()
    calls = _spy(monkeypatch, True, cpus)
    streamed = run_backtest(cfg)
    assert calls == [True]
    monkeypatch.setattr(build, "FUSED", False)
    engine = Engine(prepare(cfg))
    engine.run()
    whole = build_result(engine, cfg)
    assert streamed.fills.height > 100 and streamed.positions.height > 100
    for name, frame in _frames(whole).items():
        other = _frames(streamed)[name]
        assert frame.equals(other, null_equal=True), name
    assert (streamed.positions["target_weight"] != 0).any()


def test_a_streamed_runs_bar_loop_error_is_raised(monkeypatch) -> None:
    """An error in the bar loop (a task beside the pods' steps) stops the run and is raised."""
    from orchestra.engine import core, run_backtest

    cfg = CASES["hourly, caps hit, a late pod, a duplicate"]()
    monkeypatch.setattr(fused.os, "cpu_count", lambda: 2)
    import orchestra.strategies

    monkeypatch.setattr(orchestra.strategies, "CHUNK_BARS", 100)
    real = core.Engine.advance
    calls: list[int] = []

    def advance(self, t1, progress=None):
        calls.append(t1)
        if len(calls) == 2:  # (a step of 384 bars: 3 steps hold the run's bars)
            raise RuntimeError("the bar loop failed")
        return real(self, t1, progress)

    monkeypatch.setattr(core.Engine, "advance", advance)
    with pytest.raises(RuntimeError, match="the bar loop failed"):
        run_backtest(cfg)


def test_a_streamed_engine_steps_only_by_run() -> None:
    from orchestra.engine import Engine

    cfg = CASES["5 minutes, vol-adaptive and an ensemble"]()
    prep = prepare(cfg, stream=True)
    assert prep.stream is not None and prep.inputs.target.shape[0] == 0
    engine = Engine(prep)
    with pytest.raises(RuntimeError, match="run"):
        engine.step()
    engine.run()
    assert engine.next_bar == engine.n_bars and prep.stream is None
    assert engine.inputs.target.shape[0] == 0  # the step buffers are not kept


def test_the_bar_loop_releases_the_gil() -> None:
    """A streamed run's bar loop runs in a thread beside the signals' numpy work: its entries
    must not hold the GIL (a stream of L took 4.2 s with it held, 3.7 s without)."""
    from orchestra.kernels.step import run_segment_nb

    assert run_segment_nb.targetoptions.get("nogil") is True


def test_a_streamed_run_needs_its_engines_journal() -> None:
    from orchestra.engine import Engine

    prep = prepare(CASES["5 minutes, vol-adaptive and an ensemble"](), stream=True)
    with pytest.raises(ValueError, match="journal"):
        Engine(prep, keep_journal=False).run()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=8, deadline=None)
@given(
    step_bars=st.integers(50, 3000),
    execution=st.sampled_from(["close", "next_open"]),
    warmup=st.integers(0, 6),
    days=st.integers(3, 40),
    late=st.integers(0, 45),
)
def test_streamed_equals_whole_on_random_steps_and_windows(
    step_bars: int, execution: str, warmup: int, days: int, late: int
) -> None:
    """Property: wherever the steps' edges fall against the window's first bar, its end and a
    pod's start, a streamed run's frames equal the whole matrices' run."""
    import datetime as dt

    import orchestra.strategies
    from orchestra.engine import Engine, run_backtest
    from orchestra.results.result import build_result

    end = (dt.date(2024, 1, 10) + dt.timedelta(days=days)).isoformat()
    start = (dt.date(2024, 1, 10) + dt.timedelta(days=min(late, days))).isoformat()
    cfg = _config(
        "1h",
        [
            {"strategy": "tsmom", "params": {"lookback": 6}, "symbols": SYMBOLS[:3]},
            {"strategy": "donchian-ensemble", "params": {"lookbacks": [4, 9]},
             "symbols": SYMBOLS[1:], "start": start},
        ],
        execution=execution,
        end=end,
    )  # fmt: skip
    cfg = cfg.model_copy(
        update={"backtest": cfg.backtest.model_copy(update={"warmup_days": warmup})}
    )
    saved = (orchestra.strategies.CHUNK_BARS, build.FUSED)
    try:
        orchestra.strategies.CHUNK_BARS = step_bars
        streamed = run_backtest(cfg)
        build.FUSED = False
        engine = Engine(prepare(cfg))
        engine.run()
        whole = build_result(engine, cfg)
    finally:
        orchestra.strategies.CHUNK_BARS, build.FUSED = saved
    for name, frame in _frames(whole).items():
        assert frame.equals(_frames(streamed)[name], null_equal=True), name
