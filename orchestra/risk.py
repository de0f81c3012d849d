"""Portfolio risk monitoring (SPEC §10): PRC, effective N, pod correlation, and RiskAlert.

The kernels enforce the risk limits that act on trading (gross leverage cap, daily-loss circuit
breaker, portfolio drawdown action). This module measures, at each UTC day end, what a risk manager
watches: each pod's percentage risk contribution ``PRC_i = f_i (Σf)_i / fᵀΣf`` with Σ the
Ledoit–Wolf covariance of the pods' daily NAV returns over ``correlation.lookback`` days (only the
days before and including that day: no look-ahead), the effective number of strategies
``1 / Σ PRC_i²``, and the average pairwise correlation of the pods. It raises a
``correlation_stress`` alert when the average correlation exceeds ``stress_threshold`` and a
``pod_risk_concentration`` alert when one pod's PRC exceeds ``max_single_pod_risk_pct`` (each once
per episode: again only after the value has gone back below its limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from orchestra.allocation.moments import effective_n, risk_contributions, shrunk_covariance
from orchestra.kernels.moments import demeaned_into


@dataclass(frozen=True)
class RiskAlert:
    """One alert row (the ``alerts`` frame)."""

    timestamp: int
    alert_type: str
    severity: str
    message: str
    current_value: float
    threshold: float
    pod_id: str | None = None


@dataclass(frozen=True)
class RiskSnapshot:
    timestamp: int
    prc: np.ndarray
    effective_n: float
    avg_correlation: float


def average_correlation(returns: np.ndarray) -> float:
    """Mean of the off-diagonal correlations of ``(n_days, n_pods)`` returns (NaN if undefined:
    fewer than two pods that move, or fewer than three days)."""
    if returns.shape[1] < 2 or returns.shape[0] < 3:
        return float("nan")
    return float(_average_correlation_nb(np.ascontiguousarray(returns, dtype=np.float64)))


@njit(cache=True)
def _average_correlation_nb(x):  # pragma: no cover (numba)
    """Pearson correlations of the columns that move, averaged over pairs (one numba call: the
    daily monitor asks at every day end; ``np.corrcoef`` and friends cost ~40 µs there). NaN
    with fewer than two moving columns. Equal to ``np.corrcoef``'s to round-off (tested)."""
    n, p = x.shape
    xc = np.empty(x.shape)
    demeaned_into(x, xc)
    ss = np.zeros(p)
    for j in range(p):
        for i in range(n):
            ss[j] += xc[i, j] * xc[i, j]
    total = 0.0
    pairs = 0
    for j in range(p):
        if not ss[j] > 0:
            continue
        for k in range(j + 1, p):
            if not ss[k] > 0:
                continue
            c = 0.0
            for i in range(n):
                c += xc[i, j] * xc[i, k]
            r = c / np.sqrt(ss[j] * ss[k])
            total += min(1.0, max(-1.0, r))
            pairs += 1
    return total / pairs if pairs else np.nan


def daily_monitor(
    timestamps: np.ndarray,
    navs: np.ndarray,
    fractions: np.ndarray,
    pod_ids: list[str],
    lookback: int,
    stress_threshold: float,
    max_single_pod_risk: float,
    min_history: int = 30,
    period: float = 1.0,
    last_days: int | None = None,
    min_effective_n: float = 0.0,
    states: np.ndarray | None = None,
) -> tuple[list[RiskSnapshot], list[RiskAlert]]:
    """Risk snapshots and alerts at each day end.

    ``navs`` and ``fractions`` are ``(n_days, P)`` at the day ends ``timestamps``; ``lookback``
    and ``min_history`` are calendar days, each day end covering ``period`` days (1 on a daily or
    finer clock, the bar length on a coarser one). With ``last_days`` only the last that many day
    ends are evaluated (each depends on its own window only; an alert's once-per-episode rule
    needs the day before, so pass 2 to get the last day's alerts right).

    With two or more pods, an ``effective_n_low`` WARNING when the effective number of
    strategies falls below ``min_effective_n`` (the plan's 2). With ``states`` (``(n_days, P)``
    state codes), an ``all_pods_out`` CRITICAL when every pod is retired or holds no capital
    after some pod held capital: the book sits in cash.
    """
    from orchestra.kernels.state import RETIRED
    from orchestra.timeframes import days_to_periods

    lookback = days_to_periods(lookback, period)
    min_history = days_to_periods(min_history, period)
    snaps: list[RiskSnapshot] = []
    alerts: list[RiskAlert] = []
    rets = navs[1:] / navs[:-1] - 1.0
    stressed = False
    thin = False
    concentrated = np.zeros(navs.shape[1], dtype=bool)
    if states is not None:  # pods in the book at each day end, and whether any ever was
        active = (states != RETIRED) & (fractions > 0)
        invested = np.cumsum(active.any(axis=1)) > 0
        out = invested & ~active.any(axis=1)
        for d in np.flatnonzero(out & ~np.concatenate([[False], out[:-1]])):
            if last_days is not None and d < navs.shape[0] - last_days:
                continue
            retired = int((states[d] == RETIRED).sum())
            alerts.append(
                RiskAlert(
                    int(timestamps[d]),
                    "all_pods_out",
                    "CRITICAL",
                    f"every pod is retired ({retired}) or unfunded "
                    f"({navs.shape[1] - retired}): the whole book sits in cash",
                    0.0,
                    1.0,
                )
            )
    first = min_history if last_days is None else max(min_history, rets.shape[0] + 1 - last_days)
    for d in range(first, rets.shape[0] + 1):
        ts = int(timestamps[d])
        f = fractions[d]
        window = rets[max(0, d - lookback) : d]
        live = np.flatnonzero((f > 0) & (window.std(axis=0) > 0))
        prc = np.zeros(navs.shape[1])
        if live.size >= 1:
            cov = shrunk_covariance(window[:, live])
            prc[live] = risk_contributions(f[live], cov)
        # undefined (NaN: a gap in the report) with fewer than two live pods
        corr = average_correlation(window[:, live]) if live.size >= 2 else float("nan")
        snaps.append(RiskSnapshot(ts, prc, effective_n(prc), corr))
        if corr > stress_threshold and not stressed:
            alerts.append(
                RiskAlert(
                    ts,
                    "correlation_stress",
                    "WARNING",
                    f"average pod correlation {corr:.2f} above {stress_threshold:.2f}",
                    corr,
                    stress_threshold,
                )
            )
        stressed = corr > stress_threshold
        eff = effective_n(prc)
        low = navs.shape[1] >= 2 and 0 < eff < min_effective_n
        if low and not thin:
            alerts.append(
                RiskAlert(
                    ts,
                    "effective_n_low",
                    "WARNING",
                    f"effective number of strategies {eff:.2f} below {min_effective_n:g}: "
                    "the portfolio's risk sits in too few pods",
                    eff,
                    min_effective_n,
                )
            )
        thin = low
        for i in np.flatnonzero((prc > max_single_pod_risk) & ~concentrated):
            alerts.append(
                RiskAlert(
                    ts,
                    "pod_risk_concentration",
                    "WARNING",
                    f"{pod_ids[i]} carries {prc[i]:.0%} of portfolio risk (limit {max_single_pod_risk:.0%})",
                    float(prc[i]),
                    max_single_pod_risk,
                    pod_ids[i],
                )
            )
        concentrated = prc > max_single_pod_risk
    return snaps, alerts
