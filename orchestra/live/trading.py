"""Live trading through ccxt (SPEC §13.2, §13.5): orders, fills, reconciliation, halts.

**A bar.** When bar ``t`` closes, the live loop runs the first half of the step kernel (stops,
capital moves, pod rules: :func:`~orchestra.kernels.step.step_pre_nb`), nets the pods' trades per
symbol, and :class:`CcxtBroker` sends **one market order per symbol**. The second half
(:func:`~orchestra.kernels.step.step_post_nb`) books what the exchange actually did: the filled
quantity, its average price and its fee, attributed to the pods with SPEC §9.3's rule (a partial
fill gives every pod on the side of the net trade the same share of its external part; internal
crossing is unaffected). Live trading therefore executes at the close of the bar that produced the
signal — what the backtest's ``execution: close`` models, and ``next_open`` models with the next
bar's open: the live loop uses close-mode timing whatever the config's ``backtest.execution``.

**Orders.** Amounts are rounded to the market's precision (towards zero). An order whose amount
rounds to 0 or is below the market's minimum amount or notional is not sent: the pods on its side
keep their units for that part (nothing is booked that the exchange did not fill), and the next
bar's targets ask for it again. Each order's client id is derived from (run id, bar time, symbol)
and passed as ccxt's unified ``clientOrderId``; its intent is committed to the store **before**
it is sent. A timeout, a 429, a 5xx or a
dropped connection is retried with exponential backoff, and before every resend — and before the
first send after a restart — the order is looked up by its client id, so it is never sent twice.
A rejection (insufficient funds, an invalid order) books nothing and raises a CRITICAL alert.

**Reconciliation.** At start and after every bar, each traded asset's exchange balance must equal
the balance the account held before the run (``baseline``, not ours) plus Σ pod units. A
difference larger than the market's amount step halts trading: no more orders, a CRITICAL
``reconciliation_halt`` alert, ``orch-live status`` shows it. Fix the account, then restart with
``--rebaseline`` to accept the balances as they are (the difference becomes part of the baseline).

API keys come from ``ORCHESTRA_API_KEY`` / ``ORCHESTRA_API_SECRET`` only; they are handed to ccxt
and never written to logs, the store, reports or error messages.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from orchestra.live.broker import client_order_id

log = logging.getLogger("orchestra.live")
KEY_ENV, SECRET_ENV = "ORCHESTRA_API_KEY", "ORCHESTRA_API_SECRET"


class TradingHalted(RuntimeError):
    """Reconciliation found a difference it cannot explain."""


def base_asset(exchange, symbol: str) -> str:
    return str(exchange.markets[symbol]["base"])


def _after_send_crash(bar: int) -> None:
    from orchestra.live.store import _crash_point

    _crash_point(bar, "after-send")


class CcxtBroker:
    """Market orders through a ccxt exchange (see the module docstring)."""

    name = "ccxt"

    def __init__(
        self,
        exchange: Any,
        store,
        run_id: str,
        retries: int = 5,
        backoff_s: float = 1.0,
        sleep: Callable[[float], object] = time.sleep,
    ):
        self.ex = exchange
        self.store = store
        self.run_id = run_id
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.errors = 0  # orders that failed for good in this process

    # ------------------------------------------------------------------ one bar
    def execute(
        self, bar: int, ts: int, symbols: list[str], net: np.ndarray, prices: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Send the net orders of bar ``bar``; returns per symbol (filled units, average price,
        fee) and the order records."""
        n = len(symbols)
        qty, px, fee = np.zeros(n), prices.astype(float).copy(), np.zeros(n)
        records = []
        for s in np.flatnonzero(net != 0.0):
            symbol = symbols[int(s)]
            rec = self._order(bar, ts, symbol, float(net[s]), float(prices[s]))
            records.append(rec)
            if rec["filled"]:
                qty[s] = rec["filled"] if rec["side"] == "buy" else -rec["filled"]
                px[s] = rec["average"]
                fee[s] = rec["fee"]
        return qty, px, fee, records

    def _order(self, bar: int, ts: int, symbol: str, units: float, price: float) -> dict:
        side = "buy" if units > 0 else "sell"
        rec: dict[str, Any] = {
            "client_order_id": client_order_id(self.run_id, ts, symbol),
            "bar": bar,
            "ts": ts,
            "symbol": symbol,
            "side": side,
            "requested": abs(units),
            "amount": 0.0,
            "filled": 0.0,
            "average": price,
            "fee": 0.0,
            "exchange_id": None,
            "reason": "",
        }
        market = self.ex.markets[symbol]
        try:
            amount = float(self.ex.amount_to_precision(symbol, abs(units)))
        except Exception:  # ccxt raises when the amount rounds below the precision
            amount = 0.0
        rec["amount"] = amount
        limits = market.get("limits", {})
        min_amount = (limits.get("amount") or {}).get("min") or 0.0
        min_cost = (limits.get("cost") or {}).get("min") or 0.0
        if amount <= 0.0 or amount < min_amount or amount * price < min_cost:
            rec.update(status="skipped", reason=f"below the market minimum ({amount} {symbol})")
            return rec
        existing = self.store.order(rec["client_order_id"])
        found: dict[str, Any] | str | None = None
        if existing is None:
            self.store.record_intent(rec)
        else:  # sent before a crash (or not): ask the exchange first
            found = self._lookup(symbol, rec["client_order_id"])
        if found is None:
            found = self._send(rec)
        if isinstance(found, str):  # rejected or failed for good
            rec.update(status="rejected" if found.startswith("rejected") else "error")
            rec["reason"] = found
            if rec["status"] == "error":
                self.errors += 1
            return rec
        assert found is not None
        _after_send_crash(bar)
        return self._booked(rec, found)

    def _send(self, rec: dict[str, Any]) -> dict[str, Any] | str:
        import ccxt

        symbol, cid = rec["symbol"], rec["client_order_id"]
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return self.ex.create_order(
                    symbol, "market", rec["side"], rec["amount"], None, {"clientOrderId": cid}
                )
            except ccxt.OperationFailed as exc:  # timeout, 429, 5xx, dropped connection
                last = f"{type(exc).__name__}"
                log.warning("order %s %s: %s; retrying", symbol, cid, last)
                self.sleep(self.backoff_s * 2**attempt)
                found = self._lookup(symbol, cid)
                if found is not None:  # it did go through: never send twice
                    return found
            except ccxt.ExchangeError as exc:  # insufficient funds, invalid order, ...
                return f"rejected: {type(exc).__name__}: {_clean(exc, self.ex)}"
        return f"failed after {self.retries + 1} tries ({last})"

    def _lookup(self, symbol: str, cid: str) -> dict[str, Any] | None:
        import ccxt

        for attempt in range(self.retries + 1):
            try:
                return self.ex.fetch_order(None, symbol, {"clientOrderId": cid})
            except ccxt.OrderNotFound:
                return None
            except ccxt.OperationFailed:
                self.sleep(self.backoff_s * 2**attempt)
        raise ccxt.OperationFailed(f"cannot look up order {cid} on {self.ex.id}")

    def _booked(self, rec: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
        filled = float(order.get("filled") or 0.0)
        cost = float(order.get("cost") or 0.0)
        average = order.get("average") or (cost / filled if filled else rec["average"])
        fee, base_fee = self._fees(rec["symbol"], order)
        if base_fee:  # a commission taken in the base asset: the account received less
            filled = filled - base_fee if rec["side"] == "buy" else filled + base_fee
        rec.update(
            status="filled" if order.get("status") == "closed" and filled else "partial",
            filled=filled,
            average=float(average),
            fee=fee,
            exchange_id=str(order.get("id")),
        )
        if filled == 0.0:
            rec["status"] = "unfilled"
        return rec

    def _fees(self, symbol: str, order: dict[str, Any]) -> tuple[float, float]:
        """(fee in the quote currency, fee taken in the base asset)."""
        fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
        if not fees and float(order.get("filled") or 0.0) > 0:  # a looked-up order: its trades
            trades = self.ex.fetch_my_trades(symbol, params={"orderId": order["id"]})
            fees = [t["fee"] for t in trades if t.get("fee")]
        market = self.ex.markets[symbol]
        quote, base = market["quote"], market["base"]
        q = sum(float(f["cost"]) for f in fees if f.get("currency") == quote)
        b = sum(float(f["cost"]) for f in fees if f.get("currency") == base)
        return q, b

    # ------------------------------------------------------------------ reconciliation
    def balances(self, assets: list[str]) -> dict[str, float]:
        total = self.ex.fetch_balance().get("total", {})
        return {a: float(total.get(a) or 0.0) for a in assets}

    def reconcile(
        self, symbols: list[str], account_units: np.ndarray, baseline: dict[str, float]
    ) -> list[str]:
        """Differences between the exchange's balances and baseline + Σ pod units (empty: ok)."""
        expected: dict[str, float] = dict.fromkeys(baseline, 0.0)
        step: dict[str, float] = {}
        for s, symbol in enumerate(symbols):
            asset = base_asset(self.ex, symbol)
            expected[asset] = expected.get(asset, 0.0) + float(account_units[s])
            prec = self.ex.markets[symbol].get("precision", {}).get("amount") or 1e-8
            step[asset] = max(step.get(asset, 0.0), float(prec))
        actual = self.balances(sorted(expected))
        problems = []
        for asset, units in expected.items():
            want = baseline.get(asset, 0.0) + units
            tol = step.get(asset, 1e-8) + 1e-9 * abs(want)
            if abs(actual[asset] - want) > tol:
                problems.append(
                    f"{asset}: exchange {actual[asset]:.8f}, expected {want:.8f} "
                    f"(baseline {baseline.get(asset, 0.0):.8f} + pods {units:.8f})"
                )
        return problems


def _clean(exc: BaseException, exchange: Any) -> str:
    """An exchange error's text without credentials (ccxt may echo a signed URL)."""
    text = str(exc)
    for secret in (getattr(exchange, "apiKey", None), getattr(exchange, "secret", None)):
        if secret:
            text = text.replace(str(secret), "***")
    if "signature=" in text:
        text = text.split("?")[0]
    return text[:300]


def keys_from_env() -> tuple[str, str]:
    """The API key and secret; raises ``KeyError`` naming the missing variable(s)."""
    missing = [v for v in (KEY_ENV, SECRET_ENV) if not os.environ.get(v, "").strip()]
    if missing:
        raise KeyError(" and ".join(missing))
    return os.environ[KEY_ENV].strip(), os.environ[SECRET_ENV].strip()
