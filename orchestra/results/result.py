"""OrchestratedResult: the long-format polars frames of SPEC §11, metrics, save and load.

Every column is described in ``docs/results.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from orchestra.kernels.state import STATE_NAMES
from orchestra.results.metrics import METRIC_COLUMNS, state_figures, summarize
from orchestra.results.trades import TRADE_SCHEMA, names, round_trips
from orchestra.timeframes import DAY_MS, DAYS_PER_YEAR, period_days, timeframe_ms

TS = pl.Datetime("ms", "UTC")
FRAME_SCHEMAS: dict[str, dict[str, Any]] = {
    "equity": {
        "timestamp": TS,
        "equity": pl.Float64,
        "unallocated": pl.Float64,
        "gross_leverage": pl.Float64,
        "drawdown": pl.Float64,
    },
    "pod_equity": {
        "timestamp": TS,
        "pod_id": pl.String,
        "equity": pl.Float64,
        "nav": pl.Float64,
        "fraction": pl.Float64,
        "state": pl.String,
        "gross_leverage": pl.Float64,
    },
    "positions": {
        "timestamp": TS,
        "pod_id": pl.String,
        "symbol": pl.String,
        "units": pl.Float64,
        "weight": pl.Float64,
        # the pod's view (added 2026-12-03): its strategy's internal target weight at that bar,
        # the position's notional at the close, average entry price, realised P&L of the slot so
        # far (fills' cash against the average entry, fees included) and unrealised P&L
        "target_weight": pl.Float64,
        "notional": pl.Float64,
        "avg_entry": pl.Float64,
        "realised_pnl": pl.Float64,
        "unrealised_pnl": pl.Float64,
    },
    "account_positions": {"timestamp": TS, "symbol": pl.String, "units": pl.Float64},
    "exposures": {"timestamp": TS, "symbol": pl.String, "weight": pl.Float64},
    "fills": {
        "timestamp": TS,
        "pod_id": pl.String,
        "symbol": pl.String,
        "units": pl.Float64,
        "price": pl.Float64,
        "fee": pl.Float64,
        "venue": pl.String,
    },
    "allocations": {
        "timestamp": TS,
        "pod_id": pl.String,
        "fraction": pl.Float64,
        "method": pl.String,
        "fallback": pl.String,
        "trigger": pl.String,
    },
    "lifecycle_events": {
        "timestamp": TS,
        "pod_id": pl.String,
        "from_state": pl.String,
        "to_state": pl.String,
        "reason": pl.String,
        "value": pl.Float64,
        "threshold": pl.Float64,
    },
    "risk_contributions": {"timestamp": TS, "pod_id": pl.String, "prc": pl.Float64},
    "portfolio_risk": {"timestamp": TS, "effective_n": pl.Float64, "avg_correlation": pl.Float64},
    "alerts": {
        "timestamp": TS,
        "alert_type": pl.String,
        "severity": pl.String,
        "message": pl.String,
        "current_value": pl.Float64,
        "threshold": pl.Float64,
        "pod_id": pl.String,
    },
    "metrics": {"entity": pl.String, **dict.fromkeys(METRIC_COLUMNS, pl.Float64)},
    # live runs only (empty for a backtest): the live–model gap (orchestra.live.reader.gap_frames)
    "live_gap": {
        "timestamp": TS,
        "pod_id": pl.String,
        "symbol": pl.String,
        "units": pl.Float64,
        "price": pl.Float64,
        "fee": pl.Float64,
        "model_units": pl.Float64,
        "model_price": pl.Float64,
        "model_fee": pl.Float64,
        "slippage_bps": pl.Float64,
        "fee_bps": pl.Float64,
    },
    "live_nav_gap": {
        "timestamp": TS,
        "pod_id": pl.String,
        "nav": pl.Float64,
        "model_nav": pl.Float64,
        "gap": pl.Float64,
    },
    # the benchmark's value at each bar, 1 at the first (backtest.benchmark; empty for none)
    "benchmark": {"timestamp": TS, "name": pl.String, "value": pl.Float64},
    # round trips per pod and symbol (orchestra.results.trades)
    "trades": TRADE_SCHEMA,
}
FRAMES = list(FRAME_SCHEMAS)
# frames a run directory written before they existed does not hold (read as empty)
OPTIONAL_FRAMES = frozenset({"live_gap", "live_nav_gap", "benchmark", "trades"})


# frames that gained columns since runs were first saved: a run written before reads them as NaN
CORE_COLUMNS = {
    "metrics": {"entity"},
    "positions": {"timestamp", "pod_id", "symbol", "units", "weight"},
}


class RunDirError(ValueError):
    """A run directory whose files are missing or unreadable (one line for the CLI)."""


def _read_frame(d: Path, name: str) -> pl.DataFrame:
    path = d / f"{name}.parquet"
    if not path.is_file():
        if name in OPTIONAL_FRAMES:
            return empty_frame(name)
        raise RunDirError(
            f"{path}: missing; the run directory is incomplete (rerun `orch-bt run` to write it)"
        )
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several kinds for a truncated or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(
            f"{path}: not a readable parquet file ({first}); rerun `orch-bt run` to rewrite it"
        ) from None
    lost = [c for c in FRAME_SCHEMAS[name] if c not in frame.columns]
    core = CORE_COLUMNS.get(name)
    if core is not None and core <= set(frame.columns):  # columns added since: unknown (NaN)
        frame = frame.with_columns([pl.lit(float("nan")).alias(c) for c in lost])
        lost = []
    if lost:
        raise RunDirError(
            f"{path}: no column(s) {lost}: not a {name} frame of orchestra; rerun `orch-bt run`"
        )
    try:
        return frame.select([pl.col(c).cast(t) for c, t in FRAME_SCHEMAS[name].items()])
    except pl.exceptions.PolarsError:
        raise RunDirError(
            f"{path}: columns of the wrong type for a {name} frame; rerun `orch-bt run`"
        ) from None


def _read_summary(d: Path) -> dict[str, Any]:
    path = d / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(
            f"{path}: not valid JSON ({exc}); rerun `orch-bt run` to rewrite it"
        ) from None
    if not isinstance(summary, dict):
        raise RunDirError(f"{path}: holds a {type(summary).__name__}, not a JSON object")
    return summary


def empty_frame(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=FRAME_SCHEMAS[name])


@dataclass
class OrchestratedResult:
    """Result of one orchestrated backtest: frames (see ``docs/results.md``) and a summary."""

    equity: pl.DataFrame
    pod_equity: pl.DataFrame
    positions: pl.DataFrame
    account_positions: pl.DataFrame
    exposures: pl.DataFrame
    fills: pl.DataFrame
    allocations: pl.DataFrame
    lifecycle_events: pl.DataFrame
    risk_contributions: pl.DataFrame
    portfolio_risk: pl.DataFrame
    alerts: pl.DataFrame
    metrics: pl.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    live_gap: pl.DataFrame = field(default_factory=lambda: empty_frame("live_gap"))
    live_nav_gap: pl.DataFrame = field(default_factory=lambda: empty_frame("live_nav_gap"))
    benchmark: pl.DataFrame = field(default_factory=lambda: empty_frame("benchmark"))
    trades: pl.DataFrame = field(default_factory=lambda: empty_frame("trades"))

    def returns(self, entity: str = "account"):
        """Daily returns of the account (or a pod's NAV) as a pandas Series indexed by UTC date:
        hand it to QuantStats (``qs.reports.html(res.returns(), res.returns("benchmark"))``).
        ``"benchmark"`` gives the benchmark's. Needs pandas."""
        from orchestra.results.analytics import daily_returns

        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "OrchestratedResult.returns needs pandas: pip install pandas"
            ) from None
        r = daily_returns(self, entity)
        return pd.Series(
            r["return"].to_numpy(),
            index=pd.DatetimeIndex(r["date"].to_list()),
            name=entity,
        )

    @property
    def analytics(self) -> pl.DataFrame:
        """Return analytics of the account and each pod on daily returns (see
        :func:`orchestra.results.analytics.analytics`)."""
        from orchestra.results.analytics import analytics

        return analytics(self)

    def frames(self) -> dict[str, pl.DataFrame]:
        return {name: getattr(self, name) for name in FRAMES}

    def save(self, directory: str | Path) -> Path:
        """Write every frame as parquet plus ``summary.json`` (config, hash, data range, version)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames().items():
            tmp = d / f".{name}.parquet.tmp"
            frame.write_parquet(tmp)
            tmp.replace(d / f"{name}.parquet")
        (d / "summary.json").write_text(json.dumps(self.summary, indent=2, default=str))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> OrchestratedResult:
        """Read a run directory written by :meth:`save` (a live state directory is read by
        :func:`orchestra.load_run`, which takes either)."""
        d = Path(directory)
        if not (d / "summary.json").is_file() and (d / "live.sqlite").is_file():
            raise FileNotFoundError(
                f"{d} is a live state directory: read it with orchestra.load_run({str(d)!r})"
            )
        if not (d / "summary.json").is_file():
            raise FileNotFoundError(f"{d} is not a run directory (no summary.json)")
        summary = _read_summary(d)
        frames = {name: _read_frame(d, name) for name in FRAMES}
        return cls(**frames, summary=summary)

    def for_pod(self, pod_id: str) -> OrchestratedResult:
        """The same result seen from one pod: its equity as the ``equity`` frame, its rows of
        every per-pod frame, its metrics (the report of a pod, ``orch-bt report --pod``)."""
        pods = self.metrics["entity"].to_list()[1:]
        if pod_id not in pods:
            raise KeyError(f"no pod {pod_id!r}; pods: {', '.join(pods)}")
        mine = pl.col("pod_id") == pod_id
        pe = self.pod_equity.filter(mine).sort("timestamp")
        nav = pe["nav"].to_numpy()
        equity = pl.DataFrame(
            {
                "timestamp": pe["timestamp"],
                "equity": pe["equity"],
                "unallocated": np.zeros(pe.height),
                "gross_leverage": pe["gross_leverage"],
                "drawdown": _drawdown(nav) if nav.size else np.zeros(0),
            },
            schema=FRAME_SCHEMAS["equity"],
        )
        positions = self.positions.filter(mine)
        row = self.metrics.filter(pl.col("entity") == pod_id)
        summary = {
            **self.summary,
            "pod": pod_id,
            "netting_savings": float(row["netting_savings"][0]),
            "final_equity": float(pe["equity"][-1]) if pe.height else 0.0,
        }
        return OrchestratedResult(
            equity=equity,
            pod_equity=pe,
            positions=positions,
            account_positions=positions.select(list(FRAME_SCHEMAS["account_positions"])),
            exposures=empty_frame("exposures"),
            fills=self.fills.filter(mine),
            allocations=self.allocations.filter(mine),
            lifecycle_events=self.lifecycle_events.filter(mine),
            risk_contributions=self.risk_contributions.filter(mine),
            portfolio_risk=empty_frame("portfolio_risk"),  # the account's, not the pod's
            alerts=self.alerts.filter(mine),
            metrics=row,
            benchmark=self.benchmark,
            trades=self.trades.filter(mine),
            summary=summary,
        )

    def pod_metrics(self, pod_id: str) -> dict[str, float]:
        row = self.metrics.filter(pl.col("entity") == pod_id)
        return row.drop("entity").to_dicts()[0] if row.height else {}


def _venue_problems(config) -> list[str]:
    from orchestra.config import venue_problems

    return venue_problems(config)


def _run_scales(engine, config) -> tuple[np.ndarray, float, float, float, int]:
    """Day-end bars, the run's days and years, day-end returns a year, the rolling window."""
    inp = engine.inputs
    T = engine.next_bar
    day_end = np.flatnonzero(inp.day_end[:T])
    days = (
        T * (float(inp.timestamps[1] - inp.timestamps[0]) if T > 1 else 86_400_000.0) / 86_400_000.0
    )
    years = days / 365.0 if days > 0 else 1.0
    period = period_days(config.clock_timeframe)
    per_year = DAYS_PER_YEAR / period  # day-end returns per year
    # the rolling volatility's window: the lifecycle's rolling Sharpe window, in day-end steps
    window = max(2, round(config.orchestrator.retirement.rolling_sharpe_window / period))
    return day_end, days, years, per_year, window


