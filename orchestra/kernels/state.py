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
    month_end: np.ndarray  # (T,) bool: the bar closes its UTC month
    open: np.ndarray  # (T, S) float64; NaN before listing; row 0 is bar params.market_row0
    close: np.ndarray  # (T, S) float64; NaN before listing, held after delisting
    tradable: np.ndarray  # (T, S) bool
    atr: np.ndarray  # (T, S) float64 ATR(14), NaN until known; row 0: bar params.market_row0
    # (T, K) float64 internal weight to execute at bar t (already lagged); its row 0 is bar
    # params.target_row0 (0 but in a streamed run, whose target holds one step's rows)
    target: np.ndarray
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
    pod_max_drawdown: np.ndarray  # (P,) warning -> probation above this drawdown
    pod_drawdown_warning: np.ndarray  # (P,) production -> warning above this drawdown
    pod_min_fraction: np.ndarray  # (P,) the probation clamp
    params: RunParams
    lifecycle: LifecycleParams


class RunParams(NamedTuple):
    """The run's scalar settings (``Inputs.params``); all float64 so numba sees one tuple type."""

    exec_mode: float  # NEXT_OPEN or CLOSE
    cost: float  # fraction (bps / 1e4)
    slippage: float  # fraction
    max_gross: float
    daily_loss: float  # fraction; <= 0 disables
    funding: float  # 1.0 when funding is charged, else 0.0 (skips the funding pass)
    max_drawdown: float  # portfolio drawdown limit; <= 0 disables
    drawdown_action: float  # DD_ALERT, DD_DERISK (targets × DERISK_FACTOR in breach), DD_FLATTEN
    min_capital: float  # a pod asked for less capital than this is not funded; 0 disables
    # the PRC-drift check of the hybrid/threshold trigger in the bar loop (kernels.step); the
    # engine sets them from its allocator; drift_check 0 stops at every such day end instead
    drift_check: float
    drift_threshold: float
    alloc_lookback: float  # returns in the covariance window
    alloc_min_history: float  # returns before a drift is defined
    alloc_per_year: float  # annualisation of Σ
    # the bar of the target's row 0, and of the opens' and ATRs' row 0: 0, except in a
    # streamed run (orchestra/engine/fused.py), whose driver hands the bar loop those rows
    # one step of bars at a time (the closes stay whole: the results read them)
    target_row0: float
    market_row0: float


DD_ALERT = 0
DD_DERISK = 1
DD_FLATTEN = 2
DERISK_FACTOR = 0.5


class LifecycleParams(NamedTuple):
    """The lifecycle thresholds of SPEC §8 (``Inputs.lifecycle``); ``enabled`` 0 turns the whole
    state machine off. Windows are in day-end steps (the engine converts the config's days)."""

    enabled: float
    min_live_days: float
    min_sharpe: float
    grad_max_dd: float
    min_trades: float
    min_calmar: float
    max_corr: float
    breach_dd: float
    loss_months: float
    sharpe_floor: float
    sharpe_window: float  # day-end steps
    probation_days: float
    warning_days: float
    ph_delta: float
    ph_lambda: float
    ph_alpha: float
    ph_min: float
    corr_lookback: float  # day-end steps
    min_history: float  # returns (day ends) before a rolling Sharpe / correlation counts
    period_days: float  # calendar days one day-end step covers (1, or the bar on a coarse clock)
    min_dwell: float  # days a pod stays in a state before a soft transition out of it
    recovery_ratio: float  # recovery from warning needs drawdown < this × drawdown_warning
    strong_margin: float  # probation → production needs rolling Sharpe ≥ floor + this
    recovery_margin: float  # warning → production needs rolling Sharpe ≥ floor + this


def zero_params(**values: float) -> RunParams:
    """RunParams with every setting 0 but ``values``."""
    return RunParams(**{**dict.fromkeys(RunParams._fields, 0.0), **values})


def lifecycle_off(**values: float) -> LifecycleParams:
    """LifecycleParams with the state machine off (every threshold 0) but ``values``."""
    return LifecycleParams(**{**dict.fromkeys(LifecycleParams._fields, 0.0), **values})


