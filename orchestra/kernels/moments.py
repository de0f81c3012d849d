"""Allocation-free numerics the bar loop shares with the allocator: Ledoit–Wolf covariance,
the Cholesky check and the PRC drift of the hybrid/threshold trigger.

The allocator (:mod:`orchestra.allocation.moments`) calls them from Python with buffers it
allocates (C-ordered float64: the argument types of the bar loop's calls, so a run compiles each
once); the bar loop (:func:`orchestra.kernels.step.drift_due_nb`) calls them on the
State's scratch buffers. Both run the same scalar loops on
the same numbers, so they take the same decisions from the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SINGULAR_REL_TOL = 1e-10  # cholesky_factor's default: Σ is singular below this condition


@njit(cache=True)
def demeaned_into(x, xc):  # pragma: no cover (numba)
    """``xc = x − x.mean(axis=0)`` of ``(n, p)`` data, each column's mean summed in row order
    (allocation-free: the bar loop calls it on the State's buffers)."""
    n, p = x.shape
    for j in range(p):
        m = 0.0
        for i in range(n):
            m += x[i, j]
        m /= n
        for i in range(n):
            xc[i, j] = x[i, j] - m


@njit(cache=True)
def _ledoit_wolf_into(x, xc, emp, q, shrunk):  # pragma: no cover (numba)
    """:func:`~orchestra.allocation.moments.ledoit_wolf_loops` into given buffers (``xc`` like
    ``x``; ``emp``, ``q``, ``shrunk`` ``(p, p)``); returns the shrinkage. Allocation-free, for
    the bar loop."""
    n, p = x.shape
    demeaned_into(x, xc)
    emp[:, :] = 0.0
    q[:, :] = 0.0  # (x²)ᵀ(x²)
    for i in range(n):
        for j in range(p):
            a = xc[i, j]
            for k in range(j, p):
                b = xc[i, k]
                emp[j, k] += a * b
                q[j, k] += a * a * b * b
    beta_ = 0.0
    delta_ = 0.0
    trace = 0.0
    for j in range(p):
        trace += emp[j, j] / n
        for k in range(p):
            e = emp[j, k] if k >= j else emp[k, j]
            beta_ += q[j, k] if k >= j else q[k, j]
            delta_ += e * e
    delta_ /= n**2
    mu = trace / p
    beta = 1.0 / (p * n) * (beta_ / n - delta_)
    delta = (delta_ - 2.0 * mu * trace + p * mu**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    mu_emp = 0.0
    for j in range(p):
        mu_emp += emp[j, j] / n
    mu_emp /= p
    for j in range(p):
        for k in range(j, p):
            v = (1.0 - shrinkage) * (emp[j, k] / n)
            shrunk[j, k] = v
            shrunk[k, j] = v
        shrunk[j, j] += shrinkage * mu_emp
    return shrinkage


@njit(cache=True)
def _cholesky_into(cov, rel_tol, a, sym, chol):  # pragma: no cover (numba)
    """:func:`~orchestra.allocation.moments.cholesky_loops` into given ``(p, p)`` buffers
    (``a``, ``sym``: work; ``chol``: the factor, zeroed first); returns (code, smallest
    eigenvalue, largest). Allocation-free."""
    p = cov.shape[0]
    for i in range(p):
        for j in range(p):
            chol[i, j] = 0.0
    for i in range(p):
        for j in range(p):
            v = cov[i, j]
            if not np.isfinite(v):
                return 1, 0.0, 0.0
            a[i, j] = v
    for j in range(p):
        if a[j, j] <= 0:
            return 2, 0.0, 0.0
    for i in range(p):  # symmetrise
        for j in range(i + 1, p):
            v = (a[i, j] + a[j, i]) / 2
            a[i, j] = v
            a[j, i] = v
    for i in range(p):
        for j in range(p):
            sym[i, j] = a[i, j]
    for _ in range(100):  # Jacobi sweeps until the off-diagonal is round-off of the diagonal
        off = 0.0
        diag = 0.0
        for i in range(p):
            diag += a[i, i] * a[i, i]
            for j in range(i + 1, p):
                off += a[i, j] * a[i, j]
        if off <= 1e-36 * diag:
            break
        for k in range(p):
            for m in range(k + 1, p):
                akm = a[k, m]
                if akm == 0.0:
                    continue
                theta = (a[m, m] - a[k, k]) / (2.0 * akm)
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + np.sqrt(theta * theta + 1.0))
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                for r in range(p):  # columns k, m
                    ark, arm = a[r, k], a[r, m]
                    a[r, k] = c * ark - s * arm
                    a[r, m] = s * ark + c * arm
                for r in range(p):  # rows k, m
                    akr, amr = a[k, r], a[m, r]
                    a[k, r] = c * akr - s * amr
                    a[m, r] = s * akr + c * amr
    lo = a[0, 0]
    hi = a[0, 0]
    for i in range(1, p):
        lo = min(lo, a[i, i])
        hi = max(hi, a[i, i])
    if lo <= rel_tol * hi:
        return 3, lo, hi
    for i in range(p):  # Cholesky–Banachiewicz on the symmetrised Σ
        for j in range(i + 1):
            acc = sym[i, j]
            for k in range(j):
                acc -= chol[i, k] * chol[j, k]
            if i == j:
                if acc <= 0:
                    return 4, lo, hi
                chol[i, i] = np.sqrt(acc)
            else:
                chol[i, j] = acc / chol[j, j]
    return 0, lo, hi


@njit(cache=True)
def pod_shares_nb(equities):  # pragma: no cover (numba)
    """Each pod's share of the pods' total equity, ``e / max(Σ e, 1e-300)`` (Σ in pod order: the
    bar loop's drift check computes the same numbers)."""
    total = 0.0
    for p in range(equities.shape[0]):
        total += equities[p]
    denom = max(total, 1e-300)
    out = np.empty(equities.shape[0])
    for p in range(equities.shape[0]):
        out[p] = equities[p] / denom
    return out


@njit(cache=True)
def prc_drift_into(x, per_year, rel_tol, w, target, has_target, xc, emp, q, cov, a, sym, chol,
                   sw):  # fmt: skip  # pragma: no cover (numba)
    """The hybrid/threshold trigger's PRC drift of the pods whose returns are the columns of
    ``x`` (the lookback window), at shares ``w``: ``max_i |PRC_i − target_i|`` with the target
    the PRC set at the last rebalance (``has_target``) or equal budgets ``1/n``. NaN when the
    drift is undefined (Σ singular, Σw ≤ 0). Σ is the annualised Ledoit–Wolf covariance, as the
    allocator's. Allocation-free, into the given buffers (``xc`` like ``x``, the rest
    ``(n, n)`` and ``(n,)``): the bar loop runs it at every day end to decide whether the
    driver must see the day (``orchestra.kernels.step``), and the allocator calls it through
    :func:`~orchestra.allocation.moments.prc_drift`, so both take the same decision from the
    same bits."""
    n = x.shape[1]
    _ledoit_wolf_into(x, xc, emp, q, cov)
    for j in range(n):
        for k in range(n):
            cov[j, k] = cov[j, k] * per_year
    code, _lo, _hi = _cholesky_into(cov, rel_tol, a, sym, chol)
    if code != 0:
        return np.nan
    total_w = 0.0
    for i in range(n):
        total_w += w[i]
    if total_w <= 0:
        return np.nan
    total = 0.0
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += cov[i, j] * w[j]
        sw[i] = acc
        total += w[i] * acc
    drift = 0.0
    for i in range(n):
        prc = w[i] * sw[i] / total if total > 0 else 0.0
        d = abs(prc - (target[i] if has_target else 1.0 / n))
        if d != d:
            return np.nan
        drift = max(drift, d)
    return drift