ACCOUNT_FILL_FIELDS = ("units", "price", "venue")  # what account_metrics reads of the fills


def account_metrics(engine, config, fills_raw: dict[str, np.ndarray]) -> dict[str, float]:
    """The account's row of the metrics frame, from a finished engine and its fill arrays (at
    least ``ACCOUNT_FILL_FIELDS``; one code path for the full result and a sweep's light one)."""
    st, out = engine.state, engine.out
    T = engine.next_bar
    capital = config.backtest.capital
    eq = out.equity[:T]
    day_end, days, years, per_year, window = _run_scales(engine, config)
    mask = fills_raw["venue"] == 0
    units, price = fills_raw["units"], fills_raw["price"]
    if not mask.all():  # (every fill at the venue, as with one pod: the arrays as they are)
        units, price = units[mask], price[mask]
    ext = pl.DataFrame({"units": units, "price": price},
                       schema={"units": pl.Float64, "price": pl.Float64})  # fmt: skip
    acct_notional = float((ext["units"].abs() * ext["price"]).sum()) if ext.height else 0.0
    mean_eq = float(np.mean(eq)) if eq.size else capital
    return {
        **summarize(
            np.concatenate([[capital], eq]),
            np.concatenate([[capital], eq[day_end]]),
            days,
            ext.height,
            acct_notional / mean_eq / years,
            float(st.account_fees[0]),
            float(st.pod_alone_fees.sum() - st.account_fees[0]),
            float(np.nanmean(out.gross_leverage[:T])) if T else 0.0,
            per_year,
        ),
        **state_figures(
            np.concatenate([[capital], eq[day_end]]),
            np.concatenate([[capital], eq]),
            days,
            window,
            per_year,
        ),
    }


