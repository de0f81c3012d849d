"""Allocation: ERC against an independent solver, Kelly, clamps and water-filling, fallbacks, DPP."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.allocation import (
    Allocator,
    kelly_weights,
    risk_contributions,
    risk_parity_weights,
    water_fill,
)
from orchestra.allocation.allocator import adaptive_kelly_blend
from orchestra.allocation.moments import SingularCovariance, cholesky_factor, shrunk_covariance
from orchestra.allocation.problems import ErcProblem, KellyProblem, ProblemCache, SolveError
from orchestra.config import parse_config
from orchestra.kernels.state import INCUBATION, PROBATION, PRODUCTION, RETIRED, WARNING


def ccd_risk_parity(cov: np.ndarray, b: np.ndarray, iters: int = 20_000) -> np.ndarray:
    """Independent ERC solver: cyclical coordinate descent on Spinu's objective.

    Griveau-Billion, Richard & Roncalli (2013): each coordinate solves
    ``Σ_ii x_i² + (Σx)_{-i} x_i − b_i = 0`` exactly (the positive root).
    """
    n = cov.shape[0]
    x = 1.0 / np.sqrt(np.diag(cov))
    for _ in range(iters):
        x_old = x.copy()
        for i in range(n):
            c = cov[i] @ x - cov[i, i] * x[i]
            x[i] = (-c + np.sqrt(c * c + 4 * cov[i, i] * b[i])) / (2 * cov[i, i])
        if np.max(np.abs(x - x_old)) < 1e-15 * np.max(x):
            break
    return x / x.sum()


@st.composite
def pd_matrices(draw):
    n = draw(st.integers(2, 10))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n + draw(st.integers(0, 5))))
    vols = rng.uniform(0.1, 1.5, n)
    c = a @ a.T / a.shape[1] + draw(st.floats(1e-3, 0.5)) * np.eye(n)
    d = np.sqrt(np.diag(c))
    cov = c / np.outer(d, d) * np.outer(vols, vols)
    budgets = rng.uniform(0.05, 1.0, n) if draw(st.booleans()) else np.ones(n)
    return cov, budgets / budgets.sum()


@settings(max_examples=300)
@given(case=pd_matrices())
def test_erc_risk_contributions_equal_budgets(case) -> None:
    cov, b = case
    w = risk_parity_weights(cov, b)
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w > 0).all()
    assert np.max(np.abs(risk_contributions(w, cov) - b)) < 1e-5
    assert np.max(np.abs(w - ccd_risk_parity(cov, b))) < 1e-5


def test_erc_seed_cases() -> None:
    # two pods of equal vol -> 50/50
    assert np.allclose(risk_parity_weights(np.diag([0.09, 0.09])), [0.5, 0.5], atol=1e-9)
    # vol 2:1 -> more to the low-vol pod (inverse vol for two assets)
    w = risk_parity_weights(np.diag([0.16, 0.04]))
    assert np.allclose(w, [1 / 3, 2 / 3], atol=1e-9)
    # with two assets ERC is inverse vol whatever the correlation
    for rho in (-0.5, 0.9):
        cov = np.array([[0.16, rho * 0.4 * 0.2], [rho * 0.4 * 0.2, 0.04]])
        assert np.allclose(risk_parity_weights(cov), [1 / 3, 2 / 3], atol=1e-9)

    # three equal-vol pods, two of them correlated 0.9: the independent one gets the most
    def cov3(rho: float) -> np.ndarray:
        c = np.eye(3)
        c[0, 1] = c[1, 0] = rho
        return c * 0.09

    hi = risk_parity_weights(cov3(0.9))
    assert hi[2] > hi[0] and hi[0] == pytest.approx(hi[1])
    # negatively correlated pair (-0.5): hedging each other, they get more than the third
    lo = risk_parity_weights(cov3(-0.5))
    assert lo[0] > lo[2]


def test_kelly_rules() -> None:
    cov = np.diag([0.04, 0.04, 0.04])
    w = kelly_weights(np.array([0.08, 0.02, -0.05]), cov, budget=1.0, max_volatility=10.0)
    assert w[0] > w[1] > 0 and w[2] == 0.0
    assert (
        np.allclose(w[:2], [2.0, 0.5], atol=1e-5) is False or w.sum() <= 1.0 + 1e-9
    )  # budget binds
    assert w.sum() <= 1.0 + 1e-7
    higher = kelly_weights(np.array([0.12, 0.02, -0.05]), cov, budget=1.0, max_volatility=10.0)
    assert higher[0] > w[0]  # a higher expected return raises the pod's weight
    assert np.all(kelly_weights(np.array([-0.1, -0.2]), np.eye(2) * 0.1, 1.0, 0.2) == 0)
    capped = kelly_weights(np.array([0.5, 0.5]), np.eye(2) * 0.04, budget=1.0, max_volatility=0.1)
    assert np.sqrt(capped @ (np.eye(2) * 0.04) @ capped) <= 0.1 + 1e-6
    # unconstrained optimum Σ⁻¹μ when nothing binds
    free = kelly_weights(
        np.array([0.004, 0.002]), np.diag([0.04, 0.04]), budget=1.0, max_volatility=10.0
    )
    assert np.allclose(free, [0.1, 0.05], atol=1e-6)


@pytest.mark.parametrize(("rule", "leg"), [("plan", 0.25), ("full", 1.0)])
def test_adaptive_kelly_ramp(rule: str, leg: float) -> None:
    """The plan's rule (§4.3): f_frac = kelly_fraction · f*, α = confidence · kelly_fraction,
    w = (1 − α)·w_rp + α·f_frac; "full" blends f* itself (a leg 4× the plan's at 0.25)."""
    w_rp, w_k = np.array([0.6, 0.4]), np.array([0.5, 0.0])
    assert np.array_equal(adaptive_kelly_blend(w_rp, w_k, 0.8, 0, 0.25, 180, rule), w_rp)
    full = 0.75 * w_rp + 0.25 * leg * w_k / 0.8
    assert np.allclose(adaptive_kelly_blend(w_rp, w_k, 0.8, 180, 0.25, 180, rule), full)
    assert np.allclose(adaptive_kelly_blend(w_rp, w_k, 0.8, 1000, 0.25, 180, rule), full)
    half = 0.875 * w_rp + 0.125 * leg * w_k / 0.8
    assert np.allclose(adaptive_kelly_blend(w_rp, w_k, 0.8, 90, 0.25, 180, rule), half)


def test_kelly_weights_default_volatility_and_checked_covariance() -> None:
    """Issue #25: the default max_volatility (inf, no cap) solves; a covariance that is not a
    covariance (asymmetric, wrong shape, NaN) is a ValueError, not silently symmetrised."""
    w = kelly_weights(np.array([0.02, 0.01]), np.diag([0.04, 0.09]))  # Σ⁻¹μ within the budget
    assert np.allclose(w, [0.5, 0.01 / 0.09], atol=1e-6)
    with pytest.raises(ValueError, match="not symmetric"):
        kelly_weights(np.array([0.1, 0.2]), np.array([[0.04, 0.03], [0.0, 0.09]]))
    with pytest.raises(ValueError, match="shape"):
        kelly_weights(np.array([0.1, 0.2]), np.eye(3))
    with pytest.raises(ValueError, match="non-finite"):
        risk_parity_weights(np.array([[0.04, np.nan], [np.nan, 0.09]]))
    with pytest.raises(ValueError, match="not symmetric"):
        risk_parity_weights(np.array([[0.04, 0.03], [0.0, 0.09]]))


@settings(max_examples=500)
@given(
    w=st.lists(st.floats(0, 10), min_size=1, max_size=8),
    budget=st.floats(0, 1),
    data=st.data(),
)
def test_water_fill_bounds(w: list[float], budget: float, data) -> None:
    n = len(w)
    hi = np.array(data.draw(st.lists(st.floats(0.01, 1), min_size=n, max_size=n)))
    lo = np.minimum(np.array(data.draw(st.lists(st.floats(0, 0.3), min_size=n, max_size=n))), hi)
    f = water_fill(np.array(w), budget, lo, hi)
    assert (f >= -1e-15).all() and (f <= hi + 1e-12).all()
    assert f.sum() <= budget + 1e-12
    # excess goes only to pods with weight (weights below 1e-12 of the largest count as zero)
    if lo.sum() <= budget <= hi.sum() and min(w) > 1e-12 * max(w):
        assert f.sum() == pytest.approx(budget, abs=1e-9)
        assert (f >= lo - 1e-12).all()


def _water_fill_bisection(w, budget, lo, hi):
    """The slow reference: bisection on the level (what water_fill did before issue #26)."""
    w = np.clip(w, 0.0, None)
    lo = np.minimum(lo, hi)
    if lo.sum() >= budget:
        return lo * (budget / lo.sum())
    if hi.sum() <= budget:
        return hi.copy()
    w = w / w.max() if w.max() > 0 else np.ones(w.size)
    low, high = 0.0, 1.0
    while np.clip(high * w, lo, hi).sum() < budget and high < 1e300:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if np.clip(mid * w, lo, hi).sum() < budget else (low, mid)
    f = np.clip(high * w, lo, hi)
    return f * (budget / f.sum()) if f.sum() > budget else f


@settings(max_examples=500)
@given(
    w=st.lists(st.floats(0, 10), min_size=1, max_size=12),
    budget=st.floats(0.001, 1),
    data=st.data(),
)
def test_water_fill_equals_bisection(w: list[float], budget: float, data) -> None:
    """The exact piecewise-linear level equals 200 steps of bisection (to round-off), and pods
    strictly inside their bounds share one level λ (the water-filling condition)."""
    n = len(w)
    hi = np.array(data.draw(st.lists(st.floats(0.01, 1), min_size=n, max_size=n)))
    lo = np.minimum(np.array(data.draw(st.lists(st.floats(0, 0.3), min_size=n, max_size=n))), hi)
    positive = [x for x in w if x > 0]
    if positive and min(positive) < 1e-12 * max(positive):
        return  # (weights ~1e-308 of the largest: the bisection's level overflows; see above)
    f = water_fill(np.array(w), budget, lo, hi)
    ref = _water_fill_bisection(np.array(w), budget, lo, hi)
    np.testing.assert_allclose(f, ref, rtol=1e-9, atol=1e-12)
    inside = (f > lo + 1e-9) & (f < hi - 1e-9) & (np.array(w) > 0)
    if inside.sum() >= 2 and f.sum() > budget - 1e-12:
        levels = f[inside] / np.array(w)[inside]
        np.testing.assert_allclose(levels, levels[0], rtol=1e-9)


def _allocator(
    method: str = "risk_parity", n: int = 4, max_vol: float = 100.0, **orch
) -> Allocator:
    pods = [
        {
            "pod_id": f"p{i}",
            "strategy": "tsmom",
            "symbols": ["BTC/USDT"],
            "initial_fraction": 0.1,
            "min_fraction": 0.05,
            "max_fraction": 0.5,
        }
        for i in range(n)
    ]
    cfg = parse_config(
        {
            "orchestrator": {
                "allocation_method": method,
                "risk": {"max_portfolio_volatility": max_vol},
                **orch,
            },
            "pods": pods,
        }
    )
    return Allocator(cfg, [p.pod_id for p in cfg.pods])


def _navs(rng: np.random.Generator, days: int, n: int) -> np.ndarray:
    r = rng.normal(0.0005, 0.02, (days, n)) * rng.uniform(0.5, 2, n)
    return np.vstack([np.ones(n), np.cumprod(1 + r, axis=0)])


@settings(max_examples=150)
@given(
    seed=st.integers(0, 2**31),
    method=st.sampled_from(["equal_weight", "inverse_volatility", "risk_parity", "adaptive_kelly"]),
    states=st.lists(
        st.sampled_from([INCUBATION, PRODUCTION, WARNING, PROBATION, RETIRED]),
        min_size=4,
        max_size=4,
    ),
    days=st.integers(0, 200),
    max_vol=st.sampled_from([0.05, 0.2, 100.0]),
)
def test_allocations_respect_bounds_and_clamps(
    seed: int, method: str, states: list[int], days: int, max_vol: float
) -> None:
    rng = np.random.default_rng(seed)
    a = _allocator(method, max_vol=max_vol)
    fractions = rng.uniform(0.05, 0.3, 4)
    st_arr = np.array(states, dtype=np.int8)
    f, _, _ = a.allocate(
        np.diff(_navs(rng, days, 4), axis=0) / _navs(rng, days, 4)[:-1],
        st_arr,
        fractions,
        0,
        np.full(4, days),
    )
    assert (f >= 0).all() and (f <= a.hi + 1e-12).all() and f.sum() <= 1 + 1e-12
    if max_vol == 100.0:  # no volatility scaling: fixed pods sit exactly at their clamp
        for p, s in enumerate(st_arr):
            expect = {
                RETIRED: 0.0,
                PROBATION: a.lo[p],
                WARNING: fractions[p],
                INCUBATION: a.initial[p],
            }.get(int(s))
            if expect is not None:
                assert f[p] == pytest.approx(expect)


def test_singular_covariance_falls_back_to_inverse_vol() -> None:
    a = _allocator("risk_parity", n=3)
    rng = np.random.default_rng(1)
    rets = np.hstack([rng.normal(0, 0.02, (60, 2)), np.zeros((60, 1))])  # p2 never traded
    f, _, fallback = a.allocate(rets, np.full(3, PRODUCTION, dtype=np.int8), np.full(3, 0.3), 0)
    assert fallback == "singular covariance (zero variance for p2): inverse volatility"
    assert np.isfinite(f).all() and f.sum() <= 1
    # collinear pods are fine: Ledoit-Wolf shrinkage keeps Σ positive definite
    r = rng.normal(0, 0.02, (60, 1))
    _, _, fallback = a.allocate(
        np.hstack([r, 2 * r, rng.normal(0, 0.01, (60, 1))]),
        np.full(3, PRODUCTION, dtype=np.int8),
        np.full(3, 0.3),
        0,
    )
    assert fallback is None


def test_short_history_falls_back_and_records_it() -> None:
    a = _allocator("risk_parity", n=2)
    rets = np.random.default_rng(2).normal(0, 0.02, (10, 2))
    _, _, fallback = a.allocate(rets, np.full(2, PRODUCTION, dtype=np.int8), np.full(2, 0.3), 0)
    assert fallback == "10 < min_history 30 days: inverse volatility"


def test_failed_solve_falls_back_and_is_recorded() -> None:
    a = _allocator("risk_parity", n=3)
    a.cache = ProblemCache(max_iter=1)  # Clarabel really stops at its iteration limit
    rets = np.random.default_rng(3).normal(0, 0.02, (90, 3))
    f, _, fallback = a.allocate(rets, np.full(3, PRODUCTION, dtype=np.int8), np.full(3, 0.3), 0)
    assert (
        fallback is not None
        and fallback.startswith("ERC status user_limit")
        and "inverse volatility" in fallback
    )
    assert np.isfinite(f).all() and f.sum() <= 1


def test_cholesky_rejects_singular() -> None:
    from orchestra.allocation.moments import cholesky_factor

    with pytest.raises(SingularCovariance):
        cholesky_factor(np.ones((2, 2)))
    with pytest.raises(SingularCovariance):
        cholesky_factor(np.diag([1.0, 0.0]))


def test_problems_are_dpp_and_resolve_without_recompiling() -> None:
    rng = np.random.default_rng(4)
    for problem_cls in (ErcProblem, KellyProblem):
        prob = problem_cls(4)
        assert prob.problem.is_dcp(dpp=True)
    erc = ErcProblem(4)
    a = rng.normal(size=(4, 6))
    cov = a @ a.T / 6 + 0.05 * np.eye(4)
    erc.solve(np.linalg.cholesky(cov), np.full(4, 0.25))
    compiled = erc.problem._cache.param_prog
    assert compiled is not None
    for _ in range(3):
        a = rng.normal(size=(4, 6))
        cov = a @ a.T / 6 + 0.05 * np.eye(4)
        w = erc.solve(np.linalg.cholesky(cov), np.full(4, 0.25))
        assert erc.problem._cache.param_prog is compiled  # same compiled program, new parameters
        assert np.max(np.abs(risk_contributions(w, cov) - 0.25)) < 1e-9


def test_problem_cache_rebuilds_only_when_the_pod_set_changes() -> None:
    cache = ProblemCache()
    p1 = cache.erc(("a", "b"))
    assert cache.erc(("a", "b")) is p1 and cache.builds == 1
    cache.erc(("a", "c"))
    assert cache.builds == 2


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(2, 120),
    p=st.integers(2, 12),
    seed=st.integers(0, 2**32 - 1),
    collinear=st.booleans(),
)
def test_numpy_ledoit_wolf_equals_scikit_learn_bit_for_bit(n, p, seed, collinear) -> None:
    """The runtime does not import scikit-learn (2 s per process); its Ledoit-Wolf is the
    reference, and ours performs the same float operations."""
    from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

    from orchestra.allocation.moments import ledoit_wolf

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(1e-4, 1.0, p)
    if collinear:
        x[:, 1] = 2.0 * x[:, 0]
    cov, shrink = ledoit_wolf(x)
    ref_cov, ref_shrink = sk_ledoit_wolf(x)
    assert np.array_equal(cov, ref_cov) and shrink == ref_shrink


