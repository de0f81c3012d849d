"""The two cvxpy problems, written with Parameters (DPP) and solved with Clarabel.

Each is compiled once per number/set of pods and re-solved with new parameter values
(STYLE rule 6; cvxpy DPP tutorial). Σ enters through its Cholesky factor ``L`` as
``sum_squares(Lᵀw)``, never ``quad_form(w, Σ)`` with Σ a parameter (that is not DPP).

ERC (Spinu 2013, "An algorithm for computing risk parity weights", SSRN 2297383)::

    minimise ½‖Lᵀx‖² − Σ_i b_i log x_i      (x > 0; then w = x / Σx)

At the optimum ``x_i (Σx)_i = b_i``, so every risk contribution equals its budget.

Kelly (growth-optimal under a quadratic approximation, fractional by the caller)::

    maximise μᵀw − ½‖Lᵀw‖²   s.t.  w ≥ 0,  Σw ≤ budget,  ‖Lᵀw‖ ≤ max_volatility
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import cvxpy as cp
else:

    class _LazyCvxpy:
        """cvxpy, imported at the first problem built (1.1 s of a warm run's start, most of it
        scipy.stats): allocation methods without a solver (equal weight, inverse volatility)
        never pay it."""

        def __getattr__(self, name: str) -> Any:
            import cvxpy

            return getattr(cvxpy, name)

    cp = _LazyCvxpy()

# Tight tolerances: risk contributions must match budgets to 1e-5 (tested).
SOLVER_OPTS = {
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "tol_ktratio": 1e-8,
    "max_iter": 500,
}


class SolveError(RuntimeError):
    """The solver did not reach an optimal solution."""


class Solutions:
    """Solutions already computed in this process, by the exact bytes of their inputs.

    A sweep's points re-solve the same problem with the same numbers many times (variants that
    differ only after a date, or in a setting the pods' returns do not see: 728 distinct ERC
    inputs among the example grid's 1,821 solves). cvxpy + Clarabel with ``warm_start=False``
    is deterministic, so recalling a solution is bit-identical to solving again; the key is the
    problem, its iteration limit and every input's bytes. Bounded (least recently used first).
    """

    def __init__(self, size: int = 4096) -> None:
        from collections import OrderedDict

        self.size = size
        self.store: OrderedDict[tuple, Any] = OrderedDict()
        self.hits = 0

    def get(self, key: tuple, copy: bool = True) -> Any:
        value = self.store.get(key)
        if value is not None:
            self.store.move_to_end(key)
            self.hits += 1
            return value.copy() if copy else value
        return None

    def put(self, key: tuple, value: Any, copy: bool = True) -> None:
        self.store[key] = value.copy() if copy else value
        if len(self.store) > self.size:
            self.store.popitem(last=False)


SOLUTIONS = Solutions()


def _bytes(*arrays: np.ndarray) -> tuple:
    return tuple(np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in arrays)


def _solve(problem: cp.Problem, name: str, max_iter: int) -> None:
    """Solve with Clarabel; an inaccurate status is accepted here and checked by the caller."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        try:
            problem.solve(
                solver=cp.CLARABEL, warm_start=False, **{**SOLVER_OPTS, "max_iter": max_iter}
            )
        except cp.error.SolverError as exc:
            raise SolveError(f"{name} solver error: {exc}") from None


def _newton_polish(x: np.ndarray, sigma: np.ndarray, b: np.ndarray, iters: int = 8) -> np.ndarray:
    """Refine the interior-point ERC solution with Newton steps on its optimality condition.

    Trap: Clarabel stops at ~1e-8 duality gap, which leaves risk contributions off their budgets
    by ~1e-6 and makes the weights jump with 1e-16 perturbations of Σ (e.g. a permutation of the
    pods). The gradient ``g = Σx − b/x`` and Hessian ``H = Σ + diag(b/x²)`` of Spinu's objective
    give quadratic convergence from the solver's point; a step is halved until x stays positive.
    """
    for _ in range(iters):
        g = sigma @ x - b / x
        if np.max(np.abs(g * x)) < 1e-15 * max(1.0, float(np.max(np.abs(b)))):
            break
        h = sigma + np.diag(b / x**2)
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while np.any(x - t * step <= 0) and t > 1e-6:
            t *= 0.5
        x = x - t * step
    return x


