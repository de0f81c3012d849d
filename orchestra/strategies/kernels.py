"""Numba kernels of the built-in strategies, in step form.

Every window primitive is a small **state** plus a **step**: the state lives in a segment of a
float64 row (one row per symbol), the step takes the bar's value, updates the state in O(1) and
returns the statistic. Each strategy is one per-symbol step (``*_sym``) over those primitives, and
it runs in two ways that execute the same float operations in the same order:

* whole history — ``*_nb(..., state)`` loops the step over each symbol's bars in an ``(S, L)``
  layout (one row per symbol in time order; symbol ``s`` has bars in columns
  ``start[s] .. stop[s]-1`` and weight 0 outside) and leaves each symbol's state after its last
  bar in ``state``;
* one bar — ``*_step_nb(..., state)`` steps every symbol that has a bar now (the live loop).

So a live update equals the backtest's value bit for bit by construction, and the state after a
whole-history pass is exactly the state the live loop would hold after the same bars (a restart
rebuilds it that way). Every kernel is causal: the weight at bar t reads bars ≤ t only.

The primitives (state layout ``[...]`` as float64; counters are exact integers in float64):

* rolling sample standard deviation (ddof 1) by Welford's update with removal:
  ``[n_seen, count, nonzero, mean, m2, ring position, ring(window)]``;
* rolling sum: ``[n_seen, count, nonzero, total, ring position, ring(window)]``;
* the prior ``window`` bars' max or min (bar t excluded) by blocks of ``window`` values (van
  Herk / Gil-Werman): ``[n_seen, position in the block, running extreme, suffix extremes(window),
  block(window)]``;
* the value ``lag`` bars ago (momentum): ``[n_seen, ring position, ring(lag)]``.

Ring positions are kept as counters that wrap (no integer division in the loop).

Exact zeros stay exact: a window whose values are all 0 gives a standard deviation (or sum) of
exactly 0, not a rounding residue, so "no volatility" and "no volume" tests keep their meaning on
flat, gap-filled stretches. A rolling statistic is NaN until its window is full of numbers (like
polars' ``rolling_*`` with ``min_samples = window``); a NaN weight becomes 0 (no opinion yet).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import register_jitable

VOL_FLOOR = 1e-6  # annualised; keeps 1/σ finite on flat (zero-volume, gap-filled) stretches

# error_model="numpy": a float division by zero gives inf/NaN instead of raising, so the loops
# carry no zero-divisor branch (~10 % of the kernels' time on L). No kernel divides by a value
# that can be 0 (counts are ≥ 1 where divided by, prices are positive, σ is floored), and a
# non-finite weight would be refused by the engine with the strategy's name and bar
_jit = njit(cache=True, nogil=True, error_model="numpy")
# the primitives and per-symbol steps are inlined into each kernel (numba IR inlining): one
# function per loop, so LLVM keeps the loop's addresses and counters in registers
_step = njit(cache=True, nogil=True, error_model="numpy", inline="always")
# a state's size: plain Python when the strategies' set-up asks (nothing to compile: each was
# ~0.1 s of a cold start, compiled only to be called once), compiled into the kernels that use it
_size = register_jitable


# ---------------------------------------------------------------------------- layouts
# ---------------------------------------------------------------------------- primitives
@_size
def rstd_size(window):
    return 6 + window


@_step
def rstd_push(st, o, window, v):
    """Push ``v``; the sample std of the last ``window`` values (NaN unless all are numbers;
    exactly 0 when all are 0).

    Welford's update with removal. Its variance error is absolute, about eps times the squared
    scale of the values so far: a window much calmer than the data before it has a larger
    relative error (6e-9 for a std of 3e-4 in unit-variance data; for volatility scaling, far
    below anything that moves a weight)."""
    t = int(st[o])
    count, nonzero, mean, m2 = int(st[o + 1]), int(st[o + 2]), st[o + 3], st[o + 4]
    pos = int(st[o + 5])  # t % window, kept without a division
    slot = o + 6 + pos
    u = st[slot]  # the value leaving the window (when t >= window)
    st[slot] = v
    st[o + 5] = pos + 1 if pos + 1 < window else 0
    if not np.isnan(v):
        count += 1
        nonzero += v != 0.0
        d = v - mean
        mean += d / count
        m2 += d * (v - mean)
    if t >= window and not np.isnan(u):
        count -= 1
        nonzero -= u != 0.0
        if count == 0:
            mean, m2 = 0.0, 0.0
        else:
            d = u - mean
            mean -= d / count
            m2 -= d * (u - mean)
    st[o] = t + 1
    st[o + 1], st[o + 2], st[o + 3], st[o + 4] = count, nonzero, mean, m2
    if count == window:
        return 0.0 if nonzero == 0 else np.sqrt(max(m2, 0.0) / (window - 1))
    return np.nan


@_size
def rsum_size(window):
    return 5 + window


@_step
def rsum_push(st, o, window, v):
    """Push ``v``; the sum of the last ``window`` values (NaN unless all are numbers; exactly 0
    when all are 0)."""
    t = int(st[o])
    count, nonzero, total = int(st[o + 1]), int(st[o + 2]), st[o + 3]
    pos = int(st[o + 4])  # t % window
    slot = o + 5 + pos
    u = st[slot]
    st[slot] = v
    st[o + 4] = pos + 1 if pos + 1 < window else 0
    if not np.isnan(v):
        count += 1
        nonzero += v != 0.0
        total += v
    if t >= window and not np.isnan(u):
        count -= 1
        nonzero -= u != 0.0
        total -= u
    st[o] = t + 1
    st[o + 1], st[o + 2], st[o + 3] = count, nonzero, total
    if count == window:
        return total if nonzero else 0.0
    return np.nan


@_size
def extreme_size(window):
    return 3 + 2 * window


@_step
def _extreme(a, b, highest):
    """The max (``highest``) or min of ``a`` and ``b``; NaN if either is NaN."""
    if highest:
        return a if (a >= b or a != a) else b
    return a if (a <= b or a != a) else b


@_step
def extreme_push(st, o, window, v, highest):
    """The max (``highest``) or min of the ``window`` values before ``v`` (NaN until there are
    ``window``, and while a NaN is among them), then push ``v``.

    Blocks of ``window`` pushes (van Herk / Gil-Werman): the window before push ``t`` is the tail
    of the last complete block plus the head of the current one, so it is the extreme of that
    block's suffix extreme at ``t``'s position and the current block's running extreme. When a
    block completes, its suffix extremes are computed in one backward pass: O(1) a push
    amortised and no data-dependent branch (a monotone deque's pops mispredict; 2.5x slower).
    State: ``[n_seen, position in the block, running extreme, suffix(window), block(window)]``.
    """
    t, pos, run = int(st[o]), int(st[o + 1]), st[o + 2]
    suffix, block = o + 3, o + 3 + window
    out = np.nan
    if t >= window:  # position 0: the last complete block is the whole window
        out = st[suffix] if pos == 0 else _extreme(st[suffix + pos], run, highest)
    st[block + pos] = v
    run = v if pos == 0 else _extreme(run, v, highest)
    pos += 1
    if pos == window:  # the block is complete: its suffix extremes, back to front
        acc = v
        st[suffix + window - 1] = acc
        for i in range(window - 2, -1, -1):
            acc = _extreme(st[block + i], acc, highest)
            st[suffix + i] = acc
        pos = 0
    st[o], st[o + 1], st[o + 2] = t + 1, pos, run
    return out


@_size
def lag_size(lag):
    return 2 + lag


@_step
def lag_push(st, o, lag, v):
    """The value pushed ``lag`` steps ago (NaN before there is one), then push ``v``."""
    t, pos = int(st[o]), int(st[o + 1])  # pos = t % lag
    slot = o + 2 + pos
    out = st[slot] if t >= lag else np.nan
    st[slot] = v
    st[o] = t + 1
    st[o + 1] = pos + 1 if pos + 1 < lag else 0
    return out


@_step
def log_return_push(st, o, c):
    """``ln(c / previous c)``; NaN on the first bar (the state starts at NaN)."""
    prev = st[o]
    st[o] = c
    return np.log(c / prev)


@_step
def vol_scaled(signal, vol, vol_target, n):
    """``signal · vol_target / max(σ, floor) / n``; 0 while either is unknown (NaN)."""
    if np.isnan(signal) or np.isnan(vol):
        return 0.0
    return signal * vol_target / (vol if vol > VOL_FLOOR else VOL_FLOOR) / n


# ---------------------------------------------------------------------------- tsmom
@_size
def tsmom_size(lookback, vol_window):
    return 1 + rstd_size(vol_window) + lag_size(lookback)


@_step
def tsmom_sym(st, c, n, lookback, vol_window, vol_target, scale):
    r = log_return_push(st, 0, c)
    sigma = rstd_push(st, 1, vol_window, r)
    mom = np.sign(c / lag_push(st, 1 + rstd_size(vol_window), lookback, c) - 1.0)
    return vol_scaled(mom, sigma * scale, vol_target, n)


@_jit
def tsmom_nb(close, start, stop, lookback, vol_window, vol_target, per_year, listed, state):
    out = np.zeros(close.shape)
    scale = np.sqrt(per_year)
    for s in range(close.shape[0]):
        r = s if listed.shape[0] > 1 else 0  # one row: the same count for every symbol
        for j in range(start[s], stop[s]):
            out[s, j] = tsmom_sym(
                state[s], close[s, j], listed[r, j], lookback, vol_window, vol_target, scale
            )
    return out


@_jit
def tsmom_step_nb(close, has, n, lookback, vol_window, vol_target, per_year, state):
    out = np.zeros(close.size)
    scale = np.sqrt(per_year)
    for s in range(close.size):
        if has[s]:
            out[s] = tsmom_sym(state[s], close[s], n, lookback, vol_window, vol_target, scale)
    return out


# ---------------------------------------------------------------------------- vw-tsmom
@_size
def vw_tsmom_size(lookback, vol_window):
    return 1 + rstd_size(vol_window) + 2 * rsum_size(lookback)


@_step
def vw_tsmom_sym(st, c, v, n, lookback, vol_window, vol_target, scale):
    r = log_return_push(st, 0, c)
    sigma = rstd_push(st, 1, vol_window, r)
    o = 1 + rstd_size(vol_window)
    num = rsum_push(st, o, lookback, r * v)
    den = rsum_push(st, o + rsum_size(lookback), lookback, v)
    signal = np.sign(num / den) if den > 0 else 0.0
    return vol_scaled(signal, sigma * scale, vol_target, n)


@_jit
def vw_tsmom_nb(
    close, volume, start, stop, lookback, vol_window, vol_target, per_year, listed, state
):
    out = np.zeros(close.shape)
    scale = np.sqrt(per_year)
    for s in range(close.shape[0]):
        r = s if listed.shape[0] > 1 else 0  # one row: the same count for every symbol
        for j in range(start[s], stop[s]):
            out[s, j] = vw_tsmom_sym(
                state[s], close[s, j], volume[s, j], listed[r, j], lookback, vol_window,
                vol_target, scale,
            )  # fmt: skip
    return out


@_jit
def vw_tsmom_step_nb(close, volume, has, n, lookback, vol_window, vol_target, per_year, state):
    out = np.zeros(close.size)
    scale = np.sqrt(per_year)
    for s in range(close.size):
        if has[s]:
            out[s] = vw_tsmom_sym(
                state[s], close[s], volume[s], n, lookback, vol_window, vol_target, scale
            )
    return out


# ---------------------------------------------------------------------------- donchian
@_size
def donchian_size(lookbacks, vol_window):
    size = 1 + rstd_size(vol_window)
    for i in range(lookbacks.size):
        size += 2 * extreme_size(lookbacks[i]) + 1
    return size


@_step
def donchian_sym(st, h, lo, c, n, lookbacks, down, vol_window, vol_target, scale):
    sigma = rstd_push(st, 1, vol_window, log_return_push(st, 0, c))
    o = 1 + rstd_size(vol_window)
    total = 0.0
    for i in range(lookbacks.size):
        size = extreme_size(lookbacks[i])
        upper = extreme_push(st, o, lookbacks[i], h, True)
        lower = extreme_push(st, o + size, lookbacks[i], lo, False)
        o += 2 * size
        held = st[o]  # the last breakout's direction (0 before the first)
        if c > upper:
            held = 1.0
        elif c < lower:
            held = down
        st[o] = held
        o += 1
        total += held
    return vol_scaled(total / lookbacks.size, sigma * scale, vol_target, n)


@_jit
def donchian_nb(
    high, low, close, start, stop, lookbacks, long_only, vol_window, vol_target, per_year,
    listed, state,
):  # fmt: skip
    out = np.zeros(close.shape)
    scale = np.sqrt(per_year)
    down = 0.0 if long_only else -1.0
    for s in range(close.shape[0]):
        r = s if listed.shape[0] > 1 else 0  # one row: the same count for every symbol
        for j in range(start[s], stop[s]):
            out[s, j] = donchian_sym(
                state[s], high[s, j], low[s, j], close[s, j], listed[r, j], lookbacks, down,
                vol_window, vol_target, scale,
            )  # fmt: skip
    return out


@_jit
def donchian_step_nb(
    high, low, close, has, n, lookbacks, long_only, vol_window, vol_target, per_year, state
):
    out = np.zeros(close.size)
    scale = np.sqrt(per_year)
    down = 0.0 if long_only else -1.0
    for s in range(close.size):
        if has[s]:
            out[s] = donchian_sym(
                state[s], high[s], low[s], close[s], n, lookbacks, down, vol_window,
                vol_target, scale,
            )  # fmt: skip
    return out


# ---------------------------------------------------------------------------- vol-adaptive
@_size
def vol_adaptive_size(fast, slow, vol_short, vol_long):
    return 1 + rstd_size(vol_short) + rstd_size(vol_long) + lag_size(fast) + lag_size(slow)


@_step
def vol_adaptive_sym(st, c, n, fast, slow, vol_short, vol_long, vol_target, scale):
    r = log_return_push(st, 0, c)
    o = 1
    short = rstd_push(st, o, vol_short, r)
    o += rstd_size(vol_short)
    long = rstd_push(st, o, vol_long, r)
    o += rstd_size(vol_long)
    m_fast = np.sign(c / lag_push(st, o, fast, c) - 1.0)
    o += lag_size(fast)
    m_slow = np.sign(c / lag_push(st, o, slow, c) - 1.0)
    if np.isnan(long):
        return 0.0  # the long window gates the regime: no signal before it is full
    signal = m_fast if short > long else m_slow
    return vol_scaled(signal, short * scale, vol_target, n)


@_jit
def vol_adaptive_nb(
    close, start, stop, fast, slow, vol_short, vol_long, vol_target, per_year, listed, state
):
    out = np.zeros(close.shape)
    scale = np.sqrt(per_year)
    for s in range(close.shape[0]):
        r = s if listed.shape[0] > 1 else 0  # one row: the same count for every symbol
        for j in range(start[s], stop[s]):
            out[s, j] = vol_adaptive_sym(
                state[s], close[s, j], listed[r, j], fast, slow, vol_short, vol_long,
                vol_target, scale,
            )  # fmt: skip
    return out


@_jit
def vol_adaptive_step_nb(
    close, has, n, fast, slow, vol_short, vol_long, vol_target, per_year, state
):
    out = np.zeros(close.size)
    scale = np.sqrt(per_year)
    for s in range(close.size):
        if has[s]:
            out[s] = vol_adaptive_sym(
                state[s], close[s], n, fast, slow, vol_short, vol_long, vol_target, scale
            )
    return out


# ---------------------------------------------------------------------------- ensemble
@_size
def combine_size(k, vol_window):
    return 1 + k * (1 + rstd_size(vol_window))


@_step
def combine_sym(st, c, w, inverse_volatility, vol_window):
    """One bar of the ensemble of ``k`` sub-strategy weights ``w`` on one symbol: their mean,
    or inverse-volatility weights of each sub-strategy's return stream
    ``w_i[t-1] · (close[t] / close[t-1] - 1)`` (equal weights while any stream's volatility is
    unknown or zero). State: the previous close, then per sub-strategy its previous weight and
    the stream's rolling std."""
    k = w.size
    if not inverse_volatility:
        acc = 0.0
        for i in range(k):
            acc += w[i]
        return acc / k
    prev = st[0]
    st[0] = c
    size = 1 + rstd_size(vol_window)
    known = True
    sig = np.empty(k)
    for i in range(k):
        o = 1 + i * size
        sig[i] = rstd_push(st, o + 1, vol_window, st[o] * (c / prev - 1.0))
        st[o] = w[i]
        known = known and sig[i] > 0  # False for NaN (unknown) and 0
    total = 0.0
    for i in range(k):
        total += 1.0 / sig[i] if known else 1.0
    acc = 0.0
    for i in range(k):
        acc += (1.0 / sig[i] if known else 1.0) / total * w[i]
    return 0.0 if np.isnan(acc) else acc


@_jit
def combine_nb(weights, close, start, stop, inverse_volatility, vol_window, state):
    """Ensemble of ``(k, S, L)`` sub-strategy weights (see :func:`combine_sym`)."""
    k = weights.shape[0]
    out = np.zeros(close.shape)
    w = np.empty(k)
    for s in range(close.shape[0]):
        for j in range(start[s], stop[s]):
            for i in range(k):
                w[i] = weights[i, s, j]
            out[s, j] = combine_sym(state[s], close[s, j], w, inverse_volatility, vol_window)
    return out


@_jit
def combine_step_nb(weights, close, has, inverse_volatility, vol_window, state):
    """One bar of :func:`combine_nb`: ``weights`` is ``(k, S)``."""
    k = weights.shape[0]
    out = np.zeros(close.size)
    w = np.empty(k)
    for s in range(close.size):
        if has[s]:
            for i in range(k):
                w[i] = weights[i, s]
            out[s] = combine_sym(state[s], close[s], w, inverse_volatility, vol_window)
    return out


# ---------------------------------------------------------------------------- whole arrays
# (the primitives over one array, for tests and notebooks)
@_jit
def rolling_std(x, window):
    """:func:`rstd_push` over ``x``."""
    st, out = np.zeros(rstd_size(window)), np.empty(x.size)
    for t in range(x.size):
        out[t] = rstd_push(st, 0, window, x[t])
    return out


@_jit
def rolling_sum(x, window):
    """:func:`rsum_push` over ``x``."""
    st, out = np.zeros(rsum_size(window)), np.empty(x.size)
    for t in range(x.size):
        out[t] = rsum_push(st, 0, window, x[t])
    return out


@_jit
def prior_extreme(x, window, highest):
    """:func:`extreme_push` over ``x``: max or min of ``x[t-window .. t-1]``."""
    st, out = np.zeros(extreme_size(window)), np.empty(x.size)
    for t in range(x.size):
        out[t] = extreme_push(st, 0, window, x[t], highest)
    return out
