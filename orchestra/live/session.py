"""The live loop: bars in, the backtest's own driver one bar at a time, state out (SPEC §13.1).

For each new clock bar ``t`` (:meth:`LiveSession.process`):

1. append the bar's market rows to the **anchored history** — every bar from the run's first
   warm-up day on, the same rows the backtest loads;
2. build the kernel inputs with the backtest's own :func:`~orchestra.engine.build.prepare` on that
   history; by the no-look-ahead contract the rows up to ``t`` equal the backtest's (tested row by
   row for every strategy and the ATR);
3. :meth:`Engine.extend` + :meth:`Engine.advance` — the driver the backtest uses, with its step
   kernel, day-end lifecycle, pod joins and allocator;
4. hand the bar's net orders to the broker (:class:`~orchestra.live.broker.PaperBroker` books the
   kernel's fills, exactly the backtest's);
5. commit the bar's market rows, output rows, fills, events, alerts, allocations, orders and the
   engine snapshot in one SQLite transaction (:mod:`orchestra.live.store`).

A restart loads the store, rebuilds the engine from the history and restores its snapshot and
journal, and continues after the last committed bar; a replay over a backtest's bars therefore
equals the backtest exactly, however often it is killed (tested with SIGKILL).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from orchestra.config import Config, parse_config
from orchestra.data import GapReport, LoadedData
from orchestra.engine.build import Prepared, prepare
from orchestra.engine.core import ALERT_FIELDS, EVENT_FIELDS, FILL_FIELDS, ROW_FIELDS, Engine
from orchestra.live.broker import Broker, PaperBroker, net_orders
from orchestra.live.store import Committed, Store, StoreError

log = logging.getLogger("orchestra.live")


def _date_of(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


class LiveSession:
    """One live (paper) run bound to a state directory."""

    def __init__(
        self,
        config: Config,
        store: Store,
        history: pl.DataFrame,
        meta: dict[str, Any],
        broker: Broker | None = None,
        monitor=None,
    ):
        self.config = config
        self.store = store
        self.meta = meta
        self.start_ms = int(meta["start_ms"])
        self.label = str(meta["source"])
        self._chunks: list[pl.DataFrame] = [history]
        self.history = history
        self.engine: Engine | None = None
        self.broker = broker or PaperBroker()
        self.monitor = monitor  # orchestra.monitoring.Monitor: alerts into the outbox, metrics
        self.trader = None  # orchestra.live.trading.CcxtBroker: real orders (None: paper)
        self._allocs_seen = 0
        self.bar_seconds: list[
            float
        ] = []  # wall time of each processed bar (build + step + commit)
        self.timings = {"inputs": 0.0, "engine": 0.0, "commit": 0.0}  # seconds per stage, summed

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        config: Config,
        state_dir: str | Path,
        source: str,
        start_ms: int,
        warmup: Callable[[], pl.DataFrame],
        broker: Broker | None = None,
        identity: Config | None = None,
        mode: str = "paper",
    ) -> LiveSession:
        """Start a new run in ``state_dir`` or resume the one there.

        A new run stores its meta and its warm-up history (``warmup()``: the bars before
        ``start_ms``). Resuming refuses a different config or a different source. ``identity``
        is the user's config when ``config`` is derived from it (a replay reads another folder):
        its hash is the one checked.
        """
        user = identity or config
        fresh = not (Path(state_dir) / "live.sqlite").exists()
        store = Store(state_dir)
        try:
            if store.initialized:
                committed = store.load()
                _check_resume(committed.meta, user, source, state_dir)
                if committed.meta.get("mode", "paper") != mode:
                    raise StoreError(
                        f"{state_dir} holds a {committed.meta.get('mode')} run, not {mode}: use "
                        "another --state directory"
                    )
                return cls.restore(config, store, committed, broker)
            meta = {
                "config": config.model_dump(mode="json"),
                "config_hash": user.config_hash,
                "config_source": user.source,
                "source": source,
                "start_ms": int(start_ms),
                "run_id": secrets.token_hex(6),
                "mode": mode,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            from orchestra import __version__

            meta["version"] = __version__
            history = warmup()
            store.initialize(meta, history)
            return cls(config, store, history, store.meta(), broker)
        except BaseException:
            store.close()
            if fresh:  # a run that never started leaves no half-made state behind
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{store.path}{suffix}").unlink(missing_ok=True)
            raise

    @classmethod
    def restore(
        cls, config: Config, store: Store, committed: Committed, broker: Broker | None = None
    ) -> LiveSession:
        """Rebuild the engine from the store: history → inputs, snapshot, journal."""
        session = cls(config, store, _sorted(committed.bars), committed.meta, broker)
        if committed.snapshot is None:
            return session
        steps = committed.journal
        n = steps[-1]["end_bar"]
        last_ts = int(steps[-1]["ts"])
        prepared = session._prepare(last_ts)
        if prepared.inputs.timestamps.shape[0] != n:
            raise StoreError(
                f"{store.path}: the stored history gives {prepared.inputs.timestamps.shape[0]} "
                f"bars but the journal holds {n}"
            )
        engine = Engine(prepared)
        engine.restore(committed.snapshot, *_journal_parts(steps, engine))
        session.engine = engine
        session._allocs_seen = len(engine.allocator.allocations)
        return session

    # ------------------------------------------------------------------ the loop
    @property
    def last_ts(self) -> int | None:
        """Open time of the last committed clock bar (None before the first)."""
        if self.engine is None:
            return None
        return int(self.engine.inputs.timestamps[self.engine.next_bar - 1])

    @property
    def next_bar(self) -> int:
        return 0 if self.engine is None else self.engine.next_bar

    def _prepare(self, ts: int) -> Prepared:
        loaded = LoadedData(self.history, self.label, GapReport())
        start = dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC)
        return prepare(self.config, start=start, end=_date_of(ts), loaded=loaded)

    def process(self, ts: int, bars: pl.DataFrame) -> int:
        """Process the clock bar opened at ``ts`` whose market rows are ``bars``; returns the
        number of clock bars committed (1, or more when the clock had a hole)."""
        t_start = time.perf_counter()
        last = self.last_ts
        if last is not None and ts <= last:
            raise ValueError(f"bar {ts} is not after the last committed bar {last}")
        self._chunks.append(bars)
        self.history = _sorted(pl.concat(self._chunks))
        self._chunks = [self.history]
        prepared = self._prepare(ts)
        t_engine = time.perf_counter()
        self.timings["inputs"] += t_engine - t_start
        n = prepared.inputs.timestamps.shape[0]
        if n == 0 or int(prepared.inputs.timestamps[-1]) != ts:
            raise ValueError(f"the bars of {ts} do not extend the clock")
        if self.engine is None:
            self.engine = Engine(prepared)
        else:
            self.engine.extend(prepared)
        eng = self.engine
        t0 = eng.next_bar
        before = eng.state.pod_fraction.copy()
        meta_updates: dict[str, Any] = {}
        alerts: list[dict[str, Any]] = []
        if self.trader is None:
            eng.advance(n)
            moved = eng.flush()
            orders = self.broker.execute(net_orders(eng, moved["fills"], self.meta["run_id"]))
        else:
            orders = []
            while eng.next_bar < n:
                orders += eng.step_with_fills(self._execute)
            moved = eng.flush()
            alerts += self._trading_alerts(orders, ts)
            if not self.halted:
                meta_updates, more = self.check_balances(ts)
                alerts += more
        allocs = eng.allocator.allocations[self._allocs_seen :]
        self._allocs_seen = len(eng.allocator.allocations)
        arrays = {f"row.{k}": v for k, v in eng.rows(t0, n).items()}
        for kind, chunk in moved.items():
            arrays.update({f"{kind}.{k}": v for k, v in chunk.items()})
        outbox = [] if self.monitor is None else self.monitor.messages(eng, moved, allocs, before)
        outbox = alerts + outbox
        t_commit = time.perf_counter()
        self.timings["engine"] += t_commit - t_engine
        self.store.commit(
            t0,
            n,
            ts,
            bars,
            arrays,
            [a.__dict__ for a in allocs],
            orders,
            eng.snapshot(),
            outbox,
            "unsent" if self.monitor is None else self.monitor.outbox_status,
            [o for o in orders if "client_order_id" in o and "status" in o] if self.trader else [],
            meta_updates,
        )
        self.meta.update(meta_updates)
        now = time.perf_counter()
        self.timings["commit"] += now - t_commit
        self.bar_seconds.append(now - t_start)
        if self.monitor is not None:
            errors = sum(1 for o in orders if o.get("status") in ("rejected", "error"))
            self.monitor.after_commit(self, moved, now - t_start, n - t0, errors)
        return n - t0

    # ------------------------------------------------------------------ live trading
    @property
    def halted(self) -> dict[str, Any] | None:
        """The reconciliation halt in force (reason, time), or None."""
        return self.meta.get("halt") or None

    def start_trading(self, trader, rebaseline: bool = False) -> list[str]:
        """Attach a :class:`~orchestra.live.trading.CcxtBroker` and reconcile at start.

        The first start records the account's balances of the traded assets as the baseline
        (not ours). ``rebaseline`` accepts the balances as they are now (the baseline becomes
        balances − Σ pod units) and lifts a halt. Returns the differences found (a halt).
        """
        from orchestra.live.trading import base_asset

        self.trader = trader
        symbols = (
            self.config.symbols if self.engine is None else self.engine.prepared.market.symbols
        )
        units = np.zeros(len(symbols)) if self.engine is None else self.engine.state.account_units
        assets: dict[str, float] = {}
        for s, sym in enumerate(symbols):
            a = base_asset(trader.ex, sym)
            assets[a] = assets.get(a, 0.0) + float(units[s])
        if "baseline" not in self.meta or rebaseline:
            balances = trader.balances(sorted(assets))
            update = {
                "baseline": {a: balances[a] - assets[a] for a in assets},
                "halt": None,
            }
            self.store.set_meta(update)
            self.meta.update(update)
            return []
        pending = [o for o in self.store.orders() if o["status"] == "intent"]
        if pending:  # sent (or not) before a crash, in the bar not committed: that bar books them
            log.warning(
                "%d order(s) of an uncommitted bar: reconciling after it is redone", len(pending)
            )
            return []
        meta, _alerts = self.check_balances(int(time.time() * 1000))
        if meta:
            self.store.set_meta(meta)
            self.meta.update(meta)
        return [meta["halt"]["reason"]] if meta else []

    def _execute(self, t: int, net: np.ndarray, prices: np.ndarray):
        assert self.engine is not None and self.trader is not None
        symbols = self.engine.prepared.market.symbols
        if self.halted:  # no orders while halted: nothing is booked
            z = np.zeros(len(symbols))
            return z, prices.copy(), z.copy(), []
        ts = int(self.engine.inputs.timestamps[t])
        return self.trader.execute(t, ts, symbols, net, prices)

    def _trading_alerts(self, orders: list[dict[str, Any]], ts: int) -> list[dict[str, Any]]:
        from orchestra.monitoring.notify import message

        out = []
        for o in orders:
            if o.get("status") in ("rejected", "error"):
                out.append(
                    message(
                        "order_rejected",
                        "CRITICAL",
                        f"order {o['status']}: {o['side']} {o['amount']} {o['symbol']}",
                        o.get("reason", ""),
                        int(o["ts"]),
                        {
                            "symbol": o["symbol"],
                            "side": o["side"],
                            "amount": o["amount"],
                            "client_order_id": o["client_order_id"],
                        },
                    )
                )
        return out

    def check_balances(self, ts: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Reconcile; on a difference: the halt (meta to commit) and its CRITICAL alert."""
        from orchestra.monitoring.notify import message

        assert self.trader is not None
        eng = self.engine
        symbols = self.config.symbols if eng is None else eng.prepared.market.symbols
        units = np.zeros(len(symbols)) if eng is None else eng.state.account_units
        problems = self.trader.reconcile(symbols, units, self.meta.get("baseline", {}))
        if not problems:
            return {}, []
        halt = {"reason": "; ".join(problems), "ts": int(ts)}
        log.critical("reconciliation: %s: trading halted", halt["reason"])
        alert = message(
            "reconciliation_halt",
            "CRITICAL",
            "trading halted: balances do not match the pods' books",
            halt["reason"],
            int(ts),
            {"problems": len(problems)},
        )
        return {"halt": halt}, [alert]

    def run(
        self,
        feed: Iterable[tuple[int, pl.DataFrame]],
        on_bar: Callable[[LiveSession], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> int:
        """Process every clock bar ``feed`` yields after the last committed one; with
        ``should_stop``, stop between bars once it returns True (a graceful shutdown)."""
        done = 0
        for ts, bars in feed:
            if should_stop is not None and should_stop():
                break
            if self.last_ts is not None and ts <= self.last_ts:
                continue
            done += self.process(ts, bars)
            if on_bar is not None:
                on_bar(self)
            if should_stop is not None and should_stop():
                break
        return done

    def close(self) -> None:
        self.store.close()

    def result(self):
        """The run so far as an :class:`~orchestra.results.result.OrchestratedResult`."""
        from orchestra.results.result import build_result

        if self.engine is None:
            raise ValueError("no bar processed yet")
        return build_result(self.engine, self.config, {})


def _sorted(bars: pl.DataFrame) -> pl.DataFrame:
    return bars.sort("symbol", "timestamp")


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


def _check_resume(meta: dict[str, Any], config: Config, source: str, state_dir) -> None:
    if meta.get("config_hash") != config.config_hash:
        raise StoreError(
            f"{state_dir} holds a run of another config (hash {str(meta.get('config_hash'))[:12]}, "
            f"from {meta.get('config_source')}); {config.source} hashes "
            f"{config.config_hash[:12]}: resume with the original config, or start a new run "
            "with another --state directory"
        )
    if meta.get("source") != source:
        raise StoreError(
            f"{state_dir} was fed by {meta.get('source')}, not {source}: resume with the same "
            "source, or start a new run with another --state directory"
        )


def stored_config(meta: dict[str, Any]) -> Config:
    """The config a state directory's run was started with."""
    return parse_config(meta["config"], source=str(meta.get("config_source", "live state")))


def load_live_result(state_dir: str | Path):
    """The run in a live state directory as an OrchestratedResult (read-only; safe while the
    loop runs)."""
    with Store(state_dir, readonly=True) as store:
        committed = store.load()
        if committed.snapshot is None:
            raise StoreError(f"{state_dir}: the live run has not processed a bar yet")
        config = stored_config(committed.meta)
        session = LiveSession.restore(config, store, committed)
        result = session.result()
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


__all__ = ["LiveSession", "load_live_result", "stored_config"]
