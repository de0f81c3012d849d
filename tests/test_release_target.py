"""A finished backtest frees its target matrix before the result frames are built."""

from __future__ import annotations

import gc
import weakref

import pytest

from orchestra.config import load_config
from orchestra.engine import Engine, prepare
from orchestra.results.result import build_result
from tests.conftest import CONFIGS


def test_released_results_equal_kept_ones_and_the_matrix_is_freed() -> None:
    """The frames built after releasing the target matrix equal those built with it (the
    positions' target weights are read first), the matrix is freed, and the engine refuses to
    step again (its kernels would read a matrix that is gone)."""
    cfg = load_config(CONFIGS / "example.yaml")
    kept_engine = Engine(prepare(cfg))
    kept_engine.run()
    kept = build_result(kept_engine, cfg)
    engine = Engine(prepare(cfg))
    engine.run()
    matrix = weakref.ref(engine.inputs.target)
    released = build_result(engine, cfg, release_target=True)
    gc.collect()
    assert matrix() is None
    assert engine.inputs.target.shape[0] == 0 == engine.prepared.inputs.target.shape[0]
    for name, frame in kept.frames().items():
        assert frame.equals(released.frames()[name]), name
    assert kept.positions["target_weight"].abs().sum() > 0  # the column the matrix fed
    engine.state.next_bar[0] -= 1  # as if a bar were left: still refused
    with pytest.raises(RuntimeError, match="released"):
        engine.step()
