"""The step kernel: one bar of pod rules, netting, execution, attribution and accounting.

Order of work for bar ``t`` (SPEC §9): :func:`step_pre_nb` does the part up to the pods' targets
and :func:`step_post_nb` the rest (the bar loop :func:`run_segment_nb` calls both), so that the
live broker can execute the net orders in between and book the exchange's fills
(:func:`execute_nb`):

* ``next_open``: new-day bookkeeping → move the capital requested at the last close
  (:mod:`orchestra.kernels.capital`) at ``open[t]`` → execute at ``open[t]`` the targets decided
  at ``t-1``'s close → hand the equity of flat pods at fraction 0 back → update stops at
  ``close[t]`` → mark to ``close[t]`` (and, at a day's last bar, the lifecycle);
* ``close``: new-day bookkeeping → update stops at ``close[t]`` → move capital, execute and
  sweep at ``close[t]`` → mark to ``close[t]``.

``Inputs.target[t]`` already holds the weights to execute at bar ``t`` (the driver lags them by one
bar for ``next_open``), so the kernel itself never looks at a future row.

Traps:

* Attribution must be exact (SPEC §9.3): the pods on the side of the net trade share the external
  fill and fee in proportion to ``|Δq|``; everything else crosses internally at the unslipped
  price. Internal volumes balance by construction (``S_same − |ΔQ| = S_opp``), so pod cash changes
  sum to the account's cash change up to float round-off (tests check 1e-9 relative).
* A pod's target units use its equity valued at the execution price *before* this bar's fees, so a
  target weight is met exactly at execution.
* Floats only ever accumulate in one order (slot order), so the backtest and the bar driver are
  bit-identical: never reorder these loops.
* ``cache=True`` keeps compiled kernels in ``__pycache__``, and numba does not invalidate a cached
  function when a callee in *another* module changes: after editing a kernel run ``make clean``.
* Constants passed to a jitted helper are typed as literals, one compiled specialisation per
  distinct value: wrap them (``np.int64(EXTERNAL)``) so each helper compiles once (the first
  compile of a fresh checkout took 51 s with 30 specialisations, 35 s without).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from orchestra.kernels.book import account_equity_nb, alert_nb
from orchestra.kernels.capital import apply_transfers_nb, nav_at_nb, sweep_nb
from orchestra.kernels.jit import kernel_entry, kernel_helper, kernel_inline
from orchestra.kernels.lifecycle import day_end_nb
from orchestra.kernels.moments import SINGULAR_REL_TOL, prc_drift_into
from orchestra.kernels.state import (
    A_ACCOUNT_BUST,
    A_DAILY_LOSS,
    A_GROSS_OVER_CAP,
    A_PORTFOLIO_DRAWDOWN,
    BREAKER_BLOCKED,
    BREAKER_OFF,
    BREAKER_PENDING,
    CLOSE,
    DD_DERISK,
    DD_FLATTEN,
    DERISK_FACTOR,
    EXTERNAL,
    HALT_BUST,
    HALT_DRAWDOWN,
    INTERNAL,
    PRODUCTION,
    RETIRED,
    STOP_ALWAYS,
    STOP_IF_SHARED,
)

WEIGHT_EPS = 1e-9  # weight changes below this are float noise, never a trade (even at threshold 0)
# A net order at most this share of the units the pods trade in a symbol is round-off of trades
# that cancel (one pod closing what another opens): it crosses internally, no external fill.
DUST_REL = 1e-9
GROSS_TOLERANCE = 1e-6  # gross leverage within this share above the cap is round-off, not a breach


@kernel_helper
def is_dust_nb(net, volume):
    """Whether a symbol's net order ``net`` is round-off of the pods' traded ``volume``."""
    return net != 0.0 and abs(net) <= DUST_REL * volume


@kernel_helper
def _sign(x: float) -> float:
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0


@kernel_helper
def new_day_nb(inp, st, t):
    """At the first bar of a UTC day: reset the day's opening equity and lift a breaker block."""
    d = inp.day_id[t]
    if d != st.day[0]:
        st.day[0] = d
        st.day_start_equity[0] = st.last_equity[0]
        if st.breaker[0] == BREAKER_BLOCKED:
            st.breaker[0] = BREAKER_OFF