def build_result(
    engine, config, timings: dict[str, float] | None = None, release_target: bool = False
) -> OrchestratedResult:
    """Assemble the frames and metrics from a finished :class:`~orchestra.engine.core.Engine`.

    ``release_target``: the caller is done with the engine, so its ``(T, K)`` target matrix is
    freed (:meth:`~orchestra.engine.core.Engine.release_target`) once the positions' target
    weights are read from it, before the frames are built (:func:`~orchestra.run_backtest`
    does: the frames then never sit beside the largest array of the run).
    """
    from concurrent.futures import ThreadPoolExecutor

    from orchestra import precompile

    precompile.wait()  # a first run's second process compiling the results' kernels, if any
    fills_raw = engine.fills()
    rows = _position_rows(fills_raw)
    target_weight = engine.fill_target_weights(fills_raw)[rows]
    if release_target:
        engine.release_target()
    # the daily risk monitor (numpy on small windows, Python between) and the round trips (a
    # numba kernel over every fill, then polars) run beside the other frames (polars and numba,
    # which release the GIL); they only read the run's inputs, outputs and fills
    inp, T = engine.inputs, engine.next_bar
    labels = engine.prepared.slot_labels
    with ThreadPoolExecutor(2) as pool:
        monitor = pool.submit(_monitor, engine, config)
        trades = pool.submit(
            round_trips,
            inp.timestamps[:T],
            inp.close,
            inp.funding,
            [lbl[0] for lbl in labels],
            [lbl[1] for lbl in labels],
            inp.slot_sym,
            fills_raw,
        )
        return _build_result(
            engine, config, timings, monitor, trades, fills_raw, rows, target_weight
        )