def test_methods_without_a_solver_never_import_cvxpy() -> None:
    """Issue #26: cvxpy (1.1 s of a warm start, most of it scipy.stats) is imported at the first
    problem built; equal weight and inverse volatility never build one."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        "from orchestra.config import load_config, parse_config\n"
        "from orchestra import run_backtest\n"
        "raw = load_config('configs/example.yaml').model_dump(mode='json')\n"
        "for m in ('equal_weight', 'inverse_volatility'):\n"
        "    raw['orchestrator']['allocation_method'] = m\n"
        "    run_backtest(parse_config(raw))\n"
        "print('cvxpy' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("seed", range(6))
def test_the_allocators_ledoit_wolf_kernel_equals_the_numpy_one(seed: int) -> None:
    """Issue #26: the numba loops the allocator uses give the numpy (scikit-learn-equal)
    estimator's Σ and shrinkage to round-off, collinear pods included."""
    from orchestra.allocation.moments import ledoit_wolf, ledoit_wolf_loops

    rng = np.random.default_rng(seed)
    for n, p in [(90, 3), (30, 2), (365, 10), (5, 4), (200, 6)]:
        x = rng.standard_t(4, (n, p)) * 0.02
        if seed % 2:
            x[:, 1] = x[:, 0]
        cov, shrink = ledoit_wolf(x)
        fast, fast_shrink = ledoit_wolf_loops(x)
        np.testing.assert_allclose(fast, cov, rtol=1e-12, atol=1e-12 * np.abs(cov).max())
        assert fast_shrink == pytest.approx(shrink, rel=1e-10, abs=1e-12)
        chol = cholesky_factor(shrunk_covariance(x)) if not seed % 2 else None
        if chol is not None:
            np.testing.assert_allclose(chol @ chol.T, shrunk_covariance(x), rtol=1e-12)


