"""Random kernel inputs for property tests (hypothesis) and the helpers that run them."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from orchestra.kernels.capital import request_rebalance_nb
from orchestra.kernels.refs import as_refs
from orchestra.kernels.state import (
    Inputs,
    copy_state,
    lifecycle_off,
    new_outputs,
    new_state,
    seed_capital,
    zero_params,
)
from orchestra.kernels.step import run_segment_nb

DAY = 86_400_000


def make_inputs(
    rng: np.random.Generator,
    n_pods: int,
    n_syms: int,
    n_bars: int,
    *,
    exec_close: bool,
    cost: float,
    slip: float,
    max_gross: float,
    daily_loss: float,
    bars_per_day: int = 1,
    stop: bool = True,
    trailing: bool = True,
    late_listing: bool = True,
) -> Inputs:
    """Random but valid inputs: positive price paths, sparse signed weights, random rules."""
    step = DAY // bars_per_day
    ts = np.arange(n_bars, dtype=np.int64) * step + 19_000 * DAY
    vol = rng.uniform(0.01, 0.08, n_syms)
    logp = np.cumsum(rng.normal(0, 1, (n_bars, n_syms)) * vol, axis=0) + np.log(
        rng.uniform(1, 1000, n_syms)
    )
    close = np.exp(logp)
    open_ = close * np.exp(rng.normal(0, 0.01, close.shape))
    tradable = np.ones_like(close, dtype=bool)
    if late_listing and n_syms > 1:
        j = rng.integers(n_syms)
        start = rng.integers(0, max(n_bars // 2, 1))
        close[:start, j] = np.nan
        open_[:start, j] = np.nan
        tradable[:start, j] = False
    slot_pod, slot_sym = [], []
    pod_ptr = [0]
    for p in range(n_pods):
        k = rng.integers(1, n_syms + 1)
        syms = np.sort(rng.choice(n_syms, size=k, replace=False))
        slot_pod += [p] * k
        slot_sym += syms.tolist()
        pod_ptr.append(len(slot_pod))
    K = len(slot_pod)
    w = rng.uniform(-1.5, 1.5, (n_bars, K))
    w[rng.random((n_bars, K)) < 0.3] = 0.0
    # persistence: weights often repeat so thresholds and stops matter
    for t in range(1, n_bars):
        keep = rng.random(K) < 0.5
        w[t, keep] = w[t - 1, keep]
    slot_sym_arr = np.asarray(slot_sym, dtype=np.int64)
    sym_ptr = np.concatenate([[0], np.cumsum(np.bincount(slot_sym_arr, minlength=n_syms))]).astype(
        np.int64
    )
    params = zero_params(
        exec_mode=1.0 if exec_close else 0.0,
        cost=cost,
        slippage=slip,
        max_gross=max_gross,
        daily_loss=daily_loss,
        funding=1.0,
    )
    atr = np.abs(rng.normal(0, 1, close.shape)) * close * vol
    atr[:3] = np.nan
    return Inputs(
        timestamps=ts,
        day_id=ts // DAY,
        day_end=((ts + step) // DAY) > (ts // DAY),
        month_end=np.zeros(n_bars, dtype=bool),
        open=open_,
        close=close,
        tradable=tradable,
        atr=atr,
        target=w,
        funding=np.where(rng.random(close.shape) < 0.1, rng.normal(0, 1e-4, close.shape), 0.0),
        slot_pod=np.asarray(slot_pod, dtype=np.int64),
        slot_sym=slot_sym_arr,
        pod_ptr=np.asarray(pod_ptr, dtype=np.int64),
        sym_ptr=sym_ptr,
        sym_slots=np.argsort(slot_sym_arr, kind="stable").astype(np.int64),
        pod_max_leverage=rng.uniform(0.5, 3.0, n_pods),
        pod_threshold=rng.choice([0.0, 0.02, 0.1], n_pods),
        pod_stop_loss=np.where(rng.random(n_pods) < 0.5, rng.uniform(0.02, 0.2, n_pods), np.nan)
        if stop
        else np.full(n_pods, np.nan),
        pod_trailing=(rng.random(n_pods) < 0.5) if trailing else np.zeros(n_pods, dtype=bool),
        pod_trail_mult=rng.uniform(0.5, 4.0, n_pods),
        pod_max_drawdown=np.full(n_pods, 0.15),
        pod_drawdown_warning=np.full(n_pods, 0.10),
        pod_min_fraction=np.full(n_pods, 0.05),
        params=params,
        lifecycle=lifecycle_off(),  # the accounting oracle has no lifecycle: switched off here
    )


@st.composite
def kernel_cases(draw, max_pods: int = 4, max_syms: int = 4, max_bars: int = 40):
    seed = draw(st.integers(0, 2**32 - 1))
    n_pods = draw(st.integers(1, max_pods))
    n_syms = draw(st.integers(1, max_syms))
    n_bars = draw(st.integers(2, max_bars))
    exec_close = draw(st.booleans())
    cost = draw(st.sampled_from([0.0, 0.0004, 0.001, 0.01]))
    slip = draw(st.sampled_from([0.0, 0.0001, 0.002]))
    max_gross = draw(st.sampled_from([0.0, 0.5, 1.5, 3.0]))
    daily_loss = draw(st.sampled_from([0.0, 0.02, 0.05]))
    bars_per_day = draw(st.sampled_from([1, 4]))
    fr = draw(
        st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=n_pods, max_size=n_pods)
    )
    total = sum(fr)
    fractions = np.array([f / total if total > 1 else f for f in fr])
    rng = np.random.default_rng(seed)
    inp = make_inputs(
        rng,
        n_pods,
        n_syms,
        n_bars,
        exec_close=exec_close,
        cost=cost,
        slip=slip,
        max_gross=max_gross,
        daily_loss=daily_loss,
        bars_per_day=bars_per_day,
    )
    return inp, fractions


def fresh_state(inp: Inputs, fractions: np.ndarray, capital: float = 100_000.0):
    n_pods = inp.pod_ptr.shape[0] - 1
    st_ = new_state(n_pods, inp.close.shape[1], inp.slot_pod.shape[0])
    seed_capital(st_, fractions, capital)
    st_.pod_state[:] = 1
    return st_


def run_kernel(
    inp: Inputs, fractions: np.ndarray, capital: float = 100_000.0, per_bar=None, transfers=None
):
    """Run the kernel bar by bar; ``per_bar(t, state)`` is called after each bar.

    ``transfers`` maps a bar to new fractions requested at that bar's close (the cash moves at
    the next execution)."""
    T = inp.timestamps.shape[0]
    st_ = fresh_state(inp, fractions, capital)
    out = new_outputs(T, inp.pod_ptr.shape[0] - 1, 4 * T * max(inp.slot_pod.shape[0], 1) + 8, T)
    no_stops = np.zeros(T, dtype=np.int8)  # the driver's day-end stops: none here
    refs = as_refs(inp, st_, out)
    for t in range(T):
        run_segment_nb(*refs, t, t + 1, no_stops)
        if per_bar is not None:
            per_bar(t, st_)
        if transfers and t in transfers:
            request_rebalance_nb(
                st_.pod_fraction, st_.pending, np.asarray(transfers[t], dtype=float)
            )
    return st_, out


__all__ = ["copy_state", "fresh_state", "kernel_cases", "make_inputs", "run_kernel"]
