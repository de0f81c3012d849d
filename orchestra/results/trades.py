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
from numba import njit

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


@njit(cache=True, nogil=True)
def _last_close(close, T, s):
    for t in range(T - 1, -1, -1):
        if close[t, s] == close[t, s]:
            return close[t, s]
    return np.nan


@njit(cache=True, nogil=True)
def _trips_nb(
    fill_slot, fill_bar, fill_units, fill_price, fill_fee, slot_sym, close, cum_funding, T
):
    """Round trips of every slot from its fills, sorted by slot and in time order within one
    (gathered so beforehand: visiting them through an index misses the cache at every fill).

    ``cum_funding[t, s]`` is ``Σ_{u<t} close·rate`` of symbol ``s``, so the funding of ``q``
    units held after bars ``a .. b−1`` is ``q·(cum[b] − cum[a])``; a run without funding passes
    one row of zeros (nothing is read: each trip's funding stays exactly 0). Returns one array per column
    (``bar1`` −1 while open); see the module docstring for the definitions."""
    n = fill_slot.shape[0]
    cap = 2 * n + 1
    t_slot = np.empty(cap, np.int64)
    t_side = np.empty(cap, np.float64)
    t_bar0 = np.empty(cap, np.int64)
    t_bar1 = np.empty(cap, np.int64)
    t_entry = np.empty(cap, np.float64)
    t_exit = np.empty(cap, np.float64)
    t_maxu = np.empty(cap, np.float64)
    t_fees = np.empty(cap, np.float64)
    t_fund = np.empty(cap, np.float64)
    t_pnl = np.empty(cap, np.float64)
    t_mae = np.empty(cap, np.float64)
    t_mfe = np.empty(cap, np.float64)
    grow_u = np.empty(cap, np.float64)
    shrink_u = np.empty(cap, np.float64)
    funded = cum_funding.shape[0] == T + 1
    m = 0
    i = 0
    while i < n:
        k = fill_slot[i]
        s = slot_sym[k]
        j = i
        while j < n and fill_slot[j] == k:
            j += 1
        # the slot's fills are i .. j-1; q is the position before each fill
        q = 0.0
        open_ = False
        cur = -1
        last_bar = -1
        for f in range(i, j):
            b = fill_bar[f]
            u = fill_units[f]
            p = fill_price[f]
            fee = fill_fee[f]
            if open_ and funded:  # funding on q held after bars last_bar .. b-1
                t_fund[cur] += q * (cum_funding[b, s] - cum_funding[last_bar, s])
            # a flip is two legs: close q, then open the rest (the fee split by units)
            flip = open_ and q * (q + u) < 0.0
            pos = q
            for leg in range(2 if flip else 1):
                uu = (-q if leg == 0 else q + u) if flip else u
                ff = fee * abs(uu) / abs(u) if flip else fee
                if not open_ and uu != 0.0:
                    cur = m
                    m += 1
                    open_ = True
                    t_slot[cur] = k
                    t_side[cur] = 1.0 if uu > 0 else -1.0
                    t_bar0[cur] = b
                    t_bar1[cur] = -1
                    t_entry[cur] = 0.0  # Σ |units|·price of the growing legs (then the mean)
                    t_exit[cur] = 0.0  # Σ |units|·price of the shrinking legs
                    grow_u[cur] = 0.0
                    shrink_u[cur] = 0.0
                    t_maxu[cur] = 0.0
                    t_fees[cur] = 0.0
                    t_fund[cur] = 0.0
                    t_pnl[cur] = 0.0
                if open_:
                    t_pnl[cur] -= uu * p + ff
                    t_fees[cur] += ff
                    if uu * t_side[cur] > 0:
                        t_entry[cur] += abs(uu) * p
                        grow_u[cur] += abs(uu)
                    else:
                        t_exit[cur] += abs(uu) * p
                        shrink_u[cur] += abs(uu)
                    before = pos
                    pos = 0.0 if flip and leg == 0 else pos + uu
                    t_maxu[cur] = max(t_maxu[cur], abs(pos))
                    if abs(pos) <= 1e-12 * max(abs(before), abs(uu)):  # back at 0 (round-off)
                        pos = 0.0
                        t_bar1[cur] = b
                        open_ = False
            q = q + u if abs(q + u) > 1e-12 * max(abs(q), abs(u)) else 0.0
            last_bar = b
        if open_:  # funding to the end, then marked at the last close (the last known one)
            if funded:
                t_fund[cur] += q * (cum_funding[T, s] - cum_funding[last_bar, s])
            t_pnl[cur] += q * _last_close(close, T, s)
        i = j
    # averages, excursions, funding and P&L
    for r in range(m):
        s = slot_sym[t_slot[r]]
        entry = t_entry[r] / grow_u[r] if grow_u[r] > 0 else np.nan
        is_open = t_bar1[r] < 0
        end = T - 1 if is_open else t_bar1[r]
        t_entry[r] = entry
        t_exit[r] = (
            _last_close(close, T, s) if is_open or shrink_u[r] == 0 else t_exit[r] / shrink_u[r]
        )
        lo = 0.0
        hi = 0.0
        if entry > 0:
            # x(c) = side·(c/entry − 1) is monotone in c (division by a positive number,
            # subtraction and a sign are monotone in floating point too), so its extremes over
            # the trip are x of the extreme closes: the same numbers as x at every bar, with
            # one division per trip instead of one per bar
            c_lo = np.inf
            c_hi = -np.inf
            for t in range(t_bar0[r], end + 1):
                c = close[t, s]
                if c == c:
                    c_lo = min(c_lo, c)
                    c_hi = max(c_hi, c)
            if c_lo <= c_hi:  # some close was known
                a = t_side[r] * (c_lo / entry - 1.0)
                b = t_side[r] * (c_hi / entry - 1.0)
                lo = min(lo, min(a, b))
                hi = max(hi, max(a, b))
        t_mae[r] = lo
        t_mfe[r] = hi
        t_pnl[r] -= t_fund[r]
    return (t_slot[:m], t_side[:m], t_bar0[:m], t_bar1[:m], t_entry[:m], t_exit[:m],
            t_maxu[:m], t_fees[:m], t_fund[:m], t_pnl[:m], t_mae[:m], t_mfe[:m])  # fmt: skip


