"""Shared fixtures. Tests that need ../shared/data skip with a reason on a user's fresh clone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CONFIGS = ROOT / "configs"

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
# `make test` (and CI) draw the same examples every run, with no example database carried between
# runs: the suite passes or fails on the code, never on the draw. Random exploration is a separate
# target (`make test-explore`: new examples each run, failures remembered in .hypothesis/).
settings.register_profile(
    "default", deadline=None, suppress_health_check=_QUIET, derandomize=True, database=None
)
settings.register_profile("explore", deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"needs the real Binance candles in {SHARED_DATA} (present in CI, absent on a fresh clone)",
)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA} (present in CI, absent on a fresh clone)")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items) -> None:
    """Every test that reads ../shared/data carries the ``shared_data`` marker (``pytest -m
    shared_data`` selects them): those skipped by ``needs_shared`` and those using the
    ``shared_data`` fixture."""
    for item in items:
        needs = "shared_data" in getattr(item, "fixturenames", ())
        needs = needs or any(
            "real Binance candles" in str(m.kwargs.get("reason", ""))
            for m in item.iter_markers("skipif")
        )
        if needs:
            item.add_marker(pytest.mark.shared_data)
