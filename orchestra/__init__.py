"""orchestra — a multi-strategy crypto portfolio orchestrator.

Public API (SPEC §11.1)::

    import orchestra
    cfg = orchestra.load_config("configs/example.yaml")
    res = orchestra.run_backtest(cfg)
    res.save("runs/x"); orchestra.OrchestratedResult.load("runs/x")
"""

from __future__ import annotations

__version__ = "0.1.0"

from orchestra import allocation, data, strategies
from orchestra.config import Config, ConfigError, load_config
from orchestra.engine import run_backtest
from orchestra.results.result import OrchestratedResult

__all__ = [
    "Config",
    "ConfigError",
    "OrchestratedResult",
    "__version__",
    "allocation",
    "data",
    "load_config",
    "run_backtest",
    "strategies",
]