def test_the_monitors_average_correlation_equals_numpys() -> None:
    """Issue #26: the numba average correlation equals ``np.corrcoef``'s off-diagonal mean over
    the moving pods (flat pods left out; NaN with fewer than two moving pods)."""
    from orchestra.risk import average_correlation

    def reference(r: np.ndarray) -> float:
        keep = r.std(axis=0) > 0
        if keep.sum() < 2:
            return float("nan")
        c = np.corrcoef(r[:, keep].T)
        return float(np.mean(c[np.triu_indices(c.shape[0], 1)]))

    rng = np.random.default_rng(4)
    for k in range(200):
        r = rng.normal(0.0, 0.02, (int(rng.integers(3, 200)), int(rng.integers(2, 8))))
        if k % 3 == 0:
            r[:, 0] = 0.0  # a flat pod
        if k % 5 == 0:
            r[:, 1] = r[:, -1]  # a perfectly correlated pair
        if k % 7 == 0:
            r[:, 1:] = 0.0  # one moving pod: undefined
        got, want = average_correlation(r), reference(r)
        assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12)


def test_the_singularity_check_agrees_with_lapacks_eigenvalues() -> None:
    """Issue #26: the numba check's Jacobi eigenvalues equal LAPACK's (``np.linalg.eigvalsh``)
    to round-off of the largest, and decide singular exactly when LAPACK's would, near-collinear
    pods included."""
    from orchestra.allocation.moments import cholesky_loops

    rng = np.random.default_rng(3)
    for k in range(600):
        p = int(rng.integers(2, 12))
        x = rng.normal(0.0, 0.02, (int(rng.integers(5, 200)), p))
        if k % 4 == 0:
            x[:, 1] = x[:, 0] * (1 + 1e-7 * rng.normal())
        c = shrunk_covariance(x)
        code, lo, hi, chol = cholesky_loops(np.ascontiguousarray(c), 1e-10)
        e = np.linalg.eigvalsh((c + c.T) / 2)
        assert abs(lo - e[0]) <= 1e-13 * e[-1] and abs(hi - e[-1]) <= 1e-13 * e[-1]
        assert (code == 3) == (e[0] <= 1e-10 * e[-1])
        if code == 0:
            np.testing.assert_allclose(chol, np.linalg.cholesky((c + c.T) / 2), rtol=1e-12)


