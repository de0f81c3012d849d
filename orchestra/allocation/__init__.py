"""Capital allocation between pods (SPEC §7): moments, cvxpy problems, the allocator."""

from orchestra.allocation.allocator import (
    Allocator,
    inverse_volatility_weights,
    kelly_weights,
    risk_parity_weights,
    water_fill,
)
from orchestra.allocation.moments import effective_n, risk_contributions, shrunk_covariance

__all__ = [
    "Allocator",
    "effective_n",
    "inverse_volatility_weights",
    "kelly_weights",
    "risk_contributions",
    "risk_parity_weights",
    "shrunk_covariance",
    "water_fill",
]
