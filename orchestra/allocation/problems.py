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
        """cvxpy, imported at the first problem built (:func:`import_cvxpy`): allocation methods
        without a solver (equal weight, inverse volatility) never pay it."""

        def __getattr__(self, name: str) -> Any:
            return getattr(import_cvxpy(), name)

    cp = _LazyCvxpy()


def import_cvxpy() -> Any:
    """``import cvxpy`` without importing ``scipy.stats`` on the way.

    cvxpy 1.9 imports all of its atoms at start-up, and one of them (``quantum_rel_entr``) does
    ``from scipy.stats import entropy`` at module level: scipy.stats parses the docstrings of
    its ~130 distributions when imported, about 0.4 s of the 0.65 s cvxpy costs a fresh process
    (a warm ``orch-bt run`` is ~2 s). orchestra never uses that atom. So, when nothing has
    imported scipy.stats yet, cvxpy is imported against a stand-in module whose ``entropy``
    imports the real function at its first call, and the stand-in is removed from
    ``sys.modules`` straight after: a later ``import scipy.stats`` (the user's, or the quantum
    atom's first call) loads the real module. Tested: the atom still evaluates, equal to
    scipy's entropy, and ``scipy.stats`` is the real module afterwards.
    """
    import sys

    if "cvxpy" in sys.modules or "scipy.stats" in sys.modules:
        import cvxpy

        return cvxpy
    import types

    import scipy

    def entropy(*args: Any, **kwargs: Any) -> Any:
        from scipy.stats import entropy as real

        return real(*args, **kwargs)

    stand_in = types.ModuleType("scipy.stats", "stand-in while cvxpy imports (see import_cvxpy)")
    stand_in.entropy = entropy  # type: ignore[attr-defined]
    sys.modules["scipy.stats"] = stand_in
    try:
        import cvxpy
    finally:
        if sys.modules.get("scipy.stats") is stand_in:
            del sys.modules["scipy.stats"]
        if scipy.__dict__.get("stats") is stand_in:
            del scipy.stats
    return cvxpy


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


_MAPPED = ("P", "c", "A", "b")  # the numbers of cvxpy's Clarabel data; the rest is structure


def _numbers(data: dict) -> tuple[np.ndarray, tuple]:
    """The numbers of a Clarabel data dict as one vector, and its structure (sparsity, shapes)."""
    import scipy.sparse as sps

    numbers: list[np.ndarray] = []
    structure: list[tuple | None] = []
    for key in _MAPPED:
        x = data.get(key)
        if x is None:
            structure.append(None)
        elif sps.issparse(x):
            if x.format != "csc":
                raise ValueError(f"{key} is {x.format}, not csc")
            numbers.append(np.asarray(x.data, dtype=np.float64))
            structure.append((type(x), x.shape, x.indices.tobytes(), x.indptr.tobytes()))
        else:
            arr = np.asarray(x, dtype=np.float64)
            numbers.append(arr.ravel())
            structure.append((np.ndarray, arr.shape))
    return (np.concatenate(numbers) if numbers else np.empty(0)), tuple(structure)