# lifecycle transition reasons (codes in the event buffer; names in REASONS)
R_GRADUATION = 0
R_PH_ALARM = 1
R_SHARPE_FLOOR = 2
R_DD_WARNING = 3
R_RECOVERED = 4
R_WARNING_EXPIRED = 5
R_DD_MAX = 6
R_STRONG_RECOVERY = 7
R_PROBATION_EXPIRED = 8
R_HARD_DRAWDOWN = 9
R_HARD_LOSS_MONTHS = 10
REASONS = (
    "graduation: every criterion holds (value = Sharpe since joining)",
    "Page-Hinkley alarm (value = score m_t - M_t)",
    "rolling Sharpe below the floor",
    "pod drawdown above drawdown_warning",
    "recovered within warning_days (value = rolling Sharpe)",
    "no recovery within warning_days (value = days in warning)",
    "pod drawdown above the pod's max_drawdown",
    "strong recovery: rolling Sharpe >= floor + strong_recovery_margin (value; threshold)"
    " and Page-Hinkley score < lambda/2",
    "probation_days passed without strong recovery (value = days in probation)",
    "hard stop: drawdown above max_drawdown_breach",
    "hard stop: consecutive losing months",
)

# alert types (kernel alert buffer)
A_DAILY_LOSS = 0
A_PORTFOLIO_DRAWDOWN = 1
A_ACCOUNT_BUST = 2
A_POD_UNDER_MIN_CAPITAL = 3  # (al_pod says which pod)
A_GROSS_OVER_CAP = 4  # at a close, after prices moved since the execution that respected it
ALERT_TYPES = (
    "daily_loss_circuit_breaker",
    "portfolio_drawdown",
    "account_equity_depleted",
    "pod_below_min_capital",
    "gross_leverage_above_cap",
)
ALERT_SEVERITY = ("CRITICAL", "CRITICAL", "CRITICAL", "WARNING", "WARNING")

EQUITY_EPS = 1e-9  # a pod equity at most this share of the account's counts as zero (unfunded)

# driver stops after a bar (the ``stops`` array run_segment_nb takes): the allocator's day ends
STOP_NONE = 0
STOP_ALWAYS = 1  # a calendar rebalance, the first day end, a pod joining
STOP_IF_SHARED = 2  # a threshold check: only with >= 2 joined production pods can PRC drift

