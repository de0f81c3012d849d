"""orchestra — a multi-strategy crypto portfolio orchestrator.

Public API (SPEC §11.1)::

    import orchestra
    cfg = orchestra.load_config("configs/example.yaml")
    res = orchestra.run_backtest(cfg)
    res.save("runs/x"); orchestra.OrchestratedResult.load("runs/x")
    orchestra.load_run("runs/live-example")  # a run directory or a live state directory
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the names below are imported on first use (PEP 562): `orch-bt --help` and
    # `import orchestra` do not pay for cvxpy, numba and polars until they are needed
    from orchestra import allocation, data, strategies
    from orchestra.config import Config, ConfigError, load_config
    from orchestra.engine import run_backtest
    from orchestra.results.result import OrchestratedResult
    from orchestra.runs import load_run

_LAZY = {
    "allocation": ("orchestra.allocation", None),
    "data": ("orchestra.data", None),
    "strategies": ("orchestra.strategies", None),
    "Config": ("orchestra.config", "Config"),
    "ConfigError": ("orchestra.config", "ConfigError"),
    "load_config": ("orchestra.config", "load_config"),
    "run_backtest": ("orchestra.engine", "run_backtest"),
    "OrchestratedResult": ("orchestra.results.result", "OrchestratedResult"),
    "load_run": ("orchestra.runs", "load_run"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'orchestra' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Config",
    "ConfigError",
    "OrchestratedResult",
    "__version__",
    "allocation",
    "data",
    "load_config",
    "load_run",
    "run_backtest",
    "strategies",
]
