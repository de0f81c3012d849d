"""Numba kernels of the built-in strategies.

Layout: every field is a ``(S, L)`` array, one row per symbol in time order; symbol ``s`` has bars
in columns ``start[s] .. stop[s]-1`` (one contiguous run) and weight 0 outside it. Each symbol is
computed on its own run only, from its first bar, exactly as a per-symbol ``.over("symbol")``
would see it. Every kernel is causal: the weight at column t reads columns ≤ t only.

Windows are maintained incrementally (O(1) per bar whatever the window): a rolling sample
standard deviation by Welford's update with removal, rolling sums, and the channel's max/min by
a monotone deque. Exact zeros stay exact: a window whose values are all 0 gives a standard
deviation (or sum) of exactly 0, not a rounding residue, so "no volatility" and "no volume" tests
keep their meaning on flat, gap-filled stretches.

A rolling statistic is NaN until its window is full of numbers (like polars' ``rolling_*`` with
``min_samples = window``); a NaN weight becomes 0 (no opinion yet).
"""

from __future__ import annotations

import numpy as np
from numba import njit

VOL_FLOOR = 1e-6  # annualised; keeps 1/σ finite on flat (zero-volume, gap-filled) stretches


@njit(cache=True, nogil=True)
def log_returns(c: np.ndarray) -> np.ndarray:
    """``ln(c[t] / c[t-1])``, NaN at t = 0."""
    out = np.empty(c.size)
    if c.size:
        out[0] = np.nan
    for t in range(1, c.size):
        out[t] = np.log(c[t] / c[t - 1])
    return out


@njit(cache=True, nogil=True)
def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Sample standard deviation (ddof 1) of the last ``window`` values; NaN unless all are
    numbers; exactly 0 when they are all 0.

    Welford's update with removal, O(1) per value. Its variance error is absolute, about eps
    times the squared scale of the values so far: a window much calmer than the data before it
    has a larger relative error (6e-9 for a std of 3e-4 in unit-variance data; for volatility
    scaling, far below anything that moves a weight)."""
    out = np.full(x.size, np.nan)
    count, nonzero, mean, m2 = 0, 0, 0.0, 0.0
    for t in range(x.size):
        v = x[t]
        if not np.isnan(v):
            count += 1
            nonzero += v != 0.0
            d = v - mean
            mean += d / count
            m2 += d * (v - mean)
        if t >= window:
            u = x[t - window]
            if not np.isnan(u):
                count -= 1
                nonzero -= u != 0.0
                if count == 0:
                    mean, m2 = 0.0, 0.0
                else:
                    d = u - mean
                    mean -= d / count
                    m2 -= d * (u - mean)
        if count == window:
            out[t] = 0.0 if nonzero == 0 else np.sqrt(max(m2, 0.0) / (window - 1))
    return out


@njit(cache=True, nogil=True)
def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last ``window`` values; NaN unless all are numbers; exactly 0 when all are 0."""
    out = np.full(x.size, np.nan)
    count, nonzero, total = 0, 0, 0.0
    for t in range(x.size):
        v = x[t]
        if not np.isnan(v):
            count += 1
            nonzero += v != 0.0
            total += v
        if t >= window:
            u = x[t - window]
            if not np.isnan(u):
                count -= 1
                nonzero -= u != 0.0
                total -= u
        if count == window:
            out[t] = total if nonzero else 0.0
    return out


@njit(cache=True, nogil=True)
def prior_extreme(x: np.ndarray, window: int, highest: bool) -> np.ndarray:
    """Max (``highest``) or min of ``x[t-window .. t-1]`` (bar t excluded); NaN for t < window."""
    out = np.full(x.size, np.nan)
    dq = np.empty(x.size, np.int64)  # indices, their values monotone from head to tail
    head, tail = 0, 0
    for t in range(x.size):
        if t >= window:
            while dq[head] < t - window:
                head += 1
            out[t] = x[dq[head]]
        v = x[t]
        while tail > head and ((x[dq[tail - 1]] <= v) if highest else (x[dq[tail - 1]] >= v)):
            tail -= 1
        dq[tail] = t
        tail += 1
    return out


@njit(cache=True, nogil=True)
def momentum_sign(c: np.ndarray, lookback: int) -> np.ndarray:
    """``sign(c[t] / c[t-lookback] - 1)``, NaN for t < lookback."""
    out = np.full(c.size, np.nan)
    for t in range(lookback, c.size):
        out[t] = np.sign(c[t] / c[t - lookback] - 1.0)
    return out


@njit(cache=True, nogil=True)
def vol_scaled(signal: float, vol: float, vol_target: float, n: float) -> float:
    """``signal · vol_target / max(σ, floor) / n``; 0 while either is unknown (NaN)."""
    if np.isnan(signal) or np.isnan(vol):
        return 0.0
    return signal * vol_target / (vol if vol > VOL_FLOOR else VOL_FLOOR) / n