def names(labels: list[str], index: np.ndarray) -> pl.Series:
    """``labels[index]`` as a String column, gathered in polars (no Python string per row: L
    has millions of fills and trips)."""
    return pl.Series(labels, dtype=pl.String).gather(np.asarray(index, dtype=np.int64))


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
    if T == 0 or fills["bar"].size == 0:
        return pl.DataFrame(schema=TRADE_SCHEMA)
    order = np.argsort(fills["slot"], kind="stable")  # by slot, in execution order within one
    px = np.ascontiguousarray(close[:T], dtype=np.float64)
    cum = np.zeros((1, px.shape[1]))  # no funding: nothing to read (see _trips_nb)
    if np.any(funding[:T]):  # funding paid per unit held, cumulated
        cum = np.zeros((T + 1, px.shape[1]))
        np.cumsum(np.nan_to_num(px * funding[:T]), axis=0, out=cum[1:])
    (slot, side, bar0, bar1, entry, exit_, maxu, fees, fund, pnl, mae, mfe) = _trips_nb(
        np.asarray(fills["slot"], dtype=np.int64)[order],
        np.asarray(fills["bar"], dtype=np.int64)[order],
        np.asarray(fills["units"], dtype=np.float64)[order],
        np.asarray(fills["price"], dtype=np.float64)[order],
        np.asarray(fills["fee"], dtype=np.float64)[order],
        np.ascontiguousarray(slot_sym, dtype=np.int64),
        px,
        cum,
        T,
    )
    is_open = bar1 < 0
    end = np.where(is_open, T - 1, bar1)
    ts = timestamps.astype(np.int64)
    # names by slot gathered in polars (no Python object per trip: L has ~10⁵–10⁶ trips)
    pods = names(slot_pod, slot).alias("pod_id")
    syms = names(slot_symbol, slot).alias("symbol")
    sides = names(["short", "long"], side > 0).alias("side")
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where((entry > 0) & (maxu > 0), pnl / (entry * maxu), np.nan)
    frame = pl.DataFrame(
        {
            "pod_id": pods,
            "symbol": syms,
            "side": sides,
            "entry_time": pl.Series(ts[bar0]).cast(TRADE_SCHEMA["entry_time"]),
            "exit_time": pl.Series(np.where(is_open, 0, ts[end])).cast(TRADE_SCHEMA["exit_time"]),
            "entry_price": entry,
            "exit_price": exit_,
            "max_units": maxu,
            "holding_days": (ts[end] - ts[bar0]) / 86_400_000,
            "fees": fees,
            "funding": fund,
            "pnl": pnl,
            "return": ret,
            "mae": mae,
            "mfe": mfe,
            "open": is_open,
        },
        schema=TRADE_SCHEMA,
    )
    frame = frame.with_columns(
        pl.when(pl.col("open")).then(None).otherwise(pl.col("exit_time")).alias("exit_time")
    )
    return frame  # in slot order (pods as configured, their symbols), each slot's trips in time