def test_cvxpy_imports_without_scipy_stats_and_the_stats_atom_still_works() -> None:
    """import_cvxpy defers scipy.stats (0.4 s of a fresh process) past cvxpy's import; the one
    atom that uses it still evaluates, and a later ``import scipy.stats`` is the real module."""
    code = (
        "import sys\n"
        "from orchestra.allocation.problems import import_cvxpy\n"
        "cp = import_cvxpy()\n"
        "assert 'scipy.stats' not in sys.modules, 'scipy.stats imported'\n"
        "import scipy, numpy as np\n"
        "from cvxpy.atoms.quantum_rel_entr import entropy\n"
        "assert abs(entropy([0.2, 0.8]) - 0.5004024235381879) < 1e-15\n"
        "import scipy.stats\n"
        "assert hasattr(scipy.stats, 'norm') and scipy.stats.entropy([0.2, 0.8]) == entropy([0.2, 0.8])\n"
        "x = cp.Variable(2); p = cp.Problem(cp.Minimize(cp.sum_squares(x - 1)))\n"
        "p.solve(solver=cp.CLARABEL); assert np.allclose(x.value, 1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 9),
    seed=st.integers(0, 2**32 - 1),
    zeros=st.booleans(),
    kelly=st.booleans(),
)
def test_stuffing_equals_cvxpy_bit_for_bit(n: int, seed: int, zeros: bool, kelly: bool) -> None:
    """A re-solve through _Stuffing (cvxpy's parameter map read off get_problem_data, applied in
    numpy) gives cvxpy's own data and solution, byte for byte: Cholesky factors with zero upper
    triangles, zero budgets/means, both problems, every size."""
    from orchestra.allocation.problems import SOLVER_OPTS, _numbers

    rng = np.random.default_rng(seed)
    cls = KellyProblem if kelly else ErcProblem
    fast, plain = cls(n), cls(n)
    plain._fast_built = True  # problem.solve every time
    stuffing = fast._stuffing()
    assert stuffing is not None  # both shipped problems map: the fast path is really in use
    a = rng.normal(size=(n, n + 3))
    chol = np.linalg.cholesky(a @ a.T / (n + 3) * 0.04 + 1e-4 * np.eye(n))
    if zeros:
        chol[rng.integers(0, n), :] *= 0.0  # -0.0 and 0.0 entries both (signs of zero matter)
        chol[np.diag_indices(n)] = np.abs(np.diag(chol)) + 0.01
    if kelly:
        mu = rng.normal(0.05, 0.1, n)
        if zeros:
            mu[0] = 0.0
        args = (mu, chol, 1.0, 0.25)
        values = np.concatenate([mu, chol.ravel(), [1.0, 0.25]])
        params = [plain.mu, plain.L, plain.budget, plain.max_vol]
    else:
        b = rng.dirichlet(np.ones(n))
        args = (chol, b)
        values = np.concatenate([chol.ravel(), b])
        params = [plain.L, plain.b]
    try:
        want = plain._solve(*args)
    except SolveError as exc:
        with pytest.raises(SolveError, match=str(exc)[:20]):
            fast._solve(*args)
        return
    assert fast._solve(*args).tobytes() == want.tobytes()
    type(stuffing)._set(params, values)
    data, _, _ = plain.problem.get_problem_data(
        "CLARABEL", solver_opts={**SOLVER_OPTS, "max_iter": 500}
    )
    numbers, structure = _numbers(data)
    assert structure == stuffing.structure
    assert stuffing.numbers(values).tobytes() == numbers.tobytes()


