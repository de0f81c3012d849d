"""Issue #24: the deflated Sharpe ratio (the paper's worked example, skfolio) and the
probability of backtest overfitting by CSCV on constructed sweeps."""

from __future__ import annotations

import numpy as np
import pytest

from orchestra.overfitting import (
    deflated_sharpe,
    deflated_sharpe_of_trials,
    expected_max_sharpe,
    pbo_cscv,
)


def test_the_papers_worked_example() -> None:
    """Bailey & López de Prado (2014): SR 2.5 a year over 1,250 daily returns (250 a year),
    100 trials whose annualised Sharpe ratios have variance 0.5, skew −3, kurtosis 10."""
    sr = 2.5 / np.sqrt(250)
    var = 0.5 / 250
    assert expected_max_sharpe(var, 100) == pytest.approx(0.1132, abs=5e-5)
    assert deflated_sharpe(sr, var, 100, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=5e-5)
    assert expected_max_sharpe(var, 1) == 0.0


def test_agrees_with_skfolio() -> None:
    skm = pytest.importorskip("skfolio.measures", reason="skfolio is a dev dependency")
    rng = np.random.default_rng(7)
    trials = rng.standard_t(4, (900, 25)) * 0.01 + rng.normal(0.0004, 0.0003, 25)
    ours = deflated_sharpe_of_trials(trials)
    sharpes = trials.mean(axis=0) / trials.std(axis=0, ddof=1)
    for j in (0, 7, int(np.argmax(sharpes))):
        theirs = skm.deflated_sharpe_ratio(trials[:, j], sharpes)
        assert ours[j] == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_pbo_is_near_one_half_for_noise_near_zero_for_an_edge_and_high_when_overfit() -> None:
    rng = np.random.default_rng(3)
    T, N, S = 800, 20, 10
    noise = rng.normal(0, 0.01, (T, N))
    assert 0.25 < pbo_cscv(noise, S)["pbo"] < 0.75
    edge = noise.copy()
    edge[:, 4] += 0.004  # one trial really is better, everywhere
    assert pbo_cscv(edge, S)["pbo"] < 0.05
    # overfit by construction: each trial is lucky in a random half of the blocks and unlucky in
    # the others, by the same amount; whichever trial looks best in-sample is worst out of sample
    size = T // S
    overfit = noise * 0.1
    for j in range(N):
        lucky = rng.permutation(S)[: S // 2]
        for b in range(S):
            overfit[b * size : (b + 1) * size, j] += 0.003 if b in lucky else -0.003
    result = pbo_cscv(overfit, S)
    assert result["pbo"] > 0.9 and result["splits"] == 252 and result["median_logit"] < 0


def _pbo_by_concatenation(returns: np.ndarray, s: int = 16) -> float:
    """The slow reference: every split's blocks concatenated, Sharpe ratios by np.std."""
    import itertools

    T, N = returns.shape
    s = min(s, T // 2)
    s -= s % 2
    edges = np.linspace(0, T, s + 1).astype(int)
    blocks = [returns[edges[i] : edges[i + 1]] for i in range(s)]

    def sharpe(x: np.ndarray) -> np.ndarray:
        sd = x.std(axis=0, ddof=1)
        return np.where(sd > 0, x.mean(axis=0) / np.where(sd > 0, sd, 1.0), 0.0)

    below = 0
    splits = list(itertools.combinations(range(s), s // 2))
    for chosen in splits:
        rest = [i for i in range(s) if i not in chosen]
        best = int(np.argmax(sharpe(np.concatenate([blocks[i] for i in chosen]))))
        oos = sharpe(np.concatenate([blocks[i] for i in rest]))
        rank = (oos < oos[best]).sum() + 1 + 0.5 * ((oos == oos[best]).sum() - 1)
        below += rank / (N + 1) <= 0.5
    return below / len(splits)


@pytest.mark.parametrize("shape", [(700, 17), (365, 5), (50, 3), (9, 2)])
def test_pbo_equals_the_concatenating_reference(shape: tuple[int, int]) -> None:
    """The per-block-sums form gives the reference's PBO, duplicate (tied) variants included."""
    rng = np.random.default_rng(shape[0])
    r = rng.normal(0.0005, 0.02, shape)
    r[:, 1] = r[:, 0]  # a tie in every split
    assert pbo_cscv(r)["pbo"] == _pbo_by_concatenation(r)