class _Stuffing:
    """cvxpy's map from a compiled problem's Parameter values to Clarabel's data, applied in numpy.

    Re-solving a small DPP problem, cvxpy rebuilds the solver's data through a chain of
    scipy.sparse constructions: ~1 ms of a ~1.2 ms re-solve of a 3-pod ERC, where Clarabel's
    own solve is ~0.07 ms. The map is affine and, in both problems here, every number of the
    data is a constant or a constant times one Parameter entry. The map is read off cvxpy
    itself, with :meth:`cvxpy.Problem.get_problem_data` at ``2 + log2(entries)`` Parameter
    values (all zero; then pattern ``k`` sets entry ``j`` to 1 when bit ``k`` of ``j + 1`` is
    set, which names the entry each number depends on), and then checked at a fixed random
    point: the data must equal cvxpy's byte for byte, and the solve through it (cvxpy's own
    ``solve_via_data`` and ``unpack_results``, the documented route of ``get_problem_data``)
    must equal ``problem.solve``'s byte for byte. A number is computed as ``const + coef·p_j``:
    the same floating-point operations as cvxpy's sparse product with one term, so the data,
    and so the solution, are cvxpy's own bits. When anything differs, :meth:`build` returns
    None and every solve of that problem goes through ``problem.solve``.
    """

    def __init__(self, problem: cp.Problem, params: list, data: dict, chain: Any,
                 inverse: Any, structure: tuple, const: np.ndarray, coef: np.ndarray,
                 index: np.ndarray) -> None:  # fmt: skip
        self.problem, self.params, self.data = problem, params, data
        self.chain, self.inverse, self.structure = chain, inverse, structure
        self.const, self.coef, self.index = const, coef, index

    @staticmethod
    def _set(params: list, values: np.ndarray) -> None:
        at = 0
        for prm in params:
            prm.value = values[at : at + prm.size].reshape(prm.shape)
            at += prm.size

    @classmethod
    def build(cls, problem: cp.Problem, params: list, opts: dict,
              check: np.ndarray) -> _Stuffing | None:  # fmt: skip
        """The checked map of ``problem`` over ``params`` (flat, in order), or None. ``check`` is
        a point (flat Parameter values) at which the problem solves."""
        size = sum(prm.size for prm in params)

        def data_at(values: np.ndarray) -> tuple[dict, Any, Any]:
            cls._set(params, values)
            return problem.get_problem_data(cp.CLARABEL, solver_opts=opts)

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                return cls._build(problem, params, opts, check, size, data_at)
        except Exception:  # any surprise: cvxpy's own path, always correct
            return None

    @classmethod
    def _build(cls, problem: cp.Problem, params: list, opts: dict, check: np.ndarray,
               size: int, data_at: Any) -> _Stuffing | None:  # fmt: skip
        data, chain, inverse = data_at(np.zeros(size))
        if data.get("lower_bounds") is not None or data.get("upper_bounds") is not None:
            return None
        base, structure = _numbers(data)
        code = np.zeros(base.size, dtype=np.int64)
        coef = np.zeros(base.size)
        for k in range(size.bit_length()):
            pattern = ((np.arange(1, size + 1) >> k) & 1).astype(np.float64)
            numbers, shape = _numbers(data_at(pattern)[0])
            if shape != structure:
                return None
            d = numbers - base
            hit = d != 0
            if np.any(hit & (code != 0) & (d != coef)):  # not one entry times a constant
                return None
            coef = np.where(hit, d, coef)
            code |= hit.astype(np.int64) << k
        if np.any(code > size) or np.any((code > 0) & (base != 0)):
            return None  # (a constant plus a Parameter term: not mapped, see numbers())
        fast = cls(problem, params, data, chain, inverse, structure, base, coef,
                   np.where(code > 0, code - 1, size))  # fmt: skip
        # the check: cvxpy's data and solution at a point, byte for byte
        numbers, shape = _numbers(data_at(check)[0])
        if shape != structure or fast.numbers(check).tobytes() != numbers.tobytes():
            return None
        problem.solve(solver=cp.CLARABEL, warm_start=False, **opts)
        expected = [v.value.tobytes() for v in problem.variables() if v.value is not None]
        status = problem.status
        fast.solve(check, opts)
        got = [v.value.tobytes() for v in problem.variables() if v.value is not None]
        if problem.status != status or got != expected or not expected:
            return None
        return fast

    def numbers(self, values: np.ndarray) -> np.ndarray:
        """The data's numbers at ``values``. cvxpy computes a number as a sparse product's one
        term added to ``0.0``, then possibly negates it: where the term is not zero that is
        ``coef·p``, and where it is, the zero of the all-zero evaluation, sign included."""
        term = self.coef * np.append(values, 0.0)[self.index]
        return np.where(term != 0.0, term, self.const)

    def solve(self, values: np.ndarray, opts: dict) -> None:
        """Solve at the flat Parameter ``values``; the solution lands in the problem's variables
        and status, as with ``problem.solve``."""
        numbers = self.numbers(values)
        data = dict(self.data)
        at = 0
        for key, shape in zip(_MAPPED, self.structure, strict=True):
            if shape is None:
                continue
            if shape[0] is np.ndarray:
                n = int(np.prod(shape[1]))
                data[key] = numbers[at : at + n].reshape(shape[1])
            else:
                kind, dims = shape[:2]
                ref = self.data[key]
                n = ref.data.size
                data[key] = kind(
                    (numbers[at : at + n], ref.indices.copy(), ref.indptr.copy()), shape=dims
                )
            at += n
        solution = self.chain.solve_via_data(self.problem, data, False, False, opts)
        self.problem.unpack_results(solution, self.chain, self.inverse)


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


