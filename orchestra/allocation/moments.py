"""Moments of pod returns for the allocator: Ledoit–Wolf covariance and its Cholesky factor.

Returns are the pods' **standalone** returns (NAV changes, capital transfers removed) at each
UTC day end — one per day on a daily or finer clock, one per bar on a coarser one. Everything is
annualised with ``periods_per_year`` (365 for daily returns, 365/3 on a 3-day clock).
"""

from __future__ import annotations

import numpy as np

from orchestra.kernels.moments import (  # noqa: F401 (re-exported: the allocator's imports)
    SINGULAR_REL_TOL,
    _cholesky_into,
    _ledoit_wolf_into,
    pod_shares_nb,
    prc_drift_into,
)
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
    cov, _ = ledoit_wolf_loops(r)
    return cov * periods_per_year


def ledoit_wolf_loops(x: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`ledoit_wolf` by :func:`~orchestra.kernels.moments._ledoit_wolf_into`'s loops (the
    allocator asks for one at every day end: numpy's call overhead on a 90 × 3 window was 60 µs,
    this is a few). Equal to it to round-off (tested): the sums run in another order.

    The buffers are made here, in Python, not in a compiled wrapper: the bar loop's drift check
    already compiles the loops for these exact argument types (C-ordered float64), so a run
    compiles them once (a wrapper was one more compile of the same loops, ~0.1-0.3 s each at a
    first run)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not x.flags.writeable:  # (a read-only array is another compiled signature)
        x = x.copy()
    p = x.shape[1]
    shrunk = np.empty((p, p))
    shrinkage = _ledoit_wolf_into(x, np.empty(x.shape), np.empty((p, p)), np.empty((p, p)), shrunk)
    return shrunk, shrinkage


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


def cholesky_factor(cov: np.ndarray, rel_tol: float = SINGULAR_REL_TOL) -> np.ndarray:
    """Lower-triangular ``L`` with ``Σ = L Lᵀ``; raises :class:`SingularCovariance`.

    Σ counts as singular when its smallest eigenvalue is below ``rel_tol`` times its largest (or
    any variance is zero), because the solvers' accuracy is meaningless there. Computed in one
    numba call (eigenvalues by Jacobi rotations, the factor by the Cholesky–Banachiewicz loop on
    the symmetrised Σ): numpy's calls cost ~50 µs on a 3 × 3 Σ at every day end.
    """
    cov = np.ascontiguousarray(cov, dtype=float)
    if not cov.flags.writeable:  # a memoised Σ: one compiled signature (writable) serves all
        cov = cov.copy()
    code, lo, _hi, chol = cholesky_loops(cov, rel_tol)
    if code == 1:
        raise SingularCovariance("covariance has non-finite entries")
    if code == 2:
        raise SingularCovariance("a pod has zero variance")
    if code == 3:
        raise SingularCovariance(f"smallest eigenvalue {lo:.3g} ≤ {rel_tol:g} × largest")
    if code == 4:
        raise SingularCovariance("covariance is not positive definite")
    return chol


def cholesky_loops(cov: np.ndarray, rel_tol: float) -> tuple[int, float, float, np.ndarray]:
    """(code, smallest eigenvalue, largest, L) of a C-ordered, writable float64 Σ by
    :func:`~orchestra.kernels.moments._cholesky_into`: code 0 ok, 1 non-finite, 2 a zero
    variance, 3 ill-conditioned, 4 not positive definite. Eigenvalues by cyclic Jacobi rotations
    (accurate to round-off of ‖Σ‖, as LAPACK's; scalar loops compile in a fraction of LAPACK's
    binding)."""
    p = cov.shape[0]
    chol = np.zeros((p, p))
    code, lo, hi = _cholesky_into(cov, float(rel_tol), np.empty((p, p)), np.empty((p, p)), chol)
    return code, lo, hi, chol


def prc_drift(
    x: np.ndarray,
    per_year: float,
    rel_tol: float,
    w: np.ndarray,
    target: np.ndarray,
    has_target: bool,
) -> float:
    """:func:`~orchestra.kernels.moments.prc_drift_into` with buffers of its own (the
    allocator's call; the arrays C-ordered float64, as the bar loop's drift check passes them, so
    that both run one compiled function)."""
    n = x.shape[1]
    emp, q, cov = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))
    a, sym, chol = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))
    return prc_drift_into(
        x, float(per_year), float(rel_tol), w, target, bool(has_target), np.empty(x.shape),
        emp, q, cov, a, sym, chol, np.empty(n),
    )  # fmt: skip


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
