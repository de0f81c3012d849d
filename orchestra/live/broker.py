"""Brokers: where the live loop's net orders go (SPEC §13.2).

The step kernel nets the pods' trades per symbol and books the fills on the pods' books at the
execution price with costs (SPEC §9). :func:`net_orders` turns one bar's external fills into the
orders the exchange sees: one per symbol per bar, with a client order id derived from (run id, bar
time, symbol) so a resend can be recognised. A broker receives them after the bar is computed and
before it is committed.

:class:`PaperBroker` fills them exactly as the backtest does — the kernel's own fills, same price,
same fee, same venue — so a paper run's books are the backtest's. It keeps no state of its own.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import numpy as np

from orchestra.kernels.state import EXTERNAL


def client_order_id(run_id: str, ts: int, symbol: str) -> str:
    """A stable id of the net order of ``symbol`` at bar ``ts`` in run ``run_id`` (≤ 32 chars)."""
    digest = hashlib.sha256(f"{run_id}|{ts}|{symbol}".encode()).hexdigest()[:20]
    return f"orc{digest}"


def net_orders(engine, fills: dict[str, np.ndarray], run_id: str) -> list[dict[str, Any]]:
    """The net order per (bar, symbol) of a chunk of fills: its external fills summed."""
    ext = fills["venue"] == EXTERNAL
    if not ext.any():
        return []
    inp = engine.inputs
    symbols = engine.prepared.market.symbols
    bars = fills["bar"][ext]
    syms = inp.slot_sym[fills["slot"][ext]]
    units, price, fee = fills["units"][ext], fills["price"][ext], fills["fee"][ext]
    orders: dict[tuple[int, int], dict[str, Any]] = {}
    for b, s, q, p, f in zip(bars.tolist(), syms.tolist(), units, price, fee, strict=True):
        ts = engine.timestamp(b)
        o = orders.setdefault(
            (b, s),
            {
                "bar": b,
                "ts": ts,
                "symbol": symbols[s],
                "units": 0.0,
                "price": float(p),
                "fee": 0.0,
                "client_order_id": client_order_id(run_id, ts, symbols[s]),
            },
        )
        o["units"] += float(q)
        o["fee"] += float(f)
    out = list(orders.values())
    for o in out:
        o["side"] = "buy" if o["units"] > 0 else "sell"
    return out


class Broker(Protocol):
    """Receives a bar's net orders; returns them with their execution status."""

    name: str

    def execute(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


class FillingBroker(Protocol):
    """Fills the net orders itself (the exchange, a slipping paper broker): per symbol the
    filled units, average price and fee, and the order records."""

    name: str

    def execute(
        self, bar: int, ts: int, symbols: list[str], net: np.ndarray, prices: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]: ...


class PaperBroker:
    """Fills every net order at the kernel's price and fee: the backtest's fills, no more."""

    name = "paper"

    def execute(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**o, "status": "filled", "filled": o["units"]} for o in orders]


class SlippagePaperBroker:
    """Paper trading that fills each net order ``extra_bps`` worse than the model: at the
    model's price (``price · (1 ± slippage)``) moved against the order by ``extra_bps``, with the
    model's fee rate on that price. It executes like an exchange (the live loop books its fills
    on the pods and runs the paper model beside them), so the live–model gap it produces is
    known: ``extra_bps`` on every fill (``orch-live --paper --paper-slippage-bps``; the gap
    measurement's own test). With ``extra_bps`` 0 its books equal the model's."""

    name = "paper-slippage"

    def __init__(self, cost: float, slippage: float, extra_bps: float):
        self.cost, self.slippage, self.extra = cost, slippage, extra_bps / 1e4

    def execute(
        self, bar: int, ts: int, symbols: list[str], net: np.ndarray, prices: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        sgn = np.sign(net)
        model = prices * (1.0 + sgn * self.slippage)
        px = np.where(net != 0.0, model * (1.0 + sgn * self.extra), prices)
        fee = self.cost * np.abs(net) * px
        records = [
            {
                "bar": bar,
                "ts": ts,
                "symbol": symbols[s],
                "side": "buy" if net[s] > 0 else "sell",
                "requested": float(abs(net[s])),
                "amount": float(abs(net[s])),
                "filled": float(abs(net[s])),
                "average": float(px[s]),
                "fee": float(fee[s]),
                "status": "filled",
            }
            for s in np.flatnonzero(net != 0.0)
        ]
        return net.astype(float).copy(), px, fee, records
