"""The two drivers around the one step kernel (STYLE rule 2).

* :meth:`Engine.run` — the **backtest driver**: runs the step kernel over long segments inside
  numba, stopping only at the day ends where something happens in Python (a rebalance check, a pod
  joining).
* :meth:`Engine.step` — the **bar driver**: advances the same State by one bar (the live loop uses
  it) and calls the same day-end hook at the same bars.

Both go through :meth:`Engine._advance` and :meth:`Engine._on_day_end`, so the float operations
happen in the same order and the two are bit-identical (tested).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from orchestra.engine.build import Prepared, history_days
from orchestra.kernels.capital import request_fractions_nb, request_rebalance_nb
from orchestra.kernels.state import (
    INCUBATION,
    PRODUCTION,
    Outputs,
    State,
    new_outputs,
    new_state,
    seed_capital,
)
from orchestra.kernels.step import run_segment_nb

FILL_CHUNK = 1 << 16


class Engine:
    """State, outputs and the drivers for one prepared run."""

    def __init__(self, prepared: Prepared, fill_capacity: int | None = None):
        from orchestra.allocation.allocator import Allocator

        self.prepared = prepared
        cfg = prepared.config
        inp = prepared.inputs
        self.inputs = inp
        n_bars = inp.timestamps.shape[0]
        n_pods = len(prepared.pod_ids)
        n_slots = inp.slot_pod.shape[0]
        capacity = fill_capacity or max(FILL_CHUNK, 4 * n_slots + 2)
        self.state: State = new_state(
            n_pods, len(prepared.market.symbols), n_slots, history_days(cfg)
        )
        n_days = int(inp.day_end.sum())
        self.out: Outputs = new_outputs(n_bars, n_pods, max(capacity, 2 * n_slots + 1), n_days)
        self._fill_chunks: list[dict[str, np.ndarray]] = []
        self.timings = {"kernels": 0.0, "allocation": 0.0}  # seconds spent in each stage
        capital = cfg.backtest.capital
        st = self.state
        joined = prepared.pod_join_bar == 0
        seed_capital(
            st,
            np.array(
                [p.initial_fraction if j else 0.0 for p, j in zip(cfg.pods, joined, strict=True)]
            ),
            capital,
        )
        for p, pod in enumerate(cfg.pods):
            st.pod_state[p] = PRODUCTION if pod.initial_state == "production" else INCUBATION
            st.pod_joined[p] = joined[p]
        self.day_end_bars = np.flatnonzero(inp.day_end)
        self.allocator = Allocator(cfg, prepared.pod_ids)
        # day ends at which a pod joins: the day end just before its join bar
        self._joins: dict[int, list[int]] = {}
        for p, jb in enumerate(prepared.pod_join_bar):
            if jb > 0:
                self._joins.setdefault(int(jb) - 1, []).append(p)
        # the day index at which each pod joined (0 for pods there from the start)
        self._join_day = np.array(
            [int(np.searchsorted(self.day_end_bars, jb)) for jb in prepared.pod_join_bar],
            dtype=np.int64,
        )
        self.events = self._event_bars()
        self._event_set = set(self.events.tolist())

    # ---------------------------------------------------------------- schedule
    def _event_bars(self) -> np.ndarray:
        checks = [int(t) for d, t in enumerate(self.day_end_bars) if self.allocator.is_check_day(d)]
        return np.array(sorted(set(checks) | set(self._joins)), dtype=np.int64)

    # ---------------------------------------------------------------- drivers
    @property
    def n_bars(self) -> int:
        return int(self.inputs.timestamps.shape[0])

    @property
    def next_bar(self) -> int:
        return int(self.state.next_bar[0])

    def run(self, progress: Callable[[int], None] | None = None) -> None:
        """Backtest driver: run every remaining bar, segment by segment."""
        t = self.next_bar
        for e in self.events:
            if e < t:
                continue
            self._advance(t, int(e) + 1)
            self._on_day_end(int(e))
            t = int(e) + 1
            if progress is not None:
                progress(t)
        if t < self.n_bars:
            self._advance(t, self.n_bars)
        if progress is not None:
            progress(self.n_bars)

    def step(self) -> int:
        """Bar driver: process the next bar only; returns the bar index processed."""
        t = self.next_bar
        if t >= self.n_bars:
            raise IndexError("no bars left")
        self._advance(t, t + 1)
        if t in self._event_set:
            self._on_day_end(t)
        return t

    # ---------------------------------------------------------------- internals
    def _advance(self, t0: int, t1: int) -> None:
        start = time.perf_counter()
        t = t0
        while t < t1:
            t = int(run_segment_nb(self.inputs, self.state, self.out, t, t1))
            if t < t1:
                self._flush_fills()
        self.timings["kernels"] += time.perf_counter() - start

    def _flush_fills(self) -> None:
        n = int(self.out.fill_count[0])
        if n == 0:
            return
        o = self.out
        self._fill_chunks.append(
            {
                "bar": o.fill_bar[:n].copy(),
                "slot": o.fill_slot[:n].copy(),
                "units": o.fill_units[:n].copy(),
                "price": o.fill_price[:n].copy(),
                "fee": o.fill_fee[:n].copy(),
                "venue": o.fill_venue[:n].copy(),
                "units_after": o.fill_units_after[:n].copy(),
            }
        )
        o.fill_count[0] = 0

    def fills(self) -> dict[str, np.ndarray]:
        """All fills so far as concatenated arrays (flushes the buffer)."""
        self._flush_fills()
        keys = ["bar", "slot", "units", "price", "fee", "venue", "units_after"]
        if not self._fill_chunks:
            return {k: np.zeros(0) for k in keys}
        return {k: np.concatenate([c[k] for c in self._fill_chunks]) for k in keys}

    def daily_navs(self, t: int) -> np.ndarray:
        """Pod NAVs at every day end up to and including bar ``t``: ``(n_days, P)``."""
        bars = self.day_end_bars[self.day_end_bars <= t]
        return self.out.pod_nav[bars]

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
        joins = self._joins.get(t, [])
        for p in joins:  # a pod whose start date comes joins in incubation
            st.pod_joined[p] = True
            st.pod_state[p] = INCUBATION
            st.scratch_fraction[p] = self.prepared.config.pods[p].initial_fraction
        if joins:
            request_fractions_nb(st)
        fractions = st.pod_fraction.copy()
        day_index = int(np.searchsorted(self.day_end_bars, t))
        if self.allocator.is_check_day(day_index):
            new = self.allocator.on_day_end(
                t=t,
                timestamp=int(self.inputs.timestamps[t]),
                day_index=day_index,
                navs=self.daily_navs(t),
                states=st.pod_state.copy(),
                fractions=fractions,
                equities=self.out.pod_equity[t].copy(),
                live_days=(day_index + 1 - self._join_day) * self.allocator.period,
                joined=st.pod_joined.copy(),
            )
            if new is not None:
                request_rebalance_nb(st, np.ascontiguousarray(new, dtype=np.float64))
