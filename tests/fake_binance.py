"""A local HTTP server that speaks the parts of Binance's spot REST API that ccxt uses for bars.

Endpoints: ``GET /api/v3/exchangeInfo``, ``GET /fapi/v1/exchangeInfo``, ``GET /fapi/v1/fundingRate``
(USDⓈ-M perpetuals), ``GET /api/v3/klines``, and the signed spot trading endpoints
``GET /api/v3/account``, ``POST /api/v3/order`` (market orders, ``newClientOrderId``),
``GET /api/v3/order`` (by ``origClientOrderId``) and ``GET /api/v3/myTrades`` (by ``orderId``).
Orders fill at ``prices[symbol]`` with a 0.1 % commission in the quote asset and move
``balances``; ``order_script`` scripts the next order POSTs: ``"timeout-after-accept"`` (fills,
then stalls past the client's timeout), ``"429"``, ``"500"``, ``"reject-funds"`` (Binance's -2010)
and ``"partial"`` (fills half, status EXPIRED). ``order_posts`` records every POST attempt. The
API key must come in the ``X-MBX-APIKEY`` header (``symbol``, ``interval``,
``startTime``, ``endTime``, ``limit``; pages are capped at ``page_limit`` rows like the real
API's ``limit``). Failures can be scripted: ``fail_next = ["429", "timeout", "500"]`` makes the
next klines requests answer 429, stall past the client's timeout, or answer 500. Every klines
request is recorded in ``requests`` so tests can assert what was fetched. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np

DAY_MS = 86_400_000
INTERVAL_MS = {"1m": 60_000, "1h": 3_600_000, "4h": 14_400_000, "1d": DAY_MS}


def make_klines(start_ms: int, n: int, step_ms: int, seed: int = 0) -> list[list]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    rows = []
    for i in range(n):
        hi, lo = max(open_[i], close[i]) * 1.01, min(open_[i], close[i]) * 0.99
        t = start_ms + i * step_ms
        rows.append(
            [
                t,
                f"{open_[i]:.8f}",
                f"{hi:.8f}",
                f"{lo:.8f}",
                f"{close[i]:.8f}",
                f"{1000 + i:.8f}",
                t + step_ms - 1,
                "0",
                10,
                "0",
                "0",
                "0",
            ]
        )
    return rows


class FakeBinance:
    def __init__(
        self,
        klines: dict[tuple[str, str], list[list]],
        page_limit: int = 100,
        stall_s: float = 2.0,
        funding: dict[str, list[tuple[int, float]]] | None = None,
    ):
        self.klines = klines
        self.funding = funding or {}
        self.page_limit = page_limit
        self.stall_s = stall_s
        self.fail_next: list[str] = []
        self.requests: list[dict] = []
        # trading
        self.api_key: str | None = None
        self.balances: dict[str, float] = {"USDT": 1_000_000.0}
        self.prices: dict[str, float] = {}
        self.orders: dict[str, dict] = {}  # by clientOrderId
        self.trades: list[dict] = []
        self.order_posts: list[dict] = []
        self.order_script: list[str] = []
        self.commission = 0.001
        self._lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeBinance:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def exchange(
        self,
        timeout_ms: int = 1000,
        market: str = "spot",
        api_key: str | None = None,
        secret: str | None = None,
    ):
        """A real ccxt binance client pointed at this server (spot, or USDⓈ-M perpetuals)."""
        import ccxt

        types = ["spot"] if market == "spot" else ["linear"]
        keys = {"apiKey": api_key, "secret": secret} if api_key else {}
        ex = ccxt.binance(
            {
                **keys,
                "enableRateLimit": True,
                "timeout": timeout_ms,
                "options": {
                    "fetchMarkets": {"types": types},
                    "fetchCurrencies": False,
                    "fetchMargins": False,
                    "defaultType": market,
                },
            }
        )
        ex.urls["api"]["public"] = self.url + "/api/v3"
        ex.urls["api"]["private"] = self.url + "/api/v3"
        ex.urls["api"]["fapiPublic"] = self.url + "/fapi/v1"
        return ex

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _json(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                url = urlparse(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode() if n else ""
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                q.update({k: v[0] for k, v in parse_qs(body).items()})
                if url.path == "/api/v3/order":
                    if not fake._authorized(self.headers):
                        return self._json(401, {"code": -2015, "msg": "Invalid API-key."})
                    return fake._post_order(self, q)
                return self._json(404, {"code": -1, "msg": "not found"})

            def do_GET(self) -> None:
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path in ("/api/v3/account", "/api/v3/order", "/api/v3/myTrades"):
                    if not fake._authorized(self.headers):
                        return self._json(401, {"code": -2015, "msg": "Invalid API-key."})
                    if url.path == "/api/v3/account":
                        return self._json(200, fake.account())
                    if url.path == "/api/v3/myTrades":
                        oid = int(q.get("orderId", -1))
                        with fake._lock:
                            rows = [t for t in fake.trades if t["orderId"] == oid]
                        return self._json(200, rows)
                    with fake._lock:
                        order = fake.orders.get(q.get("origClientOrderId", ""))
                    if order is None:
                        return self._json(400, {"code": -2013, "msg": "Order does not exist."})
                    return self._json(200, {k: v for k, v in order.items() if k != "fills"})
                if url.path == "/api/v3/exchangeInfo":
                    return self._json(200, fake.exchange_info())
                if url.path == "/fapi/v1/exchangeInfo":
                    return self._json(200, fake.futures_info())
                if url.path == "/fapi/v1/fundingRate":
                    with fake._lock:
                        fake.requests.append({"funding": True, **q})
                    rows = fake.funding.get(q["symbol"], [])
                    start = int(q.get("startTime", 0))
                    limit = min(int(q.get("limit", 100)), fake.page_limit)
                    page = [r for r in rows if r[0] >= start][:limit]
                    return self._json(
                        200,
                        [
                            {
                                "symbol": q["symbol"],
                                "fundingTime": t,
                                "fundingRate": f"{rate:.8f}",
                                "markPrice": "100.0",
                            }
                            for t, rate in page
                        ],
                    )
                if url.path == "/api/v3/klines":
                    with fake._lock:
                        fake.requests.append(q)
                        failure = fake.fail_next.pop(0) if fake.fail_next else None
                    if failure == "429":
                        return self._json(429, {"code": -1003, "msg": "Too many requests"})
                    if failure == "500":
                        return self._json(500, {"code": -1000, "msg": "internal"})
                    if failure == "timeout":
                        time.sleep(fake.stall_s)
                    rows = fake.klines.get((q["symbol"], q["interval"]), [])
                    start = int(q.get("startTime", 0))
                    end = int(q.get("endTime", 2**62))
                    limit = min(int(q.get("limit", 500)), fake.page_limit)
                    page = [r for r in rows if start <= r[0] <= end][:limit]
                    return self._json(200, page)
                return self._json(404, {"code": -1, "msg": "not found"})

        return Handler

    # ------------------------------------------------------------------ trading
    def _authorized(self, headers) -> bool:
        return self.api_key is None or headers.get("X-MBX-APIKEY") == self.api_key

    def account(self) -> dict:
        with self._lock:
            return {
                "makerCommission": 10,
                "takerCommission": 10,
                "canTrade": True,
                "accountType": "SPOT",
                "updateTime": int(time.time() * 1000),
                "balances": [
                    {"asset": a, "free": f"{v:.8f}", "locked": "0.00000000"}
                    for a, v in sorted(self.balances.items())
                ],
                "permissions": ["SPOT"],
            }

    def _next_action(self, handler, q: dict) -> tuple[str | None, bool]:
        """Record an order POST and take the script's next action; (action, answered): a
        scripted 429 or 500 has been answered already."""
        with self._lock:
            self.order_posts.append(dict(q))
            action = self.order_script.pop(0) if self.order_script else None
        if action == "429":
            handler._json(429, {"code": -1003, "msg": "Too many requests"})
            return action, True
        if action == "500":
            handler._json(500, {"code": -1000, "msg": "internal"})
            return action, True
        return action, False

    def _post_order(self, handler, q: dict) -> None:
        action, answered = self._next_action(handler, q)
        if answered:
            return None
        symbol, side = q["symbol"], q["side"]
        qty = float(q["quantity"])
        base, quote = symbol[:-4], symbol[-4:]
        price = self.prices[symbol]
        if action == "partial":
            qty = float(f"{qty / 2:.5f}")
        cost = qty * price
        fee = cost * self.commission
        if action == "reject-funds":
            return handler._json(
                400,
                {"code": -2010, "msg": "Account has insufficient balance for requested action."},
            )
        with self._lock:
            oid = len(self.orders) + 1
            sign = 1.0 if side == "BUY" else -1.0
            self.balances[base] = self.balances.get(base, 0.0) + sign * qty
            self.balances[quote] = self.balances.get(quote, 0.0) - sign * cost - fee
            order = {
                "symbol": symbol,
                "orderId": oid,
                "orderListId": -1,
                "clientOrderId": q.get("newClientOrderId", f"auto{oid}"),
                "transactTime": int(time.time() * 1000),
                "price": "0.00000000",
                "origQty": q["quantity"],
                "executedQty": f"{qty:.8f}",
                "cummulativeQuoteQty": f"{cost:.8f}",
                "status": "EXPIRED" if action == "partial" else "FILLED",
                "timeInForce": "GTC",
                "type": "MARKET",
                "side": side,
                "workingTime": int(time.time() * 1000),
                "fills": [
                    {
                        "price": f"{price:.8f}",
                        "qty": f"{qty:.8f}",
                        "commission": f"{fee:.8f}",
                        "commissionAsset": quote,
                        "tradeId": oid,
                    }
                ],
            }
            self.orders[order["clientOrderId"]] = order
            self.trades.append(
                {
                    "symbol": symbol,
                    "id": oid,
                    "orderId": oid,
                    "orderListId": -1,
                    "price": f"{price:.8f}",
                    "qty": f"{qty:.8f}",
                    "quoteQty": f"{cost:.8f}",
                    "commission": f"{fee:.8f}",
                    "commissionAsset": quote,
                    "time": order["transactTime"],
                    "isBuyer": side == "BUY",
                    "isMaker": False,
                    "isBestMatch": True,
                }
            )
        if action == "timeout-after-accept":
            time.sleep(self.stall_s)
        return handler._json(200, order)

    def futures_info(self) -> dict:
        symbols = sorted(self.funding)
        out = []
        for s in symbols:
            base = s[:-4]
            out.append(
                {
                    "symbol": s,
                    "pair": s,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "baseAsset": base,
                    "quoteAsset": "USDT",
                    "marginAsset": "USDT",
                    "pricePrecision": 2,
                    "quantityPrecision": 3,
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "settlePlan": 0,
                    "triggerProtect": "0.0500",
                    "orderTypes": ["LIMIT", "MARKET"],
                    "timeInForce": ["GTC"],
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.10",
                            "maxPrice": "1000000",
                            "tickSize": "0.10",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.001",
                            "maxQty": "1000",
                            "stepSize": "0.001",
                        },
                        {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    ],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [],
            "assets": [],
            "symbols": out,
        }

    def exchange_info(self) -> dict:
        symbols = sorted({s for s, _ in self.klines})
        out = []
        for s in symbols:
            base, quote = s[:-4], s[-4:]
            out.append(
                {
                    "symbol": s,
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "permissions": ["SPOT"],
                    "permissionSets": [["SPOT"]],
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.01",
                            "maxPrice": "1000000",
                            "tickSize": "0.01",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00001",
                            "maxQty": "9000",
                            "stepSize": "0.00001",
                        },
                        {"filterType": "NOTIONAL", "minNotional": "5", "maxNotional": "9000000"},
                    ],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [],
            "symbols": out,
        }