@kernel_helper
def update_stops_nb(inp, st, t):
    """Track extremes since entry and fire the system stop-loss and ATR trailing stop at close."""
    units, extreme, avg_price, stop_pending = st.units, st.extreme, st.avg_price, st.stop_pending
    slot_sym, slot_pod, tradable, close = inp.slot_sym, inp.slot_pod, inp.tradable, inp.close
    stop_loss, trailing, trail_mult, atr = (
        inp.pod_stop_loss,
        inp.pod_trailing,
        inp.pod_trail_mult,
        inp.atr,
    )
    row = t - int(inp.params.market_row0)  # the ATR's row of bar t
    for k in range(units.shape[0]):
        q = units[k]
        if q == 0.0:
            continue
        s = slot_sym[k]
        if not tradable[t, s]:
            continue
        c = close[t, s]
        p = slot_pod[k]
        if q > 0.0:
            if c > extreme[k]:
                extreme[k] = c
        elif c < extreme[k]:
            extreme[k] = c
        sl = stop_loss[p]
        if not np.isnan(sl) and avg_price[k] > 0.0:
            if q > 0.0 and c <= avg_price[k] * (1.0 - sl):
                stop_pending[k] = True
            elif q < 0.0 and c >= avg_price[k] * (1.0 + sl):
                stop_pending[k] = True
        if trailing[p]:
            a = atr[row, s]
            if not np.isnan(a):
                m = trail_mult[p]
                if q > 0.0 and c < extreme[k] - m * a:
                    stop_pending[k] = True
                elif q < 0.0 and c > extreme[k] + m * a:
                    stop_pending[k] = True


@kernel_helper
def pod_targets_nb(inp, st, t, prices):
    """Pod rules (SPEC §9.2): target units per slot into ``st.scratch_target``.

    Also flags, per symbol, whether any slot's target differs from its units
    (``st.scratch_changed``), so that netting only visits symbols that trade.
    """
    flatten = st.breaker[0] != BREAKER_OFF or st.halted[0] != 0
    derisk = DERISK_FACTOR if st.derisk[0] != 0 else 1.0
    units, lock, stop_pending, scratch = st.units, st.lock, st.stop_pending, st.scratch_target
    changed = st.scratch_changed
    slot_sym, pod_ptr, tradable = inp.slot_sym, inp.pod_ptr, inp.tradable
    target_t = inp.target[t - int(inp.params.target_row0)]
    pod_cash, pod_state, pod_fraction = st.pod_cash, st.pod_state, st.pod_fraction
    max_leverage, threshold = inp.pod_max_leverage, inp.pod_threshold
    changed[:] = False
    bound = 0.0  # Σ_k |target_k · price| ≥ the netted gross notional (triangle inequality)
    for p in range(pod_ptr.shape[0] - 1):
        lo, hi = pod_ptr[p], pod_ptr[p + 1]
        # one pass: the pod's equity (same summation order as pod_equity_nb) and its weights
        equity = pod_cash[p]
        gross = 0.0
        for k in range(lo, hi):
            q = units[k]
            if q != 0.0:
                equity += q * prices[slot_sym[k]]
            w = target_t[k] * derisk
            if stop_pending[k]:
                lock[k] = np.int8(_sign(q))
                stop_pending[k] = False
            if lock[k] != 0:
                if w == 0.0 or _sign(w) != lock[k]:
                    lock[k] = 0
                else:
                    w = 0.0
            scratch[k] = w
            gross += abs(w)
        active = pod_state[p] != RETIRED and pod_fraction[p] > 0.0 and equity > 0.0 and not flatten
        if not active:  # as if every weight were 0: locks lifted, everything closes
            for k in range(lo, hi):
                lock[k] = 0
                scratch[k] = 0.0
            gross = 0.0
        scale = 1.0
        lev = max_leverage[p]
        if gross > lev:
            scale = lev / gross
        thr = threshold[p]
        for k in range(lo, hi):
            s = slot_sym[k]
            q = units[k]
            if not tradable[t, s]:
                scratch[k] = q  # no bar, no trade
                if q != 0.0:
                    bound += abs(q * prices[s])
                continue
            w = scratch[k] * scale
            px = prices[s]
            if equity > 0.0:
                w_cur = q * px / equity
                q_new = w * equity / px
            else:
                w_cur = 0.0
                q_new = 0.0
            if w == 0.0:
                target = 0.0
            elif abs(w - w_cur) > thr + WEIGHT_EPS:
                target = q_new
            else:
                target = q
            scratch[k] = target
            if target != q:
                changed[s] = True
            if target != 0.0:
                bound += abs(target * px)
    # portfolio gross leverage cap: one factor for every pod, so attribution stays exact
    max_gross = inp.params.max_gross
    if max_gross > 0.0:
        total = account_equity_nb(inp, st, prices)
        if total > 0.0 and bound > max_gross * total:
            sym_ptr, sym_slots = inp.sym_ptr, inp.sym_slots
            gross_notional = 0.0
            for s in range(sym_ptr.shape[0] - 1):
                n = 0.0
                for j in range(sym_ptr[s], sym_ptr[s + 1]):
                    n += scratch[sym_slots[j]]
                if n != 0.0:
                    gross_notional += abs(n * prices[s])
            lev = gross_notional / total
            if lev > max_gross:
                f = max_gross / lev
                for k in range(units.shape[0]):
                    s = slot_sym[k]
                    if tradable[t, s]:
                        scratch[k] *= f
                        if scratch[k] != units[k]:
                            changed[s] = True