def _position_rows(fills_raw: dict[str, np.ndarray]) -> np.ndarray:
    """The fills that end a slot's trading at a bar (its last fill there): the positions' rows."""
    bars = fills_raw["bar"].astype(np.int64)
    slots = fills_raw["slot"].astype(np.int64)
    last = np.ones(bars.size, dtype=bool)
    if bars.size:
        key = bars * (slots.max() + 1) + slots
        last[:-1] = key[1:] != key[:-1]
    return last


def _build_result(
    engine, config, timings, monitor, trades, fills_raw, last, target_weight
) -> OrchestratedResult:
    from orchestra import __version__

    prep = engine.prepared
    inp = engine.inputs
    out = engine.out
    st = engine.state
    T = engine.next_bar
    ts = pl.Series("timestamp", inp.timestamps[:T]).cast(TS)
    pod_ids = prep.pod_ids
    P = len(pod_ids)
    capital = config.backtest.capital
    eq = out.equity[:T]
    equity = pl.DataFrame(
        {
            "timestamp": ts,
            "equity": eq,
            "unallocated": out.unallocated[:T],
            "gross_leverage": out.gross_leverage[:T],
            "drawdown": _drawdown(np.concatenate([[capital], eq]))[1:],
        }
    )
    pod_equity = pl.DataFrame(
        {
            "timestamp": pl.Series(np.repeat(inp.timestamps[:T], P)).cast(TS),
            "pod_id": names(pod_ids, np.tile(np.arange(P), T)),
            "equity": out.pod_equity[:T].ravel(),
            "nav": out.pod_nav[:T].ravel(),
            "fraction": out.pod_fraction[:T].ravel(),
            "state": names(list(STATE_NAMES), out.pod_state[:T].ravel()),
            "gross_leverage": out.pod_gross[:T].ravel(),
        },
        schema=FRAME_SCHEMAS["pod_equity"],
    )
    slot_pod = np.array([lbl[0] for lbl in prep.slot_labels], dtype=object)
    slot_symbol = np.array([lbl[1] for lbl in prep.slot_labels], dtype=object)
    bars = fills_raw["bar"].astype(np.int64)
    slots = fills_raw["slot"].astype(np.int64)
    fills = pl.DataFrame(
        {
            "timestamp": pl.Series(inp.timestamps[bars]).cast(TS),
            "pod_id": names(slot_pod.tolist(), slots),
            "symbol": names(slot_symbol.tolist(), slots),
            "units": fills_raw["units"],
            "price": fills_raw["price"],
            "fee": fills_raw["fee"],
            "venue": names(["external", "internal"], (fills_raw["venue"] != 0)),
        },
        schema=FRAME_SCHEMAS["fills"],
    )
    # positions: the slot's units after each bar where it traded (rows: _position_rows)
    pb, ps = bars[last], slots[last]
    after = fills_raw["units_after"][last]
    sym_idx = inp.slot_sym[ps] if ps.size else np.zeros(0, dtype=np.int64)
    close = inp.close[pb, sym_idx] if ps.size else np.zeros(0)
    books = slot_books(fills_raw, inp.slot_pod.size)
    positions = pl.DataFrame(
        {
            "timestamp": pl.Series(inp.timestamps[pb]).cast(TS),
            "pod_id": names(slot_pod.tolist(), ps),
            "symbol": names(slot_symbol.tolist(), ps),
            "units": after,
            "weight": after * close / out.equity[pb] if ps.size else np.zeros(0),
            "target_weight": target_weight,
            "notional": after * close,
            "avg_entry": books["avg_entry"][last],
            "realised_pnl": books["realised"][last],
            "unrealised_pnl": after * (close - books["avg_entry"][last]),
        },
        schema=FRAME_SCHEMAS["positions"],
    )
    # the account's units, from the same rows as codes (no string ranks or sorts)
    sym_names = sorted(set(slot_symbol.tolist()))
    sym_rank = {x: i for i, x in enumerate(sym_names)}
    sym_code = np.array([sym_rank[x] for x in slot_symbol.tolist()], dtype=np.int64)
    pod_rank = np.argsort(np.argsort(np.array(pod_ids, dtype=object), kind="stable"))
    account_positions = _account_frame(
        inp.timestamps[pb],
        sym_code[ps],
        pod_rank[inp.slot_pod[ps]].astype(np.int64),
        after,
        sym_names,
    )
    allocations = _records_frame(engine.allocator.allocations, "allocations")
    lifecycle = _lifecycle_frame(engine)
    snaps, monitor_alerts = monitor.result()
    prc = _prc_frame(snaps, pod_ids)
    alerts = _alerts_frame(engine, monitor_alerts, pod_ids)

    # metrics
    day_end, days, years, per_year, window = _run_scales(engine, config)
    rows = [{"entity": "account", **account_metrics(engine, config, fills_raw)}]
    for p, pid in enumerate(pod_ids):
        nav = out.pod_nav[:T, p]
        rows.append(
            {
                "entity": pid,
                **summarize(
                    np.concatenate([[1.0], nav]),
                    np.concatenate([[1.0], nav[day_end]]),
                    days,
                    int(st.pod_trades[p]),
                    _turnover(float(st.pod_notional[p]), out.pod_equity[:T, p], years),
                    float(st.pod_fees[p]),
                    float(st.pod_alone_fees[p] - st.pod_fees[p]),
                    float(np.mean(out.pod_gross[:T, p])) if T else 0.0,
                    per_year,
                ),
                **state_figures(
                    np.concatenate([[1.0], nav[day_end]]),
                    np.concatenate([[1.0], nav]),
                    float(st.pod_live_days[p]),
                    window,
                    per_year,
                ),
            }
        )
    metrics = pl.DataFrame(rows, schema=FRAME_SCHEMAS["metrics"])
    summary = {
        "version": __version__,
        "config": config.model_dump(mode="json"),
        "config_hash": config.config_hash,
        "data_source": prep.data_label,
        "data_notes": list(prep.data_notes),
        "data_range": {
            "first_bar": str(ts[0]) if T else None,
            "last_bar": str(ts[-1]) if T else None,
            "bars": T,
            "timeframe": prep.market.timeframe,
            "symbols": prep.market.symbols,
        },
        "market": config.data.market,
        "spot_violations": _venue_problems(config),
        "execution": config.backtest.execution,
        "execution_note": (
            "fills at the bar's close: optimistic (the signal and the fill use the same price)"
            if config.backtest.execution == "close"
            else "fills at the next bar's open"
        ),
        "capital": capital,
        "final_equity": float(eq[-1]) if T else capital,
        "account_fees": float(st.account_fees[0]),
        "netting_savings": float(st.pod_alone_fees.sum() - st.account_fees[0]),
        "time_in_cash": time_in_cash(
            out.pod_state[:T],
            out.pod_fraction[:T],
            ts,
            timeframe_ms(config.clock_timeframe) / DAY_MS,
        ),
        "timings": timings or {},
    }
    return OrchestratedResult(
        trades=trades.result(),
        benchmark=_benchmark_frame(
            config, prep.market.symbols, inp.close[:T], inp.timestamps[:T], inp.day_end[:T]
        ),
        equity=equity,
        pod_equity=pod_equity,
        positions=positions,
        account_positions=account_positions,
        exposures=_exposures(engine, account_positions),
        fills=fills,
        allocations=allocations,
        lifecycle_events=lifecycle,
        risk_contributions=prc,
        portfolio_risk=_portfolio_risk_frame(snaps),
        alerts=alerts,
        metrics=metrics,
        summary=summary,
    )


