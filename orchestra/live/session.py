"""The live loop: bars in, the backtest's own driver one bar at a time, state out (SPEC §13.1).

For each new clock bar ``t`` (:meth:`LiveSession.process`):

1. turn the bar's market rows into the clock row the engine reads
   (:class:`~orchestra.strategies.stream.ClockRows`: to_matrices' rules);
2. step every pod's carried signal state by that row
   (:class:`~orchestra.strategies.stream.SignalBook`: the strategies' step forms, the same
   per-symbol kernels the backtest's whole-history pass loops over), the ATR's state and the
   funding row; lag the weights a bar for ``next_open`` and zero a pod before its start, as
   :func:`~orchestra.engine.build.prepare` does;
3. :meth:`Engine.append` the bar and :meth:`Engine.advance` — the driver the backtest uses, with
   its step kernel, day-end lifecycle, pod joins and allocator;
4. hand the bar's net orders to the broker (:class:`~orchestra.live.broker.PaperBroker` books the
   kernel's fills, exactly the backtest's);
5. commit the bar's market rows, output rows, fills, events, alerts, allocations, orders and the
   engine snapshot in one SQLite transaction (:mod:`orchestra.live.store`), then
   :meth:`Engine.compact` the processed rows away.

Nothing is recomputed over the past, so a bar costs the same after a week or after five years
(``make bench``, workload R); in memory stay the signal states, the engine's state, a window of
the current bar and a day log (one row per UTC day). A built-in strategy's live weights equal
the backtest's by construction; a user's long-frame strategy is recomputed on its declared
trailing window (``history_bars``) or on the whole history (see ``docs/live.md``).

A restart loads the store, rebuilds the signal and ATR states in one whole-history pass over the
stored bars, restores the engine's snapshot and day log, and continues after the last committed
bar; a replay over a backtest's bars therefore equals the backtest exactly, however often it is
killed (tested with SIGKILL).
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

from orchestra.config import Config
from orchestra.engine.build import FundingRows, clock_fields, empty_prepared
from orchestra.engine.core import ROW_FIELDS, Engine
from orchestra.live.broker import Broker, FillingBroker, PaperBroker, net_orders
from orchestra.live.store import Committed, Store, StoreError
from orchestra.timeframes import epoch_ms, timeframe_ms

log = logging.getLogger("orchestra.live")


def _date_of(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


class LiveSession:
    """One live (paper) run bound to a state directory."""

    def __init__(
        self,
        config: Config,
        store: Store,
        meta: dict[str, Any],
        broker: Broker | FillingBroker | None = None,
        monitor=None,
    ):
        from orchestra.kernels.market import new_atr_state
        from orchestra.strategies.stream import ClockRows, SignalBook

        self.config = config
        self.store = store
        self.meta = meta
        self.start_ms = int(meta["start_ms"])
        self.label = str(meta["source"])
        self.symbols = list(config.symbols)
        self.step = timeframe_ms(config.clock_timeframe)
        self.rows = ClockRows(self.symbols, config.clock_timeframe, config.data.timeframe)
        self.book = SignalBook(config, self.symbols)
        self.atr_state = new_atr_state(len(self.symbols))
        self.funding = FundingRows(config, self.symbols)
        self.next_open = config.backtest.execution == "next_open"
        self.pod_start = [
            (int(epoch_ms(p.start)), int(self.book.offsets[i]), int(self.book.offsets[i + 1]))
            for i, p in enumerate(config.pods)
            if p.start is not None
        ]
        self.last_clock: int | None = None  # the last clock bar the signals have seen
        self.engine: Engine | None = None
        self.broker = broker or PaperBroker()
        self.monitor = monitor  # orchestra.monitoring.Monitor: alerts into the outbox, metrics
        self.trader = None  # orchestra.live.trading.CcxtBroker: real orders (None: paper)
        # the paper model beside a broker that fills on its own (the exchange, or paper with
        # extra slippage): the same bars on the model's fills, for the live–model gap
        self.model: Engine | None = None
        self.gap = LiveGap(len(config.pods))
        self._meta_pending: dict[str, Any] = {}  # meta the bar in flight commits with it
        self._allocs_seen = 0
        self.bar_seconds: list[
            float
        ] = []  # wall time of each processed bar (build + step + commit)
        self.timings = {"inputs": 0.0, "engine": 0.0, "commit": 0.0}  # seconds per stage, summed
        self.warm_seconds = 0.0  # the whole-history pass at open or restart
        for line in self.book.warnings:
            log.warning("%s", line)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        config: Config,
        state_dir: str | Path,
        source: str,
        start_ms: int,
        warmup: Callable[[], pl.DataFrame],
        broker: Broker | FillingBroker | None = None,
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
                "broker": "ccxt" if mode == "live" else (broker or PaperBroker()).name,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            from orchestra import __version__

            meta["version"] = __version__
            history = warmup()
            store.initialize(meta, history)
            session = cls(config, store, store.meta(), broker)
            session._warm(history)
            return session
        except BaseException:
            store.close()
            if fresh:  # a run that never started leaves no half-made state behind
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{store.path}{suffix}").unlink(missing_ok=True)
            raise

    @classmethod
    def restore(
        cls,
        config: Config,
        store: Store,
        committed: Committed,
        broker: Broker | FillingBroker | None = None,
    ) -> LiveSession:
        """Continue from the store: the signal states from the stored bars (one whole-history
        pass), the engine from its snapshot and the journal's rows (the day log)."""
        session = cls(config, store, committed.meta, broker)
        session._warm(committed.bars)
        if committed.snapshot is None:
            return session
        steps = committed.journal
        rows = {
            name: np.concatenate([s["arrays"][f"row.{name}"] for s in steps])
            for name in (*ROW_FIELDS, "timestamp")
        }
        n, last = int(steps[-1]["end_bar"]), int(steps[-1]["ts"])
        if rows["timestamp"].shape[0] != n or int(rows["timestamp"][-1]) != last:
            raise StoreError(f"{store.path}: the journal's rows do not cover its {n} bars")
        if session.last_clock is None or session.last_clock > last:
            raise StoreError(
                f"{store.path}: the stored bars end at {session.last_clock}, after the journal's "
                f"last bar {last}"
            )
        while session.last_clock < last:  # clock bars without any rows (a hole in the clock)
            session._step_signals(session.last_clock + session.step, None)
        from orchestra.allocation.allocator import AllocationRecord

        engine = Engine(
            empty_prepared(config, session.label), keep_journal=False, first_ts=session.start_ms
        )
        allocations = [AllocationRecord(**a) for s in steps for a in s["allocations"]]
        engine.restore(committed.snapshot, rows, [], [], [], allocations)
        session.engine = engine
        session._allocs_seen = len(engine.allocator.allocations)
        return session

    @property
    def executor(self):
        """Who fills the net orders when not the model: the exchange, or a slipping paper
        broker (None: the model's fills, :class:`PaperBroker`)."""
        if self.trader is not None:
            return self.trader
        return None if isinstance(self.broker, PaperBroker) else self.broker

    def _start_model(self) -> None:
        """The paper model of the run so far: a backtest of the stored bars (bit for bit what a
        paper run would hold: the replay-equals-backtest property), then a window like the
        live engine's."""
        if self.model is not None or self.engine is None or self.executor is None:
            return
        from orchestra.live.reader import model_engine

        self.model = model_engine(self.config, self.store.load())
        self.gap.update(self.engine, self.model, [])

    def _warm(self, bars: pl.DataFrame) -> None:
        """Signal, ATR and clock-row states after the history ``bars`` (data timeframe)."""
        from orchestra.data import resample, to_matrices
        from orchestra.kernels.market import ATR_BARS, atr_nb

        start = time.perf_counter()
        if bars.height:
            frame = _sorted(bars)
            if timeframe_ms(self.config.clock_timeframe) != timeframe_ms(
                self.config.data.timeframe
            ):
                frame = resample(frame, self.config.clock_timeframe)
            market = to_matrices(frame, self.symbols, self.config.clock_timeframe)
            self.rows.warm(market)
            self.book.warm(market, frame)
            atr_nb(
                market.high, market.low, market.close, market.tradable, ATR_BARS,
                self.atr_state, np.empty(market.close.shape),
            )  # fmt: skip
            self.last_clock = int(market.timestamps[-1])
            del frame, market
        release_memory()  # the pass's arrays: give the pages back to the OS (a long-lived process)
        self.warm_seconds = time.perf_counter() - start

    # ------------------------------------------------------------------ the loop
    @property
    def last_ts(self) -> int | None:
        """Open time of the last committed clock bar (None before the first)."""
        if self.engine is None or self.engine.next_bar == 0:
            return None
        return self.engine.timestamp(self.engine.next_bar - 1)

    @property
    def next_bar(self) -> int:
        return 0 if self.engine is None else self.engine.next_bar

    def _step_signals(self, ts: int, bars: pl.DataFrame | None):
        """Step the clock row, the signals and the ATR by clock bar ``ts``."""
        from orchestra.kernels.market import ATR_BARS, atr_step_nb

        row = self.rows.row(ts, bars)
        before = self.book.weights.copy()  # decided at the previous clock bar's close
        decided = self.book.update(row)
        f = row.fields
        atr = np.empty(len(self.symbols))
        atr_step_nb(f["high"], f["low"], f["close"], row.tradable, ATR_BARS, self.atr_state, atr)
        self.last_clock = ts
        return row, before, decided, atr

    def _bar_inputs(self, ts: int, bars: pl.DataFrame | None) -> dict[str, np.ndarray] | None:
        """Step the signals by clock bar ``ts``; its engine row (None before the run's start)."""
        row, before, decided, atr = self._step_signals(ts, bars)
        f = row.fields
        if ts < self.start_ms:
            return None
        target = before if self.next_open else decided.copy()
        for start, lo, hi in self.pod_start:  # a pod trades only from its start date
            if ts < start:
                target[lo:hi] = 0.0
        return {
            **clock_fields(np.array([ts], dtype=np.int64), self.step),
            "open": f["open"][None],
            "close": f["close"][None],
            "tradable": row.tradable[None],
            "atr": atr[None],
            "target": target[None],
            "funding": self.funding.row(ts)[None],
        }

    def process(self, ts: int, bars: pl.DataFrame) -> int:
        """Process the clock bar opened at ``ts`` whose market rows are ``bars``; returns the
        number of clock bars committed (1, or more when the clock had a hole)."""
        t_start = time.perf_counter()
        last = self.last_ts
        if last is not None and ts <= last:
            raise ValueError(f"bar {ts} is not after the last committed bar {last}")
        if ts % self.step:
            raise ValueError(f"bar {ts} is not on the {self.config.clock_timeframe} clock")
        # every clock bar from the last one seen: a hole in the clock is a bar without rows
        slot = ts if self.last_clock is None else self.last_clock + self.step
        appended = 0
        while slot <= ts:
            row = self._bar_inputs(slot, bars if slot == ts else None)
            if row is not None:
                if self.engine is None:
                    self.engine = Engine(
                        empty_prepared(self.config, self.label), keep_journal=False, first_ts=slot
                    )
                    if self.executor is not None:
                        self.model = Engine(
                            empty_prepared(self.config, self.label),
                            keep_journal=False,
                            first_ts=slot,
                        )
                self._start_model()
                self.engine.append(row)
                if self.model is not None:
                    self.model.append(row)
                appended += 1
            slot += self.step
        t_engine = time.perf_counter()
        self.timings["inputs"] += t_engine - t_start
        if not appended or self.engine is None:
            raise ValueError(f"the bar {ts} is before the run's start {self.start_ms}")
        eng = self.engine
        n = eng.n_bars
        t0 = eng.next_bar
        before = eng.state.pod_fraction.copy()
        meta_updates: dict[str, Any] = {}
        alerts: list[dict[str, Any]] = []
        if self.executor is None:
            eng.advance(n)
            moved = eng.flush()
            booking: Any = self.broker  # books the model's fills (PaperBroker)
            orders: list[dict[str, Any]] = booking.execute(
                net_orders(eng, moved["fills"], self.meta["run_id"])
            )
        else:
            orders = []
            while eng.next_bar < n:
                orders += eng.step_with_fills(self._execute)
            moved = eng.flush()
            assert self.model is not None
            self.model.advance(n)
            self.model.flush()
            alerts += self.gap.update(eng, self.model, orders)
            if self.trader is not None:
                alerts += self._trading_alerts(orders, ts)
                if not self.halted:
                    meta_updates, more = self.check_balances(ts)
                    alerts += more
                alerts += self._margin_alerts(ts)
            meta_updates = {**self._meta_pending, **meta_updates}
            self._meta_pending = {}
        allocs = eng.allocator.allocations[self._allocs_seen :]
        self._allocs_seen = len(eng.allocator.allocations)
        arrays = {f"row.{k}": v for k, v in eng.rows(t0, n).items()}
        for kind, chunk in moved.items():
            arrays.update({f"{kind}.{k}": v for k, v in chunk.items()})
        gap = self.gap if self.model is not None else None
        outbox = (
            [] if self.monitor is None else self.monitor.messages(eng, moved, allocs, before, gap)
        )
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
        eng.compact()
        if self.model is not None:
            self.model.compact()
        return n - t0

    # ------------------------------------------------------------------ live trading
    @property
    def halted(self) -> dict[str, Any] | None:
        """The reconciliation halt in force (reason, time), or None."""
        return self.meta.get("halt") or None

    def start_trading(self, trader, rebaseline: bool = False) -> list[str]:
        """Attach a :class:`~orchestra.live.trading.CcxtBroker` and reconcile at start.

        The first start records the account's balances of the traded assets as the baseline
        (not ours); on perpetuals the positions beyond Σ pod units and the collateral, after
        setting one-way mode, margin mode and leverage (every start). ``rebaseline`` accepts the
        account as it is now and lifts a halt. Returns the differences found (a halt).
        """
        import math

        from orchestra.live.trading import base_asset

        self.trader = trader
        symbols = (
            self.config.symbols if self.engine is None else self.engine.prepared.market.symbols
        )
        units = np.zeros(len(symbols)) if self.engine is None else self.engine.state.account_units
        swap = bool(getattr(trader, "swap", False))
        if swap:  # perpetuals: one-way mode, margin mode and leverage, at every start
            lev = min(max(math.ceil(self.config.orchestrator.risk.max_gross_leverage), 1), 125)
            for line in trader.setup(list(symbols), lev):
                log.info("set-up: %s", line)
        if "baseline" not in self.meta or rebaseline:
            if swap:
                baseline = trader.swap_baseline(list(symbols), units, self._equity())
            else:
                assets: dict[str, float] = {}
                for s, sym in enumerate(symbols):
                    a = base_asset(trader.ex, sym)
                    assets[a] = assets.get(a, 0.0) + float(units[s])
                balances = trader.balances(sorted(assets))
                baseline = {a: balances[a] - assets[a] for a in assets}
            update = {"baseline": baseline, "halt": None}
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

    def _equity(self) -> float:
        """The books' account equity at the last committed bar (the capital before the first)."""
        eng = self.engine
        if eng is None or eng.next_bar == 0:
            return float(self.config.backtest.capital)
        t = eng.next_bar - 1
        return float(eng.rows(t, t + 1)["equity"][0])

    def _execute(self, t: int, net: np.ndarray, prices: np.ndarray):
        executor = self.executor
        assert self.engine is not None and executor is not None
        symbols = self.engine.prepared.market.symbols
        if self.halted:  # no orders while halted: nothing is booked
            z = np.zeros(len(symbols))
            return z, prices.copy(), z.copy(), []
        ts = self.engine.timestamp(t)
        held = self.engine.state.account_units.copy()
        if getattr(executor, "swap", False):
            qty, px, fee, records = executor.execute(t, ts, symbols, net, prices, held)
            self._book_funding(t, ts, held, qty)
        else:
            qty, px, fee, records = executor.execute(t, ts, symbols, net, prices)
        index = {sym: s for s, sym in enumerate(symbols)}
        for r in records:  # the price the model fills at, for the live–model gap
            r["exec_price"] = float(prices[index[r["symbol"]]])
        return qty, px, fee, records

    def _book_funding(self, t: int, ts: int, held: np.ndarray, qty: np.ndarray) -> None:
        """Perpetuals: the exchange's funding of bar ``t`` (``ts < F ≤ close``) becomes the bar's
        funding rate per symbol, so the kernel's funding pass — the backtest's rule, by each
        pod's share of the position — books exactly the exchange's amount. Our part of it is
        the pods' share of the position held at the funding time (a baseline position outside
        the run earns the rest). Funding on a position the pods no longer hold after the bar
        waits (``unbooked_funding``) for the next bar where they do."""
        assert self.engine is not None and self.trader is not None
        eng = self.engine
        symbols = eng.prepared.market.symbols
        income = self.trader.funding_income(ts, ts + self.step)
        base = self.meta.get("baseline", {}).get("positions", {})
        carry = dict(self.meta.get("unbooked_funding", {}))
        local = t - eng.base
        after = held + qty
        closes = eng.inputs.close[local]
        row = np.zeros(len(symbols))
        for s, sym in enumerate(symbols):
            amount = float(income.get(sym, 0.0))
            whole = float(base.get(sym, 0.0)) + float(held[s])
            ours = amount * float(held[s]) / whole if whole else 0.0
            ours += float(carry.pop(sym, 0.0))
            flat = abs(float(after[s])) <= 1e-9 * abs(float(held[s]))  # round-off of a close
            if ours and after[s] and not flat and np.isfinite(closes[s]):
                row[s] = -ours / (float(after[s]) * float(closes[s]))
            elif ours:
                carry[sym] = ours
        eng.inputs.funding[local] = row
        self._meta_pending["unbooked_funding"] = carry

    def _margin_alerts(self, ts: int) -> list[dict[str, Any]]:
        """Perpetuals: the margin ratio and liquidation prices into the meta (``orch-live
        status``), and a WARNING when the margin ratio crosses
        ``orchestrator.risk.margin_ratio_warning`` (once per crossing)."""
        from orchestra.monitoring.notify import message

        risk = getattr(self.trader, "risk", {})
        if "margin_ratio" not in risk:
            return []
        ratio = float(risk["margin_ratio"])
        self._meta_pending["margin"] = {
            "ratio": ratio,
            "balance": float(risk.get("margin_balance", 0.0)),
            "liquidation_price": dict(risk.get("liquidation_price", {})),
        }
        limit = float(self.config.orchestrator.risk.margin_ratio_warning)
        over = ratio > limit
        was = bool(self.meta.get("margin_warning", False))
        self._meta_pending["margin_warning"] = over
        if not over or was:
            return []
        return [
            message(
                "margin_ratio",
                "WARNING",
                f"margin ratio {ratio:.1%} above {limit:.0%}",
                "maintenance margin / margin balance on the exchange; liquidation prices: "
                + ", ".join(f"{k} {v:.6g}" for k, v in risk.get("liquidation_price", {}).items()),
                int(ts),
                {"ratio": f"{ratio:.4f}", "limit": f"{limit:.4f}"},
            )
        ]

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
        if getattr(self.trader, "swap", False):
            carry = self._meta_pending.get(
                "unbooked_funding", self.meta.get("unbooked_funding", {})
            )
            problems = self.trader.reconcile_swap(
                list(symbols),
                units,
                self.meta.get("baseline", {}),
                self._equity(),
                self.rows.last_close,
                float(sum(carry.values())),
            )
        else:
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
        """The run so far as an :class:`~orchestra.results.result.OrchestratedResult` (rebuilt
        from the store: the loop keeps no history in memory)."""
        from orchestra.results.result import build_result

        if self.engine is None:
            raise ValueError("no bar processed yet")
        from orchestra.live.reader import full_engine

        return build_result(full_engine(self.config, self.store.load()), self.config, {})


