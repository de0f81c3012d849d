"""Reading a live state directory as a finished run (``orch-bt report``, ``orch-live status``,
:func:`orchestra.load_run`): read-only, safe while the loop runs.

The loop itself keeps no history in memory; a report needs every bar, so :func:`full_engine`
rebuilds a backtest-shaped engine from the store: :func:`~orchestra.engine.build.prepare` on the
stored history (the rows the loop computed bar by bar; equal by the no-look-ahead contract,
tested) with the journal put back in place.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from orchestra.config import Config, parse_config
from orchestra.data import GapReport, LoadedData
from orchestra.engine.build import prepare
from orchestra.engine.core import ALERT_FIELDS, EVENT_FIELDS, FILL_FIELDS, ROW_FIELDS, Engine
from orchestra.live.store import Committed, Store, StoreError


def _date_of(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


def full_engine(config: Config, committed: Committed) -> Engine:
    """The whole run of a store as a backtest-shaped engine (every bar's inputs and outputs in
    memory, the journal in place): what reports and ``orch-live status`` read. Its inputs are
    :func:`~orchestra.engine.build.prepare` on the stored history, the rows the live loop
    computed bar by bar (equal by the no-look-ahead contract, tested)."""
    if committed.snapshot is None:
        raise StoreError("the live run has not processed a bar yet")
    steps = committed.journal
    n = steps[-1]["end_bar"]
    meta = committed.meta
    loaded = LoadedData(committed.bars, str(meta["source"]), GapReport())
    start = dt.datetime.fromtimestamp(int(meta["start_ms"]) / 1000, dt.UTC)
    prepared = prepare(config, start=start, end=_date_of(int(steps[-1]["ts"])), loaded=loaded)
    if prepared.inputs.timestamps.shape[0] != n:
        raise StoreError(
            f"the stored history gives {prepared.inputs.timestamps.shape[0]} bars but the "
            f"journal holds {n}"
        )
    engine = Engine(prepared)
    engine.restore(committed.snapshot, *_journal_parts(steps, engine))
    return engine


def _journal_parts(steps: list[dict[str, Any]], engine: Engine):
    from orchestra.allocation.allocator import AllocationRecord

    rows = {
        name: np.concatenate([s["arrays"][f"row.{name}"] for s in steps]) for name in ROW_FIELDS
    }

    def chunks(kind: str, fields: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
        out = []
        for s in steps:
            chunk = {f: s["arrays"][f"{kind}.{f}"] for f in fields}
            if chunk[fields[0]].size:
                out.append(chunk)
        return out

    allocations = [AllocationRecord(**a) for s in steps for a in s["allocations"]]
    return (
        rows,
        chunks("fills", FILL_FIELDS),
        chunks("events", EVENT_FIELDS),
        chunks("alerts", ALERT_FIELDS),
        allocations,
    )


def stored_config(meta: dict[str, Any]) -> Config:
    """The config a state directory's run was started with."""
    return parse_config(meta["config"], source=str(meta.get("config_source", "live state")))


def load_live_result(state_dir: str | Path):
    """The run in a live state directory as an OrchestratedResult (read-only; safe while the
    loop runs)."""
    from orchestra.results.result import build_result

    with Store(state_dir, readonly=True) as store:
        committed = store.load()
        if committed.snapshot is None:
            raise StoreError(f"{state_dir}: the live run has not processed a bar yet")
        config = stored_config(committed.meta)
        result = build_result(full_engine(config, committed), config, {})
    meta = committed.meta
    result.summary.update(
        {
            "live": {
                "mode": meta.get("mode"),
                "run_id": meta.get("run_id"),
                "source": meta.get("source"),
                "started": meta.get("created"),
            }
        }
    )
    return result


__all__ = ["full_engine", "load_live_result", "stored_config"]