# State.halted values
HALT_NONE = 0
HALT_DRAWDOWN = 1  # drawdown_action flatten fired
HALT_BUST = 2  # account equity reached <= 0: flattened, no trading any more


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
    pod_fraction: np.ndarray  # f[p] set at the last rebalance / transition (requested at a close)
    pending: np.ndarray  # bool: a fraction change whose cash moves at the next execution
    pod_state: np.ndarray  # int8 lifecycle state
    pod_day_start_equity: np.ndarray  # equity at the last day end (after transfers)
    pod_nav: np.ndarray  # unit value: performance index with transfers removed
    pod_nav_day_start: np.ndarray
    pod_nav_peak: np.ndarray
    pod_anchor_nav: np.ndarray  # NAV at the last anchor (day end or capital move)
    pod_anchor_equity: np.ndarray  # pod equity at the last anchor
    pod_funded: np.ndarray  # bool: anchor equity > EQUITY_EPS · account equity (else NAV frozen)
    pod_denied: np.ndarray  # bool: its last request was under min_capital (alerted once)
    pod_fees: np.ndarray  # fees attributed, cumulative
    pod_alone_fees: np.ndarray  # fees the pod would have paid trading alone, cumulative
    pod_trades: np.ndarray  # int64 fills on the pod's book (slot trades), cumulative
    pod_notional: np.ndarray  # traded notional (|units| · price), cumulative
    pod_funding: np.ndarray  # funding paid (+) / received (-), cumulative
    # room for lifecycle and Page-Hinkley (filled by the lifecycle issue)
    pod_live_days: np.ndarray  # float64 calendar days since the pod joined
    pod_state_days: np.ndarray  # float64 calendar days in the current state
    pod_warning_fraction: np.ndarray  # fraction when it entered warning
    ph_n: np.ndarray  # int64 values seen by Page-Hinkley since its last reset
    ph_mean: np.ndarray  # running mean of the standardised returns
    ph_sum: np.ndarray  # river's sum_decrease = -m_t
    ph_max: np.ndarray  # river's max_decrease = -M_t (starts at -1, as river does)
    ph_score: np.ndarray  # m_t - M_t, the monitored score
    pod_joined: np.ndarray  # bool: the pod is part of the portfolio (its start date has come)
    pod_dd_max: np.ndarray  # max drawdown of the NAV since joining
    pod_sum_r: np.ndarray  # Σ daily returns since joining
    pod_sum_r2: np.ndarray  # Σ squared daily returns since joining
    pod_month_nav: np.ndarray  # NAV at the start of the UTC month
    pod_loss_months: np.ndarray  # int64 consecutive losing months
    hist_ret: np.ndarray  # (W, P) ring buffer of daily pod returns
    hist_rest: np.ndarray  # (W, P) ring buffer of the rest of the portfolio's daily returns
    hist_count: np.ndarray  # (P,) int64 days recorded since joining
    hist_pos: np.ndarray  # (1,) int64 next ring row
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
    halted: np.ndarray  # (1,) int8 HALT_*: flatten fired or the account is bust; no more trading
    derisk: np.ndarray  # (1,) int8: in a drawdown breach with drawdown_action derisk
    dd_alerted: np.ndarray  # (1,) int8: a drawdown alert was raised in the current breach
    gross_alerted: np.ndarray  # (1,) int8: gross leverage is above its cap since the last alert
    account_fees: np.ndarray
    next_bar: np.ndarray  # int64: the bar the next step processes
    # memo: derived, rebuilt by the bar loop (never saved; a restored run starts them empty, and
    # the bar loop then returns to the driver at every drift check until they are full again)
    memo_navs: np.ndarray  # (W+1, P) ring of the pods' NAVs at the last W+1 day ends
    memo_target: np.ndarray  # (P,) PRC target of the last rebalance (the allocator's)
    memo_index: np.ndarray  # (4, max(P, 4)) int64: row 0 the pods' rank by pod_id, row 1 the
    # target's pod set, row 2 scratch (the production pods in rank order), row 3 [day ends
    # pushed, next ring row, target set size (-1: no target), 1 when the pushes are every day
    # end of the run (a fresh engine; 0 after a restore)]
    # scratch (K,) / (S,) reused every bar; not meaningful between bars
    scratch_target: np.ndarray
    scratch_delta: np.ndarray
    scratch_changed: np.ndarray  # (S,) bool: a slot of this symbol has a target != its units
    scratch_fraction: np.ndarray  # (P,) fraction a pod asks for at this day end (-1 = none)
    scratch_nan: np.ndarray  # (S,) all NaN, never written: "modelled fills" for the bar loop
    scratch_equity: np.ndarray  # (P,) pod equities at a day end
    scratch_drift: np.ndarray  # (2·W·P + 6·P² + 3·P,) the drift check's buffers: its returns
    # window and demeaned copy, Ledoit–Wolf and Cholesky matrices, shares, target and Σw (cut
    # into C-ordered blocks of the production pods' count, the layout the allocator's calls use)


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
    # lifecycle transitions (at most one per pod per day)
    ev_bar: np.ndarray
    ev_pod: np.ndarray
    ev_from: np.ndarray  # int8
    ev_to: np.ndarray  # int8
    ev_reason: np.ndarray  # int8 R_*
    ev_value: np.ndarray
    ev_threshold: np.ndarray
    ev_count: np.ndarray  # (1,) int64
    # kernel alerts (circuit breaker, portfolio drawdown)
    al_bar: np.ndarray
    al_type: np.ndarray  # int8 A_*
    al_value: np.ndarray
    al_threshold: np.ndarray
    al_pod: np.ndarray  # int64: the pod an alert is about, -1 for the account
    al_count: np.ndarray  # (1,) int64
    # Page-Hinkley score per pod at each bar (updated at day ends)
    ph_score: np.ndarray  # (T, P)


