"""The live adapter (SPEC §13): the backtest's driver one bar at a time, with crash-safe state.

* :mod:`orchestra.live.session` — :class:`LiveSession`, the loop;
* :mod:`orchestra.live.store` — the SQLite state store (one transaction per bar);
* :mod:`orchestra.live.feeds` — where bars come from (a replay folder, or ccxt polling);
* :mod:`orchestra.live.broker` — where net orders go (:class:`PaperBroker`).

``docs/live.md`` is the runbook.
"""

from orchestra.live.broker import PaperBroker
from orchestra.live.reader import load_live_result
from orchestra.live.session import LiveSession
from orchestra.live.store import Store, StoreError

__all__ = ["LiveSession", "PaperBroker", "Store", "StoreError", "load_live_result"]
