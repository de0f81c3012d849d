"""Page-Hinkley and the pod lifecycle state machine, evaluated at each UTC day's last bar.

Page-Hinkley (SPEC §8.2) on the standardised daily pod return ``z_t = r_t / σ_t`` (σ_t the
standard deviation of the previous ``min_instances`` daily returns, known before t). It detects a
**decrease** of the mean. In the SPEC's notation ``m_t = α·m_{t−1} + (x̄_t − z_t − δ)`` and
``M_t = min_k m_k``; here the accumulators are kept exactly as river 0.26's
``PageHinkley(mode="down")`` keeps them — ``sum = −m`` and ``max = −M``, with ``max`` starting
at −1 (river's initial value, which matters for the alarm indices) — so the alarms are identical
(tested against river). The score ``m_t − M_t = max − sum`` is exposed; an alarm fires when it
exceeds λ after ``min_instances`` values, and the detector restarts with the next value.

The state machine (SPEC §8.1) — see ``docs/lifecycle.md`` for every rule and the choices made where
the SPEC is silent (windows, minimum history).

Trap: everything here reads only the day's close and earlier (the ring buffers hold past daily
returns), so it is as free of look-ahead as the step kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from orchestra.kernels.book import account_equity_nb, pod_equity_nb
from orchestra.kernels.capital import anchor_nb, request_fractions_nb
from orchestra.kernels.jit import kernel_helper
from orchestra.kernels.state import (
    INCUBATION,
    PROBATION,
    PRODUCTION,
    R_DD_MAX,
    R_DD_WARNING,
    R_GRADUATION,
    R_HARD_DRAWDOWN,
    R_HARD_LOSS_MONTHS,
    R_PH_ALARM,
    R_PROBATION_EXPIRED,
    R_RECOVERED,
    R_SHARPE_FLOOR,
    R_STRONG_RECOVERY,
    R_WARNING_EXPIRED,
    RETIRED,
    WARNING,
)

ANNUAL = 365.0


@njit(cache=True)
def ph_step_nb(n, mean, sum_, max_, x, delta, alpha, min_instances):
    """One Page-Hinkley (down) update; returns ``(n, mean, sum, max, score, ready)``.

    ``ready`` is True once ``n ≥ min_instances`` (the score may then be compared with λ).
    """
    n = n + 1
    mean = mean + (1.0 / n) * (x - mean)
    dev = x - mean
    sum_ = alpha * sum_ + dev + delta
    if sum_ > max_:
        max_ = sum_
    score = max_ - sum_
    return n, mean, sum_, max_, score, n >= min_instances


@njit(cache=True)
def page_hinkley_stream_nb(values, delta, lam, alpha, min_instances):
    """Run the detector over ``values``; returns (alarm flags, scores), restarting after alarms."""
    alarms = np.zeros(values.shape[0], dtype=np.bool_)
    scores = np.zeros(values.shape[0])
    n, mean, sum_, max_ = 0, 0.0, 0.0, -1.0
    for i in range(values.shape[0]):
        n, mean, sum_, max_, score, ready = ph_step_nb(
            n, mean, sum_, max_, values[i], delta, alpha, min_instances
        )
        scores[i] = score
        if ready and score > lam:
            alarms[i] = True
            n, mean, sum_, max_ = 0, 0.0, 0.0, -1.0
    return alarms, scores


_NO_TRANSITION = (np.int64(-1), np.int64(0), 0.0, 0.0)


@kernel_helper
def ph_reset_nb(st, p):
    st.ph_n[p] = 0
    st.ph_mean[p] = 0.0
    st.ph_sum[p] = 0.0
    st.ph_max[p] = -1.0
    st.ph_score[p] = 0.0


@kernel_helper
def _ring_stats(st, p, window, ring):
    """Mean and std (ddof=1) of the last ``window`` values of ``ring[:, p]`` (``n`` ≤ window)."""
    size = ring.shape[0]
    n = min(st.hist_count[p], window, size)
    if n < 2:
        return n, 0.0, 0.0
    total = 0.0
    for i in range(n):
        total += ring[(st.hist_pos[0] - 1 - i) % size, p]
    mean = total / n
    ss = 0.0
    for i in range(n):
        d = ring[(st.hist_pos[0] - 1 - i) % size, p] - mean
        ss += d * d
    return n, mean, np.sqrt(ss / (n - 1))


@kernel_helper
def _correlation(st, p, window):
    size = st.hist_ret.shape[0]
    n = min(st.hist_count[p], window, size)
    if n < 3:
        return 0.0
    ma = 0.0
    mb = 0.0
    for i in range(n):
        row = (st.hist_pos[0] - 1 - i) % size
        ma += st.hist_ret[row, p]
        mb += st.hist_rest[row, p]
    ma /= n
    mb /= n
    sab = 0.0
    saa = 0.0
    sbb = 0.0
    for i in range(n):
        row = (st.hist_pos[0] - 1 - i) % size
        a = st.hist_ret[row, p] - ma
        b = st.hist_rest[row, p] - mb
        sab += a * b
        saa += a * a
        sbb += b * b
    if saa <= 0.0 or sbb <= 0.0:
        return 0.0
    return sab / np.sqrt(saa * sbb)


@kernel_helper
def _event(out, t, p, old, new, reason, value, threshold):
    i = out.ev_count[0]
    if i >= out.ev_bar.shape[0]:
        return
    out.ev_bar[i] = t
    out.ev_pod[i] = p
    out.ev_from[i] = old
    out.ev_to[i] = new
    out.ev_reason[i] = reason
    out.ev_value[i] = value
    out.ev_threshold[i] = threshold
    out.ev_count[0] = i + 1


@kernel_helper
def _transition(inp, st, out, t, p, new, reason, value, threshold):
    old = st.pod_state[p]
    _event(out, t, p, old, new, reason, value, threshold)
    st.pod_state[p] = new
    st.pod_state_days[p] = 0
    # the fraction requested here is granted after every pod is evaluated (request_fractions_nb);
    # the cash moves at the next execution (orchestra.kernels.capital)
    if new == WARNING:
        st.pod_warning_fraction[p] = st.pod_fraction[p]
        st.scratch_fraction[p] = 0.5 * st.pod_fraction[p]
    elif new == PROBATION:
        st.scratch_fraction[p] = min(inp.pod_min_fraction[p], st.pod_fraction[p])
    elif new == RETIRED:
        st.scratch_fraction[p] = 0.0
    elif new == PRODUCTION and old != INCUBATION:
        ph_reset_nb(st, p)  # the detector starts afresh when the pod returns to production
        if old == WARNING:
            # recovery restores the slice it had before the warning (else every warning/recovery
            # cycle would halve it again), as far as Σ f ≤ 1 and the unallocated cash allow; the
            # next rebalance re-sizes it as usual
            st.scratch_fraction[p] = st.pod_warning_fraction[p]


@kernel_helper
def day_end_nb(inp, st, out, t):
    """Close the UTC day: record pod returns, run Page-Hinkley and the state machine, then set
    the next day's starting equities (after any transition's capital move)."""
    prices = inp.close[t]
    n_pods = inp.pod_ptr.shape[0] - 1
    lc = inp.lifecycle
    enabled = lc.enabled != 0.0
    # -- the day's returns (pod, and the rest of the portfolio without the pod)
    eq = st.scratch_equity
    pnl_total = 0.0
    base_total = 0.0
    for p in range(n_pods):
        eq[p] = pod_equity_nb(inp, st, p, prices)
        if st.pod_joined[p]:
            pnl_total += eq[p] - st.pod_day_start_equity[p]
            base_total += st.pod_day_start_equity[p]
    row = st.hist_pos[0]
    for p in range(n_pods):
        if not st.pod_joined[p]:
            continue
        base = st.pod_nav_day_start[p]
        r = st.pod_nav[p] / base - 1.0 if base > 0.0 else 0.0
        rest_base = base_total - st.pod_day_start_equity[p]
        rest = (
            (pnl_total - (eq[p] - st.pod_day_start_equity[p])) / rest_base
            if rest_base > 0.0
            else 0.0
        )
        if enabled:
            # Page-Hinkley on r / σ, σ from the previous days only
            n_prev, _, sd = _ring_stats(st, p, int(lc.ph_min), st.hist_ret)
            if n_prev >= 2 and sd > 0.0:
                n, mean, s_, mx, score, ready = ph_step_nb(
                    st.ph_n[p],
                    st.ph_mean[p],
                    st.ph_sum[p],
                    st.ph_max[p],
                    r / sd,
                    lc.ph_delta,
                    lc.ph_alpha,
                    int(lc.ph_min),
                )
                st.ph_n[p] = n
                st.ph_mean[p] = mean
                st.ph_sum[p] = s_
                st.ph_max[p] = mx
                st.ph_score[p] = score if ready else 0.0
        st.hist_ret[row, p] = r
        st.hist_rest[row, p] = rest
        st.hist_count[p] += 1
        st.pod_sum_r[p] += r
        st.pod_sum_r2[p] += r * r
        st.pod_live_days[p] += lc.period_days  # calendar days, on any clock
        st.pod_state_days[p] += lc.period_days
        dd = 1.0 - st.pod_nav[p] / st.pod_nav_peak[p] if st.pod_nav_peak[p] > 0.0 else 0.0
        if dd > st.pod_dd_max[p]:
            st.pod_dd_max[p] = dd
        if inp.month_end[t]:
            if st.pod_nav[p] < st.pod_month_nav[p]:
                st.pod_loss_months[p] += 1
            else:
                st.pod_loss_months[p] = 0
            st.pod_month_nav[p] = st.pod_nav[p]
    st.hist_pos[0] = (row + 1) % st.hist_ret.shape[0]
    if enabled:
        for p in range(n_pods):
            if st.pod_joined[p] and st.pod_state[p] != RETIRED:
                _evaluate_nb(inp, st, out, t, p)
        request_fractions_nb(st.pod_fraction, st.pending, st.scratch_fraction)
    total = account_equity_nb(inp, st, prices)
    for p in range(n_pods):
        e = pod_equity_nb(inp, st, p, prices)
        st.pod_day_start_equity[p] = e
        st.pod_nav_day_start[p] = st.pod_nav[p]
        anchor_nb(st, p, st.pod_nav[p], e, total)
        out.ph_score[t, p] = st.ph_score[p]


@kernel_helper
def _evaluate_nb(inp, st, out, t, p):
    """The lifecycle rules for pod ``p`` at day end ``t``: at most one transition."""
    new, reason, value, threshold = _decide_nb(inp, st, p)
    if new >= 0:
        _transition(inp, st, out, t, p, new, reason, value, threshold)


@kernel_helper
def _decide_nb(inp, st, p):
    """The transition the rules ask for: ``(new state, reason, value, threshold)``, new = -1 for
    none. One call site of :func:`_transition` instead of eleven: each call passes the ~100 arrays
    of the records, and lowering them was most of this function's compile time."""
    lc = inp.lifecycle
    state = st.pod_state[p]
    min_hist = int(lc.min_history)
    lam = lc.ph_lambda
    floor = lc.sharpe_floor
    dd = 1.0 - st.pod_nav[p] / st.pod_nav_peak[p] if st.pod_nav_peak[p] > 0.0 else 0.0
    # hard stops, from any state
    if dd > lc.breach_dd:
        return np.int64(RETIRED), np.int64(R_HARD_DRAWDOWN), dd, lc.breach_dd
    if st.pod_loss_months[p] >= lc.loss_months:
        return (
            np.int64(RETIRED),
            np.int64(R_HARD_LOSS_MONTHS),
            float(st.pod_loss_months[p]),
            lc.loss_months,
        )
    window = int(lc.sharpe_window)
    n_rs, m_rs, sd_rs = _ring_stats(st, p, window, st.hist_ret)
    # a rolling Sharpe counts only over a full window: 30 days of daily returns are mostly noise
    rs_valid = n_rs >= max(window, min_hist) and sd_rs > 0.0
    per_year = ANNUAL / lc.period_days  # one return per day end covers period_days days
    rs = m_rs / sd_rs * np.sqrt(per_year) if rs_valid else 0.0
    alarm = st.ph_n[p] >= lc.ph_min and st.ph_score[p] > lam
    score = st.ph_score[p]
    if alarm:
        ph_reset_nb(st, p)  # the detector starts afresh with the next value
    if state == INCUBATION:
        n = st.hist_count[p]
        if n < 2 or st.pod_live_days[p] < lc.min_live_days:
            return _NO_TRANSITION
        mean = st.pod_sum_r[p] / n
        var = (st.pod_sum_r2[p] - n * mean * mean) / (n - 1)
        sharpe = mean / np.sqrt(var) * np.sqrt(per_year) if var > 0.0 else 0.0
        years = st.pod_live_days[p] / ANNUAL
        cagr = st.pod_nav[p] ** (1.0 / years) - 1.0 if st.pod_nav[p] > 0.0 else -1.0
        calmar = cagr / st.pod_dd_max[p] if st.pod_dd_max[p] > 0.0 else np.inf
        corr = _correlation(st, p, int(lc.corr_lookback)) if st.hist_count[p] >= min_hist else 0.0
        if (
            sharpe >= lc.min_sharpe
            and st.pod_dd_max[p] <= lc.grad_max_dd
            and st.pod_trades[p] >= lc.min_trades
            and calmar >= lc.min_calmar
            and corr <= lc.max_corr
        ):
            return np.int64(PRODUCTION), np.int64(R_GRADUATION), sharpe, lc.min_sharpe
    elif state == PRODUCTION:
        # hysteresis: a pod just promoted or recovered stays min_dwell days before a new warning
        # (the hard stops above still apply at once)
        if st.pod_state_days[p] < lc.min_dwell:
            return _NO_TRANSITION
        if alarm:
            return np.int64(WARNING), np.int64(R_PH_ALARM), score, lam
        elif rs_valid and rs < floor:
            return np.int64(WARNING), np.int64(R_SHARPE_FLOOR), rs, floor
        elif dd > inp.pod_drawdown_warning[p]:
            return np.int64(WARNING), np.int64(R_DD_WARNING), dd, inp.pod_drawdown_warning[p]
    elif state == WARNING:
        # hysteresis: every soft transition waits min_dwell days in the state (hard stops above
        # act at once)
        if st.pod_state_days[p] < lc.min_dwell:
            return _NO_TRANSITION
        if dd > inp.pod_max_drawdown[p]:
            return np.int64(PROBATION), np.int64(R_DD_MAX), dd, inp.pod_max_drawdown[p]
        elif (
            not alarm
            and (not rs_valid or rs >= floor + lc.recovery_margin)
            and dd < inp.pod_drawdown_warning[p] * lc.recovery_ratio
        ):
            return np.int64(PRODUCTION), np.int64(R_RECOVERED), rs, floor + lc.recovery_margin
        elif st.pod_state_days[p] >= lc.warning_days:
            return (
                np.int64(PROBATION),
                np.int64(R_WARNING_EXPIRED),
                float(st.pod_state_days[p]),
                lc.warning_days,
            )
    elif state == PROBATION:
        # strong recovery: a rolling Sharpe a margin above the floor (stricter than the floor
        # whatever its sign; "2 × floor" was easier than the floor itself when negative), after
        # the dwell, and the drawdown back under the pod's max_drawdown (otherwise a pod deep in
        # drawdown would cycle probation -> production -> warning -> probation)
        strong = floor + lc.strong_margin
        if (
            st.pod_state_days[p] >= lc.min_dwell
            and rs_valid
            and rs >= strong
            and score < lam / 2.0
            and not alarm
            and dd < inp.pod_max_drawdown[p]
        ):
            return np.int64(PRODUCTION), np.int64(R_STRONG_RECOVERY), rs, strong
        elif st.pod_state_days[p] >= lc.probation_days:
            return (
                np.int64(RETIRED),
                np.int64(R_PROBATION_EXPIRED),
                float(st.pod_state_days[p]),
                lc.probation_days,
            )
    return _NO_TRANSITION
