"""From a config and its bars to the kernels' :class:`~orchestra.kernels.state.Inputs`.

Stages (timed separately by the benchmark): align bars on the clock, compute every pod's weights
(whole history, polars), compute ATR, lay the pods' weights into the slot matrix, lag them by one
bar for ``next_open``, and cut the warm-up off.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from orchestra.config import Config
from orchestra.data import DataError, LoadedData, Market, load_bars, resample, to_matrices
from orchestra.data.align import bars_of
from orchestra.engine.fused import fused_plan
from orchestra.kernels.market import ATR_BARS
from orchestra.kernels.state import (
    CLOSE,
    DD_ALERT,
    DD_DERISK,
    DD_FLATTEN,
    NEXT_OPEN,
    Inputs,
    LifecycleParams,
    RunParams,
)
from orchestra.strategies import cap_matrix, pod_params, weights_on_clock
from orchestra.timeframes import DAY_MS, days_to_periods, epoch_ms, period_days, timeframe_ms


@dataclass
class Prepared:
    """Everything a driver needs: kernel inputs plus the labels to build result frames."""

    config: Config
    inputs: Inputs
    # the simulated window only: timestamps, symbols, open, close, tradable (high, low and
    # volume are zero-width: nothing after prepare reads them)
    market: Market
    pod_ids: list[str]
    slot_labels: list[tuple[str, str]]  # (pod_id, symbol) per slot
    pod_join_bar: np.ndarray  # (P,) first simulated bar of each pod
    data_label: str
    timings: dict[str, float] = field(default_factory=dict)
    data_notes: tuple[str, ...] = ()  # the data does not cover the requested range
    # a streamed run (prepare(stream=True)): ``stream(engine, progress)`` makes the bars and
    # the signals step by step as the engine's bar loop consumes them (engine/fused.py); the
    # inputs' target is then a zero-row stand-in. Engine.run() calls it; None otherwise
    stream: Any = None


def atr_matrix(market: Market, window: int = ATR_BARS) -> np.ndarray:
    """Wilder's ATR(window) per symbol, ``(T, S)`` (see :func:`orchestra.kernels.market.atr_nb`)."""
    from orchestra.kernels.market import atr_nb, new_atr_state

    state = new_atr_state(len(market.symbols))
    out = np.empty(market.close.shape)
    return atr_nb(market.high, market.low, market.close, market.tradable, window, state, out)


class SharedWork:
    """A per-process memo of what a sweep's points share (issue #26): the loaded bars and
    market matrices of a data window, their ATR, and each pod's weight block on them.

    A data window is keyed by everything :func:`~orchestra.data.load_bars` reads — ``data``,
    the symbols, the first warm-up day and the end — and the clock; a pod's block by its
    strategy, params, symbols, timeframe and leverage cap on that window's market object. The
    arrays are the ones a fresh computation gives (prepare copies what the engine may touch), so
    a point's results are bit-identical with or without it (tested). Bounded: the last
    ``max_windows`` windows and their blocks. Off unless :func:`share_work` turned it on (sweep
    workers do).
    """

    def __init__(self, max_windows: int = 2) -> None:
        self.max_windows = max_windows
        self.windows: dict[str, tuple[Any, pl.DataFrame, Market]] = {}
        self.blocks: dict[tuple, np.ndarray] = {}
        self.atrs: dict[int, np.ndarray] = {}  # by the window's market object
        self.hits = {"data": 0, "signals": 0, "atr": 0}

    def atr(self, market: Market) -> np.ndarray:
        """The ATR matrix of a window's market, computed once (nothing writes to it: the bar
        loop reads it, and the live loop, which appends rows, does not share work)."""
        if id(market) in self.atrs:
            self.hits["atr"] += 1
        else:
            self.atrs[id(market)] = atr_matrix(market)
        return self.atrs[id(market)]

    def window(self, key: str, build: Any) -> tuple[Any, pl.DataFrame, Market]:
        if key in self.windows:
            self.hits["data"] += 1
            return self.windows[key]
        if len(self.windows) >= self.max_windows:  # forget the oldest window and its blocks
            old = next(iter(self.windows))
            gone = id(self.windows.pop(old)[2])
            self.blocks = {k: v for k, v in self.blocks.items() if k[-1] != gone}
            self.atrs.pop(gone, None)
        self.windows[key] = build()
        return self.windows[key]


