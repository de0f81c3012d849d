"""Live trading through the real ccxt binance client against the local Binance server (issue #11):
fills and fees booked exactly, no double orders on timeouts or after SIGKILL, 429 retried,
rejections and partial fills, orders below the minimum, reconciliation halts, the CLI's safety
checks, and no API key in anything the run writes."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from orchestra.config import parse_config
from orchestra.data.files import write_files
from orchestra.live.feeds import ReplayFeed
from orchestra.live.session import LiveSession
from orchestra.live.store import Store
from orchestra.live.trading import CcxtBroker
from orchestra.monitoring import Monitor
from tests.fake_binance import DAY_MS, FakeBinance, make_klines

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "tk-8d1e5f0a9c2b7e64", "ts-4f9a0c1e7d3b2a85e6"
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    from orchestra.data.synthetic import generate

    folder = tmp_path_factory.mktemp("trade") / "bars"
    write_files(generate(SYMBOLS, dt.date(2023, 9, 1), dt.date(2024, 6, 30), "1d", 5), folder, "1d")
    return folder


def trade_raw(folder: Path, capital: float = 100_000.0, threshold: float = 0.02) -> dict:
    risk = {"rebalance_threshold": threshold, "max_leverage": 1.0}
    return {
        "data": {"source": "files", "path": str(folder), "timeframe": "1d"},
        "orchestrator": {
            "allocation_method": "inverse_volatility",
            "min_history": 10,
            "min_pod_capital": 0.0,  # small test accounts: the exchange's own minimum applies
        },
        "pods": [
            {
                "pod_id": "trend",
                "strategy": "tsmom",
                "params": {"lookback": 10},
                "symbols": SYMBOLS,
                "initial_fraction": 0.5,
                "max_fraction": 0.7,
                "initial_state": "production",
                "risk": risk,
            },
            {
                "pod_id": "breakout",
                "strategy": "donchian-ensemble",
                "params": {"lookbacks": [10, 20]},
                "symbols": ["ETH/USDT"],
                "initial_fraction": 0.4,
                "max_fraction": 0.7,
                "initial_state": "production",
                "risk": risk,
            },
        ],
        "backtest": {
            "start": "2024-01-01",
            "end": "2024-06-30",
            "capital": capital,
            "execution": "close",
        },
        "portfolio": {"cost_bps": 10.0},
    }


@pytest.fixture
def server():
    klines = {(s.replace("/", ""), "1d"): make_klines(0, 3, DAY_MS) for s in SYMBOLS}
    with FakeBinance(klines, stall_s=1.5) as fake:
        fake.api_key = KEY
        yield fake


class Harness:
    """A live-trading session over the folder's bars; each bar's orders fill at its close × 1.0007
    (so the exchange's price differs from the modelled one)."""

    def __init__(self, tmp: Path, market: Path, server: FakeBinance, raw: dict, monitor=None):
        self.cfg = parse_config(raw, source="trade.yaml")
        self.server = server
        self.feed = ReplayFeed(self.cfg, market)
        self.state = tmp / "state"
        self.session = LiveSession.open(
            self.feed.config,
            self.state,
            self.feed.label,
            self.feed.start_ms,
            self.feed.warmup,
            identity=self.cfg,
            mode="live",
        )
        self.session.monitor = monitor or Monitor(None, None)
        ex = server.exchange(timeout_ms=1000, api_key=KEY, secret=SECRET)
        ex.load_markets()
        self.broker = CcxtBroker(
            ex, self.session.store, self.session.meta["run_id"], backoff_s=0.01
        )
        self.session.start_trading(self.broker)

    def run(self, n: int | None = None, before=None) -> None:
        s = self.session
        last = s.last_ts if s.last_ts is not None else s.start_ms - 1
        bars = self.feed.bars_after(last)
        for ts, frame in bars if n is None else itertools.islice(bars, n):
            if before is not None:
                before(s.next_bar)
            for row in frame.iter_rows(named=True):
                self.server.prices[row["symbol"].replace("/", "")] = row["close"] * 1.0007
            s.process(ts, frame)

    def orders(self) -> list[dict]:
        with Store(self.state, readonly=True) as st:
            return st.orders()

    def outbox(self) -> list[dict]:
        with Store(self.state, readonly=True) as st:
            return st.outbox()


def check_books_match_the_exchange(h: Harness) -> None:
    """Σ pod units per asset = exchange balance − baseline; each order's fills and fee are booked
    on the pods exactly."""
    eng = h.session.engine
    base = h.session.meta["baseline"]
    for s, sym in enumerate(eng.prepared.market.symbols):
        asset = sym.split("/")[0]
        assert h.server.balances.get(asset, 0.0) - base[asset] == pytest.approx(
            float(eng.state.account_units[s]), abs=1e-8
        ), asset
    res = h.session.result()
    ext = res.fills.filter(pl.col("venue") == "external")
    for o in h.orders():
        if not o["filled"]:
            continue
        ts = dt.datetime.fromtimestamp(o["ts"] / 1000, dt.UTC)
        mine = ext.filter((pl.col("timestamp") == ts) & (pl.col("symbol") == o["symbol"]))
        sign = 1.0 if o["side"] == "buy" else -1.0
        assert mine["units"].sum() == pytest.approx(sign * o["filled"], rel=1e-12)
        assert mine["fee"].sum() == pytest.approx(o["fee"], rel=1e-12)
        assert (mine["price"] == o["average"]).all()
        sent = h.server.orders[o["client_order_id"]]
        assert float(sent["executedQty"]) == pytest.approx(o["filled"], rel=1e-12)
        assert float(sent["fills"][0]["commission"]) == pytest.approx(o["fee"], rel=1e-9)


def test_fills_and_fees_are_booked_exactly_and_each_order_is_sent_once(
    market: Path, server: FakeBinance, tmp_path: Path
) -> None:
    h = Harness(tmp_path, market, server, trade_raw(market))
    h.run(60)
    orders = h.orders()
    filled = [o for o in orders if o["status"] == "filled"]
    assert len(filled) >= 10
    assert len(server.order_posts) == len(filled)  # one POST per order
    cids = [p["newClientOrderId"] for p in server.order_posts]
    assert len(set(cids)) == len(cids)
    check_books_match_the_exchange(h)
    assert not h.session.halted
    # the exchange's price differs from the modelled one: the books use the exchange's
    res = h.session.result()
    assert res.fills.filter(pl.col("venue") == "external")["price"].n_unique() > 10
    h.session.close()


def test_a_timeout_after_the_exchange_accepted_does_not_double_the_order(
    market: Path, server: FakeBinance, tmp_path: Path
) -> None:
    h = Harness(tmp_path, market, server, trade_raw(market))
    h.run(15)
    before = len(server.order_posts)
    server.order_script = ["timeout-after-accept"]
    h.run(10)
    assert server.order_script == []
    orders = [o for o in h.orders() if o["status"] == "filled"]
    assert len(server.order_posts) == len(orders)  # the timed-out order was found, not resent
    assert len(server.order_posts) > before
    check_books_match_the_exchange(h)
    h.session.close()


def test_a_429_is_retried_then_fills(market: Path, server: FakeBinance, tmp_path: Path) -> None:
    h = Harness(tmp_path, market, server, trade_raw(market))
    server.order_script = ["429", "500"]
    h.run(20)
    orders = [o for o in h.orders() if o["status"] == "filled"]
    assert len(server.order_posts) == len(orders) + 2
    check_books_match_the_exchange(h)
    h.session.close()


def test_a_rejection_is_an_alert_and_books_nothing(
    market: Path, server: FakeBinance, tmp_path: Path
) -> None:
    h = Harness(tmp_path, market, server, trade_raw(market))
    server.order_script = ["reject-funds"]
    h.run(20)
    rejected = [o for o in h.orders() if o["status"] == "rejected"]
    assert len(rejected) == 1 and "InsufficientFunds" in rejected[0]["reason"]
    alerts = [m for m in h.outbox() if m["kind"] == "order_rejected"]
    assert len(alerts) == 1 and alerts[0]["severity"] == "CRITICAL"
    check_books_match_the_exchange(h)  # the pods did not book the rejected order
    assert not h.session.halted
    h.session.close()


def test_a_partial_fill_is_attributed_and_the_rest_asked_again(
    market: Path, server: FakeBinance, tmp_path: Path
) -> None:
    h = Harness(tmp_path, market, server, trade_raw(market))
    server.order_script = ["partial"]
    h.run(20)
    (partial,) = [o for o in h.orders() if o["status"] == "partial"]
    assert partial["filled"] == pytest.approx(partial["amount"] / 2, abs=1e-5)
    check_books_match_the_exchange(h)
    h.session.close()


def test_orders_below_the_minimum_are_not_sent_and_the_books_stay_true(
    market: Path, server: FakeBinance, tmp_path: Path
) -> None:
    """A small account rebalancing every bar: many net orders fall below the 5 USDT minimum."""
    h = Harness(tmp_path, market, server, trade_raw(market, capital=300.0, threshold=0.0))
    h.run(60)
    orders = h.orders()
    skipped = [o for o in orders if o["status"] == "skipped"]
    assert skipped and all("minimum" in o["reason"] for o in skipped)
    assert len(server.order_posts) == sum(o["status"] == "filled" for o in orders)
    check_books_match_the_exchange(h)
    assert not h.session.halted
    h.session.close()


def test_a_foreign_balance_change_halts_trading_with_an_alert(
    market: Path, server: FakeBinance, tmp_path: Path
) -> None:
    from orchestra.cli import live

    raw = trade_raw(market)
    h = Harness(tmp_path, market, server, raw)
    h.run(10)
    server.balances["BTC"] = server.balances.get("BTC", 0.0) + 0.25  # someone else trades
    h.run(1)
    assert h.session.halted and "BTC" in h.session.halted["reason"]
    (alert,) = [m for m in h.outbox() if m["kind"] == "reconciliation_halt"]
    assert alert["severity"] == "CRITICAL"
    posts = len(server.order_posts)
    h.run(15)  # halted: no orders leave
    assert len(server.order_posts) == posts
    h.session.close()
    res = CliRunner().invoke(live.main, ["status", "--state", str(h.state)])
    assert res.exit_code == 0 and "HALTED (reconciliation" in res.output, res.output
    # a restart still halts; --rebaseline accepts the balances and trading resumes
    again = Harness(tmp_path, market, server, raw)
    assert again.session.halted
    again.session.close()
    h3 = Harness.__new__(Harness)
    h3.__init__(tmp_path, market, server, raw)
    h3.session.start_trading(h3.broker, rebaseline=True)
    assert not h3.session.halted
    h3.run(20)
    assert len(server.order_posts) > posts
    h3.session.close()


def _driver(cfg_file: Path, market: Path, state: Path, n: int, server, crash: str | None):
    env = {
        **os.environ,
        "ORCHESTRA_EXCHANGE_URL": server.url,
        "ORCHESTRA_API_KEY": KEY,
        "ORCHESTRA_API_SECRET": SECRET,
    }
    env.pop("ORCHESTRA_CRASH_AT", None)
    if crash:
        env["ORCHESTRA_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "live_driver.py"), str(cfg_file), str(market),
         str(state), str(n)],
        env=env, capture_output=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def test_sigkill_between_send_and_record_books_the_order_once(
    market: Path, server: FakeBinance, tmp_path: Path
) -> None:
    """The process dies after the exchange filled an order and before the bar was committed: the
    restart finds the order by its client id, books it once, and sends nothing twice. Nothing the
    run writes contains the API key or secret."""
    import yaml

    cfg_file = tmp_path / "trade.yaml"
    cfg_file.write_text(yaml.safe_dump(trade_raw(market)))
    for sym in SYMBOLS:  # the exchange's price level for this test (the driver sets none)
        server.prices[sym.replace("/", "")] = {"BTC/USDT": 42_000.0, "ETH/USDT": 2_300.0}[sym]
    state = tmp_path / "state"
    outputs = []
    # find a bar that trades, then crash right after its first order was filled
    first = _driver(cfg_file, market, state, 5, server, None)
    outputs.append(first)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    with Store(state, readonly=True) as st:
        done = st.load().journal[-1]["end_bar"]
    crash_bar = done + 2
    proc = _driver(cfg_file, market, state, 30, server, f"{crash_bar}:after-send")
    outputs.append(proc)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    with Store(state, readonly=True) as st:
        assert st.load().journal[-1]["end_bar"] == crash_bar  # the bar was not committed
        intents = [o for o in st.orders() if o["status"] == "intent"]
    assert len(intents) == 1 and intents[0]["bar"] == crash_bar
    cid = intents[0]["client_order_id"]
    assert cid in server.orders  # the exchange did fill it
    done = _driver(cfg_file, market, state, 30, server, None)
    outputs.append(done)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    posted = [p["newClientOrderId"] for p in server.order_posts]
    assert posted.count(cid) == 1 and len(set(posted)) == len(posted)
    with Store(state, readonly=True) as st:
        (o,) = [x for x in st.orders() if x["client_order_id"] == cid]
        assert o["status"] == "filled" and o["filled"] == float(server.orders[cid]["executedQty"])
        assert st.load().journal[-1]["end_bar"] == 30
        baseline = st.meta()["baseline"]
        assert not st.meta().get("halt")
    # books = exchange
    from orchestra import load_run

    res = load_run(state)
    last = res.positions.sort("timestamp").group_by("pod_id", "symbol").last()
    for sym in SYMBOLS:
        units = last.filter(pl.col("symbol") == sym)["units"].sum()
        asset = sym.split("/")[0]
        assert server.balances.get(asset, 0.0) - baseline[asset] == pytest.approx(units, abs=1e-8)
    # the secrets are nowhere in what the run wrote or printed (report and status included)
    from orchestra.cli import bt, live

    runner = CliRunner()
    for args, main in (
        ([str(state), "--html"], bt.main),
        (["status", "--state", str(state)], live.main),
    ):
        res = runner.invoke(main, ["report", *args] if main is bt.main else args)
        assert res.exit_code == 0, res.output
        assert KEY not in res.output and SECRET not in res.output
    assert (state / "report.html").is_file()
    for f in state.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert KEY.encode() not in data and SECRET.encode() not in data, f
    for p in outputs:
        assert (
            KEY.encode() not in p.stdout + p.stderr and SECRET.encode() not in p.stdout + p.stderr
        )


def test_live_cli_refuses_without_keys_confirmation_or_a_valid_config(tmp_path: Path) -> None:
    import yaml

    from orchestra.cli import live

    cfg = ROOT / "configs" / "paper-binance.yaml"
    runner = CliRunner()
    res = runner.invoke(live.main, ["--live", str(cfg), "--i-understand-this-trades-real-money"],
                        env={"ORCHESTRA_API_KEY": "", "ORCHESTRA_API_SECRET": ""})  # fmt: skip
    assert res.exit_code == 2 and "ORCHESTRA_API_KEY" in res.output and "refusing" in res.output
    env = {"ORCHESTRA_API_KEY": KEY, "ORCHESTRA_API_SECRET": SECRET}
    res = runner.invoke(live.main, ["--live", str(cfg)], env=env)
    assert res.exit_code == 2 and "--i-understand-this-trades-real-money" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"pods": [{"pod_id": "x", "strategy": "nope", "symbols": []}]}))
    res = runner.invoke(
        live.main, ["--live", str(bad), "--i-understand-this-trades-real-money"], env=env
    )
    assert res.exit_code == 2 and "config error" in res.output
    files = yaml.safe_load((ROOT / "configs" / "paper-binance.yaml").read_text())
    files["data"] = {"source": "synthetic", "timeframe": "4h"}  # long-only spot, not ccxt
    spot_files = tmp_path / "files.yaml"
    spot_files.write_text(yaml.safe_dump(files))
    res = runner.invoke(
        live.main, ["--live", str(spot_files), "--i-understand-this-trades-real-money"], env=env
    )
    assert res.exit_code == 2 and "data.source: ccxt" in res.output, res.output
    perp = yaml.safe_load((ROOT / "configs" / "paper-binance-perp.yaml").read_text())
    perp["portfolio"]["funding"] = False
    no_funding = tmp_path / "perp.yaml"
    no_funding.write_text(yaml.safe_dump(perp))
    res2 = runner.invoke(
        live.main, ["--live", str(no_funding), "--i-understand-this-trades-real-money"], env=env
    )
    assert res2.exit_code == 2 and "portfolio.funding is false" in res2.output, res2.output
    for r in (res, res2):
        assert KEY not in r.output and SECRET not in r.output


