"""Live trading on Binance USDⓈ-M perpetuals through the real ccxt client against a local server
speaking the futures REST protocol (tests/fake_binance_usdm.py): long/short pods trade both
sides, positions and collateral reconcile every bar, the exchange's funding is booked to the pods
exactly, reduce-only orders, a rejected order, a timeout after acceptance and a SIGKILL after the
send book each order once, and a position changed outside the run halts trading."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from orchestra.config import parse_config
from orchestra.data.files import symbol_to_stem, write_files
from orchestra.live.feeds import ReplayFeed
from orchestra.live.session import LiveSession
from orchestra.live.store import Store
from orchestra.live.trading import CcxtBroker
from orchestra.monitoring import Monitor
from tests.fake_binance import DAY_MS, make_klines
from tests.fake_binance_usdm import FakeBinanceUSDM

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "tk-3a7c9e1f5b2d8064", "ts-9e2f4a6c8b0d1e3f57"
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
IDS = {s: s.split("/")[0] + "USDT" for s in SYMBOLS}
FUNDING_EVERY = 8 * 3_600_000


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    """Daily bars of two perpetuals and their 8-hourly funding rates (files)."""
    from orchestra.data.synthetic import generate

    folder = tmp_path_factory.mktemp("perp") / "bars"
    bars = generate(["BTC/USDT", "ETH/USDT"], dt.date(2023, 9, 1), dt.date(2024, 6, 30), "1d", 5)
    bars = bars.with_columns(pl.col("symbol") + ":USDT")
    write_files(bars, folder, "1d")
    rng = np.random.default_rng(3)
    start = int(dt.datetime(2023, 9, 1, tzinfo=dt.UTC).timestamp() * 1000)
    times = np.arange(start, start + 310 * DAY_MS, FUNDING_EVERY)
    for s in SYMBOLS:
        rates = rng.normal(1e-4, 2e-4, times.size)
        pl.DataFrame({"timestamp": times, "rate": rates}).write_parquet(
            folder / f"{symbol_to_stem(s)}_funding.parquet"
        )
    return folder


def perp_raw(folder: Path, **risk) -> dict:
    pod_risk = {"rebalance_threshold": 0.02, "max_leverage": 1.5}
    return {
        "data": {"source": "files", "path": str(folder), "timeframe": "1d", "market": "swap"},
        "orchestrator": {
            "allocation_method": "inverse_volatility",
            "min_history": 10,
            "risk": {"max_gross_leverage": 2.0, **risk},
        },
        "pods": [
            {"pod_id": "trend", "strategy": "tsmom", "params": {"lookback": 8},
             "symbols": SYMBOLS, "initial_fraction": 0.5, "max_fraction": 0.7,
             "initial_state": "production", "risk": pod_risk},
            {"pod_id": "breakout", "strategy": "donchian-ensemble",
             "params": {"lookbacks": [5, 15]}, "symbols": [SYMBOLS[1]],
             "initial_fraction": 0.4, "max_fraction": 0.7, "initial_state": "production",
             "risk": pod_risk},
        ],
        "backtest": {"start": "2024-01-01", "end": "2024-06-30", "capital": 100_000.0,
                     "execution": "close"},
        "portfolio": {"cost_bps": 4.0, "funding": True},
    }  # fmt: skip


def _rates(folder: Path) -> dict[str, pl.DataFrame]:
    return {s: pl.read_parquet(folder / f"{symbol_to_stem(s)}_funding.parquet") for s in SYMBOLS}


@pytest.fixture
def server():
    klines = {(IDS[s], "1d"): make_klines(0, 3, DAY_MS) for s in SYMBOLS}
    with FakeBinanceUSDM(klines, stall_s=1.5) as fake:
        fake.api_key = KEY
        fake.dual_side = True  # the account starts in hedge mode: set-up switches it
        yield fake


class Harness:
    """A live session on the perpetuals; each bar the exchange first charges the funding of the
    bar's funding times on its positions, then fills at the bar's close × 1.0005."""

    def __init__(self, tmp: Path, market: Path, server: FakeBinanceUSDM, raw: dict):
        self.cfg = parse_config(raw, source="perp.yaml")
        self.server = server
        self.rates = _rates(market)
        self.feed = ReplayFeed(self.cfg, market)
        self.state = tmp / "state"
        self.session = LiveSession.open(
            self.feed.config, self.state, self.feed.label, self.feed.start_ms,
            self.feed.warmup, identity=self.cfg, mode="live",
        )  # fmt: skip
        self.session.monitor = Monitor(None, None)
        ex = server.exchange(timeout_ms=1000, market="swap", api_key=KEY, secret=SECRET)
        ex.enableRateLimit = False  # a local server: no need to pace the calls
        ex.load_markets()
        self.broker = CcxtBroker(
            ex, self.session.store, self.session.meta["run_id"], backoff_s=0.01, market="swap"
        )
        self.problems = self.session.start_trading(self.broker)
        self.incomes = 0.0
        self.seen_positions: dict[str, list[float]] = {s: [] for s in SYMBOLS}

    def run(self, n: int, before=None) -> None:
        s = self.session
        last = s.last_ts if s.last_ts is not None else s.start_ms - 1
        for ts, frame in itertools.islice(self.feed.bars_after(last), n):
            if before is not None:
                before(s.next_bar)
            for row in frame.iter_rows(named=True):
                self.server.prices[IDS[row["symbol"]]] = row["close"] * 1.0005
            for sym, rates in self.rates.items():  # funding at F in (ts, close]
                f_ts = rates["timestamp"].to_numpy()
                due = (f_ts > ts) & (f_ts <= ts + DAY_MS)
                for t, r in zip(f_ts[due], rates["rate"].to_numpy()[due], strict=True):
                    self.incomes += self.server.pay_funding(IDS[sym], int(t), float(r))
            s.process(ts, frame)
            for sym in SYMBOLS:
                self.seen_positions[sym].append(self.server.position(IDS[sym]))

    def orders(self) -> list[dict]:
        with Store(self.state, readonly=True) as st:
            return st.orders()


def _books_match(h: Harness) -> None:
    units = h.session.engine.state.account_units
    for i, sym in enumerate(h.session.engine.prepared.market.symbols):
        assert h.server.position(IDS[sym]) == pytest.approx(float(units[i]), abs=1e-9), sym


def test_long_short_pods_trade_both_sides_and_everything_reconciles(
    market: Path, server: FakeBinanceUSDM, tmp_path: Path
) -> None:
    h = Harness(tmp_path, market, server, perp_raw(market))
    assert h.problems == []
    # set-up: one-way mode, cross margin and the leverage on every symbol
    assert server.dual_side is False
    assert all(server.margin_type.get(IDS[s]) == "CROSSED" for s in SYMBOLS)
    assert all(server.leverage.get(IDS[s]) == 2 for s in SYMBOLS)
    h.run(120)
    assert not h.session.halted, h.session.halted
    _books_match(h)
    seen = np.array(h.seen_positions[SYMBOLS[1]])
    assert (seen > 0).any() and (seen < 0).any()  # long and short on one symbol
    posts = server.order_posts
    reduce = [p for p in posts if p.get("reduceOnly") == "true"]
    assert reduce and len(reduce) < len(posts)  # some orders only reduced a position
    statuses = {o["status"] for o in h.orders()}
    assert "filled" in statuses and not statuses & {"rejected", "error", "partial"}, statuses
    # funding: what the exchange charged is exactly what the pods paid (by position share)
    paid = float(h.session.engine.state.pod_funding.sum())
    unbooked = sum(h.session.meta.get("unbooked_funding", {}).values())
    reported = sum(float(r["income"]) for r in server.income)  # what the exchange reports
    assert reported != 0.0
    assert paid - unbooked == pytest.approx(-reported, rel=1e-12, abs=1e-9)
    # margin ratio and liquidation prices are there for status and metrics
    margin = h.session.meta["margin"]
    assert 0 < margin["ratio"] < 1 and set(margin["liquidation_price"]) <= set(SYMBOLS)
    h.session.close()


def test_a_rejected_order_and_a_timeout_after_acceptance(
    market: Path, server: FakeBinanceUSDM, tmp_path: Path
) -> None:
    h = Harness(tmp_path, market, server, perp_raw(market))
    h.run(30)
    posts = len(server.order_posts)
    server.order_script = ["reject-funds"]
    while len(server.order_posts) == posts:
        h.run(1)
    rejected = [o for o in h.orders() if o["status"] == "rejected"]
    assert len(rejected) == 1 and "Margin is insufficient" in rejected[0]["reason"]
    assert not h.session.halted  # nothing was booked, so the books still match
    with Store(h.state, readonly=True) as st:
        assert any(m["kind"] == "order_rejected" for m in st.outbox())
    posts = len(server.order_posts)
    server.order_script = ["timeout-after-accept"]
    while len(server.order_posts) == posts:
        h.run(1)
    h.run(3)
    cids = [p["newClientOrderId"] for p in server.order_posts]
    assert len(cids) == len(set(cids))  # the accepted order was looked up, not sent again
    _books_match(h)
    assert not h.session.halted
    h.session.close()


def test_a_position_changed_outside_the_run_halts(
    market: Path, server: FakeBinanceUSDM, tmp_path: Path
) -> None:
    h = Harness(tmp_path, market, server, perp_raw(market))
    h.run(20)
    server.move_position(IDS[SYMBOLS[0]], 0.25)
    h.run(1)
    halt = h.session.halted
    assert halt and "exchange position" in halt["reason"] and SYMBOLS[0] in halt["reason"]
    posts = len(server.order_posts)
    h.run(5)
    assert len(server.order_posts) == posts  # no orders while halted
    with Store(h.state, readonly=True) as st:
        assert any(m["kind"] == "reconciliation_halt" for m in st.outbox())
    h.session.close()


def test_a_margin_ratio_above_the_warning_level_alerts(
    market: Path, server: FakeBinanceUSDM, tmp_path: Path
) -> None:
    h = Harness(tmp_path, market, server, perp_raw(market, margin_ratio_warning=1e-4))
    h.run(40)
    with Store(h.state, readonly=True) as st:
        warnings = [m for m in st.outbox() if m["kind"] == "margin_ratio"]
    assert warnings and all(m["severity"] == "WARNING" for m in warnings)
    h.session.close()


def test_sigkill_after_the_send_books_the_order_once(
    market: Path, server: FakeBinanceUSDM, tmp_path: Path
) -> None:
    import yaml

    cfg_file = tmp_path / "perp.yaml"
    cfg_file.write_text(yaml.safe_dump(perp_raw(market)))
    for s in SYMBOLS:  # the driver sets no prices: a level near the synthetic bars'
        server.prices[IDS[s]] = {"BTC/USDT:USDT": 42_000.0, "ETH/USDT:USDT": 2_300.0}[s]
    state = tmp_path / "state"

    def driver(n: int, crash: str | None):
        env = {**os.environ, "ORCHESTRA_EXCHANGE_URL": server.url,
               "ORCHESTRA_API_KEY": KEY, "ORCHESTRA_API_SECRET": SECRET}  # fmt: skip
        env.pop("ORCHESTRA_CRASH_AT", None)
        if crash:
            env["ORCHESTRA_CRASH_AT"] = crash
        return subprocess.run(
            [sys.executable, str(ROOT / "tests" / "live_driver.py"), str(cfg_file),
             str(market), str(state), str(n)],
            env=env, capture_output=True, timeout=300, cwd=ROOT,
        )  # fmt: skip

    first = driver(5, None)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    with Store(state, readonly=True) as st:
        done = st.load().journal[-1]["end_bar"]
    crash = driver(40, f"{done + 2}:after-send")
    assert crash.returncode == -signal.SIGKILL, crash.stderr.decode()[-2000:]
    with Store(state, readonly=True) as st:
        (intent,) = [o for o in st.orders() if o["status"] == "intent"]
    assert intent["client_order_id"] in server.orders  # the exchange filled it
    again = driver(40, None)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    posted = [p["newClientOrderId"] for p in server.order_posts]
    assert posted.count(intent["client_order_id"]) == 1 and len(set(posted)) == len(posted)
    with Store(state, readonly=True) as st:
        meta = st.meta()
        assert not meta.get("halt"), meta.get("halt")
        (o,) = [x for x in st.orders() if x["client_order_id"] == intent["client_order_id"]]
        assert o["status"] == "filled"
    for run in (first, crash, again):
        for stream in (run.stdout, run.stderr):
            assert KEY.encode() not in stream and SECRET.encode() not in stream


def test_the_perpetuals_candles_come_from_the_futures_api(server: FakeBinanceUSDM) -> None:
    """Paper or live on swap polls the perpetuals' own candles (/fapi/v1/klines), by the unified
    symbol BTC/USDT:USDT."""
    from orchestra.data.ccxt_source import download

    start = 1_704_067_200_000  # 2024-01-01
    server.klines[("BTCUSDT", "1d")] = make_klines(start, 20, DAY_MS, 7)
    ex = server.exchange(market="swap")
    ex.enableRateLimit = False
    bars = download(ex, "BTC/USDT:USDT", "1d", start, start + 20 * DAY_MS)
    assert bars.height == 20 and set(bars["symbol"]) == {"BTC/USDT:USDT"}
    assert bars["close"][-1] == pytest.approx(float(server.klines[("BTCUSDT", "1d")][-1][4]))


def test_collateral_moved_outside_the_run_halts(
    market: Path, server: FakeBinanceUSDM, tmp_path: Path
) -> None:
    """A withdrawal (the margin balance moves with no trade of ours) is a collateral mismatch."""
    h = Harness(tmp_path, market, server, perp_raw(market))
    h.run(20)
    assert not h.session.halted
    server.wallet -= 5_000.0
    h.run(1)
    halt = h.session.halted
    assert halt and "collateral" in halt["reason"], halt
    h.session.close()