@kernel_helper
def _record_fill(out, t, k, units, price, fee, venue, after):
    i = out.fill_count[0]
    out.fill_bar[i] = t
    out.fill_slot[i] = k
    out.fill_units[i] = units
    out.fill_price[i] = price
    out.fill_fee[i] = fee
    out.fill_venue[i] = venue
    out.fill_units_after[i] = after
    out.fill_count[0] = i + 1


@kernel_helper
def _update_entry(st, k, q0, q1, pfill):
    """Average entry price and extreme-since-entry after a slot goes from q0 to q1 at pfill."""
    if q1 == 0.0:
        st.avg_price[k] = 0.0
        st.extreme[k] = 0.0
    elif q0 == 0.0 or _sign(q0) != _sign(q1):
        st.avg_price[k] = pfill
        st.extreme[k] = pfill
    elif abs(q1) > abs(q0):
        st.avg_price[k] = (abs(q0) * st.avg_price[k] + (abs(q1) - abs(q0)) * pfill) / abs(q1)


@kernel_helper
def execute_nb(inp, st, out, t, prices, fill_qty, fill_px, fill_fee):
    """Net the slots' trades per symbol, fill ΔQ externally, cross the rest, attribute exactly.

    ``fill_qty[s]`` NaN: the modelled fill (the backtest): all of ΔQ at ``price·(1 ± slippage)``
    with ``cost_bps``. Otherwise an actual exchange fill of symbol ``s`` (the live broker):
    ``fill_qty`` units (signed like ΔQ, ``|fill_qty| ≤ |ΔQ|``; 0 when nothing was executed) at
    the average price ``fill_px``, costing ``fill_fee`` (quote currency). The pods on the side of
    the net trade then get the same share ``fill_qty / ΔQ`` of their external part (SPEC §9.3's
    rule, scaled); internal crossing is unaffected. Their units end where the exchange left them,
    short of their targets by the unfilled part (the next bar's targets include it again).
    """
    cost = inp.params.cost
    slip = inp.params.slippage
    sym_ptr, sym_slots, changed = inp.sym_ptr, inp.sym_slots, st.scratch_changed
    units, scratch, delta = st.units, st.scratch_target, st.scratch_delta
    for s in range(sym_ptr.shape[0] - 1):
        if not changed[s]:
            continue  # no slot of this symbol trades at this bar
        j0, j1 = sym_ptr[s], sym_ptr[s + 1]
        net = 0.0
        volume = 0.0
        same_side = 0.0
        any_trade = False
        for j in range(j0, j1):
            k = sym_slots[j]
            d = scratch[k] - units[k]
            delta[k] = d
            if d != 0.0:
                any_trade = True
                net += d
                volume += abs(d)
        if not any_trade:
            continue
        px = prices[s]
        dust = is_dust_nb(net, volume)
        sgn = 0.0 if dust else _sign(net)  # dust: the pods' trades cross internally, all of them
        for j in range(j0, j1):
            k = sym_slots[j]
            if delta[k] * sgn > 0.0:
                same_side += abs(delta[k])
        actual = not np.isnan(fill_qty[s]) and not dust
        ratio = 1.0
        if dust:  # no external order: the account's dust moves at the unslipped price, no fee
            px_fill = px
            fee_total = 0.0
        elif actual:  # the exchange's fill (see the docstring)
            ratio = fill_qty[s] / net if net != 0.0 else 0.0
            if abs(ratio - 1.0) <= 1e-12:  # the whole order, up to round-off: targets exactly
                ratio = 1.0
            px_fill = fill_px[s] if fill_qty[s] != 0.0 else px
            fee_total = fill_fee[s]
        else:
            px_fill = px * (1.0 + sgn * slip)
            fee_total = cost * abs(net) * px_fill
        for j in range(j0, j1):
            k = sym_slots[j]
            d = delta[k]
            if d == 0.0:
                continue
            p = inp.slot_pod[k]
            if sgn != 0.0 and d * sgn > 0.0:
                share = abs(d) / same_side
                # nobody trades against the net: the whole trade is external (no round-off residue)
                ext = d if same_side == abs(net) else net * share
                fee = fee_total * share
            else:
                ext = 0.0
                fee = 0.0
            internal = d - ext
            q0 = units[k]
            q1 = scratch[k]
            booked = d  # units the slot trades at this bar
            if actual and ratio != 1.0:  # the exchange filled part of ΔQ (or none of it)
                ext = ext * ratio
                booked = ext + internal
                q1 = q0 + booked
            st.pod_cash[p] -= ext * px_fill + internal * px + fee
            st.pod_fees[p] += fee
            st.pod_alone_fees[p] += cost * abs(d) * px * (1.0 + _sign(d) * slip)
            if booked != 0.0:
                st.pod_trades[p] += 1
                st.pod_notional[p] += abs(booked) * px
                pfill = (ext * px_fill + internal * px) / booked
                _update_entry(st, k, q0, q1, pfill)
            units[k] = q1
            if ext != 0.0:
                _record_fill(out, t, k, ext, px_fill, fee, np.int64(EXTERNAL), q1)
            if internal != 0.0:
                _record_fill(out, t, k, internal, px, 0.0, np.int64(INTERNAL), q1)
        # Q[s] = Σ_p q[p,s] recomputed, not accumulated: a flat account holds exactly 0
        q_sum = 0.0
        for j in range(j0, j1):
            q_sum += units[sym_slots[j]]
        st.account_units[s] = q_sum
        st.account_cash[0] -= (fill_qty[s] if actual else net) * px_fill + fee_total
        st.account_fees[0] += fee_total
    if st.breaker[0] == BREAKER_PENDING:
        st.breaker[0] = BREAKER_BLOCKED


