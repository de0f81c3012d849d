"""Valuation of the books (numba): a pod's equity and the account's equity at given prices."""

from __future__ import annotations

from numba import njit


@njit(cache=True, no_cpython_wrapper=True)  # called from kernels only
def pod_equity_nb(inp, st, p, prices):
    """Pod ``p``'s equity: cash + Σ units · price (a flat slot counts nothing, even at NaN)."""
    e = st.pod_cash[p]
    for k in range(inp.pod_ptr[p], inp.pod_ptr[p + 1]):
        q = st.units[k]
        if q != 0.0:
            e += q * prices[inp.slot_sym[k]]
    return e


@njit(cache=True, no_cpython_wrapper=True)  # called from kernels only
def account_equity_nb(inp, st, prices):
    """Account equity: cash + Σ_s Q[s] · price[s]."""
    e = st.account_cash[0]
    for s in range(st.account_units.shape[0]):
        q = st.account_units[s]
        if q != 0.0:
            e += q * prices[s]
    return e
