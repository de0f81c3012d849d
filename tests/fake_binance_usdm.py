"""A local HTTP server speaking the parts of Binance's USDⓈ-M perpetuals REST API that ccxt uses to
trade: ``/fapi/v1/exchangeInfo`` and ``/fapi/v1/klines`` (public); ``/fapi/v1/order`` (POST market
orders with ``newClientOrderId`` and ``reduceOnly``, GET by ``origClientOrderId``),
``/fapi/v1/userTrades`` (by ``orderId``), ``/fapi/v3/positionRisk``, ``/fapi/v3/account``,
``/fapi/v1/leverageBracket``, ``/fapi/v1/leverage``, ``/fapi/v1/marginType``, ``/fapi/v1/positionSide/dual`` (GET and POST) and
``/fapi/v1/income`` (funding fees) — signed, the key in ``X-MBX-APIKEY``.

One-way positions per symbol: a fill moves the signed position, realises P&L on the part that
reduces it (against the average entry price), and charges ``commission`` of the notional in USDT
from the wallet. ``pay_funding(symbol, time_ms, rate)`` charges a funding fee on the position at
``marks[symbol]`` (longs pay a positive rate) and records it as income. A ``reduceOnly`` order that
would open or grow a position is rejected (-2022), as Binance does. ``order_script`` works as on
spot (``"timeout-after-accept"``, ``"429"``, ``"500"``, ``"reject-funds"`` → -2019 margin
insufficient, ``"partial"``).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fake_binance import FakeBinance


class FakeBinanceUSDM(FakeBinance):
    def __init__(self, klines, funding=None, wallet: float = 1_000_000.0, **kw):
        super().__init__(klines, funding=funding or {s: [] for s, _ in klines}, **kw)
        self.wallet = wallet
        self.positions: dict[str, list[float]] = {}  # symbol -> [amount, entry price]
        self.leverage: dict[str, int] = {}
        self.margin_type: dict[str, str] = {}
        self.dual_side = False
        self.income: list[dict[str, Any]] = []
        self.commission = 0.0004
        self.setup_calls: list[tuple[str, dict]] = []

    def exchange(self, timeout_ms: int = 1000, market: str = "swap", api_key=None, secret=None):
        ex = super().exchange(timeout_ms, market, api_key, secret)
        for key, path in (
            ("fapiPublic", "/fapi/v1"),
            ("fapiPublicV2", "/fapi/v2"),
            ("fapiPrivate", "/fapi/v1"),
            ("fapiPrivateV2", "/fapi/v2"),
            ("fapiPrivateV3", "/fapi/v3"),
        ):
            ex.urls["api"][key] = self.url + path
        return ex

    # ------------------------------------------------------------------ state
    def position(self, symbol: str) -> float:
        with self._lock:
            return self.positions.get(symbol, [0.0, 0.0])[0]

    def _unrealized(self, symbol: str) -> float:
        amt, entry = self.positions.get(symbol, [0.0, 0.0])
        return amt * (self.prices.get(symbol, entry) - entry) if amt else 0.0

    def pay_funding(self, symbol: str, time_ms: int, rate: float) -> float:
        """Charge the funding of ``rate`` on the position now; returns the income (+ received)."""
        with self._lock:
            amt = self.positions.get(symbol, [0.0, 0.0])[0]
            income = -amt * self.prices[symbol] * rate
            if amt:
                self.wallet += income
                self.income.append(
                    {
                        "symbol": symbol,
                        "incomeType": "FUNDING_FEE",
                        "income": f"{income:.8f}",
                        "asset": "USDT",
                        "info": "FUNDING_FEE",
                        "time": time_ms,
                        "tranId": len(self.income) + 1,
                        "tradeId": "",
                    }
                )
            return income

    def move_position(self, symbol: str, amount: float) -> None:
        """A change made outside the run (a manual trade in the app)."""
        with self._lock:
            pos = self.positions.setdefault(symbol, [0.0, self.prices[symbol]])
            pos[0] += amount

    def account_v3(self) -> dict:
        with self._lock:
            upnl = sum(self._unrealized(s) for s in self.positions)
            maint = sum(
                abs(a) * self.prices.get(s, e) * 0.004 for s, (a, e) in self.positions.items()
            )
            init = sum(
                abs(a) * self.prices.get(s, e) / self.leverage.get(s, 20)
                for s, (a, e) in self.positions.items()
            )
            margin = self.wallet + upnl
            asset = {
                "asset": "USDT",
                "walletBalance": f"{self.wallet:.8f}",
                "unrealizedProfit": f"{upnl:.8f}",
                "marginBalance": f"{margin:.8f}",
                "maintMargin": f"{maint:.8f}",
                "initialMargin": f"{init:.8f}",
                "positionInitialMargin": f"{init:.8f}",
                "openOrderInitialMargin": "0",
                "crossWalletBalance": f"{self.wallet:.8f}",
                "crossUnPnl": f"{upnl:.8f}",
                "availableBalance": f"{margin - init:.8f}",
                "maxWithdrawAmount": f"{margin - init:.8f}",
                "updateTime": int(time.time() * 1000),
            }
            return {
                "totalInitialMargin": f"{init:.8f}",
                "totalMaintMargin": f"{maint:.8f}",
                "totalWalletBalance": f"{self.wallet:.8f}",
                "totalUnrealizedProfit": f"{upnl:.8f}",
                "totalMarginBalance": f"{margin:.8f}",
                "totalPositionInitialMargin": f"{init:.8f}",
                "totalOpenOrderInitialMargin": "0",
                "totalCrossWalletBalance": f"{self.wallet:.8f}",
                "totalCrossUnPnl": f"{upnl:.8f}",
                "availableBalance": f"{margin - init:.8f}",
                "maxWithdrawAmount": f"{margin - init:.8f}",
                "assets": [asset],
                "positions": [],
            }

    def position_risk(self) -> list[dict]:
        with self._lock:
            out = []
            for s, (amt, entry) in sorted(self.positions.items()):
                if amt == 0:
                    continue
                mark = self.prices.get(s, entry)
                lev = self.leverage.get(s, 20)
                liq = entry * (1 - 1 / lev + 0.004) if amt > 0 else entry * (1 + 1 / lev - 0.004)
                notional = amt * mark
                out.append(
                    {
                        "symbol": s,
                        "positionSide": "BOTH",
                        "positionAmt": f"{amt:.8f}",
                        "entryPrice": f"{entry:.8f}",
                        "breakEvenPrice": f"{entry:.8f}",
                        "markPrice": f"{mark:.8f}",
                        "unRealizedProfit": f"{self._unrealized(s):.8f}",
                        "liquidationPrice": f"{liq:.8f}",
                        "isolatedMargin": "0",
                        "notional": f"{notional:.8f}",
                        "marginAsset": "USDT",
                        "isolatedWallet": "0",
                        "initialMargin": f"{abs(notional) / lev:.8f}",
                        "maintMargin": f"{abs(notional) * 0.004:.8f}",
                        "positionInitialMargin": f"{abs(notional) / lev:.8f}",
                        "openOrderInitialMargin": "0",
                        "adl": 1,
                        "bidNotional": "0",
                        "askNotional": "0",
                        "updateTime": int(time.time() * 1000),
                    }
                )
            return out

    # ------------------------------------------------------------------ routes
    def _handler(self):
        base = super()._handler()
        fake = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def _params(self) -> tuple[str, dict]:
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    body = self.rfile.read(n).decode()
                    q.update({k: v[0] for k, v in parse_qs(body).items()})
                return url.path, q

            def do_POST(self) -> None:
                if not self.path.startswith("/fapi/"):
                    return super().do_POST()
                path, q = self._params()
                if not fake._authorized(self.headers):
                    return self._json(401, {"code": -2015, "msg": "Invalid API-key."})
                fake.setup_calls.append((path, q))
                if path == "/fapi/v1/order":
                    return fake._post_futures_order(self, q)
                if path == "/fapi/v1/leverage":
                    fake.leverage[q["symbol"]] = int(q["leverage"])
                    return self._json(
                        200,
                        {"symbol": q["symbol"], "leverage": int(q["leverage"]),
                         "maxNotionalValue": "1000000"},
                    )  # fmt: skip
                if path == "/fapi/v1/marginType":
                    if fake.margin_type.get(q["symbol"]) == q["marginType"]:
                        return self._json(
                            400, {"code": -4046, "msg": "No need to change margin type."}
                        )
                    fake.margin_type[q["symbol"]] = q["marginType"]
                    return self._json(200, {"code": 200, "msg": "success"})
                if path == "/fapi/v1/positionSide/dual":
                    want = q["dualSidePosition"] == "true"
                    if want == fake.dual_side:
                        return self._json(
                            400, {"code": -4059, "msg": "No need to change position side."}
                        )
                    fake.dual_side = want
                    return self._json(200, {"code": 200, "msg": "success"})
                return self._json(404, {"code": -1, "msg": "not found"})

            def do_GET(self) -> None:
                if not self.path.startswith("/fapi/") or self.path.startswith(
                    ("/fapi/v1/exchangeInfo", "/fapi/v1/fundingRate")
                ):
                    return super().do_GET()
                path, q = self._params()
                if path == "/fapi/v1/klines":
                    rows = fake.klines.get((q["symbol"], q["interval"]), [])
                    start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
                    limit = min(int(q.get("limit", 500)), fake.page_limit)
                    return self._json(200, [r for r in rows if start <= r[0] <= end][:limit])
                if not fake._authorized(self.headers):
                    return self._json(401, {"code": -2015, "msg": "Invalid API-key."})
                if path == "/fapi/v3/account":
                    return self._json(200, fake.account_v3())
                if path == "/fapi/v1/leverageBracket":
                    brackets = [
                        {"bracket": 1, "initialLeverage": 125, "notionalCap": 10**9,
                         "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}
                    ]  # fmt: skip
                    return self._json(
                        200, [{"symbol": s, "brackets": brackets} for s in sorted(fake.funding)]
                    )
                if path == "/fapi/v3/positionRisk":
                    return self._json(200, fake.position_risk())
                if path == "/fapi/v1/positionSide/dual":
                    return self._json(200, {"dualSidePosition": fake.dual_side})
                if path == "/fapi/v1/income":
                    lo, hi = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
                    with fake._lock:
                        rows = [
                            r
                            for r in fake.income
                            if lo <= r["time"] <= hi
                            and q.get("incomeType", r["incomeType"]) == r["incomeType"]
                            and q.get("symbol", r["symbol"]) == r["symbol"]
                        ]
                    return self._json(200, rows[: int(q.get("limit", 1000))])
                if path == "/fapi/v1/userTrades":
                    oid = int(q.get("orderId", -1))
                    with fake._lock:
                        rows = [t for t in fake.trades if t["orderId"] == oid]
                    return self._json(200, rows)
                if path == "/fapi/v1/order":
                    with fake._lock:
                        order = fake.orders.get(q.get("origClientOrderId", ""))
                    if order is None:
                        return self._json(400, {"code": -2013, "msg": "Order does not exist."})
                    return self._json(200, order)
                return self._json(404, {"code": -1, "msg": "not found"})

        return Handler

    def _post_futures_order(self, handler, q: dict) -> None:
        action, answered = self._next_action(handler, q)
        if answered:
            return None
        if action == "reject-funds":
            return handler._json(400, {"code": -2019, "msg": "Margin is insufficient."})
        symbol, side = q["symbol"], q["side"]
        qty = float(q["quantity"])
        if action == "partial":
            qty = float(f"{qty / 2:.3f}")
        sign = 1.0 if side == "BUY" else -1.0
        reduce_only = str(q.get("reduceOnly", "false")).lower() == "true"
        with self._lock:
            amt, entry = self.positions.get(symbol, [0.0, 0.0])
            if reduce_only and (amt == 0 or sign * amt > 0 or qty > abs(amt) + 1e-12):
                return handler._json(400, {"code": -2022, "msg": "ReduceOnly Order is rejected."})
            price = self.prices[symbol]
            closing = min(qty, abs(amt)) if amt * sign < 0 else 0.0
            realized = closing * (price - entry) * (1.0 if amt > 0 else -1.0)
            new_amt = amt + sign * qty
            if amt * sign >= 0:  # opening or adding
                entry = (abs(amt) * entry + qty * price) / abs(new_amt) if new_amt else 0.0
            elif abs(new_amt) > 1e-12 and new_amt * amt < 0:  # flipped through zero
                entry = price
            fee = qty * price * self.commission
            self.wallet += realized - fee
            self.positions[symbol] = [new_amt if abs(new_amt) > 1e-12 else 0.0, entry]
            oid = len(self.orders) + 1
            now = int(time.time() * 1000)
            order = {
                "orderId": oid,
                "symbol": symbol,
                "status": "EXPIRED" if action == "partial" else "FILLED",
                "clientOrderId": q.get("newClientOrderId", f"auto{oid}"),
                "price": "0",
                "avgPrice": f"{price:.8f}",
                "origQty": q["quantity"],
                "executedQty": f"{qty:.8f}",
                "cumQty": f"{qty:.8f}",
                "cumQuote": f"{qty * price:.8f}",
                "timeInForce": "GTC",
                "type": "MARKET",
                "reduceOnly": reduce_only,
                "closePosition": False,
                "side": side,
                "positionSide": "BOTH",
                "stopPrice": "0",
                "workingType": "CONTRACT_PRICE",
                "priceProtect": False,
                "origType": "MARKET",
                "updateTime": now,
            }
            self.orders[order["clientOrderId"]] = order
            self.trades.append(
                {
                    "symbol": symbol,
                    "id": oid,
                    "orderId": oid,
                    "side": side,
                    "price": f"{price:.8f}",
                    "qty": f"{qty:.8f}",
                    "realizedPnl": f"{realized:.8f}",
                    "quoteQty": f"{qty * price:.8f}",
                    "commission": f"{fee:.8f}",
                    "commissionAsset": "USDT",
                    "time": now,
                    "positionSide": "BOTH",
                    "buyer": side == "BUY",
                    "maker": False,
                }
            )
        if action == "timeout-after-accept":
            time.sleep(self.stall_s)
        return handler._json(200, order)
