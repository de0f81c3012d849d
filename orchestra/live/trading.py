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

**Perpetuals** (``data.market: swap``, Binance USDⓈ-M). At start :meth:`CcxtBroker.setup` puts the
account in one-way position mode (netting leaves one net position per symbol; it refuses when
hedge-mode positions are open), sets the margin mode and each symbol's leverage. Amounts are
contracts (× the market's contract size = units). An order that only reduces the account's
position is sent ``reduceOnly``. Reconciliation compares each symbol's signed **position** with
``baseline + Σ pod units``, and the **collateral** (margin balance) with what the books imply:
``baseline + (equity − equity at the baseline) + Σ units · (mark − close)`` (the exchange marks at
its mark price, the books at the bar's close), plus funding received that no pod could hold yet.
Funding comes from the exchange's income history (:meth:`CcxtBroker.funding_income`) and is
booked to the pods by their share of the position, the backtest's rule. The account's margin
ratio and each position's liquidation price are kept in :attr:`CcxtBroker.risk`.

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


class TradingSetupError(RuntimeError):
    """The account cannot be put in the state the run needs (position mode, margin, leverage)."""


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
        market: str = "spot",
    ):
        self.ex = exchange
        self.swap = market == "swap"
        self.risk: dict[str, Any] = {}  # swap: margin ratio, liquidation prices (after reconcile)
        self.store = store
        self.run_id = run_id
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.errors = 0  # orders that failed for good in this process

    # ------------------------------------------------------------------ one bar
    # ------------------------------------------------------------------ set-up (swap)
    def setup(self, symbols: list[str], leverage: int, margin_mode: str = "cross") -> list[str]:
        """Perpetuals: one-way position mode, ``margin_mode`` and ``leverage`` on every symbol.
        Returns what it changed (for the log); raises :class:`TradingSetupError`."""
        import ccxt

        if not self.swap:
            return []
        done = []
        try:
            if self.ex.fetch_position_mode(symbols[0]).get("hedged"):
                self.ex.set_position_mode(False)
                done.append("position mode: hedge → one-way")
        except ccxt.ExchangeError as exc:
            raise TradingSetupError(
                f"cannot switch the account to one-way position mode ({_clean(exc, self.ex)}): "
                "close the hedge-mode positions first (netting needs one position per symbol)"
            ) from None
        for symbol in symbols:
            try:
                self.ex.set_margin_mode(margin_mode, symbol)
                done.append(f"{symbol}: {margin_mode} margin")
            except ccxt.MarginModeAlreadySet:
                pass
            except ccxt.ExchangeError as exc:
                raise TradingSetupError(
                    f"{symbol}: cannot set {margin_mode} margin: {_clean(exc, self.ex)}"
                ) from None
            try:
                self.ex.set_leverage(int(leverage), symbol)
            except ccxt.ExchangeError as exc:
                raise TradingSetupError(
                    f"{symbol}: cannot set leverage {leverage}: {_clean(exc, self.ex)}"
                ) from None
        done.append(f"leverage {leverage} on {len(symbols)} symbol(s)")
        return done

    def contract_size(self, symbol: str) -> float:
        return float(self.ex.markets[symbol].get("contractSize") or 1.0) if self.swap else 1.0

    # ------------------------------------------------------------------ one bar
    def execute(
        self,
        bar: int,
        ts: int,
        symbols: list[str],
        net: np.ndarray,
        prices: np.ndarray,
        positions: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Send the net orders of bar ``bar``; returns per symbol (filled units, average price,
        fee) and the order records. ``positions`` (the account's units before the bar) marks
        the perpetual orders that only reduce a position ``reduceOnly``."""
        n = len(symbols)
        qty, px, fee = np.zeros(n), prices.astype(float).copy(), np.zeros(n)
        records = []
        for s in np.flatnonzero(net != 0.0):
            symbol = symbols[int(s)]
            held = 0.0 if positions is None else float(positions[s])
            rec = self._order(bar, ts, symbol, float(net[s]), float(prices[s]), held)
            records.append(rec)
            if rec["filled"]:
                qty[s] = rec["filled"] if rec["side"] == "buy" else -rec["filled"]
                px[s] = rec["average"]
                fee[s] = rec["fee"]
        return qty, px, fee, records

    def _order(
        self, bar: int, ts: int, symbol: str, units: float, price: float, held: float = 0.0
    ) -> dict:
        side = "buy" if units > 0 else "sell"
        size = self.contract_size(symbol)
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
        try:  # contracts on perpetuals (units / contract size), units on spot
            amount = float(self.ex.amount_to_precision(symbol, abs(units) / size))
        except Exception:  # ccxt raises when the amount rounds below the precision
            amount = 0.0
        rec["amount"] = amount
        # a perpetual order that only shrinks the position (never opens or flips it)
        rec["reduce_only"] = bool(
            self.swap and held * units < 0 and amount * size <= abs(held) + 1e-12
        )
        limits = market.get("limits", {})
        min_amount = (limits.get("amount") or {}).get("min") or 0.0
        min_cost = (limits.get("cost") or {}).get("min") or 0.0
        if amount <= 0.0 or amount < min_amount or amount * size * price < min_cost:
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
        params: dict[str, Any] = {"clientOrderId": cid}
        if rec.get("reduce_only"):
            params["reduceOnly"] = True
        for attempt in range(self.retries + 1):
            try:
                return self.ex.create_order(
                    symbol, "market", rec["side"], rec["amount"], None, params
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
        filled = float(order.get("filled") or 0.0) * self.contract_size(rec["symbol"])
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

    # ------------------------------------------------------------------ perpetuals' books
    def positions(self, symbols: list[str]) -> dict[str, float]:
        """Each symbol's signed position in units (contracts × contract size)."""
        out = dict.fromkeys(symbols, 0.0)
        liq: dict[str, float] = {}
        marks: dict[str, float] = {}
        for p in self.ex.fetch_positions(symbols):
            sym = p.get("symbol")
            if sym not in out:
                continue
            amt = p.get("info", {}).get("positionAmt")
            if amt is not None:
                signed = float(amt)
            else:
                signed = float(p.get("contracts") or 0.0) * (-1 if p.get("side") == "short" else 1)
            out[sym] = signed * self.contract_size(sym)
            if p.get("liquidationPrice"):
                liq[sym] = float(p["liquidationPrice"])
            if p.get("markPrice"):
                marks[sym] = float(p["markPrice"])
        self.risk["liquidation_price"] = liq
        self.risk["mark_price"] = marks
        return out

    def collateral(self, settle: str = "USDT") -> tuple[float, float]:
        """(margin balance, margin ratio = maintenance margin / margin balance)."""
        bal = self.ex.fetch_balance()
        info = bal.get("info") or {}
        margin = float(info.get("totalMarginBalance") or (bal.get("total") or {}).get(settle) or 0)
        maint = float(info.get("totalMaintMargin") or 0.0)
        ratio = maint / margin if margin > 0 else float("inf")
        self.risk["margin_ratio"] = ratio
        self.risk["margin_balance"] = margin
        return margin, ratio

    def funding_income(self, since_ms: int, until_ms: int) -> dict[str, float]:
        """Funding received (+) or paid (−) per symbol with ``since_ms < time ≤ until_ms``."""
        out: dict[str, float] = {}
        rows = self.ex.fetch_funding_history(
            None, since=since_ms + 1, params={"endTime": until_ms, "incomeType": "FUNDING_FEE"}
        )
        for r in rows:
            if r.get("symbol") is not None and since_ms < int(r["timestamp"]) <= until_ms:
                out[r["symbol"]] = out.get(r["symbol"], 0.0) + float(r["amount"])
        return out

    def swap_baseline(
        self, symbols: list[str], account_units: np.ndarray, equity: float
    ) -> dict[str, Any]:
        """What the account holds that is not the run's: positions beyond Σ pod units, and the
        collateral against the books' equity now."""
        pos = self.positions(symbols)
        margin, _ = self.collateral()
        return {
            "positions": {s: pos[s] - float(account_units[i]) for i, s in enumerate(symbols)},
            "margin": margin,
            "equity": float(equity),
        }

    def reconcile_swap(
        self,
        symbols: list[str],
        account_units: np.ndarray,
        baseline: dict[str, Any],
        equity: float,
        closes: np.ndarray,
        unbooked: float = 0.0,
    ) -> list[str]:
        """Positions and collateral against the books (see the module docstring)."""
        problems = []
        actual = self.positions(symbols)
        marks = self.risk.get("mark_price", {})
        gross = 0.0
        mark_gap = 0.0
        base_pos = baseline.get("positions", {})
        for s, symbol in enumerate(symbols):
            want = float(base_pos.get(symbol, 0.0)) + float(account_units[s])
            step = float(self.ex.markets[symbol].get("precision", {}).get("amount") or 1e-8)
            step *= self.contract_size(symbol)
            if abs(actual[symbol] - want) > step + 1e-9 * abs(want):
                problems.append(
                    f"{symbol}: exchange position {actual[symbol]:.8f}, expected {want:.8f} "
                    f"(baseline {float(base_pos.get(symbol, 0.0)):.8f} + pods "
                    f"{float(account_units[s]):.8f})"
                )
            if account_units[s] and np.isfinite(closes[s]):
                gross += abs(float(account_units[s]) * float(closes[s]))
                mark = marks.get(symbol, float(closes[s]))
                mark_gap += float(account_units[s]) * (mark - float(closes[s]))
        margin, _ = self.collateral()
        want_margin = (
            float(baseline.get("margin", 0.0))
            + (float(equity) - float(baseline.get("equity", equity)))
            + mark_gap
            + unbooked
        )
        tol = 1e-6 * (gross + abs(want_margin)) + 1e-6
        if abs(margin - want_margin) > tol:
            problems.append(
                f"collateral: exchange margin balance {margin:.4f}, the books imply "
                f"{want_margin:.4f} (baseline {float(baseline.get('margin', 0.0)):.4f} + P&L "
                f"{float(equity) - float(baseline.get('equity', equity)):.4f} + mark vs close "
                f"{mark_gap:.4f})"
            )
        return problems

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