def _check_factor(n: int) -> np.ndarray:
    """A fixed, well-conditioned Cholesky factor for :meth:`_Stuffing.build`'s check point."""
    rng = np.random.default_rng(20131017)
    a = rng.normal(size=(n, n + 4))
    return np.linalg.cholesky(a @ a.T / (n + 4) + 0.1 * np.eye(n))


class _Resolved:
    """A compiled DPP problem, re-solved with Clarabel at flat Parameter values (``params`` in
    order, each flattened): through its :class:`_Stuffing` when that checks out (built at the
    first solve, at :meth:`_check_point`), else by setting the Parameters and ``problem.solve``.
    Both give the same bits."""

    name = ""
    problem: cp.Problem
    params: list

    def __init__(self, n: int, max_iter: int) -> None:
        self.n = n
        self.max_iter = max_iter
        self._fast: _Stuffing | None = None
        self._fast_built = False

    def _check_point(self) -> np.ndarray:
        raise NotImplementedError

    def _stuffing(self) -> _Stuffing | None:
        if not self._fast_built:
            self._fast_built = True
            opts = {**SOLVER_OPTS, "max_iter": self.max_iter}
            self._fast = _Stuffing.build(self.problem, self.params, opts, self._check_point())
        return self._fast

    def _resolve(self, *values: Any) -> None:
        """Solve at ``values`` (one per Parameter); an inaccurate status is accepted here and
        checked by the caller."""
        flat = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values])
        fast = self._stuffing()
        opts = {**SOLVER_OPTS, "max_iter": self.max_iter}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            try:
                if fast is not None:
                    fast.solve(flat, opts)
                else:
                    _Stuffing._set(self.params, flat)
                    self.problem.solve(solver=cp.CLARABEL, warm_start=False, **opts)
            except cp.error.SolverError as exc:
                raise SolveError(f"{self.name} solver error: {exc}") from None


class ErcProblem(_Resolved):
    """ERC for ``n`` assets; call :meth:`solve` with a Cholesky factor and budgets.

    Re-solves go through :class:`_Stuffing` (cvxpy's own parameter map, applied in numpy; the
    same bits as ``problem.solve``) when it checks out, else through ``problem.solve``."""

    name = "ERC"

    def __init__(self, n: int, max_iter: int = 500):
        super().__init__(n, max_iter)
        self.L = cp.Parameter((n, n), name="L")
        self.b = cp.Parameter(n, nonneg=True, name="budgets")
        self.x = cp.Variable(n, pos=True, name="x")
        objective = 0.5 * cp.sum_squares(self.L.T @ self.x) - self.b @ cp.log(self.x)
        self.problem = cp.Problem(cp.Minimize(objective))
        self.params = [self.L, self.b]

    recalled = False  # whether the last solve was recalled from SOLUTIONS

    def _check_point(self) -> np.ndarray:
        return np.concatenate([_check_factor(self.n).ravel(), np.full(self.n, 1 / self.n)])

    def solve(self, chol: np.ndarray, budgets: np.ndarray) -> np.ndarray:
        key = ("erc", self.n, self.max_iter, *_bytes(chol, budgets))
        w = SOLUTIONS.get(key)
        self.recalled = w is not None
        if w is None:
            w = self._solve(chol, budgets)
            SOLUTIONS.put(key, w)
        return w

    def _solve(self, chol: np.ndarray, budgets: np.ndarray) -> np.ndarray:
        self._resolve(chol, budgets)
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