def _account_positions(positions: pl.DataFrame) -> pl.DataFrame:
    """Account units per symbol, ``Q[s] = Σ_p q[p,s]``, at the bars where they change.

    Summed from the pods' units in pod-id order, each pod's units carried forward from its
    last change (0 before its first). Units that cancel to round-off (``|Q| ≤ 1e-9·Σ|q|``, the
    kernel's netting rule) are exactly 0, so a flat account is 0 with no residue; bars where
    pods traded but the account's units did not change (pure internal crossing) have no row.
    """
    if positions.height == 0:
        return empty_frame("account_positions")
    codes = positions.select(
        pl.col("timestamp").dt.epoch("ms").alias("ts"),
        (pl.col("symbol").rank("dense") - 1).cast(pl.Int64).alias("sym"),  # name order
        (pl.col("pod_id").rank("dense") - 1).cast(pl.Int64).alias("pod"),  # pod-id order
        "units",
    )
    symbols = positions["symbol"].unique().sort().to_list()
    return _account_frame(
        codes["ts"].to_numpy(),
        codes["sym"].to_numpy(),
        codes["pod"].to_numpy(),
        codes["units"].to_numpy(),
        symbols,
    )


def _account_frame(
    ts: np.ndarray, sym: np.ndarray, pod: np.ndarray, units: np.ndarray, symbols: list[str]
) -> pl.DataFrame:
    """:func:`_account_positions` from the pods' rows as codes: ``sym`` indexes ``symbols``
    (sorted by name), ``pod`` is the pod's rank in pod-id order. One numba pass over the rows
    sorted by symbol, time and pod (a polars grid join over every pod × change bar was 1.6 s on
    L; string ranks and sorts of the position frame 0.04 s on M)."""
    from orchestra.kernels.step import DUST_REL
    from orchestra.results.trades import account_units_nb

    if ts.size == 0:
        return empty_frame("account_positions")
    rows = pl.DataFrame({"sym": sym, "ts": ts, "pod": pod, "units": units}).sort("sym", "ts", "pod")
    sym_sorted = rows["sym"].to_numpy()
    out_ts, out_sym, out_units = account_units_nb(
        np.searchsorted(sym_sorted, np.arange(len(symbols) + 1)).astype(np.int64),
        rows["ts"].to_numpy(),
        rows["pod"].to_numpy(),
        rows["units"].to_numpy(),
        int(pod.max()) + 1,
        DUST_REL,
    )
    order = np.lexsort((out_sym, out_ts))  # by timestamp, then symbol name
    return pl.DataFrame(
        {
            "timestamp": pl.Series(out_ts[order]).cast(TS),
            "symbol": names(symbols, out_sym[order]),
            "units": out_units[order],
        }
    ).select(list(FRAME_SCHEMAS["account_positions"]))