class ErcProblem:
    """ERC for ``n`` assets; call :meth:`solve` with a Cholesky factor and budgets."""

    def __init__(self, n: int, max_iter: int = 500):
        self.n = n
        self.max_iter = max_iter
        self.L = cp.Parameter((n, n), name="L")
        self.b = cp.Parameter(n, nonneg=True, name="budgets")
        self.x = cp.Variable(n, pos=True, name="x")
        objective = 0.5 * cp.sum_squares(self.L.T @ self.x) - self.b @ cp.log(self.x)
        self.problem = cp.Problem(cp.Minimize(objective))

    recalled = False  # whether the last solve was recalled from SOLUTIONS

    def solve(self, chol: np.ndarray, budgets: np.ndarray) -> np.ndarray:
        key = ("erc", self.n, self.max_iter, *_bytes(chol, budgets))
        w = SOLUTIONS.get(key)
        self.recalled = w is not None
        if w is None:
            w = self._solve(chol, budgets)
            SOLUTIONS.put(key, w)
        return w

    def _solve(self, chol: np.ndarray, budgets: np.ndarray) -> np.ndarray:
        self.L.value = chol
        self.b.value = budgets
        _solve(self.problem, "ERC", self.max_iter)
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or self.x.value is None:
            raise SolveError(f"ERC status {self.problem.status}")
        x = np.maximum(np.asarray(self.x.value, dtype=float), 0.0)
        if not np.all(np.isfinite(x)) or x.sum() <= 0:
            raise SolveError("ERC returned a degenerate solution")
        sigma = chol @ chol.T
        x = _newton_polish(x, sigma, budgets)
        w = x / x.sum()
        rc = w * (sigma @ w) / float(w @ sigma @ w)
        gap = float(np.max(np.abs(rc - budgets / budgets.sum())))
        if gap > 1e-5:  # the contract: risk contributions equal budgets to 1e-5
            raise SolveError(f"ERC inaccurate: risk contributions off budget by {gap:.2e}")
        return w


class KellyProblem:
    """Constrained Kelly for ``n`` assets; :meth:`solve` takes μ, L, budget and max volatility."""

    def __init__(self, n: int, max_iter: int = 500):
        self.n = n
        self.max_iter = max_iter
        self.mu = cp.Parameter(n, name="mu")
        self.L = cp.Parameter((n, n), name="L")
        self.budget = cp.Parameter(nonneg=True, name="budget")
        self.max_vol = cp.Parameter(nonneg=True, name="max_volatility")
        self.w = cp.Variable(n, name="w")
        risk = self.L.T @ self.w
        objective = self.mu @ self.w - 0.5 * cp.sum_squares(risk)
        constraints = [self.w >= 0, cp.sum(self.w) <= self.budget, cp.norm(risk, 2) <= self.max_vol]
        self.problem = cp.Problem(cp.Maximize(objective), constraints)

    def solve(self, mu: np.ndarray, chol: np.ndarray, budget: float, max_vol: float) -> np.ndarray:
        key = ("kelly", self.n, self.max_iter, *_bytes(mu, chol, np.array([budget, max_vol])))
        w = SOLUTIONS.get(key)
        if w is None:
            w = self._solve(mu, chol, budget, max_vol)
            SOLUTIONS.put(key, w)
        return w

    def _solve(self, mu: np.ndarray, chol: np.ndarray, budget: float, max_vol: float) -> np.ndarray:
        self.mu.value = mu
        self.L.value = chol
        self.budget.value = budget
        self.max_vol.value = max_vol
        _solve(self.problem, "Kelly", self.max_iter)
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or self.w.value is None:
            raise SolveError(f"Kelly status {self.problem.status}")
        return np.clip(np.asarray(self.w.value, dtype=float), 0.0, None)


class ProblemCache:
    """Compiled problems keyed by the set of pods they serve; rebuilt only when the set changes."""

    def __init__(self, max_iter: int = 500) -> None:
        self.max_iter = max_iter
        self._erc: dict[tuple, ErcProblem] = {}
        self._kelly: dict[tuple, KellyProblem] = {}
        self.builds = 0

    def erc(self, key: tuple) -> ErcProblem:
        if key not in self._erc:
            self._erc[key] = ErcProblem(len(key), self.max_iter)
            self.builds += 1
        return self._erc[key]

    def kelly(self, key: tuple) -> KellyProblem:
        if key not in self._kelly:
            self._kelly[key] = KellyProblem(len(key), self.max_iter)
            self.builds += 1
        return self._kelly[key]
