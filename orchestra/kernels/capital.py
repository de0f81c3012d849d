"""Capital moves between the pods and the unallocated pool (SPEC §7.2, §7.3), and the pods' NAV.

The rules (``docs/accounting.md``, "Capital moves"):

* A new fraction is **requested** at a bar's close — by a rebalance (every pod,
  :func:`request_rebalance_nb`), a lifecycle transition or a pod joining (single pods,
  :func:`request_fractions_nb`). The recorded fraction changes at once; single-pod increases
  share the room ``1 − Σ f`` so that ``Σ f ≤ 1`` always holds.
* The cash moves at the **next execution**, at the execution prices, right before the pods
  re-target (:func:`apply_transfers_nb`): capital and positions move together, so a pod is never
  left holding positions sized for capital it no longer has.
* Decreases are applied first, then increases, and an increase is funded **from unallocated cash
  only**: when there is not enough, the pod gets what there is and its fraction records the share
  it actually received (the next rebalance sizes it again). So ``unallocated ≥ 0`` after every
  move.
* A pod asked for less than ``min_capital`` (``orchestrator.min_pod_capital``) gets fraction 0:
  it is not funded (a ``pod_below_min_capital`` alert when it loses the capital it had).
* A cut pod keeps at least what re-targeting its positions can cost at this execution
  (:func:`exit_reserve_nb`), so its own exit never takes its equity below zero; when that
  reserve binds its fraction records the share it keeps.
* A pod at fraction 0 holds nothing: it is flattened at that execution (its exit costs are its
  own), then its remaining equity — positive or negative — is swept back to the unallocated pool
  (:func:`sweep_nb`) once it is flat.

NAV (the pod's performance index, transfers removed) is time-weighted: ``nav = anchor_nav ·
E_p / anchor_equity``, re-anchored at every capital move and every day end. A pod whose anchor
equity is at most ``EQUITY_EPS × account equity`` is **unfunded**: its NAV is frozen (it has no
capital to earn a return on). A pod whose equity falls to zero or below has NAV 0 (it lost all of
its capital), never a negative or exploding index.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from orchestra.kernels.book import account_equity_nb, alert_nb, pod_equity_nb
from orchestra.kernels.jit import kernel_helper
from orchestra.kernels.state import A_POD_UNDER_MIN_CAPITAL, EQUITY_EPS


@kernel_helper
def _request(pod_fraction, pending, p, f):
    pod_fraction[p] = f
    pending[p] = True


@njit(cache=True)
def request_fractions_nb(pod_fraction, pending, scratch_fraction):
    """Apply the single-pod requests in ``scratch_fraction`` (≥ 0 where a pod asks for a new
    fraction: lifecycle transitions, joins), then clear them.

    Order-independent: every decrease is granted first; the increases then share the room
    ``1 − Σ f`` in proportion to what they ask for, so ``Σ f ≤ 1`` holds and the pods' order in
    the config changes nothing. The cash moves at the next execution. (The State's arrays, not
    the State: called from Python too, and unboxing the whole record costs compile time.)
    """
    n = pod_fraction.shape[0]
    for p in range(n):
        w = scratch_fraction[p]
        if w >= 0.0 and w <= pod_fraction[p]:
            _request(pod_fraction, pending, p, w)
            scratch_fraction[p] = -1.0
    asked = 0.0
    total = 0.0
    for p in range(n):
        total += pod_fraction[p]
        if scratch_fraction[p] >= 0.0:
            asked += scratch_fraction[p] - pod_fraction[p]
    if asked <= 0.0:
        return
    room = 1.0 - total
    scale = 1.0
    if asked > room:
        scale = room / asked if room > 0.0 else 0.0
    for p in range(n):
        w = scratch_fraction[p]
        if w >= 0.0:
            f = pod_fraction[p]
            _request(pod_fraction, pending, p, f + scale * (w - f))
            scratch_fraction[p] = -1.0


@njit(cache=True)
def request_rebalance_nb(pod_fraction, pending, fractions):
    """Request new fractions for every pod (the allocator's output, Σ f ≤ 1)."""
    for p in range(fractions.shape[0]):
        f = fractions[p]
        pod_fraction[p] = f if f > 0.0 else 0.0
        pending[p] = True


@kernel_helper
def current_nav_nb(st, p, equity):
    """The pod's NAV at equity ``equity`` (frozen when unfunded, never below 0)."""
    return nav_at_nb(st.pod_funded, st.pod_anchor_nav, st.pod_anchor_equity, p, equity)


@kernel_helper
def nav_at_nb(funded, anchor_nav, anchor_equity, p, equity):
    """:func:`current_nav_nb` from the State's ``pod_funded``, ``pod_anchor_nav`` and
    ``pod_anchor_equity`` (the marking loop reads them once per bar, not once per pod)."""
    if not funded[p]:  # funded implies anchor equity > 0 (anchor_nb, seed_capital)
        return anchor_nav[p]
    nav = anchor_nav[p] * (equity / anchor_equity[p])
    return nav if nav > 0.0 else 0.0


@kernel_helper
def anchor_nb(st, p, nav, equity, account_equity):
    """Re-anchor the pod's NAV at ``nav`` for equity ``equity``."""
    st.pod_anchor_nav[p] = nav
    st.pod_anchor_equity[p] = equity
    # equity > 0 too: once the account is bust (equity ≤ 0) the relative test alone would pass
    st.pod_funded[p] = nav > 0.0 and equity > 0.0 and equity > EQUITY_EPS * account_equity


@kernel_helper
def _move(st, p, delta, total, e):
    """Move ``delta`` of cash from the unallocated pool to pod ``p`` (equity ``e`` before)."""
    nav = current_nav_nb(st, p, e)
    st.pod_cash[p] += delta
    st.unallocated[0] -= delta
    st.pod_day_start_equity[p] += delta  # the day's P&L excludes the transfer
    anchor_nb(st, p, nav, e + delta, total)


@kernel_helper
def exit_reserve_nb(inp, st, p, prices, equity):
    """The equity pod ``p`` must keep at a cut so that its own trades at this execution cannot
    take it below zero: ``k·G / (1 − k·L)``.

    ``G`` is its gross notional at the execution prices, ``L`` its ``max_leverage`` and
    ``k = slippage + cost·(1 + slippage)`` the most a unit of traded notional can cost. Trading
    from positions of notional ``G`` to any targets within ``L × E`` costs at most
    ``k·(G + L·E)``, which ``E ≥ k·G / (1 − k·L)`` covers. When ``k·L ≥ 1`` no reserve is enough
    and the pod keeps all of ``equity`` (the cut waits until it is flat). 0 for a flat pod.
    """
    gross = 0.0
    for k in range(inp.pod_ptr[p], inp.pod_ptr[p + 1]):
        q = st.units[k]
        if q != 0.0:
            gross += abs(q * prices[inp.slot_sym[k]])
    if gross == 0.0:
        return 0.0
    slip = inp.params.slippage
    per_unit = slip + inp.params.cost * (1.0 + slip)
    room = 1.0 - per_unit * inp.pod_max_leverage[p]
    if room <= 0.0:
        return equity
    return per_unit * gross / room


@kernel_helper
def apply_transfers_nb(inp, st, out, t, prices):
    """Apply the pending fraction requests at execution prices (before the pods re-target)."""
    n_pods = st.pod_fraction.shape[0]
    if not st.pending.any():
        return
    total = account_equity_nb(inp, st, prices)
    if total <= 0.0:  # a bust account has nothing to allocate; it is being flattened
        st.pending[:] = False
        return
    # pass 0: a pod asked for less than the minimum capital is not funded (fraction 0: it is
    # flattened and swept like a pod the allocator set to 0); one alert when it loses its capital
    min_capital = inp.params.min_capital
    if min_capital > 0.0:
        for p in range(n_pods):
            if not st.pending[p]:
                continue
            asked = st.pod_fraction[p] * total
            if 0.0 < asked < min_capital:
                st.pod_fraction[p] = 0.0
                if not st.pod_denied[p]:  # once per episode
                    alert_nb(out, t, np.int64(A_POD_UNDER_MIN_CAPITAL), asked, min_capital, p)
                st.pod_denied[p] = True
            elif asked >= min_capital:
                st.pod_denied[p] = False
    # pass 1: decreases (release cash to the pool). Pods going to 0 keep their capital until
    # they are flat (sweep_nb), so their exit costs stay on their own books; a cut pod keeps at
    # least what re-targeting its positions can cost (exit_reserve_nb).
    for p in range(n_pods):
        if not st.pending[p] or st.pod_fraction[p] <= 0.0:
            continue
        e = pod_equity_nb(inp, st, p, prices)
        keep = st.pod_fraction[p] * total
        if keep >= e:
            continue  # an increase (pass 2)
        st.pending[p] = False
        reserve = exit_reserve_nb(inp, st, p, prices, e)
        if keep < reserve:
            keep = reserve if reserve < e else e
            st.pod_fraction[p] = keep / total  # the share it actually keeps
        if keep < e:
            _move(st, p, keep - e, total, e)
    # pass 2: increases, funded from unallocated cash only
    for p in range(n_pods):
        if not st.pending[p] or st.pod_fraction[p] <= 0.0:
            continue
        st.pending[p] = False
        e = pod_equity_nb(inp, st, p, prices)
        delta = st.pod_fraction[p] * total - e
        if delta <= 0.0:
            continue
        room = st.unallocated[0]
        if delta > room:
            delta = room if room > 0.0 else 0.0
            st.pod_fraction[p] = (e + delta) / total  # the share it actually received
        _move(st, p, delta, total, e)
    # pods going to 0: nothing moves now; they close at this execution and are swept when flat
    st.pending[:] = False


@kernel_helper
def sweep_nb(inp, st, prices):
    """Hand the equity of flat pods at fraction 0 back to the unallocated pool.

    Called after execution. The pod's NAV is anchored at its final equity first, so its exit
    costs are in its NAV; from then on it is unfunded and its NAV is frozen.
    """
    total = -1.0
    pod_fraction, pod_cash, pod_ptr, units = st.pod_fraction, st.pod_cash, inp.pod_ptr, st.units
    for p in range(pod_fraction.shape[0]):
        if pod_fraction[p] != 0.0 or pod_cash[p] == 0.0:
            continue
        flat = True
        for k in range(pod_ptr[p], pod_ptr[p + 1]):
            if units[k] != 0.0:
                flat = False
                break
        if not flat:
            continue
        if total < 0.0:
            total = account_equity_nb(inp, st, prices)
        cash = st.pod_cash[p]
        nav = current_nav_nb(st, p, cash)
        st.pod_cash[p] = 0.0
        st.unallocated[0] += cash
        st.pod_day_start_equity[p] -= cash
        anchor_nb(st, p, nav, 0.0, total if total > 0.0 else 0.0)