def _lifecycle_frame(engine) -> pl.DataFrame:
    from orchestra.kernels.state import REASONS

    ev = engine.events()
    if ev["bar"].size == 0:
        return empty_frame("lifecycle_events")
    ids = np.array(engine.prepared.pod_ids, dtype=object)
    names = np.array(STATE_NAMES, dtype=object)
    reasons = np.array(REASONS, dtype=object)
    return pl.DataFrame(
        {
            "timestamp": pl.Series(engine.inputs.timestamps[ev["bar"]]).cast(TS),
            "pod_id": ids[ev["pod"]].tolist(),
            "from_state": names[ev["from"]].tolist(),
            "to_state": names[ev["to"]].tolist(),
            "reason": reasons[ev["reason"]].tolist(),
            "value": ev["value"],
            "threshold": ev["threshold"],
        },
        schema=FRAME_SCHEMAS["lifecycle_events"],
    )


def _benchmark_frame(
    config, symbols: list[str], close: np.ndarray, timestamps: np.ndarray, day_end: np.ndarray
) -> pl.DataFrame:
    """``backtest.benchmark`` at the run's first bar (value 1) and at each UTC day's close —
    all the daily analytics read (see the config field). A symbol is bought and held from its
    first bar; the basket is rebalanced to equal weights at each day's close."""
    choice = config.backtest.benchmark
    traded = sorted({s for p in config.pods for s in p.symbols})
    if choice == "auto":
        choice = next((s for s in ("BTC/USDT", "BTC/USDT:USDT") if s in traded), "basket")
    if choice == "none" or close.shape[0] == 0:
        return empty_frame("benchmark")
    rows = np.unique(np.concatenate([[0], np.flatnonzero(day_end)]))
    if choice == "basket":
        cols = np.array([symbols.index(s) for s in traded if s in symbols], dtype=np.int64)
        px = close[np.ix_(rows, cols)]
        px = pl.DataFrame(px).with_columns(pl.all().fill_nan(None).forward_fill()).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = px[1:] / px[:-1] - 1.0
        listed = np.isfinite(r)
        n = listed.sum(axis=1)
        mean = np.where(n > 0, np.where(listed, r, 0.0).sum(axis=1) / np.maximum(n, 1), 0.0)
        value = np.concatenate([[1.0], np.cumprod(1.0 + mean)])
        name = "basket of " + ", ".join(traded)
    else:
        px = close[rows, symbols.index(choice)]
        filled = pl.Series(px).fill_nan(None).forward_fill().to_numpy()
        finite = np.isfinite(filled)
        first = int(np.argmax(finite)) if finite.any() else 0
        value = np.where(np.arange(px.size) < first, 1.0, filled / filled[first])
        name = f"{choice} buy and hold"
    return pl.DataFrame(
        {
            "timestamp": pl.Series(timestamps[rows]).cast(TS),
            "name": pl.repeat(name, rows.size, eager=True, dtype=pl.String),
            "value": value,
        },
        schema=FRAME_SCHEMAS["benchmark"],
    )


