r"""The one driver around the step kernel (STYLE rule 2; SPEC §3, §13).

:meth:`Engine.advance` runs bars ``next_bar .. t1-1``: the step kernel over long segments inside
numba, stopping at the day ends where something happens in Python (a rebalance check, a pod
joining) to call :meth:`Engine._day_end`. The backtest calls it once for the whole window
(:meth:`Engine.run`); the live loop (:mod:`orchestra.live`) calls it one bar at a time, each time
with :meth:`Engine.extend` giving it inputs one bar longer. Both go through the same code, so the
float operations happen in the same order and the two are bit-identical (tested).

What persists between bars, and what the live store saves (:meth:`snapshot` / :meth:`restore`):

* the kernels' :class:`~orchestra.kernels.state.State` (units, cash, NAV anchors, lifecycle, ...);
* the allocator's memory: the PRC targets of the last rebalance (``target_prc``, ``target_set``);
* the journal: per-bar output rows, fills, lifecycle events, kernel alerts and allocation records
  (the allocator reads the pods' daily NAVs back from the output rows).

Everything else is a pure function of the inputs: the day index of a bar, which day ends are
checked, when a pod joins (by timestamp: the day end whose next bar opens at or after its
``start``), the day a pod joined. The allocator's solves do not depend on earlier solves (Clarabel
runs without warm start; see :mod:`orchestra.allocation.problems`), so a restored engine continues
exactly as the uninterrupted one.

**A window of bars.** The kernels index the inputs and the per-bar outputs with a bar number
local to the arrays they are given; the engine keeps ``base``, the global number of local row 0,
and speaks global bar numbers everywhere else (``next_bar``, ``advance``, the fills', events' and
alerts' ``bar``, ``rows``). The backtest holds every bar (``base`` stays 0). The live loop
(``keep_journal=False``) :meth:`append`\ s one bar, advances, commits it, and :meth:`compact`\ s
the processed rows away: the day ends' rows go to a small day log (what the allocator and the
daily report read back), so memory and cost per bar do not grow with the history.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from orchestra import precompile
from orchestra.engine.build import Prepared, clock_fields, history_days
from orchestra.kernels.capital import request_fractions_nb, request_rebalance_nb
from orchestra.kernels.refs import KernelArgs
from orchestra.kernels.state import (
    CLOSE,
    INCUBATION,
    PRODUCTION,
    STOP_ALWAYS,
    STOP_NONE,
    Outputs,
    State,
    new_outputs,
    new_state,
    seed_capital,
)
from orchestra.kernels.step import DUST_REL, run_segment_nb, step_post_nb, step_pre_nb
from orchestra.timeframes import DAY_MS, epoch_ms, timeframe_ms

FILL_CHUNK = 1 << 16


class CapitalWarning(UserWarning):
    """A pod whose slice is below ``orchestrator.min_pod_capital`` is not funded."""


# per-bar output series (grown together when the live loop extends the inputs)
ROW_FIELDS = (
    "equity",
    "unallocated",
    "gross_leverage",
    "pod_equity",
    "pod_nav",
    "pod_gross",
    "pod_fraction",
    "pod_state",
    "ph_score",
)
FILL_FIELDS = ("bar", "slot", "units", "price", "fee", "venue", "units_after")
EVENT_FIELDS = ("bar", "pod", "from", "to", "reason", "value", "threshold")
ALERT_FIELDS = ("bar", "type", "value", "threshold", "pod")
NO_JOIN = np.iinfo(np.int64).min  # a pod without a start date is there from the first bar


DAY_LOG_FIELDS = (
    "bar",
    "timestamp",
    "equity",
    "unallocated",
    "gross_leverage",
    "drawdown",
    "pod_equity",
    "pod_nav",
    "pod_fraction",
    "pod_state",
)
# the Inputs fields with one row per bar (what append() adds and compact() drops)
PER_BAR_INPUTS = (
    "timestamps",
    "day_id",
    "day_end",
    "month_end",
    "open",
    "close",
    "tradable",
    "atr",
    "target",
    "funding",
)
SCRATCH_PREFIX = "scratch_"  # State arrays reused within a bar: not state, never saved
MEMO_PREFIX = "memo_"  # State arrays the bar loop derives (rebuilt after a restore), never saved
# the bar loop checks the hybrid/threshold trigger's PRC drift itself and returns to the driver
# only when the allocator would rebalance (False: at every such day end; tests compare both)
KERNEL_DRIFT = True


class Engine:
    """State, outputs, journal and the driver for one prepared run."""

    def __init__(
        self,
        prepared: Prepared,
        fill_capacity: int | None = None,
        keep_journal: bool = True,
        first_ts: int | None = None,
    ):
        from orchestra.allocation.allocator import Allocator

        self.prepared = prepared
        cfg = prepared.config
        inp = prepared.inputs
        self.inputs = inp
        self._kernel_args = KernelArgs()  # the kernels' references to inputs, state, outputs
        self._target_released = False  # release_target() was called
        # a streamed run (Prepared.stream): its bars are run by run() only, which keeps each
        # fill's target weight here (the target matrix never exists whole)
        self._streaming = False
        self.fill_targets: list[np.ndarray] | None = None
        self.base = 0  # global number of the inputs' local row 0 (see the module docstring)
        self.keep_journal = keep_journal  # False: flushed chunks are returned, not kept
        self.capital = float(cfg.backtest.capital)
        self._day_log: dict[str, list[np.ndarray]] = {f: [] for f in DAY_LOG_FIELDS}
        self._log_days = 0  # day ends in the day log (bars before base)
        self._peak_before = self.capital  # running max of the equity before base
        n_bars = inp.timestamps.shape[0]
        n_pods = len(prepared.pod_ids)
        n_slots = inp.slot_pod.shape[0]
        capacity = fill_capacity or max(FILL_CHUNK, 4 * n_slots + 2)
        self.allocator = Allocator(cfg, prepared.pod_ids)
        a = self.allocator
        trig = cfg.orchestrator.rebalance.trigger
        self.inputs = inp = inp._replace(
            params=inp.params._replace(
                drift_check=1.0 if KERNEL_DRIFT and trig in ("threshold", "hybrid") else 0.0,
                drift_threshold=float(cfg.orchestrator.rebalance.drift_threshold),
                alloc_lookback=float(a.lookback),
                alloc_min_history=float(a.min_history),
                alloc_per_year=float(a.per_year),
            )
        )
        self.state: State = new_state(
            n_pods, len(prepared.market.symbols), n_slots, history_days(cfg), a.lookback
        )
        self.state.memo_index[0, :n_pods] = a._rank
        self.state.memo_index[3, 3] = 1  # the ring will see every day end of this run
        n_days = max(int(inp.day_end.sum()), 1)
        self.out: Outputs = new_outputs(n_bars, n_pods, max(capacity, 2 * n_slots + 1), n_days)
        self._fills: list[dict[str, np.ndarray]] = []
        self._events: list[dict[str, np.ndarray]] = []
        self._alerts: list[dict[str, np.ndarray]] = []
        self.timings = {"kernels": 0.0, "allocation": 0.0}  # seconds spent in each stage
        self.step_ms = timeframe_ms(cfg.clock_timeframe)
        self.join_ts = np.array(
            [NO_JOIN if p.start is None else epoch_ms(p.start) for p in cfg.pods], dtype=np.int64
        )
        self._day_kinds: list[int] = []
        self._index_inputs()
        st = self.state
        first = int(inp.timestamps[0]) if first_ts is None else int(first_ts)
        joined = self.join_ts <= first
        initial = np.array(
            [p.initial_fraction if j else 0.0 for p, j in zip(cfg.pods, joined, strict=True)]
        )
        asked = initial * cfg.backtest.capital
        denied = (asked > 0) & (asked < cfg.orchestrator.min_pod_capital)
        for p in np.flatnonzero(denied):
            warnings.warn(
                f"pods[{p}] ({cfg.pods[p].pod_id}): initial_fraction {initial[p]:g} × capital "
                f"{cfg.backtest.capital:,.0f} = {asked[p]:,.2f} is below "
                f"orchestrator.min_pod_capital {cfg.orchestrator.min_pod_capital:,.0f}: the pod "
                "is not funded (lower min_pod_capital, or give it a larger fraction)",
                CapitalWarning,
                stacklevel=2,
            )
        seed_capital(st, np.where(denied, 0.0, initial), cfg.backtest.capital)
        st.pod_denied[:] = denied
        for p, pod in enumerate(cfg.pods):
            st.pod_state[p] = PRODUCTION if pod.initial_state == "production" else INCUBATION
            st.pod_joined[p] = joined[p]

    # ---------------------------------------------------------------- schedule (pure functions)
    def _index_inputs(self) -> None:
        """The schedule's lookups, computed once per inputs (the driver asks at every day end)."""
        inp = self.inputs
        # day ends up to and including local bar t, counted from the run's first bar
        self._day_count = self._log_days + np.cumsum(inp.day_end)
        self._day_ends = np.flatnonzero(inp.day_end)  # local
        ts = inp.timestamps
        # pod p joins after local bar t when join_ts[p] - step <= ts[t] < join_ts[p]
        self._joins: dict[int, list[int]] = {}
        for p, join in enumerate(self.join_ts.tolist()):
            if join == NO_JOIN:
                continue
            lo = int(np.searchsorted(ts, join - self.step_ms, side="left"))
            for t in range(lo, int(np.searchsorted(ts, join, side="left"))):
                self._joins.setdefault(t, []).append(p)
        # the day a pod joined: the day ends before its first bar (all so far if it is to come)
        day_ts = np.concatenate([*self._day_log["timestamp"], ts[self._day_ends]])
        self._join_day = np.searchsorted(day_ts, self.join_ts, side="left").astype(np.int64)
        # where the kernel returns to the driver (STOP_*), per day end; kinds depend on the day
        # index only, so the live loop's growing inputs compute each day's once
        kinds = self._day_kinds
        total = self._log_days + self._day_ends.size
        kinds.extend(self.allocator.stop_kinds(len(kinds), total))
        self._stops = np.zeros(ts.shape[0], dtype=np.int8)
        self._stops[self._day_ends] = kinds[self._log_days : total]
        for t in self._joins:
            if inp.day_end[t]:
                self._stops[t] = STOP_ALWAYS

    def day_index(self, t: int) -> int:
        """0-based index of day-end bar ``t`` among the run's day ends."""
        return int(self._day_count[t - self.base]) - 1

    def joins_at(self, t: int) -> list[int]:
        """Pods that join at day-end bar ``t``: the next bar opens at or after their start."""
        return list(self._joins.get(t - self.base, ()))

    def timestamp(self, t: int) -> int:
        """Open time of bar ``t`` (a bar of the current window)."""
        return int(self.inputs.timestamps[t - self.base])

    def is_day_end(self, t: int) -> bool:
        """Whether bar ``t`` (of the current window) closes its UTC day."""
        return bool(self.inputs.day_end[t - self.base])

    def is_event(self, t: int) -> bool:
        """Whether the driver may have to act after bar ``t`` (:meth:`_day_end`): a day end where
        the allocator may rebalance or a pod joins. The bar loop returns to the driver at such a
        bar only when something can happen (see :func:`~orchestra.kernels.step.run_segment_nb`);
        acting at the others is a no-op."""
        return bool(self._stops[t - self.base] != STOP_NONE)

    def join_day(self) -> np.ndarray:
        """The day index from which each pod counts as live (0 for pods there from the start)."""
        return self._join_day.copy()

    # ---------------------------------------------------------------- the driver
    @property
    def n_bars(self) -> int:
        """Bars the inputs reach (global: the window's end)."""
        return self.base + int(self.inputs.timestamps.shape[0])

    @property
    def next_bar(self) -> int:
        return self.base + int(self.state.next_bar[0])

    def advance(self, t1: int, progress: Callable[[int], None] | None = None) -> None:
        """Run bars ``next_bar .. t1-1``; the kernel returns after each bar where the allocator
        may act or a pod joins, for :meth:`_day_end`, and when its fill buffer is full."""
        t = self.next_bar
        if t1 > self.n_bars:
            raise IndexError(f"bar {t1 - 1} is beyond the inputs ({self.n_bars} bars)")
        if self._target_released and t < t1:
            raise RuntimeError("the engine's target matrix was released: it cannot step again")
        if self.prepared.stream is not None and not self._streaming:
            raise RuntimeError("a streamed run's bars are run by Engine.run() only")
        # a fresh checkout's bar loop compiling in a second process, if any: meanwhile the
        # kernels' references (the first call compiles their constructors) and the kernels the
        # run needs after its bar loop compile here
        self._kernel_args(self.inputs, self.state, self.out)
        precompile.compile_while_waiting()
        precompile.wait_for_kernel()  # the bar loop (the child may be on a results' kernel)
        stops, base = self._stops, self.base
        while t < t1:
            start = time.perf_counter()
            inp, st, out = self._kernel_args(self.inputs, self.state, self.out)  # as of now
            t_next, stopped = run_segment_nb(inp, st, out, t - base, t1 - base, stops)
            self.timings["kernels"] += time.perf_counter() - start
            t = int(t_next) + base
            if stopped:
                self._on_day_end(t - 1)
                if progress is not None:
                    progress(t)
            elif t < t1:
                self.flush()  # the fill buffer is full
        if progress is not None:
            progress(t1)

    def run(self, progress: Callable[[int], None] | None = None) -> None:
        """The backtest: every remaining bar. A streamed run (``Prepared.stream``) makes its
        bars and signals as it goes (:meth:`~orchestra.engine.fused.FusedPlan.stream`); its
        wall time is ``timings["stream"]``, which holds the bar loop's ``kernels`` and
        ``allocation`` too (they overlap the data and signals)."""
        stream = self.prepared.stream
        if stream is None:
            self.advance(self.n_bars, progress)
            return
        start = time.perf_counter()
        stream(self, progress)
        self.prepared.stream = None
        self.timings["stream"] = time.perf_counter() - start

    def fill_target_weights(self, fills: dict[str, np.ndarray]) -> np.ndarray:
        """Each fill's internal target weight (its slot's row of the target at its bar), for
        ``fills`` as :meth:`fills` returns them: read from the target matrix, or, in a streamed
        run (whose matrix never exists whole), the ones kept as its steps ran."""
        if self.fill_targets is not None:
            return np.concatenate([np.zeros(0), *self.fill_targets])
        bars, slots = fills["bar"].astype(np.int64), fills["slot"].astype(np.int64)
        return self.inputs.target[bars, slots] if bars.size else np.zeros(0)

    def release_target(self) -> None:
        """Free the run's ``(T, K)`` target matrix, the largest array of a run (0.84 GB on L),
        once nothing will step the engine again: the engine, its prepared inputs and the
        kernels' references let go of it (a zero-row matrix stands in). Stepping afterwards
        raises. :func:`~orchestra.results.result.build_result` calls it when asked to, after
        reading the positions' target weights."""
        empty = np.zeros((0, self.inputs.target.shape[1]))
        self.inputs = self.inputs._replace(target=empty)
        self.prepared.inputs = self.prepared.inputs._replace(target=empty)
        self._kernel_args = KernelArgs()
        self._target_released = True

    def step(self) -> int:
        """The next bar only; returns the bar index processed."""
        t = self.next_bar
        if t >= self.n_bars:
            raise IndexError("no bars left")
        self.advance(t + 1)
        return t

    def step_with_fills(self, execute: Callable) -> Any:
        """The next bar with the exchange's fills (live trading; see :mod:`orchestra.live.trading`).

        ``execute(t, net, prices) -> (qty, price, fee, extra)`` receives the net order per symbol
        (units, 0 where nothing trades) and returns per symbol the filled units, average price
        and fee; ``extra`` is returned.
        """
        t = self.next_bar
        if t >= self.n_bars:
            raise IndexError("no bars left")
        if self._target_released:
            raise RuntimeError("the engine's target matrix was released: it cannot step again")
        inp, st = self.inputs, self.state
        local = t - self.base
        precompile.wait()
        refs = self._kernel_args(inp, st, self.out)
        step_pre_nb(*refs, local)
        delta = st.scratch_target - st.units
        net = np.bincount(inp.slot_sym, weights=delta, minlength=st.account_units.size)
        volume = np.bincount(inp.slot_sym, weights=np.abs(delta), minlength=net.size)
        dust = np.abs(net) <= DUST_REL * volume  # trades that cancel cross internally (kernel)
        net = np.where(st.scratch_changed & ~dust, net, 0.0)
        prices = inp.close[local] if inp.params.exec_mode == CLOSE else inp.open[local]
        qty, px, fee, extra = execute(t, net, prices)
        step_post_nb(
            *refs,
            local,
            np.ascontiguousarray(qty, dtype=np.float64),
            np.ascontiguousarray(px, dtype=np.float64),
            np.ascontiguousarray(fee, dtype=np.float64),
        )
        if self.is_event(t):
            self._on_day_end(t)
        return extra

    def append(self, row: dict[str, np.ndarray]) -> None:
        """Add the next bar to the inputs (the live loop; ``row`` holds every per-bar field of
        :class:`~orchestra.kernels.state.Inputs` with a leading axis of one bar)."""
        inp = self.inputs
        if inp.timestamps.size and row["timestamps"][0] <= inp.timestamps[-1]:
            raise ValueError(f"bar {int(row['timestamps'][0])} is not after the inputs' last")
        grown = {
            name: np.concatenate(
                [getattr(inp, name), np.asarray(value, dtype=getattr(inp, name).dtype)]
            )
            for name, value in row.items()
        }
        self.inputs = inp._replace(**grown)
        self._index_inputs()
        self._grow_rows(self.inputs.timestamps.shape[0])

    def compact(self) -> None:
        """Drop the processed bars from the window but the last one (the day ends dropped go to
        the day log; the last processed bar stays for what reads "the current bar").

        The fill, event and alert buffers must have been flushed (the live loop commits them
        before); bars not processed yet stay.
        """
        o = self.out
        if int(o.fill_count[0]) or int(o.ev_count[0]) or int(o.al_count[0]):
            raise RuntimeError("compact() with unflushed fills, events or alerts")
        drop = int(self.state.next_bar[0]) - 1
        if drop <= 0:
            return
        rows = self._window_day_rows(drop - 1)
        for f in DAY_LOG_FIELDS:
            self._day_log[f].append(rows[f])
        self._log_days += int(rows["bar"].size)
        self._peak_before = float(np.max(np.concatenate([[self._peak_before], o.equity[:drop]])))
        inp = self.inputs
        self.inputs = inp._replace(
            **{name: getattr(inp, name)[drop:].copy() for name in PER_BAR_INPUTS}
        )
        self.out = self.out._replace(
            **{name: getattr(o, name)[drop:].copy() for name in ROW_FIELDS}
        )
        self.base += drop
        self.state.next_bar[0] -= drop
        self._index_inputs()

    def _window_day_rows(self, last: int) -> dict[str, np.ndarray]:
        """The window's day-end rows up to and including local bar ``last``."""
        o = self.out
        bars = self._day_ends[self._day_ends <= last]
        eq = o.equity[: last + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            peak = np.maximum.accumulate(np.concatenate([[self._peak_before], eq]))[1:]
            dd = np.where(peak > 0, 1.0 - eq / peak, 0.0)
        return {
            "bar": (bars + self.base).astype(np.int64),
            "timestamp": self.inputs.timestamps[bars].copy(),
            "equity": o.equity[bars].copy(),
            "unallocated": o.unallocated[bars].copy(),
            "gross_leverage": o.gross_leverage[bars].copy(),
            "drawdown": dd[bars],
            "pod_equity": o.pod_equity[bars].copy(),
            "pod_nav": o.pod_nav[bars].copy(),
            "pod_fraction": o.pod_fraction[bars].copy(),
            "pod_state": o.pod_state[bars].copy(),
        }

    def day_rows(self, t: int) -> dict[str, np.ndarray]:
        """Every day end up to and including bar ``t``: bar, timestamp, equity, unallocated,
        gross leverage, drawdown (from the running peak of every bar's equity and the initial
        capital), and the pods' equity, NAV, fraction and state (what the daily report reads)."""
        window = self._window_day_rows(t - self.base)
        return {
            f: np.concatenate([*self._day_log[f], window[f]]) if self._day_log[f] else window[f]
            for f in DAY_LOG_FIELDS
        }

    def _grow_rows(self, n: int) -> None:
        have = self.out.equity.shape[0]
        if n <= have:
            return
        size = max(n, 2 * have)
        grown = {}
        for name in ROW_FIELDS:
            old = getattr(self.out, name)
            new = (
                np.zeros((size, *old.shape[1:]), dtype=old.dtype)
                if old.dtype != np.float64 or name == "ph_score"
                else np.full((size, *old.shape[1:]), np.nan)
            )
            new[:have] = old
            grown[name] = new
        self.out = self.out._replace(**grown)

    # ---------------------------------------------------------------- internals
    def flush(self) -> dict[str, dict[str, np.ndarray]]:
        """Move the kernels' fill, event and alert buffers into the journal; returns what moved."""
        o = self.out
        moved = {}
        base = self.base
        for kind, fields, count, arrays, journal in (
            ("fills", FILL_FIELDS, o.fill_count, _fill_arrays(o), self._fills),
            ("events", EVENT_FIELDS, o.ev_count, _event_arrays(o), self._events),
            ("alerts", ALERT_FIELDS, o.al_count, _alert_arrays(o), self._alerts),
        ):
            n = int(count[0])
            chunk = {f: a[:n].copy() for f, a in zip(fields, arrays, strict=True)}
            if base:
                chunk["bar"] += base
            if n:
                if self.keep_journal:
                    journal.append(chunk)
                count[0] = 0
            moved[kind] = chunk
        return moved

    def _journal(
        self, journal: list, fields: tuple[str, ...], arrays, only: tuple[str, ...] | None = None
    ) -> dict[str, np.ndarray]:
        wanted = {f: a for f, a in zip(fields, arrays, strict=True) if only is None or f in only}
        if not journal:
            return {f: a[:0].copy() for f, a in wanted.items()}
        return {f: np.concatenate([c[f] for c in journal]) for f in wanted}

    def fills(self, only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """All fills so far as concatenated arrays (flushes the buffers); ``only``: just these
        fields (a sweep's point reads three of the seven: each is a copy of every fill)."""
        self.flush()
        return self._journal(self._fills, FILL_FIELDS, _fill_arrays(self.out), only)

    def events(self) -> dict[str, np.ndarray]:
        """All lifecycle transitions so far (flushes the buffers)."""
        self.flush()
        return self._journal(self._events, EVENT_FIELDS, _event_arrays(self.out))

    def alerts(self) -> dict[str, np.ndarray]:
        """All kernel alerts so far (flushes the buffers)."""
        self.flush()
        return self._journal(self._alerts, ALERT_FIELDS, _alert_arrays(self.out))

    def day_end_bars(self, t: int | None = None) -> np.ndarray:
        """The day-end bars up to and including ``t`` (default: every processed bar), global."""
        last = self.next_bar - 1 if t is None else t
        local = last - self.base
        window = (
            self._day_ends[: int(self._day_count[local]) - self._log_days]
            if local >= 0
            else self._day_ends[:0]
        )
        return np.concatenate([*self._day_log["bar"], window + self.base]).astype(np.int64)

    def daily_navs(self, t: int) -> np.ndarray:
        """Pod NAVs at every day end up to and including bar ``t``: ``(n_days, P)``."""
        local = t - self.base
        ends = (
            self._day_ends[: int(self._day_count[local]) - self._log_days]  # the ends ≤ local
            if local >= 0
            else self._day_ends[:0]
        )
        window = self.out.pod_nav[ends]
        if not self._day_log["pod_nav"]:
            return window
        return np.concatenate([*self._day_log["pod_nav"], window])

    def _on_day_end(self, t: int) -> None:
        start = time.perf_counter()
        self._day_end(t)
        self.timings["allocation"] += time.perf_counter() - start

    def _day_end(self, t: int) -> None:
        """After the kernel closed day-end bar ``t``: pods joining, then the allocator.

        Fractions decided here are requests; the cash moves at the next execution (see
        :mod:`orchestra.kernels.capital`). Joining pods ask for their ``initial_fraction``; they
        share the room ``1 − Σ f`` and are funded from unallocated cash only.
        """
        st = self.state
        joins = self.joins_at(t)
        for p in joins:  # a pod whose start date comes joins in incubation
            st.pod_joined[p] = True
            st.pod_state[p] = INCUBATION
            st.scratch_fraction[p] = self.prepared.config.pods[p].initial_fraction
        if joins:
            request_fractions_nb(st.pod_fraction, st.pending, st.scratch_fraction)
        fractions = st.pod_fraction.copy()
        day_index = self.day_index(t)
        if self.allocator.is_check_day(day_index):
            new = self.allocator.on_day_end(
                t=t,
                timestamp=self.timestamp(t),
                day_index=day_index,
                navs=self.daily_navs(t),
                states=st.pod_state.copy(),
                fractions=fractions,
                equities=self.out.pod_equity[t - self.base].copy(),
                live_days=(day_index + 1 - self.join_day()) * self.allocator.period,
                joined=st.pod_joined.copy(),
            )
            if new is not None:
                request_rebalance_nb(
                    st.pod_fraction, st.pending, np.ascontiguousarray(new, dtype=np.float64)
                )
                self._sync_drift_target()

    def _sync_drift_target(self) -> None:
        """The allocator's PRC target (set at a rebalance) into the state, for the bar loop's
        drift check (:func:`~orchestra.kernels.step.drift_due_nb`)."""
        a, idx = self.allocator, self.state.memo_index
        if a.target_prc is None:
            idx[3, 2] = -1
            return
        n = len(a.target_set)
        idx[3, 2] = n
        idx[1, :n] = a.target_set
        self.state.memo_target[:n] = a.target_prc

    # ---------------------------------------------------------------- persistence
    def snapshot(self) -> dict[str, np.ndarray]:
        """Everything that persists between bars except the journal, as named arrays (the
        kernels' scratch arrays are not state and are left out; ``next_bar`` is global)."""
        snap = {
            f"state.{name}": np.asarray(a).copy()
            for name, a in self.state._asdict().items()
            if not name.startswith((SCRATCH_PREFIX, MEMO_PREFIX))
        }
        snap["state.next_bar"][0] = self.next_bar
        a = self.allocator
        snap["allocator.target_prc"] = (
            np.zeros(0) if a.target_prc is None else np.asarray(a.target_prc, dtype=np.float64)
        )
        snap["allocator.has_target"] = np.array(a.target_prc is not None)
        snap["allocator.target_set"] = np.asarray(a.target_set, dtype=np.int64)
        return snap

    def restore(
        self,
        snap: dict[str, np.ndarray],
        rows: dict[str, np.ndarray],
        fills: list[dict[str, np.ndarray]],
        events: list[dict[str, np.ndarray]],
        alerts: list[dict[str, np.ndarray]],
        allocations: list,
    ) -> None:
        """Continue from a :meth:`snapshot` and the journal of the bars it covers.

        ``rows`` holds the per-bar outputs of bars ``0 .. n-1`` (``ROW_FIELDS``). Raises
        ``ValueError`` when a saved array's name, dtype or shape differs from this engine's.
        """
        fresh = self.snapshot()
        if set(snap) != set(fresh):
            missing = sorted(set(fresh) - set(snap))
            extra = sorted(set(snap) - set(fresh))
            raise ValueError(f"saved state has other fields (missing {missing}, unknown {extra})")
        for key, value in snap.items():
            want = fresh[key]
            if key.startswith("state.") and (
                value.dtype != want.dtype or value.shape != want.shape
            ):
                raise ValueError(
                    f"saved {key} is {value.dtype}{value.shape}, expected {want.dtype}{want.shape}"
                )
        for name, arr in self.state._asdict().items():
            if not name.startswith((SCRATCH_PREFIX, MEMO_PREFIX)):
                arr[...] = snap[f"state.{name}"]
        a = self.allocator
        a.target_prc = (
            snap["allocator.target_prc"].copy() if bool(snap["allocator.has_target"]) else None
        )
        a.target_set = tuple(int(x) for x in snap["allocator.target_set"])
        # the drift check's ring starts empty (the bar loop refills it; until then the driver
        # decides every check), the target comes back with the allocator's
        self.state.memo_index[3, :] = 0
        self._sync_drift_target()
        a.allocations = list(allocations)
        n = self.next_bar
        if self.keep_journal:  # the whole run in memory (base 0): the rows go back in place
            self._grow_rows(n)
            for name in ROW_FIELDS:
                getattr(self.out, name)[:n] = rows[name][:n]
            self._fills, self._events, self._alerts = list(fills), list(events), list(alerts)
            return
        # a window holding the last committed bar: the bars before it go to the day log
        keep = n - 1
        ts = rows["timestamp"][:n]
        ends = np.flatnonzero(((ts[:keep] + self.step_ms) // DAY_MS) > (ts[:keep] // DAY_MS))
        eq = rows["equity"][:keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            peak = np.maximum.accumulate(np.concatenate([[self.capital], eq]))[1:]
            dd = np.where(peak > 0, 1.0 - eq / peak, 0.0)
        log = {"bar": ends.astype(np.int64), "timestamp": ts[ends], "drawdown": dd[ends]}
        for f in DAY_LOG_FIELDS:
            if f not in log:
                log[f] = rows[f][:keep][ends]
        self._day_log = {f: [log[f]] for f in DAY_LOG_FIELDS}
        self._log_days = int(ends.size)
        self._peak_before = float(peak[-1]) if keep else self.capital
        self.base = keep
        self.state.next_bar[0] = 1
        n_sym, n_slots = self.inputs.open.shape[1], self.inputs.target.shape[1]
        nan = np.full((1, n_sym), np.nan)  # a processed bar's prices are not read again
        self.inputs = self.inputs._replace(
            **clock_fields(ts[keep:n].astype(np.int64), self.step_ms),
            open=nan,
            close=nan.copy(),
            tradable=np.zeros((1, n_sym), dtype=np.bool_),
            atr=nan.copy(),
            target=np.zeros((1, n_slots)),
            funding=np.zeros((1, n_sym)),
        )
        self.out = self.out._replace(
            **{name: np.ascontiguousarray(rows[name][keep:n]) for name in ROW_FIELDS}
        )
        self._index_inputs()

    def rows(self, t0: int, t1: int) -> dict[str, np.ndarray]:
        """The per-bar outputs of bars ``t0 .. t1-1`` (with their open ``timestamp``)."""
        a, b = t0 - self.base, t1 - self.base
        out = {name: getattr(self.out, name)[a:b].copy() for name in ROW_FIELDS}
        out["timestamp"] = self.inputs.timestamps[a:b].copy()
        return out


def _fill_arrays(o: Outputs) -> tuple[np.ndarray, ...]:
    return (
        o.fill_bar,
        o.fill_slot,
        o.fill_units,
        o.fill_price,
        o.fill_fee,
        o.fill_venue,
        o.fill_units_after,
    )


def _event_arrays(o: Outputs) -> tuple[np.ndarray, ...]:
    return (o.ev_bar, o.ev_pod, o.ev_from, o.ev_to, o.ev_reason, o.ev_value, o.ev_threshold)


def _alert_arrays(o: Outputs) -> tuple[np.ndarray, ...]:
    return (o.al_bar, o.al_type, o.al_value, o.al_threshold, o.al_pod)
