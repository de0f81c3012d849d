"""Lifecycle and degradation detection (SPEC §8).

The state machine itself runs inside the kernels (``orchestra.kernels.lifecycle``); this module
exposes the Page-Hinkley detector on plain arrays for research and monitoring.
"""

from __future__ import annotations

import numpy as np

from orchestra.kernels.lifecycle import page_hinkley_stream_nb

__all__ = ["page_hinkley_alarms", "page_hinkley_scores"]


def page_hinkley_alarms(
    values: np.ndarray,
    delta: float = 0.005,
    lambda_: float = 50.0,
    alpha: float = 0.9999,
    min_instances: int = 30,
) -> np.ndarray:
    """Indices where Page-Hinkley (mode "down") signals a decrease of the mean of ``values``.

    Identical to river 0.26's ``PageHinkley(mode="down")`` with the same parameters (tested):
    ``m_t = α·m_{t−1} + (x̄_t − x_t − δ)``, ``M_t = min_k m_k``, alarm when ``m_t − M_t > λ`` after
    ``min_instances`` values; the detector restarts with the value after an alarm.

    >>> x = np.r_[np.zeros(200), np.full(100, -3.0)]
    >>> page_hinkley_alarms(x, lambda_=20.0).tolist()
    [206]
    """
    v = np.ascontiguousarray(values, dtype=np.float64)
    alarms, _ = page_hinkley_stream_nb(
        v, float(delta), float(lambda_), float(alpha), int(min_instances)
    )
    return np.flatnonzero(alarms)


def page_hinkley_scores(
    values: np.ndarray,
    delta: float = 0.005,
    lambda_: float = 50.0,
    alpha: float = 0.9999,
    min_instances: int = 30,
) -> np.ndarray:
    """The monitored score ``m_t − M_t`` after each value (it restarts after an alarm)."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    _, scores = page_hinkley_stream_nb(
        v, float(delta), float(lambda_), float(alpha), int(min_instances)
    )
    return scores