def test_orch_live_live_trades_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    """The whole `orch-live --live` path: keys from the environment, the exchange at
    ORCHESTRA_EXCHANGE_URL, polling (on a test clock), orders, reconciliation, then status."""
    import yaml

    from orchestra.cli import live
    from orchestra.live import feeds
    from tests.test_live import FakeClock

    start = 1_704_067_200_000  # 2024-01-01
    klines = {
        (s.replace("/", ""), "1d"): make_klines(start, 150, DAY_MS, i)
        for i, s in enumerate(SYMBOLS)
    }
    raw = trade_raw(Path("unused"))
    raw["data"] = {"source": "ccxt", "exchange": "binance", "timeframe": "1d"}
    raw["backtest"].update(start="2024-04-01", end="2024-05-01")
    # spot is long-only: the CLI refuses pods that could go short there
    raw["pods"][0].update(
        strategy="donchian-ensemble", params={"lookbacks": [5], "long_only": True}
    )
    raw["pods"][1]["params"]["long_only"] = True
    cfg_file = tmp_path / "live.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    clock = FakeClock(dt.datetime(2024, 4, 1, 3, tzinfo=dt.UTC).timestamp())
    real = feeds.PollFeed

    class ClockedFeed(real):
        def __init__(self, config, **kw):
            kw.update(clock=clock, sleep=clock.sleep)
            super().__init__(config, **kw)

    monkeypatch.setattr(feeds, "PollFeed", ClockedFeed)
    with FakeBinance(klines, page_limit=1000) as fake:
        fake.api_key = KEY
        for sym in SYMBOLS:
            fake.prices[sym.replace("/", "")] = 100.0
        env = {"ORCHESTRA_EXCHANGE_URL": fake.url, "ORCHESTRA_API_KEY": KEY,
               "ORCHESTRA_API_SECRET": SECRET}  # fmt: skip
        state = tmp_path / "state"
        res = CliRunner().invoke(
            live.main,
            ["--live", str(cfg_file), "--i-understand-this-trades-real-money", "--state",
             str(state), "--max-bars", "12", "--quiet"],
            env=env,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert len(fake.order_posts) > 0
        with Store(state, readonly=True) as st:
            meta = st.meta()
            orders = st.orders()
        assert meta["mode"] == "live" and not meta.get("halt")
        assert sum(o["status"] == "filled" for o in orders) == len(fake.order_posts)
        res = CliRunner().invoke(live.main, ["status", "--state", str(state)])
        assert res.exit_code == 0 and "(live)" in res.output and "filled" in res.output
    assert KEY not in res.output
