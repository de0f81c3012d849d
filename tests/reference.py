"""A slow, obviously correct pure-Python model of the accounting (SPEC §9) — the tests' oracle.

It re-implements, per bar and with plain Python floats and dicts, what the numba kernels do:
pod rules (stop lock, leverage cap, rebalance threshold), the portfolio gross-leverage cap,
netting per symbol with external fills shared by the pods on the net side and internal crossing
for the rest, fees, slippage, funding, the daily-loss circuit breaker, and marking at close. It
reads the same inputs as the kernels but shares no code with them. It is also the "naive per-bar
Python loop" of the benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def sign(x: float) -> float:
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


@dataclass
class Slot:
    pod: int
    sym: int
    units: float = 0.0
    avg: float = 0.0
    extreme: float = 0.0
    lock: int = 0
    stop: bool = False


@dataclass
class RefResult:
    equity: list = field(default_factory=list)
    unallocated: list = field(default_factory=list)
    pod_equity: list = field(default_factory=list)  # per bar: list per pod
    fills: list = field(default_factory=list)  # (bar, slot, units, price, fee, venue)
    account_units: list = field(default_factory=list)  # per bar: list per symbol
    pod_fees: list = field(default_factory=list)
    pod_alone_fees: list = field(default_factory=list)
    account_fees: float = 0.0


def simulate(inp, capital: float, fractions, transfers: dict | None = None) -> RefResult:
    """Run every bar of ``inp`` (an ``Inputs``) from a fresh book.

    ``fractions`` are the initial pod fractions; ``transfers`` maps a bar to new fractions decided
    at that bar's close. Their cash moves at the next execution, at the execution prices, before
    the pods re-target: decreases first, then increases funded from unallocated cash only (a pod
    that cannot be fully funded records the share it got). A pod at fraction 0 does not trade;
    once flat, its cash goes back to the unallocated pool.
    """
    transfers = transfers or {}
    T = len(inp.timestamps)
    P = len(inp.pod_ptr) - 1
    S = inp.close.shape[1]
    p = inp.params
    exec_close = p.exec_mode == 1
    cost, slip, max_gross, daily_loss = p.cost, p.slippage, p.max_gross, p.daily_loss
    funding_on = p.funding != 0
    slots = [Slot(int(p), int(s)) for p, s in zip(inp.slot_pod, inp.slot_sym, strict=True)]
    by_pod = {p: [k for k, sl in enumerate(slots) if sl.pod == p] for p in range(P)}
    by_sym = {s: [k for k, sl in enumerate(slots) if sl.sym == s] for s in range(S)}
    cash = [float(f) * capital for f in fractions]
    frac = [float(f) for f in fractions]
    unalloc = capital - sum(cash)
    pending = None  # fractions waiting for the next execution
    acct_cash = capital
    Q = [0.0] * S
    fees = [0.0] * P
    alone = [0.0] * P
    res = RefResult()
    day = None
    day_open_equity = capital
    last_equity = capital
    breaker = 0  # 0 off, 1 flatten at next execution, 2 blocked until next day
    bust = False  # account equity reached <= 0: flatten, never trade again

    def pod_value(p: int, prices) -> float:
        return cash[p] + sum(
            slots[k].units * prices[slots[k].sym] for k in by_pod[p] if slots[k].units != 0
        )

    def acct_value(prices) -> float:
        return acct_cash + sum(Q[s] * prices[s] for s in range(S) if Q[s] != 0)

    def stops(t: int) -> None:
        for sl in slots:
            if sl.units == 0 or not inp.tradable[t, sl.sym]:
                continue
            c = inp.close[t, sl.sym]
            sl.extreme = max(sl.extreme, c) if sl.units > 0 else min(sl.extreme, c)
            stop_loss = inp.pod_stop_loss[sl.pod]
            if not math.isnan(stop_loss) and sl.avg > 0:
                if (sl.units > 0 and c <= sl.avg * (1 - stop_loss)) or (
                    sl.units < 0 and c >= sl.avg * (1 + stop_loss)
                ):
                    sl.stop = True
            atr = inp.atr[t, sl.sym]
            if inp.pod_trailing[sl.pod] and not math.isnan(atr):
                m = inp.pod_trail_mult[sl.pod]
                if (sl.units > 0 and c < sl.extreme - m * atr) or (
                    sl.units < 0 and c > sl.extreme + m * atr
                ):
                    sl.stop = True

    for t in range(T):
        nonlocal_day = int(inp.day_id[t])
        if nonlocal_day != day:
            day = nonlocal_day
            day_open_equity = last_equity
            if breaker == 2:
                breaker = 0
        if exec_close:
            stops(t)
            px = inp.close[t]
        else:
            px = inp.open[t]
        # ---- capital moves decided at the last close
        if pending is not None:
            frac = [max(float(f), 0.0) for f in pending]
            pending = None
            total = acct_value(px)
            if total > 0:
                min_cap = getattr(inp.params, "min_capital", 0.0)
                frac = [0.0 if 0 < f * total < min_cap else f for f in frac]
                done = set()
                k_cost = slip + cost * (1 + slip)  # the most a unit of notional can cost
                for p in range(P):  # decreases release cash first, keeping the exit reserve
                    e = pod_value(p, px)
                    gross = sum(abs(slots[k].units * px[slots[k].sym]) for k in by_pod[p])
                    room = 1 - k_cost * inp.pod_max_leverage[p]
                    reserve = 0.0 if gross == 0 else (k_cost * gross / room if room > 0 else e)
                    if frac[p] > 0 and frac[p] * total < min(reserve, e):
                        frac[p] = min(reserve, e) / total
                    d = frac[p] * total - e
                    if frac[p] > 0 and d < 0:
                        cash[p] += d
                        unalloc -= d
                        done.add(p)
                for p in range(P):  # then increases, from unallocated cash only
                    if frac[p] <= 0 or p in done:
                        continue
                    e = pod_value(p, px)
                    d = frac[p] * total - e
                    if d <= 0:
                        continue
                    if d > unalloc:
                        d = max(unalloc, 0.0)
                        frac[p] = (e + d) / total
                    cash[p] += d
                    unalloc -= d
        # ---- pod rules -> target units
        target = {}
        for p in range(P):
            eq = pod_value(p, px)
            active = eq > 0 and breaker == 0 and frac[p] > 0 and not bust
            ws = {}
            for k in by_pod[p]:
                sl = slots[k]
                w = float(inp.target[t, k]) if active else 0.0
                if sl.stop:
                    sl.lock = int(sign(sl.units))
                    sl.stop = False
                if sl.lock != 0:
                    if w == 0 or sign(w) != sl.lock:
                        sl.lock = 0
                    else:
                        w = 0.0
                ws[k] = w
            gross = sum(abs(w) for w in ws.values())
            scale = inp.pod_max_leverage[p] / gross if gross > inp.pod_max_leverage[p] else 1.0
            for k in by_pod[p]:
                sl = slots[k]
                if not inp.tradable[t, sl.sym]:
                    target[k] = sl.units
                    continue
                w = ws[k] * scale
                price = px[sl.sym]
                cur = sl.units * price / eq if eq > 0 else 0.0
                if w == 0:
                    target[k] = 0.0
                elif abs(w - cur) > inp.pod_threshold[p] + 1e-9:
                    target[k] = w * eq / price if eq > 0 else 0.0
                else:
                    target[k] = sl.units
        total = acct_value(px)
        if max_gross > 0 and total > 0:
            nets = {s: sum(target[k] for k in by_sym[s]) for s in range(S) if by_sym[s]}
            gross_notional = sum(abs(n * px[s]) for s, n in nets.items() if n != 0)
            if gross_notional / total > max_gross:
                f = max_gross / (gross_notional / total)
                for k in target:
                    if inp.tradable[t, slots[k].sym]:
                        target[k] *= f
        # ---- netting and attribution
        for s in range(S):
            deltas = {k: target[k] - slots[k].units for k in by_sym[s]}
            if all(d == 0 for d in deltas.values()):
                continue
            net = sum(deltas.values())
            # trades that cancel up to round-off cross internally: no external fill, no fee
            dust = net != 0 and abs(net) <= 1e-9 * sum(abs(d) for d in deltas.values())
            side = 0 if dust else sign(net)
            price = px[s]
            fill_price = price * (1 + side * slip)
            fee_total = cost * abs(net) * fill_price if not dust else 0.0
            same = sum(abs(d) for d in deltas.values() if d * side > 0)
            for k, d in deltas.items():
                if d == 0:
                    continue
                sl = slots[k]
                if side != 0 and d * side > 0:
                    ext = net * abs(d) / same
                    fee = fee_total * abs(d) / same
                else:
                    ext, fee = 0.0, 0.0
                internal = d - ext
                cash[sl.pod] -= ext * fill_price + internal * price + fee
                fees[sl.pod] += fee
                alone[sl.pod] += cost * abs(d) * price * (1 + sign(d) * slip)
                pfill = (ext * fill_price + internal * price) / d
                q0, q1 = sl.units, target[k]
                if q1 == 0:
                    sl.avg, sl.extreme = 0.0, 0.0
                elif q0 == 0 or sign(q0) != sign(q1):
                    sl.avg, sl.extreme = pfill, pfill
                elif abs(q1) > abs(q0):
                    sl.avg = (abs(q0) * sl.avg + (abs(q1) - abs(q0)) * pfill) / abs(q1)
                sl.units = q1
                if abs(ext) > 1e-12 * abs(d):
                    res.fills.append((t, k, ext, fill_price, fee, "external"))
                if abs(internal) > 1e-12 * abs(d):
                    res.fills.append((t, k, internal, price, 0.0, "internal"))
            Q[s] += net
            acct_cash -= net * fill_price + fee_total
            res.account_fees += fee_total
        if breaker == 1:
            breaker = 2
        for p in range(P):  # a flat pod at fraction 0 hands its cash back
            if frac[p] == 0 and cash[p] != 0 and all(slots[k].units == 0 for k in by_pod[p]):
                unalloc += cash[p]
                cash[p] = 0.0
        if not exec_close:
            stops(t)
        # ---- funding and marking at close
        close = inp.close[t]
        for sl in slots:
            rate = inp.funding[t, sl.sym] if funding_on else 0.0
            if sl.units != 0 and rate != 0:
                pay = sl.units * close[sl.sym] * rate
                cash[sl.pod] -= pay
                acct_cash -= pay
        total = acct_value(close)
        res.equity.append(total)
        res.unallocated.append(unalloc)
        res.pod_equity.append([pod_value(p, close) for p in range(P)])
        res.account_units.append(list(Q))
        res.pod_fees.append(list(fees))
        res.pod_alone_fees.append(list(alone))
        if (
            daily_loss > 0
            and breaker == 0
            and day_open_equity > 0
            and total < day_open_equity * (1 - daily_loss)
        ):
            breaker = 1
        if total <= 0:
            bust = True
        last_equity = total
        if t in transfers:
            pending = list(transfers[t])
    res.pod_fees = res.pod_fees
    return res


def as_arrays(res: RefResult) -> dict[str, np.ndarray]:
    return {
        "equity": np.array(res.equity),
        "unallocated": np.array(res.unallocated),
        "pod_equity": np.array(res.pod_equity),
        "account_units": np.array(res.account_units),
    }