@njit(cache=True, nogil=True)
def slot_books_nb(slot, units, price, fee, n_slots):
    """Average entry and realised P&L of each fill's slot after it (see
    :func:`orchestra.results.result.slot_books`)."""
    n = slot.shape[0]
    avg_out = np.zeros(n)
    real_out = np.zeros(n)
    q = np.zeros(n_slots)
    avg = np.zeros(n_slots)
    realised = np.zeros(n_slots)
    for i in range(n):
        k = slot[i]
        u = units[i]
        p = price[i]
        q0 = q[k]
        q1 = q0 + u
        realised[k] -= fee[i]
        if q0 == 0.0 or q0 * u > 0.0:  # opens or grows
            avg[k] = (abs(q0) * avg[k] + abs(u) * p) / abs(q1) if q1 != 0.0 else 0.0
        else:  # shrinks, closes or flips
            closed = min(abs(u), abs(q0))
            realised[k] += closed * (p - avg[k]) * (1.0 if q0 > 0 else -1.0)
            if q0 * q1 < 0.0:
                avg[k] = p
            elif abs(q1) <= 1e-12 * max(abs(q0), abs(u)):
                avg[k] = 0.0
        q[k] = q1
        avg_out[i] = avg[k]
        real_out[i] = realised[k]
    return avg_out, real_out


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


@njit(cache=True, nogil=True)
def account_units_nb(bounds, ts, pod, units, n_pods, dust_rel):  # pragma: no cover (numba)
    """The account's units per symbol where they change, from the pods' position rows.

    Rows ``bounds[j] .. bounds[j+1]-1`` are symbol ``j``'s, sorted by time then pod. At each
    time a symbol's pods change, ``Q = q_0 + q_1 + …`` in pod order (each pod's units carried
    from its last change, 0 before its first), set to exactly 0 when ``|Q| ≤ dust_rel·Σ|q|``
    (the kernel's netting rule); a row is kept where ``Q`` differs from the previous time's.
    Returns ``(ts, symbol index, units)`` of the kept rows, symbol by symbol in time order."""
    n = ts.size
    out_ts = np.empty(n, dtype=np.int64)
    out_sym = np.empty(n, dtype=np.int64)
    out_units = np.empty(n)
    q = np.zeros(n_pods)
    m = 0
    for j in range(bounds.size - 1):
        q[:] = 0.0
        prev = 0.0
        i = bounds[j]
        while i < bounds[j + 1]:
            t = ts[i]
            while i < bounds[j + 1] and ts[i] == t:
                q[pod[i]] = units[i]
                i += 1
            total = q[0]
            gross = abs(q[0])
            for k in range(1, n_pods):
                total += q[k]
                gross += abs(q[k])
            if abs(total) <= dust_rel * gross:
                total = 0.0
            if total != prev:
                out_ts[m] = t
                out_sym[m] = j
                out_units[m] = total
                m += 1
            prev = total
    return out_ts[:m], out_sym[:m], out_units[:m]
