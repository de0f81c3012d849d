"""The synthetic source's intraday fast path: bars generated chunk by chunk and fed straight to
the pods' signals, so the highs, lows and volumes never become ``(T, S)`` matrices; and, in a
streamed run, straight on to the bar loop, so the slot matrix never exists either.

:func:`~orchestra.engine.build.prepare` otherwise builds the five market matrices of the whole
history (:func:`~orchestra.data.synthetic.generate_market`), then runs each pod's step form over
them a chunk of bars at a time, gathering the pod's rows of each field. Here, for each step of
bars in time order (consecutive 16-day chunks of the generator, at least
:data:`~orchestra.strategies.CHUNK_BARS` bars):

1. the threads fill the step's bars of every symbol, a symbol at a time, into a shared stage
   ``(field, symbol, bar)``: the layout the strategies' kernels read;
2. after a barrier, the threads run the tasks on that step, a task at a time: the pods' step
   forms (each pod's state carried from its previous step, which every thread has finished)
   writing the step's rows of the slot matrix, and one task that places the closes (and opens)
   into their ``(T, S)`` matrices and steps Wilder's ATR over the step.

Two stages alternate, so a thread that is done with step ``i``'s tasks fills step ``i+1`` while
the other finishes. The numbers are those of the matrices' path, array for array
(tested): the same generator chunks, the same step forms on the same bars in the same order, the
same ATR steps, the same leverage cap row by row.

Two ways to run it:

* :meth:`FusedPlan.materialize` (``prepare(config)``, :func:`fused_window`): every step's rows
  go into one ``(T, K)`` slot matrix, and the opens and ATRs into ``(T, S)`` matrices: the
  kernel inputs of the matrices' path. Saves three 0.2 GB matrices on a year of minute bars for
  50 symbols, and each pod's gathers.
* :meth:`FusedPlan.stream` (``prepare(config, stream=True)``, what
  :func:`~orchestra.run_backtest` does): the engine's bar loop is one more task of each step,
  running the previous step's bars while the pods compute this one's. The slot matrix's rows,
  the opens and the ATRs live in two step buffers each, which alternate; only the closes stay a
  ``(T, S)`` matrix (the results read them). The kernels read the buffers through
  ``RunParams.target_row0`` / ``market_row0`` (the bar of a buffer's row 0). On L (8 pods, 200
  slots, a year of minutes) that is 1.3 GB of fresh memory fewer (on this VM fresh pages cost
  ~1 s of system time per GB) and the bar loop's second beside the signals instead of after
  them. Every result frame equals the whole matrices' run (tested across steps, threads,
  executions, late and duplicated pods).

It applies when every pod is a built-in on the clock's timeframe whose params have a step form,
the data are ``synthetic`` on an intraday timeframe that divides the day, and no sweep shares
its windows (:func:`~orchestra.engine.build.share_work`); otherwise :func:`fused_plan` returns
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
    plan = fused_plan(config, first_day, end)
    return None if plan is None else plan.materialize()


def fused_plan(
    config: Any, first_day: dt.date, end: dt.date, streamed: bool = False
) -> FusedPlan | None:
    """What the fast path sets up before any bar (the clock, the pods' step runs, the engine's
    fields), or None when it does not apply (see the module docstring). ``streamed``: for
    :meth:`FusedPlan.stream` (the opens and ATRs in step buffers; the market's opens
    zero-width), else for :meth:`FusedPlan.materialize`."""
    from orchestra.data.align import Market
    from orchestra.data.synthetic import INTRADAY_CHUNK, market_clock
    from orchestra.engine.build import _pod_key
    from orchestra.strategies import CHUNK_BARS, pod_params, step_run
    from orchestra.timeframes import DAY_MS, timeframe_ms

    clock = market_clock(config.symbols, first_day, end, config.data.timeframe)
    if clock is None or clock.base >= DAY_MS or clock.b <= clock.a:
        return None
    step = timeframe_ms(config.clock_timeframe)
    if any(timeframe_ms(p.timeframe) != step for p in config.pods) or clock.base != step:
        return None
    symbols = list(config.symbols)
    n_bars, n_sym = clock.b - clock.a, len(symbols)
    ts = clock.ts[clock.a : clock.b]
    tradable = np.ones((n_bars, n_sym), bool)
    empty = np.empty((n_bars, 0))
    probe = Market(ts, symbols, empty, empty, empty, empty, empty, tradable, config.clock_timeframe)
    # generator chunks a step: at least CHUNK_BARS bars (a 16-day chunk of hours is only 384)
    group = max(1, -(-CHUNK_BARS // (INTRADAY_CHUNK * clock.per_day)))
    step_bars = group * INTRADAY_CHUNK * clock.per_day
    widths = [len(p.symbols) for p in config.pods]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    keys = [_pod_key(pod, probe) for pod in config.pods]
    first: dict[tuple, int] = {}
    same_as = {i: first.setdefault(k, i) for i, k in enumerate(keys)}
    position = {s: j for j, s in enumerate(clock.order)}  # a symbol's row of the stage
    pods = []
    for i in sorted(set(same_as.values())):
        pod = config.pods[i]
        run = step_run(pod.strategy, pod_params(pod), probe, pod.symbols)  # rows: by step
        if run is None:
            return None
        rows = np.array([position[s] for s in pod.symbols], dtype=np.int64)
        pods.append(_PodTask(i, run, rows, offsets[i], offsets[i + 1], step_bars, pod))
    fields = _EngineFields(step_bars, symbols, clock.order, n_bars, streamed)
    market = Market(
        ts, symbols, fields.open, empty, empty, fields.close, empty, tradable,
        config.clock_timeframe,
    )  # fmt: skip
    return FusedPlan(config, clock, group, step_bars, market, fields, pods, same_as, offsets)


class FusedPlan:
    """The fast path once set up: :meth:`materialize` runs every step into a ``(T, K)`` slot
    matrix; :meth:`stream` hands each step's rows to an engine's bar loop as the next step is
    made, so the slot matrix never exists."""

    def __init__(self, config, clock, group, step_bars, market, fields, pods, same_as, offsets):
        self.config, self.clock, self.group, self.step_bars = config, clock, group, step_bars
        self.market, self.atr, self.fields = market, fields.atr, fields
        self.pods, self.same_as, self.offsets = pods, same_as, offsets
        self.n_slots = int(offsets[-1])

    def _tasks(self) -> list[tuple[float, Any, Any]]:
        """(cost, runner, pod index): the engine's fields cost about half a tsmom pod of as
        many symbols."""
        tasks: list[tuple[float, Any, Any]] = [(0.5 * len(self.config.symbols), self.fields, None)]
        tasks += [(len(p.pod.symbols) * p.run.form.cost, p, p.index) for p in self.pods]
        return tasks

    def _copy_duplicates(self, rows: np.ndarray) -> None:
        """A pod with the same strategy, params, symbols and cap as an earlier one: its rows."""
        o = self.offsets
        for i, j in self.same_as.items():
            if j != i:
                rows[:, o[i] : o[i + 1]] = rows[:, o[j] : o[j + 1]]

    def materialize(self) -> FusedWindow:
        """Every step's weights into one ``(T, K)`` slot matrix (a plan not ``streamed``)."""
        target = np.zeros((self.market.n_bars, self.n_slots))
        _drive(self, self._tasks(), lambda k, c0, c1: target[c0:c1], None)
        self._copy_duplicates(target)
        return FusedWindow(self.market, target, self.atr)

    def stream(self, engine, progress=None, *, first: int, shift: int, join: np.ndarray) -> None:
        """Run ``engine`` (made on this plan's market with a zero-row target) over every bar,
        a step of bars at a time: while the threads run step ``k``'s tasks, one of them runs
        the bar loop over step ``k-1``'s bars. Two step buffers of the slot matrix's rows, and
        two of the opens and ATRs, alternate (for L 2 × 37 MB and 2 × 2 × 9 MB instead of 0.84
        and 2 × 0.21 GB); the closes stay a ``(T, S)`` matrix (the results read them).

        Bar ``b`` is the market's row ``b + first`` and executes the weights of row
        ``b + first - shift`` (``shift`` 1 for next-open execution, 0 at the close), as the
        matrix path's lagged slice does; a pod's rows before its ``join`` bar are 0. So a
        step's bars are those of its prices, and with next-open execution the first of them
        reads the previous step's last row: each buffer's row 0 (a zero row before the first
        step, as the matrix path's). Each fill's target weight is kept for the positions
        frame (:meth:`~orchestra.engine.core.Engine.fill_target_weights`)."""
        if not engine.keep_journal:  # each fill's target weight is read from its journal
            raise ValueError("a streamed run's engine keeps its journal (keep_journal=True)")
        buffers = [np.zeros((self.step_bars + 1, self.n_slots)) for _ in range(2)]
        engine.fill_targets = []
        seen = [0]  # the engine's fill chunks whose targets are read

        def consume(k: int, c0: int, c1: int) -> None:
            rows = buffers[k % 2]  # row i: the market row c0 - 1 + i
            self._copy_duplicates(rows[1 : 1 + c1 - c0])
            # the next step's bars start with this step's last row (next-open execution)
            buffers[(k + 1) % 2][0] = rows[c1 - c0]
            b0, b1 = max(0, c0 - first), min(engine.n_bars, c1 - first)  # bars with prices
            if b1 <= b0:
                return
            row0 = c0 - 1 - first + shift  # the bar whose weights are the buffer's row 0
            o = self.offsets
            for p in np.flatnonzero(join > b0):
                rows[b0 - row0 : min(b1, int(join[p])) - row0, o[p] : o[p + 1]] = 0.0
            opens, atrs = fields.rows(k, c0, c1)  # row 0: bar c0 - first
            params = engine.inputs.params._replace(
                target_row0=float(row0), market_row0=float(c0 - first)
            )
            engine.inputs = engine.inputs._replace(target=rows, open=opens, atr=atrs, params=params)
            engine.advance(b1, progress)
            engine.flush()
            for chunk in engine._fills[seen[0] :]:
                engine.fill_targets.append(rows[chunk["bar"] - row0, chunk["slot"]])
            seen[0] = len(engine._fills)

        fields = self.fields
        engine._streaming = True
        try:
            _drive(self, self._tasks(), lambda k, c0, c1: buffers[k % 2][1 : 1 + c1 - c0], consume)
        finally:
            engine._streaming = False
        # the last step's buffers: not the run's (the engine cannot step again)
        n_sym = len(self.config.symbols)
        params = engine.inputs.params._replace(target_row0=0.0, market_row0=0.0)
        engine.inputs = engine.inputs._replace(
            open=np.zeros((0, n_sym)), atr=np.zeros((0, n_sym)), params=params
        )
        engine.release_target()


