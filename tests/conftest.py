"""Shared fixtures. Tests that need ../shared/data skip with a reason on a user's fresh clone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CONFIGS = ROOT / "configs"

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"needs the real Binance candles in {SHARED_DATA} (present in CI, absent on a fresh clone)",
)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA} (present in CI, absent on a fresh clone)")
    return SHARED_DATA