@njit(cache=True, nogil=True)
def tsmom_nb(close, start, stop, lookback, vol_window, vol_target, per_year, listed):
    out = np.zeros(close.shape)
    scale = np.sqrt(per_year)
    for s in range(close.shape[0]):
        lo, hi = start[s], stop[s]
        c = close[s, lo:hi]
        sigma = rolling_std(log_returns(c), vol_window)
        mom = momentum_sign(c, lookback)
        for t in range(c.size):
            out[s, lo + t] = vol_scaled(mom[t], sigma[t] * scale, vol_target, listed[s, lo + t])
    return out


@njit(cache=True, nogil=True)
def vw_tsmom_nb(close, volume, start, stop, lookback, vol_window, vol_target, per_year, listed):
    out = np.zeros(close.shape)
    scale = np.sqrt(per_year)
    for s in range(close.shape[0]):
        lo, hi = start[s], stop[s]
        c, v = close[s, lo:hi], volume[s, lo:hi]
        r = log_returns(c)
        sigma = rolling_std(r, vol_window)
        num = rolling_sum(r * v, lookback)
        den = rolling_sum(v, lookback)
        for t in range(c.size):
            signal = np.sign(num[t] / den[t]) if den[t] > 0 else 0.0
            out[s, lo + t] = vol_scaled(signal, sigma[t] * scale, vol_target, listed[s, lo + t])
    return out


@njit(cache=True, nogil=True)
def donchian_nb(
    high, low, close, start, stop, lookbacks, long_only, vol_window, vol_target, per_year, listed
):
    out = np.zeros(close.shape)
    scale = np.sqrt(per_year)
    down = 0.0 if long_only else -1.0
    k = lookbacks.size
    for s in range(close.shape[0]):
        lo, hi = start[s], stop[s]
        c = close[s, lo:hi]
        sigma = rolling_std(log_returns(c), vol_window)
        total = np.zeros(c.size)
        for i in range(k):
            upper = prior_extreme(high[s, lo:hi], lookbacks[i], True)
            lower = prior_extreme(low[s, lo:hi], lookbacks[i], False)
            held = 0.0  # the last breakout's direction (0 before the first)
            for t in range(c.size):
                if c[t] > upper[t]:
                    held = 1.0
                elif c[t] < lower[t]:
                    held = down
                total[t] += held
        for t in range(c.size):
            out[s, lo + t] = vol_scaled(
                total[t] / k, sigma[t] * scale, vol_target, listed[s, lo + t]
            )
    return out


@njit(cache=True, nogil=True)
def vol_adaptive_nb(
    close, start, stop, fast, slow, vol_short, vol_long, vol_target, per_year, listed
):
    out = np.zeros(close.shape)
    scale = np.sqrt(per_year)
    for s in range(close.shape[0]):
        lo, hi = start[s], stop[s]
        c = close[s, lo:hi]
        r = log_returns(c)
        short = rolling_std(r, vol_short)
        long = rolling_std(r, vol_long)
        m_fast = momentum_sign(c, fast)
        m_slow = momentum_sign(c, slow)
        for t in range(c.size):
            if np.isnan(long[t]):
                continue  # the long window gates the regime: no signal before it is full
            signal = m_fast[t] if short[t] > long[t] else m_slow[t]
            out[s, lo + t] = vol_scaled(signal, short[t] * scale, vol_target, listed[s, lo + t])
    return out


@njit(cache=True, nogil=True)
def combine_nb(weights, close, start, stop, inverse_volatility, vol_window):
    """Ensemble of ``(k, S, L)`` sub-strategy weights: their mean, or inverse-volatility weights
    of each sub-strategy's return stream ``w_i[t-1] · (close[t] / close[t-1] - 1)`` (equal
    weights while any stream's volatility is unknown or zero)."""
    k = weights.shape[0]
    out = np.zeros(close.shape)
    for s in range(close.shape[0]):
        lo, hi = start[s], stop[s]
        m = hi - lo
        if not inverse_volatility:
            for t in range(m):
                acc = 0.0
                for i in range(k):
                    acc += weights[i, s, lo + t]
                out[s, lo + t] = acc / k
            continue
        c = close[s, lo:hi]
        sig = np.empty((k, m))
        for i in range(k):
            stream = np.full(m, np.nan)
            for t in range(1, m):
                stream[t] = weights[i, s, lo + t - 1] * (c[t] / c[t - 1] - 1.0)
            sig[i] = rolling_std(stream, vol_window)
        for t in range(m):
            known = True
            for i in range(k):
                known = known and sig[i, t] > 0  # False for NaN (unknown) and 0
            total = 0.0
            for i in range(k):
                total += 1.0 / sig[i, t] if known else 1.0
            acc = 0.0
            for i in range(k):
                acc += (1.0 / sig[i, t] if known else 1.0) / total * weights[i, s, lo + t]
            out[s, lo + t] = 0.0 if np.isnan(acc) else acc
    return out
