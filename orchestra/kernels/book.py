"""Valuation of the books (numba): a pod's equity and the account's equity at given prices."""

from __future__ import annotations

from orchestra.kernels.jit import kernel_helper


@kernel_helper
def pod_equity_nb(inp, st, p, prices):
    """Pod ``p``'s equity: cash + Σ units · price (a flat slot counts nothing, even at NaN)."""
    e = st.pod_cash[p]
    for k in range(inp.pod_ptr[p], inp.pod_ptr[p + 1]):
        q = st.units[k]
        if q != 0.0:
            e += q * prices[inp.slot_sym[k]]
    return e


@kernel_helper
def account_equity_nb(inp, st, prices):
    """Account equity: cash + Σ_s Q[s] · price[s]."""
    e = st.account_cash[0]
    for s in range(st.account_units.shape[0]):
        q = st.account_units[s]
        if q != 0.0:
            e += q * prices[s]
    return e
