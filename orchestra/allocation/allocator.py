"""The allocator: methods, lifecycle clamps, water-filling, the volatility cap and triggers.

At a rebalance (SPEC §7):

1. **fixed pods** take their lifecycle clamp: retired → 0, probation → ``min_fraction``, warning →
   its warning fraction (50 % of its fraction when it entered warning), incubation →
   ``initial_fraction`` (0 before the pod joins);
2. the **production pods** share ``budget = 1 − Σ fixed`` by the configured method, computed on
   their daily standalone returns over ``allocation_lookback`` days;
3. :func:`water_fill` clamps them to ``[min_fraction, max_fraction]``, re-distributing the excess
   among unclamped pods in proportion to their weights; what cannot be placed stays as cash;
4. if the ex-ante portfolio volatility ``√(fᵀΣf)`` exceeds ``max_portfolio_volatility``, every
   fraction is scaled down by the ratio.

Fallbacks (recorded with their reason in ``allocations.fallback``): fewer than ``min_history``
days, or a singular Σ → inverse volatility; a solver failure → inverse volatility, then equal
weight.

Triggers (SPEC §7.3): ``calendar`` every ``calendar_days`` days; ``threshold`` when
``max_i |PRC_i − b_i| > drift_threshold`` over the production pods; ``hybrid`` either. The PRC is
computed from the pods' *current* shares of equity (fractions drift with performance between
rebalances) and the current Σ; the budget ``b_i`` is the PRC the last rebalance set. (Using the
method's nominal budgets instead would re-trigger every day whenever a ``max_fraction`` clamp
makes them unreachable.) The very first day end is also a rebalance.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from orchestra.allocation.moments import (
    SINGULAR_REL_TOL,
    SingularCovariance,
    cholesky_factor,
    daily_returns,
    pod_shares_nb,
    prc_drift,
    risk_contributions,
    shrunk_covariance,
)
from orchestra.allocation.problems import ProblemCache, Solutions, SolveError
from orchestra.kernels.state import (
    INCUBATION,
    PROBATION,
    PRODUCTION,
    RETIRED,
    STOP_ALWAYS,
    STOP_IF_SHARED,
    STOP_NONE,
    WARNING,
)
from orchestra.timeframes import DAYS_PER_YEAR, days_to_periods, period_days

_CACHE = ProblemCache()  # module-level cache for the public one-shot functions


def risk_parity_weights(cov: np.ndarray, budgets: np.ndarray | None = None) -> np.ndarray:
    """ERC weights (sum to 1) for covariance ``cov`` ``(n, n)`` and risk ``budgets`` ``(n,)``.

    Solves Spinu's convex problem with cvxpy + Clarabel (see :mod:`problems`). Budgets default to
    equal and are normalised to sum to 1. Raises ``SingularCovariance`` or ``SolveError``.

    >>> w = risk_parity_weights(np.diag([0.04, 0.16]))
    >>> np.round(w, 6).tolist()
    [0.666667, 0.333333]
    """
    cov = np.asarray(cov, dtype=float)
    n = cov.shape[0]
    _check_covariance(cov, n)
    b = np.full(n, 1.0 / n) if budgets is None else np.asarray(budgets, dtype=float)
    b = b / b.sum()
    chol = cholesky_factor(cov)
    return _CACHE.erc(tuple(range(n))).solve(chol, b)


def _check_covariance(cov: np.ndarray, n: int) -> None:
    """A covariance a user passes in: ``(n, n)``, finite and symmetric (to 1e-8 of its scale)."""
    if cov.shape != (n, n):
        raise ValueError(f"covariance has shape {cov.shape}; expected ({n}, {n})")
    if not np.all(np.isfinite(cov)):
        raise ValueError("covariance has non-finite entries")
    scale = float(np.max(np.abs(cov))) if cov.size else 0.0
    gap = float(np.max(np.abs(cov - cov.T))) if cov.size else 0.0
    if gap > 1e-8 * scale:
        raise ValueError(
            f"covariance is not symmetric (largest |Σ − Σᵀ| = {gap:.3g}): pass a covariance matrix"
        )


def kelly_weights(
    mu: np.ndarray, cov: np.ndarray, budget: float = 1.0, max_volatility: float = np.inf
) -> np.ndarray:
    """Long-only Kelly weights: ``max μᵀw − ½wᵀΣw`` s.t. ``w ≥ 0, Σw ≤ budget, √(wᵀΣw) ≤ max_vol``.

    ``mu`` (annualised expected returns, ``(n,)``) and ``cov`` (annualised, ``(n, n)``). Pods with
    ``μ ≤ 0`` get 0; if every ``μ ≤ 0`` the result is all zeros (the Kelly share stays in cash).

    >>> kelly_weights(np.array([0.1, -0.1]), np.eye(2) * 0.25, budget=1.0).round(6).tolist()
    [0.4, 0.0]
    """
    mu = np.asarray(mu, dtype=float)
    cov = np.asarray(cov, dtype=float)
    n = mu.shape[0]
    _check_covariance(cov, n)
    if not np.all(np.isfinite(mu)):
        raise ValueError("mu has non-finite entries")
    out = np.zeros(n)
    pos = mu > 0
    if not pos.any() or budget <= 0:
        return out
    idx = np.flatnonzero(pos)
    chol = cholesky_factor(cov[np.ix_(idx, idx)])
    vol_cap = float(max_volatility) if np.isfinite(max_volatility) else 1e6
    out[idx] = _CACHE.kelly(tuple(range(idx.size))).solve(mu[idx], chol, float(budget), vol_cap)
    return out


def adaptive_kelly_blend(
    w_rp: np.ndarray,
    w_kelly: np.ndarray,
    budget: float,
    live_days: int,
    kelly_fraction: float,
    ramp: int,
    rule: str = "plan",
) -> np.ndarray:
    """``(1 − α)·w_rp + α·k·w_kelly/budget``, ``α = kelly_fraction · min(live_days / ramp, 1)``.

    ``rule="plan"`` (the original plan's, the default): the Kelly leg is fractional Kelly,
    ``k = kelly_fraction``, so ``kelly_fraction`` shrinks both the leg and its blend weight.
    ``rule="full"``: ``k = 1``, the full (constrained) Kelly weights blended once — at
    ``kelly_fraction: 0.25`` a Kelly leg 4× the plan's.

    ``w_rp`` sums to 1 (shares of the budget); ``w_kelly`` is in fractions of equity (sums to at
    most ``budget``), so the result, in shares of the budget, may sum below 1: the Kelly part's
    unused share stays in cash. ``live_days`` is the shortest track record among the blended pods.

    >>> rp, k = np.array([0.5, 0.5]), np.array([0.4, 0.0])
    >>> adaptive_kelly_blend(rp, k, 1.0, 0, 0.25, 180).tolist()  # no track record: risk parity
    [0.5, 0.5]
    >>> adaptive_kelly_blend(rp, k, 1.0, 400, 0.25, 180).tolist()  # 0.75·0.5 + 0.25·(0.25·0.4)
    [0.4, 0.375]
    >>> adaptive_kelly_blend(rp, k, 1.0, 400, 0.25, 180, rule="full").tolist()  # + 0.25·0.4
    [0.475, 0.375]
    """
    if rule not in ("plan", "full"):
        raise ValueError(f"rule {rule!r}: use 'plan' or 'full'")
    alpha = kelly_fraction * min(max(live_days, 0) / ramp, 1.0)
    leg = kelly_fraction if rule == "plan" else 1.0
    kelly_share = leg * w_kelly / budget if budget > 0 else np.zeros_like(w_kelly)
    return (1.0 - alpha) * np.asarray(w_rp, dtype=float) + alpha * kelly_share


def inverse_volatility_weights(vols: np.ndarray) -> np.ndarray:
    """Shares ∝ 1/σ (sum to 1); equal shares if any σ is zero or unknown."""
    v = np.asarray(vols, dtype=float)
    if v.size == 0:
        return v
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        return np.full(v.size, 1.0 / v.size)
    inv = 1.0 / v
    return inv / inv.sum()


def water_fill(weights: np.ndarray, budget: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Scale ``weights`` to ``budget`` and clamp to ``[lo, hi]``, re-distributing the excess.

    Water-filling: ``f_i = clip(λ·w_i, lo_i, hi_i)`` with the level ``λ`` chosen so that
    ``Σ f = budget`` — a clamped pod's excess (or shortfall) goes to the unclamped pods in
    proportion to their weights, until no bound is violated. ``Σ f(λ)`` is piecewise linear and
    nondecreasing in ``λ`` with breakpoints at ``lo_i/w_i`` and ``hi_i/w_i``, so ``λ`` is found
    exactly: evaluate the sum at the breakpoints, then solve the linear piece that crosses the
    budget (a bisection of 200 steps did this before; it was a third of a sweep's time). If
    every pod is at its max and budget remains, the rest stays unallocated; if the minimums
    alone exceed the budget, they are scaled down to fit (Σ f ≤ budget always).

    >>> water_fill(np.array([0.8, 0.1, 0.1]), 1.0, np.zeros(3), np.full(3, 0.5)).round(6).tolist()
    [0.5, 0.25, 0.25]
    """
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    hi = np.asarray(hi, dtype=float)
    lo = np.minimum(np.asarray(lo, dtype=float), hi)
    n = w.size
    if n == 0 or budget <= 0:
        return np.zeros(n)
    if lo.sum() >= budget:
        return lo * (budget / lo.sum())
    if hi.sum() <= budget:
        return hi.copy()
    w = w / w.max() if w.max() > 0 else np.ones(n)  # scale-free (and safe for subnormal weights)
    pos = w > 0  # a pod of zero weight stays at its minimum whatever the level
    with np.errstate(over="ignore"):
        breaks = np.unique(np.concatenate([lo[pos] / w[pos], hi[pos] / w[pos]]))
    breaks = breaks[np.isfinite(breaks)]
    placed = np.clip(breaks[:, None] * w, lo, hi).sum(axis=1)  # Σ f at each breakpoint
    k = int(np.searchsorted(placed, budget))  # the first breakpoint placing the whole budget
    if k >= breaks.size:  # past the last breakpoint (one exists: 0 ≤ lo/w)
        f = np.clip(breaks[-1] * w, lo, hi)
        # pods whose max no finite level reaches (a weight ~1e-308 of the largest) share what
        # is left in proportion to their weights; with none, it stays unallocated
        free = pos & (f < hi)
        if free.any():
            share = w[free] / w[free].sum()
            f[free] = np.minimum(f[free] + (budget - f.sum()) * share, hi[free])
        return f
    if k == 0:
        level = float(breaks[0])
    else:  # Σ f is linear between breakpoints k-1 and k
        a, b = float(breaks[k - 1]), float(breaks[k])
        level = a + (budget - placed[k - 1]) * (b - a) / (placed[k] - placed[k - 1])
    f = np.clip(level * w, lo, hi)
    total = f.sum()
    if total > budget:
        f *= budget / total
    return f


_MOMENTS = Solutions(size=8192)


class Moments:
    """Σ of a returns window and, computed at the first ask, its Cholesky factor (or the
    :class:`SingularCovariance` it raised). Read-only arrays."""

    __slots__ = ("_chol", "cov")

    def __init__(self, cov: np.ndarray) -> None:
        cov.setflags(write=False)
        self.cov = cov
        self._chol: np.ndarray | SingularCovariance | None = None

    def chol(self) -> np.ndarray:
        if self._chol is None:
            try:
                self._chol = cholesky_factor(self.cov)
                self._chol.setflags(write=False)
            except SingularCovariance as exc:
                self._chol = exc
        if isinstance(self._chol, SingularCovariance):  # a fresh one (a kept instance's
            raise SingularCovariance(str(self._chol))  # traceback would grow with every raise)
        return self._chol


def window_moments(window: np.ndarray, per_year: float) -> Moments:
    """The :class:`Moments` of a returns window.

    Recalled by a digest of the window's exact bytes when this process computed them before (a
    sweep's variants see the same pod returns on many days), so the numbers are the ones a fresh
    computation gives. At most 8,192 windows (a few MB of Σ and factors for 10 pods).
    """
    w = np.ascontiguousarray(window, dtype=np.float64)
    # a 32-byte BLAKE2b digest of the bytes, not the bytes: a live process keeps this memo for
    # months, and 8,192 windows of 90 days × 10 pods would hold 60 MB of keys
    digest = hashlib.blake2b(w.tobytes(), digest_size=32).digest()
    key = ("moments", w.shape, float(per_year), digest)
    hit = _MOMENTS.get(key, copy=False)
    if hit is None:
        hit = Moments(shrunk_covariance(w, per_year))
        _MOMENTS.put(key, hit, copy=False)
    return hit


def calendar_due(day_index: int, calendar_days: float, period: float) -> bool:
    """Whether day end ``day_index`` (0 = the first; each covers ``period`` days) is a calendar
    rebalance: the first one, then the first day end on or after every ``calendar_days``
    calendar days."""
    if day_index == 0:
        return True
    done = round((day_index + 1) * period, 9)
    before = round(day_index * period, 9)
    return int(done // calendar_days) > int(before // calendar_days)


_KINDS: dict[tuple, tuple[int, ...]] = {}  # (trigger, calendar_days, period) -> stop kinds


def _stop_kinds(trigger: str, calendar_days: float, period: float, n: int) -> tuple[int, ...]:
    """:meth:`Allocator.stop_kind` of day ends ``0 .. n-1`` for this schedule, remembered and
    extended as longer runs ask."""
    key = (trigger, calendar_days, period)
    have = _KINDS.get(key, ())
    if len(have) < n:
        calendar = trigger in ("calendar", "hybrid")
        drift = STOP_IF_SHARED if trigger in ("threshold", "hybrid") else STOP_NONE
        more = tuple(
            STOP_ALWAYS
            if d == 0 or (calendar and calendar_due(d, calendar_days, period))
            else drift
            for d in range(len(have), n)
        )
        have = _KINDS[key] = have + more
    return have


@dataclass
class AllocationRecord:
    timestamp: int
    pod_id: str
    fraction: float
    method: str
    fallback: str | None
    trigger: str


@dataclass
class Allocator:
    """Stateful allocator of one run: problem cache, records, last fractions."""

    config: object
    pod_ids: list[str]
    cache: ProblemCache = field(default_factory=ProblemCache)
    allocations: list[AllocationRecord] = field(default_factory=list)
    solve_seconds: list[float] = field(default_factory=list)  # each ERC re-solve (cvxpy + polish)
    target_prc: np.ndarray | None = None  # PRC of the production pods set at the last rebalance
    target_set: tuple = ()
    _cov_memo: dict = field(default_factory=dict)
    _prod_memo: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        cfg = self.config
        o = cfg.orchestrator  # type: ignore[attr-defined]
        self.o = o
        self.pods = cfg.pods  # type: ignore[attr-defined]
        self.lo = np.array([p.min_fraction for p in self.pods])
        self.hi = np.array([p.max_fraction for p in self.pods])
        self.initial = np.array([p.initial_fraction for p in self.pods])
        # every "days" setting means calendar days, on any clock: one return per day end covers
        # `period` days (1 on a daily or finer clock, 3 on a 3d clock)
        self.period = period_days(cfg.clock_timeframe)  # type: ignore[attr-defined]
        self.per_year = DAYS_PER_YEAR / self.period
        self.lookback = days_to_periods(o.allocation_lookback, self.period)
        self.min_history = days_to_periods(o.min_history, self.period)
        # the allocator always sees pods sorted by pod_id, so the config's pod order cannot change
        # its inputs (solver round-off would otherwise differ with the permutation)
        self._rank = np.argsort(np.argsort(np.array(self.pod_ids, dtype=object)))

    def _production(self, states: np.ndarray, joined: np.ndarray | None) -> np.ndarray:
        """Indices of the production pods that have joined (canonical order; read-only).
        Remembered by the states' and joins' bytes: they change a few times a run, and a day end
        asks up to three times."""
        states = np.asarray(states)
        joins = None if joined is None else np.asarray(joined, dtype=bool).tobytes()
        key = (states.dtype.str, states.shape, states.tobytes(), joins)
        hit = self._prod_memo.get(key)
        if hit is None:
            mask = states == PRODUCTION
            if joined is not None:
                mask &= np.asarray(joined, dtype=bool)
            hit = self._canon(np.flatnonzero(mask))
            hit.setflags(write=False)
            if len(self._prod_memo) > 64:
                self._prod_memo.clear()
            self._prod_memo[key] = hit
        return hit

    def _canon(self, idx: np.ndarray) -> np.ndarray:
        return idx[np.argsort(self._rank[idx], kind="stable")] if idx.size else idx

    # ------------------------------------------------------------------ schedule
    def calendar_due(self, day_index: int) -> bool:
        """Whether day end ``day_index`` (0 = the first) is a calendar rebalance: the first one,
        then the first day end on or after every ``calendar_days`` calendar days."""
        return calendar_due(day_index, self.o.rebalance.calendar_days, self.period)

    def is_check_day(self, day_index: int) -> bool:
        """Whether the allocator looks at day ``day_index`` (0 = the first simulated day)."""
        if self.o.rebalance.trigger == "calendar":
            return self.calendar_due(day_index)
        return True

    def stop_kind(self, day_index: int) -> int:
        """What the driver needs at day end ``day_index`` (``STOP_*`` of the kernels' state):
        ``STOP_ALWAYS`` when :meth:`on_day_end` may rebalance whatever the pods' states (the
        first day end, a calendar date), ``STOP_IF_SHARED`` when only a PRC drift could (it needs
        two or more production pods: with fewer :meth:`on_day_end` returns None and changes
        nothing), ``STOP_NONE`` when nothing can happen."""
        return self.stop_kinds(day_index, day_index + 1)[0]

    def stop_kinds(self, first: int, last: int) -> tuple[int, ...]:
        """:meth:`stop_kind` of day ends ``first .. last-1``. They depend on the trigger, the
        calendar period and the clock only, so each schedule's are computed once per process
        (a sweep's points share them: ~1,800 Python calls a point on W)."""
        r = self.o.rebalance
        return _stop_kinds(r.trigger, r.calendar_days, self.period, last)[first:last]

    # ------------------------------------------------------------------ decision
    def on_day_end(
        self,
        t: int,
        timestamp: int,
        day_index: int,
        navs: np.ndarray,
        states: np.ndarray,
        fractions: np.ndarray,
        equities: np.ndarray | None = None,
        live_days: np.ndarray | None = None,
        joined: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """New fractions if a rebalance is due at this day end, else None."""
        rets_all = daily_returns(navs)
        prod = self._production(states, joined)
        calendar_due = self.calendar_due(day_index)
        trig = self.o.rebalance.trigger
        reason = None
        if trig in ("calendar", "hybrid") and calendar_due:
            reason = "calendar"
        elif trig in ("threshold", "hybrid"):
            shares = (
                fractions
                if equities is None
                else pod_shares_nb(np.ascontiguousarray(equities, dtype=np.float64))
            )
            drift = self._prc_drift(rets_all, prod, shares, t)
            if drift is not None and drift > self.o.rebalance.drift_threshold:
                reason = f"threshold (PRC drift {drift:.3f})"
        if day_index == 0 and reason is None:
            reason = "initial"
        if reason is None:
            return None
        new, method, fallback = self.allocate(rets_all, states, fractions, t, live_days, joined)
        for p, pid in enumerate(self.pod_ids):
            self.allocations.append(
                AllocationRecord(timestamp, pid, float(new[p]), method, fallback, reason)
            )
        self._set_target_prc(rets_all, prod, new, t)
        return new

    def _set_target_prc(
        self, rets_all: np.ndarray, prod: np.ndarray, f: np.ndarray, t: int
    ) -> None:
        self.target_prc, self.target_set = None, tuple(prod.tolist())
        if prod.size < 2 or rets_all.shape[0] < self.min_history or f[prod].sum() <= 0:
            return
        moments = self._moments(rets_all, prod, t)
        try:
            moments.chol()  # (a singular Σ has no target)
        except SingularCovariance:
            return
        cov = moments.cov
        self.target_prc = risk_contributions(f[prod], cov)

    def _cov(self, rets_all: np.ndarray, idx: np.ndarray, t: int) -> np.ndarray:
        """Ledoit–Wolf Σ of the pods ``idx`` over the lookback, memoised within one day end."""
        return self._moments(rets_all, idx, t).cov

    def _moments(self, rets_all: np.ndarray, idx: np.ndarray, t: int) -> Moments:
        key = (t, rets_all.shape[0], tuple(idx.tolist()))
        if key not in self._cov_memo:
            if len(self._cov_memo) > 8:
                self._cov_memo.clear()
            self._cov_memo[key] = window_moments(self._window(rets_all, idx, t), self.per_year)
        return self._cov_memo[key]

    def _window(self, rets_all: np.ndarray, idx: np.ndarray, t: int) -> np.ndarray:
        lookback = self.lookback
        return rets_all[-lookback:, idx] if rets_all.shape[0] else np.zeros((0, idx.size))

    def _prc_drift(
        self, rets_all: np.ndarray, prod: np.ndarray, f: np.ndarray, t: int
    ) -> float | None:
        """The PRC drift of the production pods at shares ``f`` (None when undefined), by
        :func:`~orchestra.allocation.moments.prc_drift`: the bar loop takes its decision
        to stop for this check with the same function on the same numbers."""
        if prod.size < 2 or rets_all.shape[0] < self.min_history:
            return None
        window = np.ascontiguousarray(self._window(rets_all, prod, t), dtype=np.float64)
        w = np.ascontiguousarray(f[prod], dtype=np.float64)
        has_target = self.target_prc is not None and self.target_set == tuple(prod.tolist())
        target = (
            np.ascontiguousarray(self.target_prc, dtype=np.float64) if has_target else np.zeros(1)
        )
        drift = prc_drift(window, self.per_year, SINGULAR_REL_TOL, w, target, has_target)
        return None if np.isnan(drift) else float(drift)

    def fixed_fractions(
        self, states: np.ndarray, fractions: np.ndarray, joined: np.ndarray | None = None
    ) -> np.ndarray:
        """Lifecycle clamps of SPEC §7.2 for the non-production pods (production → 0 here).

        A pod gets nothing before it has joined (its ``start`` date, ``joined``; all pods count
        as joined without it); an incubating pod then gets its ``initial_fraction``.
        """
        has_joined = (
            np.ones(len(self.pods), dtype=bool)
            if joined is None
            else np.asarray(joined, dtype=bool)
        )
        out = np.zeros(len(self.pods))
        for p in range(len(self.pods)):
            s = states[p]
            if not has_joined[p] or s == RETIRED:  # a pod before its start date holds nothing
                out[p] = 0.0
            elif s == PROBATION:
                out[p] = self.lo[p]
            elif s == WARNING:
                out[p] = fractions[p]
            elif s == INCUBATION:
                out[p] = self.initial[p] if has_joined[p] else 0.0
        total = out.sum()
        if total > 1.0:
            out /= total
        return out

    def allocate(
        self,
        rets_all: np.ndarray,
        states: np.ndarray,
        fractions: np.ndarray,
        t: int,
        live_days: np.ndarray | None = None,
        joined: np.ndarray | None = None,
    ) -> tuple[np.ndarray, str, str | None]:
        """Fractions for all pods (see module docstring); returns (f, method, fallback reason)."""

        method = self.o.allocation_method
        fixed = self.fixed_fractions(states, fractions, joined)
        prod = self._production(states, joined)
        f = fixed.copy()
        fallback: str | None = None
        budget = max(0.0, 1.0 - fixed.sum())
        if prod.size:
            r = self._window(rets_all, prod, t)
            w, fallback = self._method_weights(method, r, prod, budget, live_days, rets_all, t)
            # weights may sum below 1 (adaptive Kelly leaves its unused share in cash)
            placed = budget * min(1.0, float(np.sum(w)))
            f[prod] = water_fill(w, placed, self.lo[prod], self.hi[prod])
        f = self._vol_cap(f, rets_all, t)
        # the invariant the kernels rely on (SPEC §7.2): 0 ≤ f_p ≤ max_fraction_p, Σ f ≤ 1
        # (NaN → 0, then clipped: ±inf land on the bounds, as np.nan_to_num's ±max would)
        f = np.minimum(np.maximum(np.where(np.isnan(f), 0.0, f), 0.0), self.hi)
        if f.sum() > 1.0:
            f = f / f.sum()
        return f, method, fallback

    def _method_weights(
        self,
        method: str,
        r: np.ndarray,
        prod: np.ndarray,
        budget: float,
        live_days: np.ndarray | None = None,
        rets_all: np.ndarray | None = None,
        t: int = 0,
    ) -> tuple[np.ndarray, str | None]:
        n = prod.size
        equal = np.full(n, 1.0 / n)
        if method == "equal_weight" or n == 1:
            return equal, None
        vols = (
            r.std(axis=0, ddof=1) * np.sqrt(self.per_year)
            if r.shape[0] >= 2
            else np.full(n, np.nan)
        )
        ivol = inverse_volatility_weights(vols)
        ivol_reason = (
            None
            if np.all(np.isfinite(vols)) and np.all(vols > 0)
            else "no volatility yet: equal weight"
        )
        if method == "inverse_volatility":
            return ivol, ivol_reason
        if r.shape[0] < self.min_history:
            have = r.shape[0] * self.period
            return ivol, f"{have:g} < min_history {self.o.min_history} days: inverse volatility"
        try:
            # Ledoit–Wolf shrinkage makes collinear pods positive definite; a pod whose sample
            # variance is zero (it never held a position) is what leaves Σ singular here
            flat = [self.pod_ids[prod[i]] for i in np.flatnonzero(~(vols > 0))]
            if flat:
                raise SingularCovariance(f"zero variance for {', '.join(flat)}")
            if rets_all is not None:
                moments = self._moments(rets_all, prod, t)
                cov, chol = moments.cov, moments.chol()
            else:
                cov = shrunk_covariance(r, self.per_year)
                chol = cholesky_factor(cov)
        except SingularCovariance as exc:
            return ivol, f"singular covariance ({exc}): inverse volatility"
        key = tuple(self.pod_ids[i] for i in prod)
        try:
            t0 = time.perf_counter()
            erc = self.cache.erc(key)
            w_rp = erc.solve(chol, equal)
            if not erc.recalled:  # a re-solve's time (a solution recalled costs microseconds)
                self.solve_seconds.append(time.perf_counter() - t0)
        except SolveError as exc:
            return ivol, f"{exc}: inverse volatility"
        if method == "risk_parity":
            return w_rp, None
        mu = r.mean(axis=0) * self.per_year
        try:
            w_k = self._kelly(key, mu, cov, chol, budget)
        except SolveError as exc:
            return w_rp, f"{exc}: risk parity only"
        live = (
            int(np.min(live_days[prod])) if live_days is not None else int(r.shape[0] * self.period)
        )
        return adaptive_kelly_blend(
            w_rp,
            w_k,
            budget,
            live,
            self.o.kelly_fraction,
            self.o.kelly_confidence_ramp,
            self.o.kelly_rule,
        ), None

    def _kelly(
        self, key: tuple, mu: np.ndarray, cov: np.ndarray, chol: np.ndarray, budget: float
    ) -> np.ndarray:
        out = np.zeros(mu.size)
        pos = np.flatnonzero(mu > 0)
        if pos.size == 0:
            return out
        sub_key = tuple(key[i] for i in pos)
        sub_chol = chol if pos.size == mu.size else cholesky_factor(cov[np.ix_(pos, pos)])
        cap = self.o.risk.max_portfolio_volatility
        out[pos] = self.cache.kelly(sub_key).solve(mu[pos], sub_chol, budget, cap)
        return out

    def _vol_cap(self, f: np.ndarray, rets_all: np.ndarray, t: int) -> np.ndarray:
        live = self._canon(np.flatnonzero(f > 0))
        if live.size == 0 or rets_all.shape[0] < self.min_history:
            return f
        cov = self._cov(rets_all, live, t)
        vol = float(np.sqrt(max(f[live] @ cov @ f[live], 0.0)))
        cap = self.o.risk.max_portfolio_volatility
        if vol > cap:
            return f * (cap / vol)
        return f


__all__ = [
    "Allocator",
    "adaptive_kelly_blend",
    "inverse_volatility_weights",
    "kelly_weights",
    "risk_parity_weights",
    "water_fill",
]