@kernel_helper
def mark_nb(inp, st, out, t):
    """Funding, valuation at close, per-bar outputs, day-end bookkeeping, breaker check."""
    prices = inp.close[t]
    units, slot_sym, account_units = st.units, inp.slot_sym, st.account_units
    if inp.params.funding != 0.0:
        for k in range(units.shape[0]):  # funding: q · mark · rate, paid by the holder
            q = units[k]
            if q != 0.0:
                rate = inp.funding[t, slot_sym[k]]
                if rate != 0.0:
                    pay = q * prices[slot_sym[k]] * rate
                    p = inp.slot_pod[k]
                    st.pod_cash[p] -= pay
                    st.pod_funding[p] += pay
                    st.account_cash[0] -= pay
    total = st.account_cash[0]  # account equity and gross in one pass (account_equity_nb's order)
    gross = 0.0
    for s in range(account_units.shape[0]):
        q = account_units[s]
        if q != 0.0:
            v = q * prices[s]
            total += v
            gross += abs(v)
    out.equity[t] = total
    out.unallocated[t] = st.unallocated[0]
    out.gross_leverage[t] = gross / total if total > 0.0 else np.nan  # undefined when bust
    # the cap binds at executions; prices moving until the close can carry gross above it: one
    # WARNING per episode (again only once gross has been back under the cap at a close)
    cap = inp.params.max_gross
    if cap > 0.0 and total > 0.0:
        if gross > cap * total * (1.0 + GROSS_TOLERANCE):
            if st.gross_alerted[0] == 0:
                st.gross_alerted[0] = 1
                alert_nb(out, t, np.int64(A_GROSS_OVER_CAP), gross / total, cap, -1)
        else:
            st.gross_alerted[0] = 0
    pod_ptr, pod_cash, pod_nav, pod_nav_peak = inp.pod_ptr, st.pod_cash, st.pod_nav, st.pod_nav_peak
    funded, anchor_nav, anchor_equity = st.pod_funded, st.pod_anchor_nav, st.pod_anchor_equity
    out_equity, out_nav, out_gross = out.pod_equity[t], out.pod_nav[t], out.pod_gross[t]
    for p in range(pod_ptr.shape[0] - 1):
        e = pod_cash[p]
        g = 0.0
        for k in range(pod_ptr[p], pod_ptr[p + 1]):
            q = units[k]
            if q != 0.0:
                v = q * prices[slot_sym[k]]
                e += v
                g += abs(v)
        # time-weighted; frozen while the pod is unfunded
        nav = nav_at_nb(funded, anchor_nav, anchor_equity, p, e)
        pod_nav[p] = nav
        if nav > pod_nav_peak[p]:
            pod_nav_peak[p] = nav
        out_equity[p] = e
        out_nav[p] = nav
        out_gross[p] = g / e if e > 0.0 else 0.0
    if total > st.equity_peak[0]:
        st.equity_peak[0] = total
    if total <= 0.0 and st.halted[0] != HALT_BUST:  # nothing left to trade with: stop for good
        st.halted[0] = HALT_BUST
        alert_nb(out, t, np.int64(A_ACCOUNT_BUST), total, 0.0, -1)
    limit = inp.params.daily_loss
    if (
        limit > 0.0
        and st.breaker[0] == BREAKER_OFF
        and st.day_start_equity[0] > 0.0
        and total < st.day_start_equity[0] * (1.0 - limit)
    ):
        st.breaker[0] = BREAKER_PENDING
        alert_nb(out, t, np.int64(A_DAILY_LOSS), 1.0 - total / st.day_start_equity[0], limit, -1)
    max_dd = inp.params.max_drawdown
    if max_dd > 0.0 and st.equity_peak[0] > 0.0:
        dd = 1.0 - total / st.equity_peak[0]
        if dd > max_dd:
            if st.dd_alerted[0] == 0:
                st.dd_alerted[0] = 1
                alert_nb(out, t, np.int64(A_PORTFOLIO_DRAWDOWN), dd, max_dd, -1)
            action = inp.params.drawdown_action
            if action == DD_FLATTEN and st.halted[0] == 0:
                st.halted[0] = HALT_DRAWDOWN
            elif action == DD_DERISK:
                st.derisk[0] = 1
        else:
            st.dd_alerted[0] = 0
            st.derisk[0] = 0
    st.last_equity[0] = total


