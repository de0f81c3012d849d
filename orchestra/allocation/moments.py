"""Moments of pod returns for the allocator: Ledoit–Wolf covariance and its Cholesky factor.

Returns are the pods' **standalone** returns (NAV changes, capital transfers removed) at each
UTC day end — one per day on a daily or finer clock, one per bar on a coarser one. Everything is
annualised with ``periods_per_year`` (365 for daily returns, 365/3 on a 3-day clock).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from orchestra.timeframes import DAYS_PER_YEAR


class SingularCovariance(ValueError):
    """Σ is singular or not positive definite (a flat pod, perfectly collinear pods...)."""


def daily_returns(navs: np.ndarray) -> np.ndarray:
    """``(n_days, P)`` NAVs → ``(n_days - 1, P)`` simple returns."""
    navs = np.asarray(navs, dtype=float)
    if navs.shape[0] < 2:
        return np.zeros((0, navs.shape[1]))
    return navs[1:] / navs[:-1] - 1.0


def shrunk_covariance(returns: np.ndarray, periods_per_year: float = DAYS_PER_YEAR) -> np.ndarray:
    """Annualised Ledoit–Wolf (2004) shrinkage covariance of ``(n_periods, n)`` returns.

    Ledoit, O. & Wolf, M. (2004), "A well-conditioned estimator for large-dimensional covariance
    matrices", J. Multivariate Analysis 88(2). Computed by :func:`ledoit_wolf` (numpy).
    """
    r = np.asarray(returns, dtype=float)
    if r.shape[1] == 1:
        return np.array([[np.var(r[:, 0]) * periods_per_year]])
    cov, _ = _ledoit_wolf_nb(np.ascontiguousarray(r))
    return cov * periods_per_year


@njit(cache=True)
def demeaned_into(x, xc):  # pragma: no cover (numba)
    """``xc = x − x.mean(axis=0)`` of ``(n, p)`` data, each column's mean summed in row order
    (allocation-free: the bar loop calls it without numba's reference counting)."""
    n, p = x.shape
    for j in range(p):
        m = 0.0
        for i in range(n):
            m += x[i, j]
        m /= n
        for i in range(n):
            xc[i, j] = x[i, j] - m


@njit(cache=True)
def demeaned_nb(x):  # pragma: no cover (numba)
    """``x − x.mean(axis=0)`` of ``(n, p)`` data (:func:`demeaned_into`, in a new array)."""
    xc = np.empty(x.shape)
    demeaned_into(x, xc)
    return xc


@njit(cache=True)
def _ledoit_wolf_nb(x):  # pragma: no cover (numba)
    """:func:`ledoit_wolf` as loops (the allocator asks for one at every day end: numpy's call
    overhead on a 90 × 3 window was 60 µs, this is ~2). Equal to it to round-off (tested):
    the sums run in another order. Scalar loops only (array expressions cost compile time)."""
    p = x.shape[1]
    shrunk = np.empty((p, p))
    shrinkage = _ledoit_wolf_into(x, np.empty(x.shape), np.empty((p, p)), np.empty((p, p)), shrunk)
    return shrunk, shrinkage


@njit(cache=True)
def _ledoit_wolf_into(x, xc, emp, q, shrunk):  # pragma: no cover (numba)
    """:func:`_ledoit_wolf_nb` into given buffers (``xc`` like ``x``; ``emp``, ``q``, ``shrunk``
    ``(p, p)``); returns the shrinkage. Allocation-free, for the bar loop."""
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


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf shrunk covariance of ``(n_samples, n_features)`` data and the shrinkage.

    ``Σ̂ = (1 − δ)·S + δ·μ·I`` with ``S`` the (biased) sample covariance, ``μ = tr(S)/p`` and the
    shrinkage ``δ = min(β, d)/d`` of Ledoit & Wolf (2004), with ``β`` and ``d`` as
    ``sklearn.covariance.ledoit_wolf`` computes them (on the demeaned data, ``S = XᵀX/n``): the
    same floating-point operations, so
    the result equals scikit-learn's bit for bit (tested) without importing it (2 s per process).
    """
    x = np.asarray(x, dtype=float)
    n, p = x.shape
    xc = x - x.mean(0)
    x2 = xc**2
    trace = np.sum(x2, axis=0) / n
    mu = np.sum(trace) / p
    beta_ = 0.0 + np.sum(np.dot(x2.T, x2))
    delta_ = (0.0 + np.sum(np.dot(xc.T, xc) ** 2)) / n**2
    beta = 1.0 / (p * n) * (beta_ / n - delta_)
    delta = (delta_ - 2.0 * mu * trace.sum() + p * mu**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    emp = np.dot(xc.T, xc) / n
    mu_emp = np.sum(np.trace(emp)) / p
    shrunk = (1.0 - shrinkage) * emp
    shrunk.flat[:: p + 1] += shrinkage * mu_emp
    return shrunk, float(shrinkage)


def cholesky_factor(cov: np.ndarray, rel_tol: float = 1e-10) -> np.ndarray:  # SINGULAR_REL_TOL
    """Lower-triangular ``L`` with ``Σ = L Lᵀ``; raises :class:`SingularCovariance`.

    Σ counts as singular when its smallest eigenvalue is below ``rel_tol`` times its largest (or
    any variance is zero), because the solvers' accuracy is meaningless there. Computed in one
    numba call (eigenvalues by Jacobi rotations, the factor by the Cholesky–Banachiewicz loop on
    the symmetrised Σ): numpy's calls cost ~50 µs on a 3 × 3 Σ at every day end.
    """
    cov = np.ascontiguousarray(cov, dtype=float)
    code, lo, _hi, chol = _cholesky_nb(cov, rel_tol)
    if code == 1:
        raise SingularCovariance("covariance has non-finite entries")
    if code == 2:
        raise SingularCovariance("a pod has zero variance")
    if code == 3:
        raise SingularCovariance(f"smallest eigenvalue {lo:.3g} ≤ {rel_tol:g} × largest")
    if code == 4:
        raise SingularCovariance("covariance is not positive definite")
    return chol


@njit(cache=True)
def _cholesky_nb(cov, rel_tol):  # pragma: no cover (numba)
    """(code, smallest eigenvalue, largest, L): code 0 ok, 1 non-finite, 2 a zero variance, 3
    ill-conditioned, 4 not positive definite. Eigenvalues by cyclic Jacobi rotations (accurate
    to round-off of ‖Σ‖, as LAPACK's; scalar loops compile in a fraction of LAPACK's binding)."""
    p = cov.shape[0]
    chol = np.zeros((p, p))
    code, lo, hi = _cholesky_into(cov, rel_tol, np.empty((p, p)), np.empty((p, p)), chol)
    return code, lo, hi, chol


@njit(cache=True)
def _cholesky_into(cov, rel_tol, a, sym, chol):  # pragma: no cover (numba)
    """:func:`_cholesky_nb` into given ``(p, p)`` buffers (``a``, ``sym``: work; ``chol``: the
    factor, zeroed first); returns (code, smallest eigenvalue, largest). Allocation-free."""
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


SINGULAR_REL_TOL = 1e-10  # cholesky_factor's default: Σ is singular below this condition


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
    :func:`prc_drift_nb`, so both take the same decision from the same bits."""
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


@njit(cache=True)
def prc_drift_nb(x, per_year, rel_tol, w, target, has_target):  # pragma: no cover (numba)
    """:func:`prc_drift_into` with buffers of its own (the allocator's call)."""
    n = x.shape[1]
    emp, q, cov = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))
    a, sym, chol = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))
    xc = np.empty(x.shape)
    return prc_drift_into(
        x, per_year, rel_tol, w, target, has_target, xc, emp, q, cov, a, sym, chol, np.empty(n)
    )


def risk_contributions(weights: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Percentage risk contributions ``PRC_i = w_i (Σw)_i / wᵀΣw`` (sum to 1).

    >>> risk_contributions(np.array([0.5, 0.5]), np.eye(2)).tolist()
    [0.5, 0.5]
    """
    w = np.asarray(weights, dtype=float)
    sw = cov @ w
    total = float(w @ sw)
    if total <= 0:
        return np.zeros_like(w)
    return w * sw / total


def effective_n(prc: np.ndarray) -> float:
    """Effective number of strategies ``1 / Σ PRC_i²`` (0 when nothing is at risk)."""
    p = np.asarray(prc, dtype=float)
    s = float(p @ p)
    return 1.0 / s if s > 0 else 0.0