def new_state(
    n_pods: int, n_syms: int, n_slots: int, history: int = 2, drift_window: int = 1
) -> State:
    """A zeroed State of the right shapes (the engine then sets cash and fractions).

    ``history`` is the ring buffer length in days (the longest lifecycle window);
    ``drift_window`` the allocator's covariance window in returns (the drift check's).
    """
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
        pending=np.zeros(n_pods, dtype=np.bool_),
        pod_state=np.zeros(n_pods, dtype=np.int8),
        pod_day_start_equity=f(n_pods),
        pod_nav=np.ones(n_pods),
        pod_nav_day_start=np.ones(n_pods),
        pod_nav_peak=np.ones(n_pods),
        pod_anchor_nav=np.ones(n_pods),
        pod_anchor_equity=f(n_pods),
        pod_funded=np.zeros(n_pods, dtype=np.bool_),
        pod_denied=np.zeros(n_pods, dtype=np.bool_),
        pod_fees=f(n_pods),
        pod_alone_fees=f(n_pods),
        pod_trades=i(n_pods),
        pod_notional=f(n_pods),
        pod_funding=f(n_pods),
        pod_live_days=f(n_pods),
        pod_state_days=f(n_pods),
        pod_warning_fraction=f(n_pods),
        ph_n=i(n_pods),
        ph_mean=f(n_pods),
        ph_sum=f(n_pods),
        ph_max=np.full(n_pods, -1.0),
        ph_score=f(n_pods),
        pod_joined=np.ones(n_pods, dtype=np.bool_),
        pod_dd_max=f(n_pods),
        pod_sum_r=f(n_pods),
        pod_sum_r2=f(n_pods),
        pod_month_nav=np.ones(n_pods),
        pod_loss_months=i(n_pods),
        hist_ret=np.zeros((max(history, 2), n_pods)),
        hist_rest=np.zeros((max(history, 2), n_pods)),
        hist_count=i(n_pods),
        hist_pos=i(1),
        account_units=f(n_syms),
        account_cash=f(1),
        unallocated=f(1),
        day=np.full(1, -1, dtype=np.int64),
        day_start_equity=f(1),
        equity_peak=f(1),
        last_equity=f(1),
        breaker=np.zeros(1, dtype=np.int8),
        halted=np.zeros(1, dtype=np.int8),
        derisk=np.zeros(1, dtype=np.int8),
        dd_alerted=np.zeros(1, dtype=np.int8),
        gross_alerted=np.zeros(1, dtype=np.int8),
        account_fees=f(1),
        next_bar=i(1),
        memo_navs=np.ones((max(drift_window, 1) + 1, n_pods)),
        memo_target=f(n_pods),
        memo_index=np.zeros((4, max(n_pods, 4)), dtype=np.int64),
        scratch_target=f(n_slots),
        scratch_delta=f(n_slots),
        scratch_changed=np.zeros(n_syms, dtype=np.bool_),
        scratch_fraction=np.full(n_pods, -1.0),
        scratch_nan=np.full(n_syms, np.nan),
        scratch_equity=f(n_pods),
        scratch_drift=f(2 * max(drift_window, 1) * n_pods + 6 * n_pods * n_pods + 3 * n_pods),
    )


def seed_capital(st: State, fractions: np.ndarray, capital: float) -> None:
    """Give a fresh State its starting capital: pod ``p`` gets ``fractions[p] · capital`` as cash,
    the rest is unallocated; NAVs start at 1 (a pod with no capital is unfunded)."""
    fr = np.asarray(fractions, dtype=np.float64)
    st.pod_fraction[:] = fr
    st.pod_cash[:] = fr * capital
    st.pod_day_start_equity[:] = fr * capital
    st.pod_anchor_nav[:] = 1.0
    st.pod_anchor_equity[:] = fr * capital
    st.pod_funded[:] = fr > EQUITY_EPS
    st.account_cash[0] = capital
    st.unallocated[0] = capital - float(fr.sum()) * capital
    st.last_equity[0] = capital
    st.day_start_equity[0] = capital
    st.equity_peak[0] = capital


def copy_state(state: State) -> State:
    """A deep copy (for checkpoints and parity tests)."""
    return State(*(a.copy() for a in state))


def new_outputs(n_bars: int, n_pods: int, capacity: int, n_days: int | None = None) -> Outputs:
    """Output arrays for ``n_bars`` bars, a fill buffer of ``capacity`` rows, and event/alert
    buffers sized for ``n_days`` day ends (one transition per pod per day at most)."""
    days = n_bars if n_days is None else n_days
    n_ev = (days + 1) * n_pods + 1
    n_al = 2 * days + 8
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
        ev_bar=np.zeros(n_ev, dtype=np.int64),
        ev_pod=np.zeros(n_ev, dtype=np.int64),
        ev_from=np.zeros(n_ev, dtype=np.int8),
        ev_to=np.zeros(n_ev, dtype=np.int8),
        ev_reason=np.zeros(n_ev, dtype=np.int8),
        ev_value=np.zeros(n_ev),
        ev_threshold=np.zeros(n_ev),
        ev_count=np.zeros(1, dtype=np.int64),
        al_bar=np.zeros(n_al, dtype=np.int64),
        al_type=np.zeros(n_al, dtype=np.int8),
        al_value=np.zeros(n_al),
        al_threshold=np.zeros(n_al),
        al_pod=np.full(n_al, -1, dtype=np.int64),
        al_count=np.zeros(1, dtype=np.int64),
        ph_score=np.zeros((n_bars, n_pods)),
    )