def slot_books(fills: dict[str, np.ndarray], n_slots: int) -> dict[str, np.ndarray]:
    """After each fill (kernel order): its slot's average entry price and realised P&L so far.

    Average cost: a fill that grows the position (or opens it) moves the average entry; one that
    shrinks it realises ``closed units × (price − entry)`` in the position's direction; a flip
    realises the old side and opens the rest at the fill's price. Fees are realised when paid.
    """
    from orchestra.results.trades import slot_books_nb

    avg, realised = slot_books_nb(
        np.ascontiguousarray(fills["slot"], dtype=np.int64),
        np.ascontiguousarray(fills["units"], dtype=np.float64),
        np.ascontiguousarray(fills["price"], dtype=np.float64),
        np.ascontiguousarray(fills["fee"], dtype=np.float64),
        n_slots,
    )
    return {"avg_entry": avg, "realised": realised}


def time_in_cash(
    states: np.ndarray, fractions: np.ndarray, timestamps: Any, bar_days: float
) -> dict[str, Any]:
    """How long the book sat in cash: bars (after a first pod was funded) at whose close every
    pod was retired or held no capital, in days and as a share of the run; ``since``: the start
    of the stretch that lasts to the end (None when the book ends invested)."""
    from orchestra.kernels.state import RETIRED

    T = states.shape[0]
    if T == 0:
        return {"days": 0.0, "share": 0.0, "since": None}
    active = ((states != RETIRED) & (fractions > 0)).any(axis=1)
    out = (np.cumsum(active) > 0) & ~active
    since = None
    if out[-1]:
        start = T - int(np.argmax(~out[::-1])) if not out.all() else 0
        since = str(timestamps[start])
    return {"days": float(out.sum() * bar_days), "share": float(out.mean()), "since": since}


def _monitor(engine, config):
    from orchestra.risk import daily_monitor

    inp, out = engine.inputs, engine.out
    T = engine.next_bar
    bars = np.flatnonzero(inp.day_end[:T])
    if bars.size < 2:
        return [], []
    o = config.orchestrator
    return daily_monitor(
        inp.timestamps[bars],
        out.pod_nav[bars],
        out.pod_fraction[bars],
        engine.prepared.pod_ids,
        o.correlation.lookback,
        o.correlation.stress_threshold,
        o.risk.max_single_pod_risk_pct,
        o.min_history,
        period_days(config.clock_timeframe),
        min_effective_n=o.risk.min_effective_n,
        states=out.pod_state[bars],
    )


def _prc_frame(snaps: list, pod_ids: list[str]) -> pl.DataFrame:
    if not snaps:
        return empty_frame("risk_contributions")
    P = len(pod_ids)
    return pl.DataFrame(
        {
            "timestamp": pl.Series(np.repeat([s.timestamp for s in snaps], P)).cast(TS),
            "pod_id": pod_ids * len(snaps),
            "prc": np.concatenate([s.prc for s in snaps]),
        },
        schema=FRAME_SCHEMAS["risk_contributions"],
    )


def _portfolio_risk_frame(snaps: list) -> pl.DataFrame:
    if not snaps:
        return empty_frame("portfolio_risk")
    return pl.DataFrame(
        {
            "timestamp": pl.Series([s.timestamp for s in snaps]).cast(TS),
            "effective_n": [s.effective_n for s in snaps],
            "avg_correlation": [s.avg_correlation for s in snaps],
        },
        schema=FRAME_SCHEMAS["portfolio_risk"],
    )