class _PodTask:
    """A pod's step form over a step of bars, written into the step's rows of the slot matrix
    (its columns), then capped row by row (the same as on the whole matrix)."""

    def __init__(self, index, run, rows, o0, o1, step_bars, pod):
        self.index, self.run, self.rows, self.o0, self.o1, self.pod = index, run, rows, o0, o1, pod
        self.cap = float(pod.risk.max_leverage)
        self.gross = np.empty(step_bars)

    def __call__(self, stage, s0: int, s1: int, c0: int, c1: int, k: int, out) -> None:
        from orchestra.strategies import StrategyError, cap_matrix

        block, gross = out[:, self.o0 : self.o1], self.gross[: c1 - c0]
        if not self.run.chunk(ChunkFields(stage, self.rows, s0, s1), c0, c1, (block, gross)):
            raise StrategyError(f"strategy {self.run.name!r} has no step form for these params")
        cap_matrix(block, self.cap, gross)


class _EngineFields:
    """The task that keeps what the engine reads: the closes as a ``(T, S)`` matrix (columns in
    the config's symbol order), and the opens and Wilder's ATR, stepped chunk by chunk: as
    ``(T, S)`` matrices too, or (``streamed``) into two step buffers that alternate."""

    def __init__(self, chunk_bars: int, symbols: list[str], order: list[str], n_bars: int,
                 streamed: bool):  # fmt: skip
        from orchestra.kernels.market import new_atr_state

        column = {s: j for j, s in enumerate(symbols)}
        n_sym = len(symbols)
        self.cols = np.array([column[s] for s in order], dtype=np.int64)
        self.close = np.empty((n_bars, n_sym))
        rows = chunk_bars if streamed else n_bars
        self.streamed = streamed
        self.opens = [np.empty((rows, n_sym)) for _ in range(2 if streamed else 1)]
        self.atrs = [np.empty((rows, n_sym)) for _ in range(2 if streamed else 1)]
        self.open = np.empty((n_bars, 0)) if streamed else self.opens[0]
        self.atr = np.empty((0, n_sym)) if streamed else self.atrs[0]
        self.tradable = np.ones((chunk_bars, n_sym), bool)
        self.high = np.empty((chunk_bars, n_sym))  # one chunk's, for the ATR
        self.low = np.empty((chunk_bars, n_sym))
        self.state = new_atr_state(n_sym)

    def rows(self, k: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """The opens and ATRs of bars ``c0 .. c1-1`` of the ``k``-th step with bars."""
        if self.streamed:
            return self.opens[k % 2][: c1 - c0], self.atrs[k % 2][: c1 - c0]
        return self.opens[0][c0:c1], self.atrs[0][c0:c1]

    def __call__(self, stage, s0: int, s1: int, c0: int, c1: int, k: int, out=None) -> None:
        from orchestra.kernels.layout import place_rows_nb
        from orchestra.kernels.market import ATR_BARS, atr_nb

        n = s1 - s0
        opens, atrs = self.rows(k, c0, c1)
        place_rows_nb(stage[OPEN], s0, n, opens, self.cols)
        place_rows_nb(stage[CLOSE], s0, n, self.close[c0:c1], self.cols)
        place_rows_nb(stage[HIGH], s0, n, self.high[:n], self.cols)
        place_rows_nb(stage[LOW], s0, n, self.low[:n], self.cols)
        atr_nb(self.high[:n], self.low[:n], self.close[c0:c1], self.tradable[:n], ATR_BARS,
               self.state, atrs)  # fmt: skip


def _drive(plan: FusedPlan, tasks: list[tuple[float, Any, Any]], rows_of, consume) -> None:
    """Every step of bars in time order (``plan.group`` consecutive generator chunks), the
    threads fill it, then run the tasks on it, the costliest first. Both phases hand out their
    work one piece at a time (a symbol to fill, a task to run), so a thread never idles while
    the other has work left; a thread done with step ``i``'s tasks fills step ``i+1`` (the
    other stage) while the other finishes. A pod's steps run one after the other: step
    ``i+1``'s tasks start only when every thread has passed step ``i``'s tasks.

    ``rows_of(k, c0, c1)``: where the tasks of the ``k``-th step with bars write the slot
    matrix's rows of bars ``c0 .. c1-1`` (market rows). ``consume(k, c0, c1)``, if given, runs
    as the first task of the next step with bars (after the last one, once the threads are
    done): every task of step ``k`` has finished by then. The first pod's error (in pod order)
    is raised."""
    import itertools

    from orchestra.data.synthetic import INTRADAY_CHUNK
    from orchestra.strategies import StrategyError

    config, clock, group = plan.config, plan.clock, plan.group
    gen = IntradayChunks(
        clock.order, clock.first_day, clock.last_day, clock.per_day, config.data.seed
    )
    k, per_day = len(clock.order), clock.per_day
    steps = [range(i, min(i + group, len(gen.chunks))) for i in range(0, len(gen.chunks), group)]
    spans: list[tuple[int, int, int] | None] = []  # (k, c0, c1) of a step with bars
    n_with = 0
    for step in steps:
        at = (gen.days(step[0])[0] - clock.first_day) * per_day  # the step's first grid bar
        lo = max(at, clock.a)
        hi = min(at + (gen.days(step[-1])[1] + 1 - gen.days(step[0])[0]) * per_day, clock.b)
        spans.append((n_with, lo - clock.a, hi - clock.a) if lo < hi else None)
        n_with += lo < hi
    order = [(runner, pod) for _, runner, pod in sorted(tasks, key=lambda x: -x[0])]
    workers = max(1, min(os.cpu_count() or 1, len(order) + (consume is not None), k))
    stages = [np.empty((5, k, group * INTRADAY_CHUNK * per_day)) for _ in range(2)]
    barrier = threading.Barrier(workers)
    errors: dict[int, BaseException] = {}  # by pod index (-1: not a pod's)
    # the pieces of each phase, claimed with next() (atomic in CPython)
    to_fill = [itertools.count() for _ in steps]
    to_run = [itertools.count() for _ in steps]
    factors: dict[int, np.ndarray] = {}
    lock = threading.Lock()
    previous: list[tuple[int, int, int] | None] = []  # per step: the step with bars before it
    last = None
    for span in spans:
        previous.append(last if span is not None else None)
        last = span if span is not None else last

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
                span = spans[n]
                if span is None:
                    continue
                n_k, c0, c1 = span
                s0 = c0 + clock.a - (first - clock.first_day) * per_day  # on the stage
                rows = rows_of(n_k, c0, c1)
                todo = list(order)
                before = previous[n]
                if consume is not None and before is not None:  # the bar loop, first
                    todo.insert(0, (lambda *_, b=before: consume(*b), None))
                while (t := next(to_run[n])) < len(todo):
                    runner, pod_index = todo[t]
                    try:
                        runner(stage, s0, s0 + c1 - c0, c0, c1, n_k, rows)
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
    if consume is not None and last is not None:
        consume(*last)