class KellyProblem(_Resolved):
    """Constrained Kelly for ``n`` assets; :meth:`solve` takes μ, L, budget and max volatility.
    Re-solves go through :class:`_Stuffing` when it checks out, as for :class:`ErcProblem`."""

    name = "Kelly"

    def __init__(self, n: int, max_iter: int = 500):
        super().__init__(n, max_iter)
        self.mu = cp.Parameter(n, name="mu")
        self.L = cp.Parameter((n, n), name="L")
        self.budget = cp.Parameter(nonneg=True, name="budget")
        self.max_vol = cp.Parameter(nonneg=True, name="max_volatility")
        self.w = cp.Variable(n, name="w")
        risk = self.L.T @ self.w
        objective = self.mu @ self.w - 0.5 * cp.sum_squares(risk)
        constraints = [self.w >= 0, cp.sum(self.w) <= self.budget, cp.norm(risk, 2) <= self.max_vol]
        self.problem = cp.Problem(cp.Maximize(objective), constraints)
        self.params = [self.mu, self.L, self.budget, self.max_vol]

    def _check_point(self) -> np.ndarray:
        mu = np.linspace(0.05, 0.2, self.n)
        return np.concatenate([mu, _check_factor(self.n).ravel(), [1.0, 0.5]])

    def solve(self, mu: np.ndarray, chol: np.ndarray, budget: float, max_vol: float) -> np.ndarray:
        key = ("kelly", self.n, self.max_iter, *_bytes(mu, chol, np.array([budget, max_vol])))
        w = SOLUTIONS.get(key)
        if w is None:
            w = self._solve(mu, chol, budget, max_vol)
            SOLUTIONS.put(key, w)
        return w

    def _solve(self, mu: np.ndarray, chol: np.ndarray, budget: float, max_vol: float) -> np.ndarray:
        self._resolve(mu, chol, budget, max_vol)
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or self.w.value is None:
            raise SolveError(f"Kelly status {self.problem.status}")
        return np.clip(np.asarray(self.w.value, dtype=float), 0.0, None)


_COMPILED: dict[tuple[str, int, int], Any] = {}


def compiled(kind: str, n: int, max_iter: int) -> Any:
    """The process's one compiled ``kind`` ("erc" or "kelly") problem for ``n`` pods.

    A problem depends only on its size and iteration limit, so one compiled problem serves
    every pod set and every allocator of the process (a sweep's points, a walk-forward's folds):
    compiling it and checking its :class:`_Stuffing` costs ~10-30 ms, a re-solve ~0.6 ms."""
    key = (kind, n, max_iter)
    if key not in _COMPILED:
        _COMPILED[key] = (ErcProblem if kind == "erc" else KellyProblem)(n, max_iter)
    return _COMPILED[key]


class ProblemCache:
    """An allocator's problems by the set of pods they serve (``builds`` counts the sets seen);
    the compiled problem behind a set is the process's one of its size (:func:`compiled`)."""

    def __init__(self, max_iter: int = 500) -> None:
        self.max_iter = max_iter
        self._erc: dict[tuple, ErcProblem] = {}
        self._kelly: dict[tuple, KellyProblem] = {}
        self.builds = 0

    def erc(self, key: tuple) -> ErcProblem:
        if key not in self._erc:
            self._erc[key] = compiled("erc", len(key), self.max_iter)
            self.builds += 1
        return self._erc[key]

    def kelly(self, key: tuple) -> KellyProblem:
        if key not in self._kelly:
            self._kelly[key] = compiled("kelly", len(key), self.max_iter)
            self.builds += 1
        return self._kelly[key]
