"""Round trips: each pod's trades per symbol from its attributed fills.

A trip opens when a pod's position in a symbol leaves 0 and closes when it is back at 0; a fill
that flips the side closes the trip and opens the next one at the same price (its fee split by
units). Every fill of the pod counts — external (its share of the net order and of its fee) and
internal crossings (at the unslipped price, no fee). Per trip:

* ``pnl`` — net: ``Σ −units·price − fee`` over its fills, less the funding it paid (perpetuals,
  the kernel's rule: units held after each bar × the close × the bar's rate), plus for a trip
  still open the position marked at the last close (``open`` true, ``exit_*`` at that close);
* ``entry_price`` / ``exit_price`` — unit-weighted averages of the fills that grew / shrank it;
* ``mae`` / ``mfe`` — the worst and best close while it was open, as a return on the entry
  price in the trip's direction (adverse excursion ≤ 0 ≤ favourable);
* ``holding_days`` — from the entry bar's timestamp to the exit bar's.

Summed over a pod's trips ``pnl`` is the pod's whole trading P&L (fees and funding included),
and over every pod the account's P&L, ``final equity − capital``, exactly up to float round-off
(tested): capital moves between pods are not P&L and never appear here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

TRADE_SCHEMA: dict[str, Any] = {
    "pod_id": pl.String,
    "symbol": pl.String,
    "side": pl.String,
    "entry_time": pl.Datetime("ms", "UTC"),
    "exit_time": pl.Datetime("ms", "UTC"),
    "entry_price": pl.Float64,
    "exit_price": pl.Float64,
    "max_units": pl.Float64,
    "holding_days": pl.Float64,
    "fees": pl.Float64,
    "funding": pl.Float64,
    "pnl": pl.Float64,
    "return": pl.Float64,
    "mae": pl.Float64,
    "mfe": pl.Float64,
    "open": pl.Boolean,
}


class _Trip:
    __slots__ = ("bar0", "bar1", "buy_px", "buy_u", "cash", "fees", "funding", "max_u",
                 "sell_px", "sell_u", "side")  # fmt: skip

    def __init__(self, bar: int, side: float) -> None:
        self.bar0, self.bar1, self.side = bar, -1, side
        self.cash = self.fees = self.funding = self.max_u = 0.0
        self.buy_u = self.buy_px = self.sell_u = self.sell_px = 0.0

    def fill(self, units: float, price: float, fee: float) -> None:
        self.cash -= units * price + fee
        self.fees += fee
        if units > 0:
            self.buy_u += units
            self.buy_px += units * price
        else:
            self.sell_u -= units
            self.sell_px -= units * price


def round_trips(
    timestamps: np.ndarray,
    close: np.ndarray,
    funding: np.ndarray,
    slot_pod: list[str],
    slot_symbol: list[str],
    slot_sym: np.ndarray,
    fills: dict[str, np.ndarray],
) -> pl.DataFrame:
    """The trips of every slot from the kernel's fill arrays (``bar, slot, units, price, fee``,
    in execution order) and the run's ``(T, S)`` closes and funding rates."""
    T = timestamps.size
    rows: list[dict[str, Any]] = []
    if T == 0 or fills["bar"].size == 0:
        return pl.DataFrame(schema=TRADE_SCHEMA)
    order = np.lexsort((np.arange(fills["bar"].size), fills["slot"]))  # by slot, then time
    slots = fills["slot"][order]
    bounds = np.flatnonzero(np.diff(slots)) + 1
    for chunk in np.split(order, bounds):
        k = int(fills["slot"][chunk[0]])
        s = int(slot_sym[k])
        px_close, rate = close[:T, s], funding[:T, s]
        bars = fills["bar"][chunk]
        units, price, fee = fills["units"][chunk], fills["price"][chunk], fills["fee"][chunk]
        # units held after each bar (the funding base): the last fill of a bar sets it
        held = np.zeros(T)
        q = 0.0
        trips: list[_Trip] = []
        trip: _Trip | None = None
        for b, u, p, f in zip(
            bars.tolist(), units.tolist(), price.tolist(), fee.tolist(), strict=True
        ):
            q1 = q + u
            if trip is not None and q != 0 and q * q1 < 0:  # a flip: close, then open the rest
                part = -q / u
                trip.fill(-q, p, f * part)
                trip.bar1 = b
                trips.append(trip)
                trip = _Trip(b, np.sign(q1))
                trip.fill(q1, p, f * (1 - part))
            else:
                if trip is None and u != 0:
                    trip = _Trip(b, np.sign(u))
                if trip is not None:
                    trip.fill(u, p, f)
            q = q1 if abs(q1) > 1e-12 * max(abs(q), abs(u)) else 0.0
            held[b:] = q
            if trip is not None:
                trip.max_u = max(trip.max_u, abs(q))
                if q == 0.0:
                    trip.bar1 = b
                    trips.append(trip)
                    trip = None
        if trip is not None:
            trips.append(trip)
        paid = held * px_close * np.nan_to_num(rate)  # the kernel's funding pass, per bar
        last_bar = T - 1
        for tr in trips:
            is_open = tr.bar1 < 0
            end = last_bar if is_open else tr.bar1
            # funding is paid on the units held after a bar: a closed trip's stop before its
            # exit bar (a flip's exit bar belongs to the next trip)
            tr.funding = float(paid[tr.bar0 : end + 1 if is_open else end].sum())
            mark = q * float(px_close[last_bar]) if is_open else 0.0
            entry_u, entry_px = (tr.buy_u, tr.buy_px) if tr.side > 0 else (tr.sell_u, tr.sell_px)
            exit_u, exit_px = (tr.sell_u, tr.sell_px) if tr.side > 0 else (tr.buy_u, tr.buy_px)
            entry = entry_px / entry_u if entry_u else float("nan")
            exit_ = exit_px / exit_u if exit_u and not is_open else float(px_close[last_bar])
            path = px_close[tr.bar0 : end + 1]
            path = path[np.isfinite(path)]
            exc = tr.side * (path / entry - 1.0) if path.size and entry > 0 else np.zeros(1)
            pnl = tr.cash - tr.funding + mark
            rows.append(
                {
                    "pod_id": slot_pod[k],
                    "symbol": slot_symbol[k],
                    "side": "long" if tr.side > 0 else "short",
                    "entry_time": int(timestamps[tr.bar0]),
                    "exit_time": None if is_open else int(timestamps[end]),
                    "entry_price": entry,
                    "exit_price": exit_,
                    "max_units": tr.max_u,
                    "holding_days": (int(timestamps[end]) - int(timestamps[tr.bar0])) / 86_400_000,
                    "fees": tr.fees,
                    "funding": tr.funding,
                    "pnl": pnl,
                    "return": pnl / (entry * tr.max_u) if entry > 0 and tr.max_u else float("nan"),
                    "mae": float(min(exc.min(), 0.0)),
                    "mfe": float(max(exc.max(), 0.0)),
                    "open": is_open,
                }
            )
    if not rows:
        return pl.DataFrame(schema=TRADE_SCHEMA)
    frame = pl.DataFrame(
        rows, schema={**TRADE_SCHEMA, "entry_time": pl.Int64, "exit_time": pl.Int64}
    )
    return frame.with_columns(
        pl.col("entry_time").cast(TRADE_SCHEMA["entry_time"]),
        pl.col("exit_time").cast(TRADE_SCHEMA["exit_time"]),
    ).sort("pod_id", "symbol", "entry_time")


def trade_summary(trips: pl.DataFrame) -> pl.DataFrame:
    """Per pod and symbol: trips, win rate, expectancy (mean P&L per trip), total P&L, average
    holding days, fees and funding (open trips marked at the last close)."""
    if not trips.height:
        return pl.DataFrame()
    return (
        trips.group_by("pod_id", "symbol", maintain_order=True)
        .agg(
            pl.len().alias("trips"),
            (pl.col("pnl") > 0).mean().alias("win_rate"),
            pl.col("pnl").mean().alias("expectancy"),
            pl.col("pnl").sum().alias("pnl"),
            pl.col("holding_days").mean().alias("avg_holding_days"),
            pl.col("fees").sum().alias("fees"),
            pl.col("funding").sum().alias("funding"),
        )
        .sort("pod_id", "symbol")
    )