_SHARED: SharedWork | None = None


def share_work(on: bool = True) -> SharedWork | None:
    """Turn the per-process memo of data windows and pod signals on (or off); returns it."""
    global _SHARED
    if on and _SHARED is None:
        _SHARED = SharedWork()
    elif not on:
        _SHARED = None
    return _SHARED


def _pod_key(pod: Any, market: Market) -> tuple:
    import json

    return (
        pod.strategy,
        json.dumps(pod_params(pod), sort_keys=True, default=str),
        tuple(pod.symbols),
        pod.timeframe,
        float(pod.risk.max_leverage),
        id(market),
    )


def pod_weight_matrix(config: Config, bars: Any, market: Market, clock_tf: str) -> np.ndarray:
    """Every pod's weights on the clock in one ``(T_all, K)`` slot matrix (pods' slots in order).

    A pod on the clock's timeframe whose strategy has a wide form (every built-in) is computed
    on the market matrices directly (:func:`~orchestra.strategies.weights_matrix`); any other
    pod (a coarser timeframe, a user's long-frame strategy) goes through the long-frame
    contract. Both give the same numbers. Pods are independent and computed on a thread per
    core (the kernels and polars release the GIL); the result does not depend on the order.
    ``bars`` is the long frame, or a function that builds it (called once, when a pod needs it).
    """
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from orchestra.strategies import StrategyError, StrategyWarning, get_strategy, weights_matrix

    t0 = int(market.timestamps[0])
    step = timeframe_ms(clock_tf)
    widths = [len(p.symbols) for p in config.pods]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    mat = np.zeros((market.n_bars, int(offsets[-1])))
    notes: dict[int, str] = {}

    shared = _SHARED
    # pods with the same strategy, params, symbols, timeframe and leverage cap have the same
    # weights: each is computed once and copied (the first pod of each such group computes)
    keys = [_pod_key(pod, market) for pod in config.pods]
    first: dict[tuple, int] = {}
    same_as = {i: first.setdefault(k, i) for i, k in enumerate(keys)}
    caps: dict[int, tuple[int, float]] = {}
    frame: list[pl.DataFrame] = [] if callable(bars) else [bars]
    lock = threading.Lock()

    def long_frame() -> pl.DataFrame:
        with lock:
            if not frame:
                frame.append(bars())
            return frame[0]

    def one(i: int) -> None:
        pod = config.pods[i]
        block = mat[:, offsets[i] : offsets[i + 1]]  # a view
        key = keys[i]
        if shared is not None and key in shared.blocks:
            shared.hits["signals"] += 1
            block[:] = shared.blocks[key]
            return
        try:
            wide = None
            if timeframe_ms(pod.timeframe) == step:  # written straight into the pod's columns
                gross = np.empty(market.n_bars)
                wide = weights_matrix(
                    pod.strategy, pod_params(pod), market, pod.symbols, block, gross
                )
            if wide is not None:
                # exact where it matters: numpy's sums of the rows the rough gross cannot rule
                # out (a C-order copy of them: the same sums as on a matrix of the pod alone)
                capped = cap_matrix(block, pod.risk.max_leverage, gross)
            else:
                pod_bars = long_frame().filter(pl.col("symbol").is_in(pod.symbols))
                w = weights_on_clock(
                    pod.strategy, pod_bars, pod_params(pod), pod.timeframe, clock_tf
                )
                index = {s: j for j, s in enumerate(pod.symbols)}
                rows = ((w["timestamp"].dt.epoch("ms").to_numpy() - t0) // step).astype(np.int64)
                cols = w["symbol"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
                block[rows, cols] = w["weight"].to_numpy()
                # the pod's leverage cap, on its dense block (a per-timestamp group-by in
                # polars costs more than the strategy itself on long frames)
                capped = cap_matrix(block, pod.risk.max_leverage)
        except StrategyError as exc:
            raise StrategyError(f"pods[{i}] ({pod.pod_id}): {exc}") from None
        caps[i] = capped
        if shared is not None:
            shared.blocks[key] = block.copy()

    computed = [i for i in range(len(config.pods)) if same_as[i] == i]
    workers = min(len(computed), os.cpu_count() or 1)
    if workers <= 1:
        for i in computed:
            one(i)
    else:
        # the costliest pods first (symbols × the step form's measured relative cost), so that
        # no long pod is left alone at the end; the weights do not depend on the order
        def cost(i: int) -> float:
            form = getattr(get_strategy(config.pods[i].strategy).func, "step_form", None)
            return len(config.pods[i].symbols) * (form.cost if form is not None else 4.0)

        with ThreadPoolExecutor(workers) as pool:
            futures = {i: pool.submit(one, i) for i in sorted(computed, key=cost, reverse=True)}
        for i in computed:  # the first pod's error, whatever finished first
            futures[i].result()
    for i, j in same_as.items():
        if j != i:  # the same weights as pod j's
            mat[:, offsets[i] : offsets[i + 1]] = mat[:, offsets[j] : offsets[j + 1]]
        pod = config.pods[i]
        scaled, top = caps.get(j, (0, 0.0))
        if scaled and ":" in pod.strategy:  # a user's strategy: say what the cap changed
            notes[i] = (
                f"pods[{i}] ({pod.pod_id}): strategy {pod.strategy!r} asked for gross weight "
                f"above risk.max_leverage = {pod.risk.max_leverage:g} at {scaled} bar(s) "
                f"(largest {top:.6g}); those bars were scaled down pro rata"
            )
    for i in sorted(notes):  # in pod order, whatever finished first
        warnings.warn(notes[i], StrategyWarning, stacklevel=2)
    return mat


def _funding(config: Config, symbols: list[str], ts: np.ndarray, step: int) -> np.ndarray:
    """The funding-rate matrix on the clock (zeros unless ``portfolio.funding``)."""
    if not config.portfolio.funding:
        return np.zeros((ts.size, len(symbols)))
    from orchestra.data.funding import funding_matrix, read_funding_file

    d = config.data
    if d.source == "files":
        assert d.path is not None
        rates = {s: read_funding_file(d.path, s) for s in symbols}
    else:  # ccxt
        from orchestra.data.ccxt_source import fetch_funding, make_exchange

        ex = make_exchange(d.exchange, d.market)
        rates = {s: fetch_funding(ex, s, int(ts[0]), int(ts[-1]) + step, d.cache) for s in symbols}
    return funding_matrix(rates, symbols, ts, step)


class FundingRows:
    """The funding-rate row of one clock bar at a time (the live loop's :func:`_funding`).

    A bar opened at ``ts`` is charged the rates of the funding times ``ts < F ≤ ts + step``: on a
    contiguous clock, the same rows :func:`~orchestra.data.funding.funding_matrix` gives.
    Files are read once; a ccxt source fetches the new tail at each bar (cached).
    """

    def __init__(self, config: Config, symbols: list[str]):
        self.config, self.symbols = config, symbols
        self.step = timeframe_ms(config.clock_timeframe)
        self.enabled = bool(config.portfolio.funding)
        self.rates: dict[str, pl.DataFrame] | None = None
        self.exchange = None

    def row(self, ts: int) -> np.ndarray:
        from orchestra.data.funding import funding_matrix

        if not self.enabled:
            return np.zeros(len(self.symbols))
        d = self.config.data
        if d.source == "files":
            if self.rates is None:
                from orchestra.data.funding import read_funding_file

                assert d.path is not None
                self.rates = {s: read_funding_file(d.path, s) for s in self.symbols}
            rates = self.rates
        else:
            from orchestra.data.ccxt_source import fetch_funding, make_exchange

            if self.exchange is None:
                self.exchange = make_exchange(d.exchange, d.market)
            until = ts + self.step
            rates = {s: fetch_funding(self.exchange, s, ts, until, d.cache) for s in self.symbols}
        return funding_matrix(rates, self.symbols, np.array([ts], dtype=np.int64), self.step)[0]


def month_end(ts: np.ndarray, step: int) -> np.ndarray:
    """True where the bar (open ``ts``, length ``step`` ms) closes its UTC month."""
    start = ts.astype("datetime64[ms]").astype("datetime64[M]")
    nxt = (ts + step).astype("datetime64[ms]").astype("datetime64[M]")
    return nxt > start


def lifecycle_params(config: Config, enabled: bool = True) -> LifecycleParams:
    """The lifecycle thresholds of SPEC §8 as the kernels' ``Inputs.lifecycle``.

    Every "days" setting means calendar days on any clock: day counters advance by the days one
    day-end step covers (``period_days``), and windows over the return history are converted
    to a number of steps.
    """
    o = config.orchestrator
    period = period_days(config.clock_timeframe)
    g, r, d = o.graduation, o.retirement, o.degradation
    return LifecycleParams(
        enabled=float(1.0 if enabled else 0.0),
        min_live_days=float(g.min_live_days),
        min_sharpe=float(g.min_sharpe),
        grad_max_dd=float(g.max_drawdown),
        min_trades=float(g.min_trade_count),
        min_calmar=float(g.min_calmar),
        max_corr=float(g.max_portfolio_correlation),
        breach_dd=float(r.max_drawdown_breach),
        loss_months=float(r.consecutive_loss_months),
        sharpe_floor=float(r.rolling_sharpe_floor),
        sharpe_window=float(days_to_periods(r.rolling_sharpe_window, period)),
        probation_days=float(r.probation_days),
        warning_days=float(r.warning_days),
        ph_delta=float(d.delta),
        ph_lambda=float(d.lambda_),
        ph_alpha=float(d.alpha),
        ph_min=float(d.min_instances),
        corr_lookback=float(days_to_periods(o.correlation.lookback, period)),
        min_history=float(days_to_periods(o.min_history, period)),
        period_days=float(period),
        min_dwell=float(r.min_dwell_days),
        recovery_ratio=float(r.recovery_drawdown_ratio),
        strong_margin=float(r.strong_recovery_margin),
        recovery_margin=float(r.recovery_sharpe_margin),
    )


def history_days(config: Config) -> int:
    """Length of the kernels' ring buffer of daily returns: the longest lifecycle window."""
    o = config.orchestrator
    return (
        max(o.retirement.rolling_sharpe_window, o.correlation.lookback, o.degradation.min_instances)
        + 1
    )


def clock_fields(ts: np.ndarray, step: int) -> dict[str, Any]:
    """The calendar fields of bars opened at ``ts`` (``step`` ms long): day, day end, month end."""
    return {
        "timestamps": ts,
        "day_id": ts // DAY_MS,
        "day_end": ((ts + step) // DAY_MS) > (ts // DAY_MS),
        "month_end": month_end(ts, step),
    }


def static_inputs(
    config: Config, symbols: list[str]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The Inputs fields that do not depend on the bars (slots, pod limits, params) and the
    ``(pod_id, symbol)`` label of each slot."""
    sym_index = {s: i for i, s in enumerate(symbols)}
    slot_pod, slot_sym, labels = [], [], []
    pod_ptr = [0]
    for p, pod in enumerate(config.pods):
        for sym in pod.symbols:
            slot_pod.append(p)
            slot_sym.append(sym_index[sym])
            labels.append((pod.pod_id, sym))
        pod_ptr.append(len(slot_pod))
    slot_sym_arr = np.asarray(slot_sym, dtype=np.int64)
    order = np.argsort(slot_sym_arr, kind="stable")
    sym_ptr = np.zeros(len(symbols) + 1, dtype=np.int64)
    np.add.at(sym_ptr, slot_sym_arr + 1, 1)
    sym_ptr = np.cumsum(sym_ptr)
    risk = config.orchestrator.risk
    actions = {"alert": DD_ALERT, "derisk": DD_DERISK, "flatten": DD_FLATTEN}
    params = RunParams(
        exec_mode=float(NEXT_OPEN if config.backtest.execution == "next_open" else CLOSE),
        cost=config.portfolio.cost_bps / 1e4,
        slippage=config.portfolio.slippage_bps / 1e4,
        max_gross=float(risk.max_gross_leverage),
        daily_loss=float(risk.daily_loss_limit),
        funding=1.0 if config.portfolio.funding else 0.0,
        max_drawdown=float(risk.max_portfolio_drawdown),
        drawdown_action=float(actions[risk.drawdown_action]),
        min_capital=float(config.orchestrator.min_pod_capital),
        # the drift check's settings come from the engine's allocator (Engine.__init__)
        drift_check=0.0,
        drift_threshold=0.0,
        alloc_lookback=0.0,
        alloc_min_history=0.0,
        alloc_per_year=0.0,
        # whole matrices (a streamed run hands the bar loop a step's rows at a time)
        target_row0=0.0,
        market_row0=0.0,
    )
    sl = np.array(
        [
            np.nan if p.risk.system_stop_loss is None else p.risk.system_stop_loss
            for p in config.pods
        ]
    )
    static = {
        "slot_pod": np.asarray(slot_pod, dtype=np.int64),
        "slot_sym": slot_sym_arr,
        "pod_ptr": np.asarray(pod_ptr, dtype=np.int64),
        "sym_ptr": sym_ptr.astype(np.int64),
        "sym_slots": order.astype(np.int64),
        "pod_max_leverage": np.array([p.risk.max_leverage for p in config.pods]),
        "pod_threshold": np.array([p.risk.rebalance_threshold for p in config.pods]),
        "pod_stop_loss": sl,
        "pod_trailing": np.array([p.risk.use_trailing_stop for p in config.pods]),
        "pod_trail_mult": np.array([p.risk.trailing_stop_atr_multiplier for p in config.pods]),
        "pod_max_drawdown": np.array([p.risk.max_drawdown for p in config.pods]),
        "pod_drawdown_warning": np.array([p.risk.drawdown_warning for p in config.pods]),
        "pod_min_fraction": np.array([p.min_fraction for p in config.pods]),
        "params": params,
        "lifecycle": lifecycle_params(config),
    }
    return static, labels


def empty_prepared(config: Config, data_label: str) -> Prepared:
    """A Prepared with no bars yet: the live loop appends them one at a time
    (:meth:`~orchestra.engine.core.Engine.append`)."""
    symbols = config.symbols
    static, labels = static_inputs(config, symbols)
    n_sym, n_slots = len(symbols), static["slot_pod"].size
    ts = np.zeros(0, dtype=np.int64)
    empty = np.zeros((0, n_sym))
    inputs = Inputs(
        **clock_fields(ts, timeframe_ms(config.clock_timeframe)),
        open=empty,
        close=empty.copy(),
        tradable=np.zeros((0, n_sym), dtype=np.bool_),
        atr=empty.copy(),
        target=np.zeros((0, n_slots)),
        funding=empty.copy(),
        **static,
    )
    market = Market(
        ts, symbols, empty, empty, empty, empty, empty, inputs.tradable, config.clock_timeframe
    )
    return Prepared(
        config=config,
        inputs=inputs,
        market=market,
        pod_ids=[p.pod_id for p in config.pods],
        slot_labels=labels,
        pod_join_bar=np.zeros(len(config.pods), dtype=np.int64),
        data_label=data_label,
    )


FUSED = True  # the synthetic intraday fast path (engine/fused.py); False: the matrices' path


def _direct_synthetic(config: Config, start: Any, end: Any) -> bool:
    """Whether :func:`prepare` may build the window from the synthetic generator directly."""
    same_clock = timeframe_ms(config.clock_timeframe) == timeframe_ms(config.data.timeframe)
    plain_dates = type(start) is dt.date and type(end) is dt.date
    return same_clock and plain_dates and config.data.source == "synthetic"


def _first_day(config: Config, start: dt.date) -> dt.date:
    """The first day of the bars a run loads: its start less the strategies' warm-up."""
    from orchestra.strategies.warmup import warmup_days

    return start - dt.timedelta(days=warmup_days(config))


def _synthetic_loaded(config: Config) -> LoadedData:
    from orchestra.data import BAR_SCHEMA, GapReport

    empty = pl.DataFrame(schema=BAR_SCHEMA)  # type: ignore[arg-type]
    return LoadedData(empty, f"synthetic (seed {config.data.seed})", GapReport())


def synthetic_window(
    config: Config, start: dt.date, end: dt.date
) -> tuple[LoadedData, Any, Market] | None:
    """The synthetic bars of a run straight into the market matrices (no long frame; see
    :func:`~orchestra.data.synthetic.generate_market`), with a function that builds the long
    frame only if a pod asks for it (a user's long-frame strategy, a coarser pod timeframe)."""
    from orchestra.data.synthetic import generate_market

    d = config.data
    first_day = _first_day(config, start)
    market = generate_market(config.symbols, first_day, end, d.timeframe, d.seed)
    if market is None:
        return None
    if market.n_bars == 0:
        raise DataError([f"{s}: no bars between {first_day} and {end}" for s in config.symbols],
                        f"synthetic (seed {d.seed})")  # fmt: skip
    return _synthetic_loaded(config), lambda: bars_of(market), market


def _window_key(config: Config, start: dt.date, end: dt.date) -> str:
    """Everything the loaded bars and the market matrices depend on."""
    import json

    from orchestra.strategies.warmup import warmup_days

    first = start - dt.timedelta(days=warmup_days(config))
    return json.dumps(
        [config.data.model_dump(mode="json"), config.symbols, str(first), str(end),
         config.clock_timeframe],
        sort_keys=True,
    )  # fmt: skip


def prepare(
    config: Config,
    start: dt.date | None = None,
    end: dt.date | None = None,
    loaded: LoadedData | None = None,
    timer=None,
    stream: bool = False,
) -> Prepared:
    """Load data, compute signals and build the kernel inputs for the simulated window.

    ``start``/``end`` default to the backtest's; ``start`` may be a datetime (the live loop's
    first bar need not open a day). With ``loaded`` the bars are taken as given (the live loop's
    anchored history) instead of being loaded from the config's source.

    ``stream``: where the synthetic fast path applies (engine/fused.py), leave the bars and
    signals to be made step by step while :meth:`Engine.run` runs the bar loop over them
    (``Prepared.stream``): the ``(T, K)`` target matrix never exists (0.84 GB on L), and the bar
    loop overlaps the data and signals. Same numbers as without (tested). Only ``Engine.run()``
    can run such a prepared window, and the inputs' target is a zero-row stand-in.
    """
    import time

    timings: dict[str, float] = {}
    clock_tf = config.clock_timeframe
    start = start or config.backtest.start
    end = end or config.backtest.end
    t = time.perf_counter()
    symbols = config.symbols

    def build_window() -> tuple[LoadedData, Any, Market]:
        same_clock = timeframe_ms(clock_tf) == timeframe_ms(config.data.timeframe)
        if loaded is None and _direct_synthetic(config, start, end):
            direct = synthetic_window(config, start, end)
            if direct is not None:
                return direct
        got = loaded if loaded is not None else load_bars(config, start, end)
        frame = got.bars
        if not same_clock:
            frame = resample(frame, clock_tf)
        return got, frame, to_matrices(frame, symbols, clock_tf)

    fused, shared, plan = None, None, None
    if _SHARED is None and loaded is None and FUSED and _direct_synthetic(config, start, end):
        plan = fused_plan(config, _first_day(config, start), end, streamed=stream)
        if plan is not None and not stream:
            fused, plan = plan.materialize(), None
    if plan is not None:  # bars and signals made as Engine.run() steps (engine/fused.py)
        loaded, bars, market = _synthetic_loaded(config), None, plan.market
    elif fused is not None:  # bars generated chunk by chunk into the signals (engine/fused.py)
        loaded, bars, market = _synthetic_loaded(config), None, fused.market
    elif _SHARED is not None and loaded is None:
        loaded, bars, market = _SHARED.window(_window_key(config, start, end), build_window)
        shared = (_SHARED, market)  # its ATR is computed once too
    else:
        loaded, bars, market = build_window()
    timings["data"] = time.perf_counter() - t

    first = int(np.searchsorted(market.timestamps, epoch_ms(start)))
    last = int(np.searchsorted(market.timestamps, epoch_ms(end) + DAY_MS))
    if first >= last:
        raise DataError([f"no bars between {start} and {end}"], loaded.source_label)

    t = time.perf_counter()
    if plan is not None:  # made by Engine.run(): its time is the engine's "stream"
        full_target, atr = np.zeros((0, 0)), np.zeros((0, len(symbols)))  # step by step
        timings["signals"] = 0.0
    elif fused is not None:  # computed with the bars: the data stage's time holds both
        full_target, atr = fused.target, fused.atr
        timings["signals"] = 0.0
        del fused
        t = time.perf_counter()
    else:
        full_target = pod_weight_matrix(config, bars, market, clock_tf)
        timings["signals"] = time.perf_counter() - t
        t = time.perf_counter()
        # the volumes were for the signals only: let them go before the ATR's matrix joins the
        # target's (0.21 GB of L's peak; a sweep's shared window keeps its own)
        del bars  # (a closure over the full market)
        market = dataclasses.replace(market, volume=np.empty((market.n_bars, 0)))
        atr = atr_matrix(market) if shared is None else shared[0].atr(shared[1])
    static, labels = static_inputs(config, symbols)
    pod_ptr = static["pod_ptr"]
    n_slots = static["slot_pod"].size
    mode = int(static["params"].exec_mode)
    if plan is not None:
        target = np.zeros((0, n_slots))  # each step's rows are handed to the bar loop
    elif mode == NEXT_OPEN:  # the weight decided at t-1's close executes at t's open
        if first > 0:
            target = full_target[first - 1 : last - 1]  # rows of a fresh matrix: no copy
        else:
            target = np.vstack([np.zeros((1, n_slots)), full_target[: last - 1]])
    else:
        target = full_target[first:last]  # (L: 0.8 GB a copy held twice at the peak)
    del full_target
    # a pod trades only from its start date
    join = np.zeros(len(config.pods), dtype=np.int64)
    ts = market.timestamps[first:last]
    for p, pod in enumerate(config.pods):
        if pod.start is not None:
            join[p] = int(np.searchsorted(ts, epoch_ms(pod.start)))
            if plan is None:  # (a streamed run zeroes the rows of each step)
                target[: join[p], pod_ptr[p] : pod_ptr[p + 1]] = 0.0
    step = timeframe_ms(clock_tf)
    # the simulated window's clock, opens, closes and flags; its highs, lows and volumes were
    # for the signals and the ATR only: zero-width here, so the full matrices are freed (0.65 GB
    # on L) instead of being held through the run and the results
    dropped = np.empty((ts.size, 0))
    window = Market(
        ts,
        symbols,
        market.open[first:last],
        dropped,
        dropped,
        market.close[first:last],
        dropped,
        market.tradable[first:last],
        clock_tf,
    )
    inputs = Inputs(
        **clock_fields(ts, step),
        # a streamed run's opens (and ATRs) are handed to the bar loop step by step
        open=np.ascontiguousarray(window.open) if plan is None else np.zeros((0, len(symbols))),
        # (a streamed run fills its closes as it goes: the inputs must hold the same array)
        close=window.close if plan is not None else np.ascontiguousarray(window.close),
        tradable=np.ascontiguousarray(window.tradable),
        atr=np.ascontiguousarray(atr[first:last]),
        target=target,
        funding=_funding(config, symbols, ts, step),
        **static,
    )
    timings["inputs"] = time.perf_counter() - t
    return Prepared(
        config=config,
        inputs=inputs,
        market=window,
        pod_ids=[p.pod_id for p in config.pods],
        slot_labels=labels,
        pod_join_bar=join,
        data_label=loaded.source_label,
        timings=timings,
        data_notes=loaded.notes,
        stream=None
        if plan is None
        else functools.partial(plan.stream, first=first, shift=int(mode == NEXT_OPEN), join=join),
    )


def threshold_warnings(config: Config, prepared: Prepared) -> list[str]:
    """Pods whose per-symbol target weights rarely exceed their ``rebalance_threshold``.

    Such a pod seldom trades (the threshold applies to each symbol's weight), a common surprise
    with many symbols per pod. Returns one readable line per affected pod.
    """
    out = []
    target = prepared.inputs.target
    for p, pod in enumerate(config.pods):
        lo, hi = prepared.inputs.pod_ptr[p], prepared.inputs.pod_ptr[p + 1]
        w = np.abs(target[:, lo:hi])
        w = w[w > 0]
        thr = pod.risk.rebalance_threshold
        if w.size == 0 or thr <= 0:
            continue
        p90 = float(np.quantile(w, 0.9))
        if p90 <= thr:
            out.append(
                f"pod {pod.pod_id}: 90 % of its per-symbol weights are ≤ {p90:.3f}, not above its "
                f"rebalance_threshold {thr}: it will seldom trade (lower pods[{p}].risk.rebalance_threshold)"
            )
    return out