class LiveGap:
    """The live–model gap of the latest bar (SPEC §13.5): each pod's live NAV against its NAV on
    the model's fills (``nav_gap = live / model − 1``), and each symbol's fill against the
    model's fill of the same bar (``slippage_bps``: positive = worse than the model; ``fee_bps``:
    the fee's share of the notional above the model's). A pod whose |gap| crosses
    ``graduation.max_backtest_live_gap`` raises one WARNING (again only after it has come back
    under the limit). The frames of the whole run: :func:`orchestra.live.reader.gap_frames`."""

    def __init__(self, n_pods: int):
        self.nav_gap = np.zeros(n_pods)
        self.slippage_bps: dict[str, float] = {}
        self.fee_bps: dict[str, float] = {}
        self.breached = np.zeros(n_pods, dtype=bool)

    def update(self, live: Engine, model: Engine, orders: list) -> list[dict]:
        """After a bar: the NAV gap, each order's slippage and fee against the model's fill of
        that very order (``exec_price`` moved by ``slippage_bps``; ``cost_bps``), alerts."""
        from orchestra.monitoring.notify import message

        t = live.next_bar - 1
        if t < 0 or model.next_bar - 1 != t:
            return []
        nav = live.rows(t, t + 1)["pod_nav"][0]
        ref = model.rows(t, t + 1)["pod_nav"][0]
        with np.errstate(divide="ignore", invalid="ignore"):
            self.nav_gap = np.where(ref > 0, nav / ref - 1.0, 0.0)
        params = live.prepared.inputs.params
        for o in orders:
            filled, px = float(o.get("filled") or 0.0), float(o.get("average") or 0.0)
            if not filled or not px:
                continue
            sign = 1.0 if o["side"] == "buy" else -1.0
            exec_px = float(o["exec_price"])
            model_px = exec_px * (1.0 + sign * params.slippage)
            o["model_price"], o["model_fee"] = model_px, params.cost * filled * model_px
            slip = sign * (px / model_px - 1.0) * 1e4
            fee = (float(o["fee"]) / (filled * px) - params.cost) * 1e4
            o["slippage_bps"], o["fee_bps"] = slip, fee
            self.slippage_bps[o["symbol"]], self.fee_bps[o["symbol"]] = slip, fee
        limit = float(live.prepared.config.orchestrator.graduation.max_backtest_live_gap)
        alerts = []
        over = np.abs(self.nav_gap) > limit
        for p in np.flatnonzero(over & ~self.breached):
            pid = live.prepared.pod_ids[p]
            alerts.append(
                message(
                    "live_model_gap",
                    "WARNING",
                    f"{pid}: live NAV {self.nav_gap[p]:+.2%} from the model",
                    f"the pod's books on the exchange's fills are {self.nav_gap[p]:+.2%} from the "
                    f"same pod on the model's fills (limit ±{limit:.2%}: "
                    "orchestrator.graduation.max_backtest_live_gap)",
                    live.timestamp(t),
                    {"pod": pid, "gap": f"{self.nav_gap[p]:.6f}", "limit": f"{limit:.6f}"},
                )
            )
        self.breached = over
        return alerts


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's ``malloc_trim``; a
    no-op elsewhere), so a restart's whole-history pass does not stay resident for months."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _sorted(bars: pl.DataFrame) -> pl.DataFrame:
    return bars.sort("symbol", "timestamp")


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


__all__ = ["LiveGap", "LiveSession", "release_memory"]
