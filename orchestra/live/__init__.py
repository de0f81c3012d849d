"""The live adapter (SPEC §13): the backtest's driver one bar at a time, with crash-safe state.

* :mod:`orchestra.live.session` — :class:`LiveSession`, the loop;
* :mod:`orchestra.live.store` — the SQLite state store (one transaction per bar);
* :mod:`orchestra.live.lock` — one writer per state directory;
* :mod:`orchestra.live.feeds` — where bars come from (a replay folder, or ccxt polling);
* :mod:`orchestra.live.broker` — where net orders go (:class:`PaperBroker`);
* :mod:`orchestra.live.trading` — real orders through ccxt (spot and USDⓈ-M perpetuals);
* :mod:`orchestra.live.reader` — a state directory read as a run.

``docs/live.md`` is the runbook. The names below are imported on first use (PEP 562), so that
``orch-live`` can take a state directory's lock before it loads polars, numba and the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestra.live.broker import PaperBroker
    from orchestra.live.lock import StoreError
    from orchestra.live.reader import load_live_result
    from orchestra.live.session import LiveSession
    from orchestra.live.store import Store

_LAZY = {
    "PaperBroker": "orchestra.live.broker",
    "StoreError": "orchestra.live.lock",
    "load_live_result": "orchestra.live.reader",
    "LiveSession": "orchestra.live.session",
    "Store": "orchestra.live.store",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'orchestra.live' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = ["LiveSession", "PaperBroker", "Store", "StoreError", "load_live_result"]