def test_stuffing_refuses_what_it_cannot_reproduce() -> None:
    """A data number that is a constant plus a Parameter (b = p + 1 here) is not mapped: build
    returns None, and such a problem is solved by problem.solve."""
    import cvxpy as cp

    from orchestra.allocation.problems import SOLVER_OPTS, _Stuffing

    p = cp.Parameter(2)
    x = cp.Variable(2)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x)), [x >= p + 1])
    assert _Stuffing.build(prob, [p], SOLVER_OPTS, np.array([0.5, 2.0])) is None
    q = cp.Parameter(2)
    ok = cp.Problem(cp.Minimize(cp.sum_squares(x)), [x >= q])
    fast = _Stuffing.build(ok, [q], SOLVER_OPTS, np.array([0.5, 2.0]))
    assert fast is not None
    fast.solve(np.array([3.0, -1.0]), SOLVER_OPTS)
    assert np.allclose(x.value, [3.0, 0.0], atol=1e-7)


def test_one_compiled_problem_per_size_serves_every_pod_set() -> None:
    from orchestra.allocation.problems import compiled

    a, b = ProblemCache(), ProblemCache()
    assert a.erc(("p", "q")) is b.erc(("r", "s")) is compiled("erc", 2, 500)
    assert a.erc(("p", "q", "r")) is not a.erc(("p", "q")) and a.builds == 2
    assert ProblemCache(max_iter=1).erc(("p", "q")) is not a.erc(("p", "q"))


