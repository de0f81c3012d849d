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
import polars as pl

from orchestra.config import Config, parse_config
from orchestra.data import GapReport, LoadedData
from orchestra.engine.build import prepare
from orchestra.engine.core import ALERT_FIELDS, EVENT_FIELDS, FILL_FIELDS, ROW_FIELDS, Engine
from orchestra.live.store import Committed, Store, StoreError


def _date_of(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


def _stored_prepared(config: Config, committed: Committed):
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
    return prepared


def model_run(config: Config, committed: Committed) -> Engine:
    """The paper model of a live run: the backtest of its stored bars, every bar on the model's
    fills (what paper trading would have booked; equal by the replay-equals-backtest
    property)."""
    if committed.snapshot is None:
        raise StoreError("the live run has not processed a bar yet")
    engine = Engine(_stored_prepared(config, committed))
    engine.run()
    return engine


def model_engine(config: Config, committed: Committed) -> Engine:
    """:func:`model_run` as the live loop's window (its last bar kept, the day log behind it),
    ready to be appended to."""
    engine = model_run(config, committed)
    engine.flush()
    engine.keep_journal = False
    engine._fills, engine._events, engine._alerts = [], [], []
    engine.compact()
    return engine


def gap_frames(live, model, engine: Engine) -> dict[str, pl.DataFrame]:
    """The live–model gap of a whole run (``live`` and ``model``: OrchestratedResults of the
    same bars; ``engine``: the live run's, for the bars' execution prices):

    * ``live_gap`` — per pod, symbol and bar where the exchange (or the broker) filled: the
      pod's external units, price and fee; what the model would have booked for that very fill
      (``model_price`` = the execution price moved by ``slippage_bps`` against the order,
      ``model_fee`` = ``cost_bps`` of its notional); the model run's own units that bar;
      ``slippage_bps`` (the fill price against the model's, positive when worse) and
      ``fee_bps`` (fee per notional above the model's);
    * ``live_nav_gap`` — per pod and bar: NAV, the model run's NAV, ``gap = nav / model − 1``.
    """
    from orchestra.kernels.state import CLOSE

    inp = engine.prepared.inputs
    symbols = engine.prepared.market.symbols
    exec_px = inp.close if inp.params.exec_mode == CLOSE else inp.open
    prices = pl.DataFrame(
        {
            "timestamp": pl.Series(np.repeat(inp.timestamps, len(symbols))).cast(
                pl.Datetime("ms", "UTC")
            ),
            "symbol": np.tile(np.array(symbols, dtype=object), inp.timestamps.size).tolist(),
            "exec_price": exec_px.reshape(-1),
        }
    )
    cost, slip = inp.params.cost, inp.params.slippage
    keys = ["timestamp", "pod_id", "symbol"]
    ext = pl.col("venue") == "external"
    mine = (
        live.fills.filter(ext & (pl.col("units") != 0))
        .group_by(keys)
        .agg(pl.col("units").sum(), pl.col("price").first(), pl.col("fee").sum())
    )
    theirs = model.fills.filter(ext).group_by(keys).agg(pl.col("units").sum().alias("model_units"))
    side = pl.col("units").sign()
    model_price = pl.col("exec_price") * (1.0 + side * slip)
    fills = (
        mine.join(prices, on=["timestamp", "symbol"], how="left")
        .join(theirs, on=keys, how="left")
        .with_columns(
            model_price.alias("model_price"),
            (cost * pl.col("units").abs() * model_price).alias("model_fee"),
            pl.col("model_units").fill_null(0.0),
        )
        .with_columns(
            (side * (pl.col("price") / pl.col("model_price") - 1.0) * 1e4).alias("slippage_bps"),
            ((pl.col("fee") / (pl.col("units").abs() * pl.col("price")) - cost) * 1e4).alias(
                "fee_bps"
            ),
        )
        .drop("exec_price")
        .sort(keys)
    )
    navs = (
        live.pod_equity.select("timestamp", "pod_id", "nav")
        .join(
            model.pod_equity.select("timestamp", "pod_id", pl.col("nav").alias("model_nav")),
            on=["timestamp", "pod_id"],
        )
        .with_columns((pl.col("nav") / pl.col("model_nav") - 1.0).alias("gap"))
        .sort("timestamp", "pod_id")
    )
    return {"live_gap": fills, "live_nav_gap": navs}


def full_engine(config: Config, committed: Committed) -> Engine:
    """The whole run of a store as a backtest-shaped engine (every bar's inputs and outputs in
    memory, the journal in place): what reports and ``orch-live status`` read. Its inputs are
    :func:`~orchestra.engine.build.prepare` on the stored history, the rows the live loop
    computed bar by bar (equal by the no-look-ahead contract, tested)."""
    if committed.snapshot is None:
        raise StoreError("the live run has not processed a bar yet")
    engine = Engine(_stored_prepared(config, committed))
    engine.restore(committed.snapshot, *_journal_parts(committed.journal, engine))
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
        engine = full_engine(config, committed)
        result = build_result(engine, config, {})
        meta = committed.meta
        if meta.get("mode") == "live" or meta.get("broker", "paper") != "paper":
            # fills came from the exchange (or a slipping paper broker): measure them against
            # the model; a paper run on the model's own fills has no gap to measure
            model = build_result(model_run(config, committed), config, {})
            for name, frame in gap_frames(result, model, engine).items():
                setattr(result, name, frame)
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


__all__ = [
    "full_engine",
    "gap_frames",
    "load_live_result",
    "model_engine",
    "model_run",
    "stored_config",
]
