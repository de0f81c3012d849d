"""The synthetic source's intraday fast path: bars generated chunk by chunk and fed straight to
the pods' signals, so the highs, lows and volumes never become ``(T, S)`` matrices.

:func:`~orchestra.engine.build.prepare` otherwise builds the five market matrices of the whole
history (:func:`~orchestra.data.synthetic.generate_market`), then runs each pod's step form over
them a chunk of bars at a time, gathering the pod's rows of each field. Here, for each step of
bars in time order (consecutive 16-day chunks of the generator, at least
:data:`~orchestra.strategies.CHUNK_BARS` bars):

1. the threads fill the step's bars of every symbol, a symbol at a time, into a shared stage
   ``(field, symbol, bar)``: the layout the strategies' kernels read;
2. after a barrier, the threads run the tasks on that step, a task at a time: the pods' step
   forms (each pod's state carried from its previous step, which every thread has finished)
   writing the engine's slot matrix, and one task that places the opens and closes into their
   ``(T, S)`` matrices and steps Wilder's ATR over the step.

Two stages alternate, so a thread that is done with step ``i``'s tasks fills step ``i+1`` while
the other finishes. The numbers are those of the matrices' path, array for array
(tested): the same generator chunks, the same step forms on the same bars in the same order, the
same ATR steps, the same leverage cap row by row. What it saves on a year of minute bars for 50
symbols: three 0.2 GB matrices (peak memory, and the kernel's work of providing fresh pages), and
each pod's gathers of its rows from them.

It applies when every pod is a built-in on the clock's timeframe whose params have a step form,
the data are ``synthetic`` on an intraday timeframe that divides the day, and no sweep shares
its windows (:func:`~orchestra.engine.build.share_work`); otherwise :func:`fused_window` returns
None and the matrices' path runs.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestra.data.synthetic import IntradayChunks

# bars of one generator chunk (16 days) from which every thread fills: 5-minute bars (4,608)
# and finer; an hourly chunk (384 bars) is filled by one thread (measured on M: 0.81 s with two
# fillers, 0.58 s with one; the matrices' path 0.60 s)
PARALLEL_FILL_BARS = 4_096
# a field's position on the stage's first axis (the generator's order)
FIELD_INDEX = {field: i for i, field in enumerate(IntradayChunks.FIELDS)}
OPEN, HIGH, LOW, CLOSE = (FIELD_INDEX[f] for f in ("open", "high", "low", "close"))


class ChunkFields:
    """A pod's rows of one chunk of the stage, field by field on demand (``(S_pod, n)``,
    C-contiguous: what :class:`~orchestra.strategies.common.MarketFields` gives its kernels)."""

    def __init__(self, stage: np.ndarray, rows: np.ndarray, s0: int, s1: int):
        self.stage, self.rows, self.s0, self.s1 = stage, rows, s0, s1
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, field: str) -> np.ndarray:
        if field not in self._cache:
            block = self.stage[FIELD_INDEX[field], :, self.s0 : self.s1]
            self._cache[field] = np.take(block, self.rows, axis=0)
        return self._cache[field]


@dataclass
class FusedWindow:
    market: Any  # a Market: timestamps, symbols, open, close, tradable (high/low/volume empty)
    target: np.ndarray  # (T, K) every pod's capped weights on the clock
    atr: np.ndarray  # (T, S) Wilder's ATR


def fused_window(config: Any, first_day: dt.date, end: dt.date) -> FusedWindow | None:
    """The market, the slot matrix and the ATR of ``[first_day, end]`` by the fast path, or
    None when it does not apply (see the module docstring)."""
    from orchestra.data.align import Market
    from orchestra.data.synthetic import INTRADAY_CHUNK, market_clock
    from orchestra.engine.build import _pod_key
    from orchestra.strategies import CHUNK_BARS, pod_params, step_run
    from orchestra.timeframes import DAY_MS, timeframe_ms

    d = config.data
    clock = market_clock(config.symbols, first_day, end, d.timeframe)
    if clock is None or clock.base >= DAY_MS or clock.b <= clock.a:
        return None
    step = timeframe_ms(config.clock_timeframe)
    if any(timeframe_ms(p.timeframe) != step for p in config.pods) or clock.base != step:
        return None
    symbols = list(config.symbols)
    a, b = clock.a, clock.b
    n_bars, n_sym = b - a, len(symbols)
    ts = clock.ts[a:b]
    tradable = np.ones((n_bars, n_sym), bool)
    empty = np.empty((n_bars, 0))
    probe = Market(ts, symbols, empty, empty, empty, empty, empty, tradable, config.clock_timeframe)

    widths = [len(p.symbols) for p in config.pods]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    target = np.zeros((n_bars, int(offsets[-1])))
    keys = [_pod_key(pod, probe) for pod in config.pods]
    first: dict[tuple, int] = {}
    same_as = {i: first.setdefault(k, i) for i, k in enumerate(keys)}
    position = {s: j for j, s in enumerate(clock.order)}  # a symbol's row of the stage
    pods: dict[int, tuple] = {}
    for i in sorted(set(same_as.values())):
        pod = config.pods[i]
        block = target[:, offsets[i] : offsets[i + 1]]
        gross = np.empty(n_bars)
        run = step_run(pod.strategy, pod_params(pod), probe, pod.symbols, block, gross)
        if run is None:
            return None
        rows = np.array([position[s] for s in pod.symbols], dtype=np.int64)
        pods[i] = (run, rows, block, gross, float(pod.risk.max_leverage))

    gen = IntradayChunks(clock.order, clock.first_day, clock.last_day, clock.per_day, d.seed)
    # generator chunks a step: at least CHUNK_BARS bars (a 16-day chunk of hours is only 384)
    group = max(1, -(-CHUNK_BARS // (INTRADAY_CHUNK * clock.per_day)))
    fields = _EngineFields(group * INTRADAY_CHUNK * clock.per_day, symbols, clock.order, n_bars)
    # (cost, runner, pod): the engine's fields cost about half a tsmom pod of as many symbols
    tasks: list[tuple[float, Any, Any]] = [(0.5 * n_sym, fields, None)]
    for i, (run, *_) in pods.items():
        tasks.append((len(config.pods[i].symbols) * run.form.cost, _pod_task(pods[i]), i))
    workers = max(1, min(os.cpu_count() or 1, len(tasks), n_sym))
    order = [(runner, pod) for _, runner, pod in sorted(tasks, key=lambda x: -x[0])]
    _drive(gen, clock, group, workers, order, config)  # the costliest tasks first
    for i, j in same_as.items():
        if j != i:  # the same weights as pod j's
            target[:, offsets[i] : offsets[i + 1]] = target[:, offsets[j] : offsets[j + 1]]
    market = Market(
        ts, symbols, fields.open, empty, empty, fields.close, empty, tradable,
        config.clock_timeframe,
    )  # fmt: skip
    return FusedWindow(market, target, fields.atr)


def _pod_task(pod: tuple):
    from orchestra.strategies import StrategyError, cap_matrix

    run, rows, block, gross, cap = pod

    def task(stage: np.ndarray, s0: int, s1: int, c0: int, c1: int) -> None:
        if not run.chunk(ChunkFields(stage, rows, s0, s1), c0, c1):
            raise StrategyError(f"strategy {run.name!r} has no step form for these params")
        cap_matrix(block[c0:c1], cap, gross[c0:c1])  # row by row: the same as on the whole

    return task


class _EngineFields:
    """The task that keeps what the engine reads: the opens and closes as ``(T, S)`` matrices
    (columns in the config's symbol order) and Wilder's ATR, stepped chunk by chunk."""

    def __init__(self, chunk_bars: int, symbols: list[str], order: list[str], n_bars: int):
        from orchestra.kernels.market import new_atr_state

        column = {s: j for j, s in enumerate(symbols)}
        n_sym = len(symbols)
        self.cols = np.array([column[s] for s in order], dtype=np.int64)
        self.open = np.empty((n_bars, n_sym))
        self.close = np.empty((n_bars, n_sym))
        self.atr = np.empty((n_bars, n_sym))
        self.tradable = np.ones((chunk_bars, n_sym), bool)
        self.high = np.empty((chunk_bars, n_sym))  # one chunk's, for the ATR
        self.low = np.empty((chunk_bars, n_sym))
        self.state = new_atr_state(n_sym)

    def __call__(self, stage: np.ndarray, s0: int, s1: int, c0: int, c1: int) -> None:
        from orchestra.kernels.layout import place_rows_nb
        from orchestra.kernels.market import ATR_BARS, atr_nb

        n = s1 - s0
        place_rows_nb(stage[OPEN], s0, n, self.open[c0:c1], self.cols)
        place_rows_nb(stage[CLOSE], s0, n, self.close[c0:c1], self.cols)
        place_rows_nb(stage[HIGH], s0, n, self.high[:n], self.cols)
        place_rows_nb(stage[LOW], s0, n, self.low[:n], self.cols)
        atr_nb(self.high[:n], self.low[:n], self.close[c0:c1], self.tradable[:n], ATR_BARS,
               self.state, self.atr[c0:c1])  # fmt: skip


def _drive(gen, clock, group: int, workers: int, tasks: list[tuple[Any, Any]], config) -> None:
    """Every step of bars in time order (``group`` consecutive generator chunks), the threads
    fill it, then run the tasks on it. Both phases hand out their work one piece at a time (a
    symbol to fill, a task to run), so a thread never idles while the other has work left; a
    thread done with step ``i``'s tasks fills step ``i+1`` (the other stage) while the other
    finishes. A pod's steps run one after the other: step ``i+1``'s tasks start only when every
    thread has passed step ``i``'s tasks. The first pod's error (in pod order) is raised."""
    import itertools

    from orchestra.data.synthetic import INTRADAY_CHUNK
    from orchestra.strategies import StrategyError

    k, per_day = len(clock.order), clock.per_day
    steps = [range(i, min(i + group, len(gen.chunks))) for i in range(0, len(gen.chunks), group)]
    stages = [np.empty((5, k, group * INTRADAY_CHUNK * per_day)) for _ in range(2)]
    barrier = threading.Barrier(workers)
    errors: dict[int, BaseException] = {}  # by pod index (-1: not a pod's)
    # the pieces of each phase, claimed with next() (atomic in CPython)
    to_fill = [itertools.count() for _ in steps]
    to_run = [itertools.count() for _ in steps]
    factors: dict[int, np.ndarray] = {}
    lock = threading.Lock()

    def factor(i: int) -> np.ndarray:  # chunk i's market shocks, drawn once for every symbol
        with lock:
            if i not in factors:
                for old in [c for c in factors if c < i - 2 * group]:
                    del factors[old]
                factors[i] = gen.factor(i)
            return factors[i]

    # a chunk of few bars (an hour's 384) is Python's work more than numpy's: two threads would
    # take turns at the GIL, slower than one. Then one thread fills while the other finishes the
    # previous step's tasks (numba kernels, which release the GIL)
    fillers = workers if INTRADAY_CHUNK * per_day >= PARALLEL_FILL_BARS else 1

    def work(w: int) -> None:
        path, scratch = gen.scratch()
        try:
            for n, step in enumerate(steps):
                stage = stages[n % 2]
                first = gen.days(step[0])[0]
                while w < fillers and (j := next(to_fill[n])) < k:
                    for i in step:
                        at = (gen.days(i)[0] - first) * per_day
                        gen.fill(i, (j,), (stage, path, scratch), factor(i), at)
                barrier.wait()
                at = (first - clock.first_day) * per_day  # the step's first bar on the full grid
                lo = max(at, clock.a)
                hi = min(at + (gen.days(step[-1])[1] + 1 - first) * per_day, clock.b)
                if lo >= hi:
                    continue
                while (t := next(to_run[n])) < len(tasks):
                    runner, pod_index = tasks[t]
                    try:
                        runner(stage, lo - at, hi - at, lo - clock.a, hi - clock.a)
                    except BaseException as exc:
                        errors[-1 if pod_index is None else pod_index] = exc
                        raise
        except threading.BrokenBarrierError:
            return  # another thread failed: its error is raised below
        except BaseException as exc:
            errors.setdefault(-1, exc)
            barrier.abort()

    if workers == 1:
        work(0)
    else:
        threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    pod_errors = sorted(i for i in errors if i >= 0)
    if pod_errors:
        i = pod_errors[0]
        exc = errors[i]
        if isinstance(exc, StrategyError):
            raise StrategyError(f"pods[{i}] ({config.pods[i].pod_id}): {exc}") from None
        raise exc
    if -1 in errors:
        raise errors[-1]
