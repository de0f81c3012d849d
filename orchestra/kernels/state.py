"""Record types of the kernels: the persistent State, the static Inputs and the Outputs.

Everything that persists between bars lives in :class:`State` (numpy arrays only, scalars as
arrays of shape ``(1,)`` so kernels can update them in place). Live mode saves and restores exactly
this object. Pod-symbol "slots" keep memory proportional to what the pods trade: slot ``k`` is pod
``slot_pod[k]`` trading symbol ``slot_sym[k]``; slots are grouped by pod (``pod_ptr``) and indexed
by symbol (``sym_ptr``/``sym_slots``, CSR).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# execution modes
NEXT_OPEN = 0
CLOSE = 1

# fill venues
EXTERNAL = 0
INTERNAL = 1

# lifecycle states (SPEC §8.1)
INCUBATION = 0
PRODUCTION = 1
WARNING = 2
PROBATION = 3
RETIRED = 4
STATE_NAMES = ("incubation", "production", "warning", "probation", "retired")

# circuit breaker
BREAKER_OFF = 0
BREAKER_PENDING = 1  # flatten at the next execution
BREAKER_BLOCKED = 2  # flat; no trades until the next UTC day


class Inputs(NamedTuple):
    """Static arrays of one run (read-only for the kernels).

    Shapes: ``T`` bars, ``S`` symbols, ``P`` pods, ``K`` slots.
    """

    timestamps: np.ndarray  # (T,) int64 epoch ms, bar open
    day_id: np.ndarray  # (T,) int64 UTC day number of the bar
    day_end: np.ndarray  # (T,) bool: the bar closes its UTC day
    open: np.ndarray  # (T, S) float64; NaN before listing
    close: np.ndarray  # (T, S) float64; NaN before listing, held after delisting
    tradable: np.ndarray  # (T, S) bool
    atr: np.ndarray  # (T, S) float64 ATR(14), NaN until known
    target: np.ndarray  # (T, K) float64 internal weight to execute at bar t (already lagged)
    funding: np.ndarray  # (T, S) float64 funding rate charged at bar t's close (0 = none)
    slot_pod: np.ndarray  # (K,) int64
    slot_sym: np.ndarray  # (K,) int64
    pod_ptr: np.ndarray  # (P + 1,) int64: slots of pod p are pod_ptr[p]:pod_ptr[p+1]
    sym_ptr: np.ndarray  # (S + 1,) int64
    sym_slots: (
        np.ndarray
    )  # (K,) int64: slots trading symbol s are sym_slots[sym_ptr[s]:sym_ptr[s+1]]
    pod_max_leverage: np.ndarray  # (P,)
    pod_threshold: np.ndarray  # (P,)
    pod_stop_loss: np.ndarray  # (P,) NaN = disabled
    pod_trailing: np.ndarray  # (P,) bool
    pod_trail_mult: np.ndarray  # (P,)
    params: np.ndarray  # (N_PARAMS,) float64, see P_* indices


# indices into Inputs.params
P_EXEC_MODE = 0
P_COST = 1  # fraction (bps / 1e4)
P_SLIPPAGE = 2  # fraction
P_MAX_GROSS = 3
P_DAILY_LOSS = 4  # fraction; <= 0 disables
P_FUNDING = 5  # 1.0 when funding is charged, else 0.0 (skips the funding pass)
N_PARAMS = 6


class State(NamedTuple):
    """Everything that persists between bars (SPEC §3). Mutated in place by the kernels."""

    # pod-symbol slots (K,)
    units: np.ndarray  # q[p,s]
    avg_price: np.ndarray  # average entry price of the open position (0 when flat)
    extreme: np.ndarray  # highest (long) / lowest (short) close since entry
    lock: np.ndarray  # int8: +1/-1 stop lock on re-entry in that direction, 0 none
    stop_pending: np.ndarray  # bool: a stop fired at the last close; close at next execution
    # pods (P,)
    pod_cash: np.ndarray
    pod_fraction: np.ndarray  # f[p] set at the last rebalance / transition
    pod_state: np.ndarray  # int8 lifecycle state
    pod_day_start_equity: np.ndarray  # equity at the last day end (after transfers)
    pod_nav: np.ndarray  # unit value: performance index with transfers removed
    pod_nav_day_start: np.ndarray
    pod_nav_peak: np.ndarray
    pod_fees: np.ndarray  # fees attributed, cumulative
    pod_alone_fees: np.ndarray  # fees the pod would have paid trading alone, cumulative
    pod_trades: np.ndarray  # int64 fills on the pod's book (slot trades), cumulative
    pod_turnover: np.ndarray  # traded notional / equity, cumulative
    pod_funding: np.ndarray  # funding paid (+) / received (-), cumulative
    # room for lifecycle and Page-Hinkley (filled by the lifecycle issue)
    pod_live_days: np.ndarray  # int64 days since the pod joined
    pod_state_days: np.ndarray  # int64 days in the current state
    pod_warning_fraction: np.ndarray  # fraction when it entered warning
    ph_n: np.ndarray  # int64 values seen by Page-Hinkley
    ph_mean: np.ndarray
    ph_m: np.ndarray
    ph_min: np.ndarray
    # symbols (S,)
    account_units: np.ndarray  # Q[s]
    # account scalars (1,)
    account_cash: np.ndarray
    unallocated: np.ndarray  # cash not assigned to any pod
    day: np.ndarray  # int64 current UTC day id
    day_start_equity: np.ndarray
    equity_peak: np.ndarray
    last_equity: np.ndarray
    breaker: np.ndarray  # int8 BREAKER_*
    account_fees: np.ndarray
    next_bar: np.ndarray  # int64: the bar the next step processes
    # scratch (K,) / (S,) reused every bar; not meaningful between bars
    scratch_target: np.ndarray
    scratch_delta: np.ndarray
    scratch_pod_equity: np.ndarray  # (P,) pod equity at this bar's execution prices


class Outputs(NamedTuple):
    """Per-bar series and the fill buffer written by the kernels."""

    equity: np.ndarray  # (T,)
    unallocated: np.ndarray  # (T,)
    gross_leverage: np.ndarray  # (T,)
    pod_equity: np.ndarray  # (T, P)
    pod_nav: np.ndarray  # (T, P)
    pod_gross: np.ndarray  # (T, P) Σ_s |q·close| / pod equity
    pod_fraction: np.ndarray  # (T, P)
    pod_state: np.ndarray  # (T, P) int8
    # fill buffer (C,), flushed by the driver
    fill_bar: np.ndarray  # int64
    fill_slot: np.ndarray  # int64
    fill_units: np.ndarray  # signed units
    fill_price: np.ndarray
    fill_fee: np.ndarray
    fill_venue: np.ndarray  # int8 EXTERNAL / INTERNAL
    fill_units_after: np.ndarray  # the slot's units after the bar's trade
    fill_count: np.ndarray  # (1,) int64


def new_state(n_pods: int, n_syms: int, n_slots: int) -> State:
    """A zeroed State of the right shapes (the engine then sets cash and fractions)."""
    f = lambda n: np.zeros(n, dtype=np.float64)  # noqa: E731
    i = lambda n: np.zeros(n, dtype=np.int64)  # noqa: E731
    return State(
        units=f(n_slots),
        avg_price=f(n_slots),
        extreme=f(n_slots),
        lock=np.zeros(n_slots, dtype=np.int8),
        stop_pending=np.zeros(n_slots, dtype=np.bool_),
        pod_cash=f(n_pods),
        pod_fraction=f(n_pods),
        pod_state=np.zeros(n_pods, dtype=np.int8),
        pod_day_start_equity=f(n_pods),
        pod_nav=np.ones(n_pods),
        pod_nav_day_start=np.ones(n_pods),
        pod_nav_peak=np.ones(n_pods),
        pod_fees=f(n_pods),
        pod_alone_fees=f(n_pods),
        pod_trades=i(n_pods),
        pod_turnover=f(n_pods),
        pod_funding=f(n_pods),
        pod_live_days=i(n_pods),
        pod_state_days=i(n_pods),
        pod_warning_fraction=f(n_pods),
        ph_n=i(n_pods),
        ph_mean=f(n_pods),
        ph_m=f(n_pods),
        ph_min=f(n_pods),
        account_units=f(n_syms),
        account_cash=f(1),
        unallocated=f(1),
        day=np.full(1, -1, dtype=np.int64),
        day_start_equity=f(1),
        equity_peak=f(1),
        last_equity=f(1),
        breaker=np.zeros(1, dtype=np.int8),
        account_fees=f(1),
        next_bar=i(1),
        scratch_target=f(n_slots),
        scratch_delta=f(n_slots),
        scratch_pod_equity=f(n_pods),
    )


def copy_state(state: State) -> State:
    """A deep copy (for checkpoints and parity tests)."""
    return State(*(a.copy() for a in state))


def new_outputs(n_bars: int, n_pods: int, capacity: int) -> Outputs:
    """Output arrays for ``n_bars`` bars and a fill buffer of ``capacity`` rows."""
    return Outputs(
        equity=np.full(n_bars, np.nan),
        unallocated=np.full(n_bars, np.nan),
        gross_leverage=np.full(n_bars, np.nan),
        pod_equity=np.full((n_bars, n_pods), np.nan),
        pod_nav=np.full((n_bars, n_pods), np.nan),
        pod_gross=np.full((n_bars, n_pods), np.nan),
        pod_fraction=np.full((n_bars, n_pods), np.nan),
        pod_state=np.zeros((n_bars, n_pods), dtype=np.int8),
        fill_bar=np.zeros(capacity, dtype=np.int64),
        fill_slot=np.zeros(capacity, dtype=np.int64),
        fill_units=np.zeros(capacity),
        fill_price=np.zeros(capacity),
        fill_fee=np.zeros(capacity),
        fill_venue=np.zeros(capacity, dtype=np.int8),
        fill_units_after=np.zeros(capacity),
        fill_count=np.zeros(1, dtype=np.int64),
    )