@kernel_helper
def record_books_nb(st, out, t):
    """The pods' fractions and lifecycle states after bar ``t`` into the outputs."""
    pod_fraction, pod_state = st.pod_fraction, st.pod_state
    out_fraction, out_state = out.pod_fraction[t], out.pod_state[t]
    for p in range(pod_fraction.shape[0]):
        out_fraction[p] = pod_fraction[p]
        out_state[p] = pod_state[p]


@njit(cache=True, inline="always")  # a view of a row: returned only when inlined
def _prices(inp, t):
    if inp.params.exec_mode == CLOSE:
        return inp.close[t]
    return inp.open[t - int(inp.params.market_row0)]


@kernel_entry
def step_pre_nb(inp, st, out, t):
    """First half of bar ``t``, up to the targets: new day, (close mode) stops, capital moves,
    pod rules. The net order per symbol is then ``Σ (scratch_target − units)`` over its slots.
    (Live trading's entry; the bar loop calls the same :func:`pre_nb`.)"""
    pre_nb(inp, st, out, t)


@kernel_entry
def step_post_nb(inp, st, out, t, fill_qty, fill_px, fill_fee):
    """Second half of bar ``t``: execution (modelled, or the exchange's fills: see
    :func:`execute_nb`), sweep, (next_open) stops, marking. (Live trading's entry; the bar loop
    calls the same :func:`post_nb`.)"""
    post_nb(inp, st, out, t, fill_qty, fill_px, fill_fee)