def kernel_alert_text(kind: int, value: float, thr: float, pod: str | None, action: str) -> str:
    """The message of a kernel alert (the alerts frame and the live notifications)."""
    from orchestra.kernels.state import (
        A_ACCOUNT_BUST,
        A_DAILY_LOSS,
        A_GROSS_OVER_CAP,
        A_POD_UNDER_MIN_CAPITAL,
    )

    if kind == A_POD_UNDER_MIN_CAPITAL:
        return (
            f"{pod} was given {value:,.2f}, below orchestrator.min_pod_capital {thr:,.0f}: "
            "not funded (fraction 0) until a request reaches the minimum"
        )
    if kind == A_GROSS_OVER_CAP:
        return (
            f"gross leverage {value:.3f} above max_gross_leverage {thr:g} at a close (prices "
            "moved since the execution); the next execution scales the pods back under it"
        )
    if kind == A_ACCOUNT_BUST:
        return f"account equity reached {value:,.2f} (≤ 0): flattened, the run stops trading"
    if kind == A_DAILY_LOSS:
        return (
            f"equity fell {value:.1%} from the day's open (limit {thr:.1%}): flatten at the "
            "next execution, no trades until the next UTC day"
        )
    return f"portfolio drawdown {value:.1%} beyond {thr:.1%}: action {action}"


def _alerts_frame(engine, monitor_alerts: list, pod_ids: list[str]) -> pl.DataFrame:
    from orchestra.kernels.state import ALERT_SEVERITY, ALERT_TYPES
    from orchestra.risk import RiskAlert

    al = engine.alerts()
    rows = list(monitor_alerts)
    action = engine.prepared.config.orchestrator.risk.drawdown_action
    for i in range(al["bar"].size):
        kind = int(al["type"][i])
        value, thr = float(al["value"][i]), float(al["threshold"][i])
        ts = int(engine.inputs.timestamps[al["bar"][i]])
        pod = pod_ids[int(al["pod"][i])] if int(al["pod"][i]) >= 0 else None
        msg = kernel_alert_text(kind, value, thr, pod, action)
        rows.append(RiskAlert(ts, ALERT_TYPES[kind], ALERT_SEVERITY[kind], msg, value, thr, pod))
    if not rows:
        return empty_frame("alerts")
    frame = _records_frame(rows, "alerts")
    return frame.sort("timestamp", maintain_order=True)


def _exposures(engine, account_positions: pl.DataFrame) -> pl.DataFrame:
    """Net weight per symbol, ``Q[s]·close[s] / equity``, at every UTC day end."""
    inp, out = engine.inputs, engine.out
    T = engine.next_bar
    bars = np.flatnonzero(inp.day_end[:T])
    symbols = engine.prepared.market.symbols
    if bars.size == 0 or account_positions.height == 0:
        return empty_frame("exposures")
    ts_all = inp.timestamps[bars]
    # each symbol's rows, in time order (a stable sort of the time-sorted frame by symbol)
    index = {sym: j for j, sym in enumerate(symbols)}
    codes = account_positions["symbol"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    t_pos_all = account_positions["timestamp"].dt.epoch("ms").to_numpy()[order]
    units_all = account_positions["units"].to_numpy()[order]
    bounds = np.searchsorted(codes, np.arange(len(symbols) + 1))
    present, weights = [], []
    for j in range(len(symbols)):
        a, b = bounds[j], bounds[j + 1]
        if a == b:
            continue
        idx = np.searchsorted(t_pos_all[a:b], ts_all, side="right") - 1
        units = np.where(idx >= 0, units_all[a:b][np.maximum(idx, 0)], 0.0)
        weights.append(np.nan_to_num(units * inp.close[bars, j]) / out.equity[bars])
        present.append(j)
    if not present:
        return empty_frame("exposures")
    return pl.DataFrame(
        {
            "timestamp": pl.Series(np.tile(ts_all, len(present))).cast(TS),
            "symbol": names(list(symbols), np.repeat(present, ts_all.size)),
            "weight": np.concatenate(weights),
        }
    ).select(list(FRAME_SCHEMAS["exposures"]))


def _turnover(notional: float, equity: np.ndarray, years: float) -> float:
    """Traded notional / mean equity (over bars with capital), per year."""
    live = equity[equity > 0]
    return notional / float(live.mean()) / years if live.size and notional > 0 else 0.0


def _drawdown(values: np.ndarray) -> np.ndarray:
    from orchestra.results.metrics import drawdown

    return drawdown(values)


def _records_frame(records: list, name: str) -> pl.DataFrame:
    schema = FRAME_SCHEMAS[name]
    if not records:
        return empty_frame(name)
    rows = [{k: getattr(r, k, None) for k in schema} for r in records]
    frame = pl.DataFrame(
        rows, schema={k: (pl.Int64 if k == "timestamp" else v) for k, v in schema.items()}
    )
    return frame.with_columns(pl.col("timestamp").cast(TS))