@pytest.mark.parametrize("trigger", ["calendar", "hybrid", "threshold"])
@pytest.mark.parametrize(
    ("calendar_days", "timeframe"), [(7, "1h"), (1, "1d"), (30, "1d"), (10, "3d")]
)
def test_the_stop_schedule_is_the_calendar_and_is_remembered_per_schedule(
    trigger: str, calendar_days: int, timeframe: str
) -> None:
    """The day ends where the bar loop returns to the allocator (``stop_kinds``, remembered per
    schedule so a sweep's points compute them once): the first day end always, every calendar
    date always (calendar and hybrid triggers: the first day end on or after each ``calendar_days``
    calendar days, a day end covering ``period`` days), the others only for a PRC drift
    (threshold and hybrid). A longer run extends the remembered kinds; a shorter one reads
    them, and a second allocator of the same schedule gets the same."""
    from orchestra.kernels.state import STOP_ALWAYS, STOP_IF_SHARED, STOP_NONE

    cfg = parse_config(
        {
            "data": {"timeframe": timeframe},
            "orchestrator": {"rebalance": {"trigger": trigger, "calendar_days": calendar_days}},
            "pods": [{"pod_id": "p", "strategy": "tsmom", "symbols": ["BTC/USDT"],
                      "timeframe": timeframe}],
        }
    )  # fmt: skip
    a = Allocator(cfg, [p.pod_id for p in cfg.pods])
    period = a.period

    def expected(d: int) -> int:
        covered_before, covered = d * period, (d + 1) * period  # calendar days at each end
        due = covered // calendar_days > covered_before // calendar_days
        if d == 0 or (trigger != "threshold" and due):  # the first day end: always
            return STOP_ALWAYS
        return STOP_IF_SHARED if trigger != "calendar" else STOP_NONE

    short = a.stop_kinds(0, 40)
    assert list(short) == [expected(d) for d in range(40)]
    assert list(a.stop_kinds(30, 400)) == [expected(d) for d in range(30, 400)]
    assert Allocator(cfg, [p.pod_id for p in cfg.pods]).stop_kinds(0, 40) == short
    assert [a.stop_kind(d) for d in (0, 1, 6, 7, 399)] == [expected(d) for d in (0, 1, 6, 7, 399)]
    assert a.calendar_due(0) and (trigger == "threshold" or STOP_ALWAYS in short[1:])