@kernel_inline
def pre_nb(inp, st, out, t):
    """:func:`step_pre_nb` (without the wrapper Python calls need: the bar loop's compile skips
    it)."""
    new_day_nb(inp, st, t)
    prices = _prices(inp, t)
    if inp.params.exec_mode == CLOSE:
        update_stops_nb(inp, st, t)
    apply_transfers_nb(inp, st, out, t, prices)  # capital decided at the last close moves first
    pod_targets_nb(inp, st, t, prices)


@kernel_inline
def post_nb(inp, st, out, t, fill_qty, fill_px, fill_fee):
    """:func:`step_post_nb` (without the wrapper Python calls need)."""
    prices = _prices(inp, t)
    execute_nb(inp, st, out, t, prices, fill_qty, fill_px, fill_fee)
    sweep_nb(inp, st, prices)  # flat pods at fraction 0 hand their equity back
    if inp.params.exec_mode != CLOSE:
        update_stops_nb(inp, st, t)
    mark_nb(inp, st, out, t)
    # (called here, not from mark_nb: every call level re-optimises its callees' code, numba
    # linking them into each caller; the day-end chain is the largest)
    if inp.day_end[t]:
        day_end_nb(inp, st, out, t)  # lifecycle; fraction changes move cash at the next execution
    record_books_nb(st, out, t)
    if inp.day_end[t] and inp.params.drift_check > 0.0:
        push_day_navs_nb(st.memo_navs, st.memo_index, out.pod_nav[t])
    st.next_bar[0] = t + 1


@kernel_helper
def push_day_navs_nb(navs, index, nav):
    """At a day end: the pods' NAVs ``nav`` into the drift check's ring ``navs`` (State's
    ``memo_navs``; ``index`` is its ``memo_index``). The drift check's helpers take the arrays
    they use, not the ~100 of the State: a helper's compile time grows with its arguments."""
    pos = index[3, 1]
    for p in range(navs.shape[1]):
        navs[pos, p] = nav[p]
    index[3, 1] = pos + 1 if pos + 1 < navs.shape[0] else 0
    index[3, 0] += 1


