"""Valuation of the books (numba): a pod's equity and the account's equity at given prices; the
kernel alert buffer."""

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
def alert_nb(out, t, kind, value, threshold, pod):
    """Append a kernel alert (``pod`` -1 for the account); dropped when the buffer is full."""
    i = out.al_count[0]
    if i >= out.al_bar.shape[0]:
        return
    out.al_bar[i] = t
    out.al_type[i] = kind
    out.al_value[i] = value
    out.al_threshold[i] = threshold
    out.al_pod[i] = pod
    out.al_count[0] = i + 1


@kernel_helper
def account_equity_nb(inp, st, prices):
    """Account equity: cash + Σ_s Q[s] · price[s]."""
    e = st.account_cash[0]
    for s in range(st.account_units.shape[0]):
        q = st.account_units[s]
        if q != 0.0:
            e += q * prices[s]
    return e