@kernel_helper
def drift_due_nb(states, joined, navs, idx, memo_target, buf, equity, check, threshold,
                 lookback, min_history, per_year):  # fmt: skip
    """Whether the driver must see this day end, a ``STOP_IF_SHARED`` day of the hybrid or
    threshold trigger: only when the allocator would rebalance on a PRC drift (``equity``: the
    pods' equities at the day end; the other arrays are the State's ``pod_state``, ``pod_joined``,
    ``memo_navs``, ``memo_index``, ``memo_target`` and ``scratch_drift``, the scalars
    ``Inputs.params``'; :func:`run_segment_nb` passes them).

    With fewer than two joined production pods the drift is undefined (no). Otherwise, with
    ``drift_check`` on and the ring holding the allocator's whole window, the drift is computed
    here by :func:`~orchestra.allocation.moments.prc_drift_into`, the function the allocator
    calls, on the same numbers (the pods' NAVs at the day ends, their shares of the pods'
    equity, the target of the last rebalance, the pods in pod_id order): the driver is called
    exactly when the allocator's drift exceeds the threshold. After a restore the ring starts
    empty: until it holds the whole window the answer is yes and the allocator decides.
    """
    n_pods = states.shape[0]
    n = 0
    for p in range(n_pods):
        if states[p] == PRODUCTION and joined[p]:
            idx[2, n] = p
            n += 1
    if n < 2:
        return False
    if check <= 0.0:
        return True
    for i in range(1, n):  # pod_id order (the allocator's canonical order): insertion sort
        v = idx[2, i]
        j = i - 1
        while j >= 0 and idx[0, idx[2, j]] > idx[0, v]:
            idx[2, j + 1] = idx[2, j]
            j -= 1
        idx[2, j + 1] = v
    window = int(lookback)
    returns = idx[3, 0] - 1  # day-end returns the ring has seen
    whole = idx[3, 3] == 1  # ... and they are every return of the run (no restore since)
    if returns < min_history:  # the allocator's drift is undefined: nothing happens
        return not whole  # (after a restore the run's count is unknown here: it decides)
    if returns < window and not whole:
        return True
    rows = returns if returns < window else window  # the allocator's window: the last `window`
    # C-ordered blocks for n pods in buf (the allocator's layout: one compile of the numerics)
    x = buf[: rows * n].reshape((rows, n))
    xc = buf[window * n : window * n + rows * n].reshape((rows, n))
    at = 2 * window * n
    nn = n * n
    emp = buf[at : at + nn].reshape((n, n))
    q = buf[at + nn : at + 2 * nn].reshape((n, n))
    cov = buf[at + 2 * nn : at + 3 * nn].reshape((n, n))
    a = buf[at + 3 * nn : at + 4 * nn].reshape((n, n))
    sym = buf[at + 4 * nn : at + 5 * nn].reshape((n, n))
    chol = buf[at + 5 * nn : at + 6 * nn].reshape((n, n))
    at += 6 * nn
    w = buf[at : at + n]
    target = buf[at + n : at + 2 * n]
    sw = buf[at + 2 * n : at + 3 * n]
    ring = navs.shape[0]
    newest = idx[3, 1] - 1 if idx[3, 1] > 0 else ring - 1
    for i in range(rows):  # row i: the return of the day end rows-1-i before the newest
        r1 = newest - (rows - 1 - i)
        if r1 < 0:
            r1 += ring
        r0 = r1 - 1 if r1 > 0 else ring - 1
        for j in range(n):
            p = idx[2, j]
            x[i, j] = navs[r1, p] / navs[r0, p] - 1.0
    total = 0.0
    for p in range(n_pods):
        total += equity[p]
    denom = max(total, 1e-300)
    has_target = idx[3, 2] == n
    for j in range(n):
        w[j] = equity[idx[2, j]] / denom
        if idx[1, j] != idx[2, j]:
            has_target = False
    for j in range(n):
        target[j] = memo_target[j] if has_target else 0.0
    drift = prc_drift_into(
        x, per_year, SINGULAR_REL_TOL, w, target, has_target, xc, emp, q, cov, a,
        sym, chol, sw,
    )  # fmt: skip
    if drift != drift:  # undefined (singular Σ, no shares): the allocator does nothing
        return False
    return drift > threshold


@kernel_entry
def run_segment_nb(inp, st, out, t0, t1, stops):
    """Step bars ``t0 .. t1-1``; return after a bar the driver must see, or early when the fill
    buffer may not hold another bar.

    ``stops[t]`` (int8, ``STOP_*``) says whether the driver's allocator may act after bar ``t``:
    always (``STOP_ALWAYS``), or only when two or more joined pods are in production
    (``STOP_IF_SHARED``: a threshold check, whose PRC drift is undefined with fewer; the lifecycle
    may have changed the states during this very call, so the kernel decides).

    Returns ``(t, stopped)``: the next bar to process (``t1`` when the segment is done) and
    whether bar ``t - 1`` is a stop. ``inp``, ``st`` and ``out`` are the references of
    :mod:`orchestra.kernels.refs` (one pointer each: passing the ~100 arrays by value made
    every function taking them cost ~1 s to compile).
    """
    k = st.units.shape[0]
    capacity = out.fill_bar.shape[0]
    modelled = st.scratch_nan  # all NaN: modelled fills
    t = t0
    while t < t1:
        if out.fill_count[0] + 2 * k > capacity:
            return t, False
        # one bar with modelled fills: the live halves' bodies, called directly (each call
        # level costs compile time: numba re-optimises a callee's code in every caller)
        pre_nb(inp, st, out, t)
        post_nb(inp, st, out, t, modelled, modelled, modelled)
        bar = t
        kind = stops[bar]
        t += 1
        if kind == STOP_ALWAYS:
            return t, True
        if kind == STOP_IF_SHARED:  # the arrays drift_due_nb reads (no call level between)
            prm = inp.params
            if drift_due_nb(
                st.pod_state, st.pod_joined, st.memo_navs, st.memo_index, st.memo_target,
                st.scratch_drift, out.pod_equity[bar], prm.drift_check, prm.drift_threshold,
                prm.alloc_lookback, prm.alloc_min_history, prm.alloc_per_year,
            ):  # fmt: skip
                return t, True
    return t, False
