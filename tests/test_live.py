"""The live adapter (SPEC §13, issue #10): a paper replay equals the backtest exactly, inputs built
from truncated history equal the full run's rows, and the state survives SIGKILL at any point.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from orchestra import OrchestratedResult, load_run
from orchestra.config import parse_config
from orchestra.data import load_bars
from orchestra.data.files import write_files
from orchestra.engine import prepare, run_backtest
from orchestra.live import LiveSession, StoreError
from orchestra.live.feeds import ReplayFeed
from orchestra.live.store import Store
from tests.conftest import needs_shared

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"]


def churn_raw(**over) -> dict:
    """A config where allocation, every lifecycle transition, the daily-loss breaker, funding,
    the gross-leverage cap and a mid-run join all happen (asserted in the parity test)."""
    risk = {"drawdown_warning": 0.03, "max_leverage": 3.0, "rebalance_threshold": 0.0}
    raw = {
        "data": {"source": "files", "path": "bars", "timeframe": "1d", "market": "swap"},
        "orchestrator": {
            "allocation_method": "adaptive_kelly",
            "min_history": 10,
            "allocation_lookback": 30,
            "kelly_confidence_ramp": 30,
            "rebalance": {"trigger": "hybrid", "calendar_days": 7, "drift_threshold": 0.05},
            "risk": {
                "max_portfolio_volatility": 0.5,
                "daily_loss_limit": 0.01,
                "max_gross_leverage": 0.5,
                "max_portfolio_drawdown": 0.06,
                "drawdown_action": "derisk",
            },
            "graduation": {
                "min_live_days": 20,
                "min_sharpe": -5.0,
                "min_calmar": -100.0,
                "min_trade_count": 0,
                "max_drawdown": 1.0,
                "max_portfolio_correlation": 1.0,
            },
            "retirement": {
                "min_dwell_days": 0,  # no hysteresis: these configs must churn
                "recovery_drawdown_ratio": 1.0,
                "rolling_sharpe_window": 20,
                "rolling_sharpe_floor": 0.5,
                "warning_days": 10,
                "probation_days": 10,
                "max_drawdown_breach": 0.5,
            },
            "degradation": {"lambda_": 5.0, "min_instances": 10},
        },
        "pods": [
            {
                "pod_id": "trend",
                "strategy": "tsmom",
                "params": {"lookback": 10},
                "symbols": ["BTC/USDT", "ETH/USDT"],
                "initial_fraction": 0.35,
                "max_fraction": 0.8,
                "min_fraction": 0.05,
                "initial_state": "production",
                "risk": {**risk, "max_drawdown": 0.08, "system_stop_loss": 0.05},
            },
            {
                "pod_id": "breakout",
                "strategy": "donchian-ensemble",
                "params": {"lookbacks": [10, 30]},
                "symbols": ["SOL/USDT", "BNB/USDT", "ETH/USDT"],
                "initial_fraction": 0.25,
                "max_fraction": 0.8,
                "min_fraction": 0.05,
                "initial_state": "production",
                "risk": {**risk, "max_drawdown": 0.5, "use_trailing_stop": True},
            },
            {
                "pod_id": "adaptive",
                "strategy": "vol-adaptive",
                "params": {"fast_lookback": 5, "slow_lookback": 20, "vol_long": 40},
                "symbols": ["BTC/USDT", "SOL/USDT"],
                "initial_fraction": 0.2,
                "max_fraction": 0.6,
                "min_fraction": 0.0,
                "risk": {**risk, "max_drawdown": 0.5},
            },
            {
                "pod_id": "late",
                "strategy": "vw-tsmom",
                "params": {"lookback": 15},
                "symbols": ["ETH/USDT", "BNB/USDT"],
                "initial_fraction": 0.2,
                "max_fraction": 0.6,
                "min_fraction": 0.05,
                "start": "2024-04-15",
                "risk": {**risk, "max_drawdown": 0.5},
            },
        ],
        "backtest": {"start": "2024-01-01", "end": "2024-09-30", "capital": 10_000},
        "portfolio": {"cost_bps": 5.0, "slippage_bps": 2.0, "funding": True},
    }
    for key, value in over.items():
        raw[key] = value
    return raw


def write_market(folder: Path, seed: int = 3, end: str = "2024-12-31") -> Path:
    """Synthetic bars (and 8-hourly funding rates) as a files folder."""
    from orchestra.data.files import symbol_to_stem
    from orchestra.data.synthetic import generate

    bars = generate(SYMBOLS, dt.date(2023, 6, 1), dt.date.fromisoformat(end), "1d", seed)
    write_files(bars, folder, "1d")
    times = np.arange(
        int(dt.datetime(2023, 6, 1, tzinfo=dt.UTC).timestamp() * 1000),
        int(dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC).timestamp() * 1000),
        8 * 3_600_000,
    )
    for j, sym in enumerate(SYMBOLS):
        rate = 1e-4 * (1 + j) * np.sin(np.arange(times.size) / (7 + j)) + 5e-5
        pl.DataFrame({"timestamp": times, "rate": rate}).write_parquet(
            folder / f"{symbol_to_stem(sym)}_funding.parquet"
        )
    return folder


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    return write_market(tmp_path_factory.mktemp("market") / "bars")


def config_for(folder: Path, **over):
    raw = churn_raw(**over)
    raw["data"]["path"] = str(folder)
    return parse_config(raw, source="churn.yaml")


def replay(cfg, folder: Path, state: Path, max_bars: int | None = None) -> LiveSession:
    import itertools

    feed = ReplayFeed(cfg, folder)
    session = LiveSession.open(
        feed.config, state, feed.label, feed.start_ms, feed.warmup, identity=cfg
    )
    last = session.last_ts if session.last_ts is not None else session.start_ms - 1
    bars = feed.bars_after(last)
    session.run(bars if max_bars is None else itertools.islice(bars, max_bars))
    return session


def assert_same_frames(a: OrchestratedResult, b: OrchestratedResult) -> None:
    for name, fa in a.frames().items():
        fb = b.frames()[name]
        assert fa.equals(fb), f"{name}: {fa.shape} vs {fb.shape}\n{fa}\n{fb}"


# ---------------------------------------------------------------------------- parity
def test_paper_replay_equals_the_backtest_exactly(market: Path, tmp_path: Path) -> None:
    """SPEC §13.4: fills, fees, pod equity, allocations, lifecycle events and alerts are equal
    floats, on a config where every mechanism fires (asserted first, so parity is not vacuous)."""
    cfg = config_for(market)
    bt = run_backtest(cfg)
    # the mechanisms fire
    to_states = set(bt.lifecycle_events["to_state"].to_list())
    assert {"production", "warning", "probation", "retired"} <= to_states, to_states
    assert "incubation" in set(bt.lifecycle_events["from_state"].to_list())  # graduation
    assert bt.allocations["trigger"].str.starts_with("threshold").any()
    assert (bt.allocations["trigger"] == "calendar").any()
    kinds = set(bt.alerts["alert_type"].to_list())
    assert "daily_loss_circuit_breaker" in kinds and "portfolio_drawdown" in kinds, kinds
    late = bt.pod_equity.filter(pl.col("pod_id") == "late")
    assert late["equity"][0] == 0.0 and late["equity"].max() > 0  # joined mid-run
    for switch in (
        {"portfolio": {**churn_raw()["portfolio"], "funding": False}},  # funding charged
        {
            "orchestrator": {
                **churn_raw()["orchestrator"],
                "risk": {**churn_raw()["orchestrator"]["risk"], "max_gross_leverage": 100.0},
            }
        },  # the gross cap binds
    ):
        other = run_backtest(config_for(market, **switch))
        assert other.equity["equity"][-1] != bt.equity["equity"][-1], switch

    session = replay(cfg, market, tmp_path / "state")
    session.close()
    assert_same_frames(bt, load_run(tmp_path / "state"))


@needs_shared
def test_replay_equals_the_backtest_on_real_bars_with_listings_inside_the_run(
    shared_data: Path, tmp_path: Path
) -> None:
    """binance-majors' pods from 2020-03-01, before SOL, DOT and AVAX list: the replay sees each
    listing when it happens and must still equal the backtest bit for bit."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "binance-majors.yaml").read_text())
    raw["data"]["path"] = str(shared_data / "binance-1d")
    raw["backtest"].update({"start": "2020-03-01", "end": "2021-02-28"})
    cfg = parse_config(raw, source="binance-majors.yaml")
    bt = run_backtest(cfg)
    first = bt.fills.group_by("symbol").agg(pl.col("timestamp").min())
    late = first.filter(pl.col("timestamp") > dt.datetime(2020, 8, 1, tzinfo=dt.UTC))
    assert {"SOL/USDT", "DOT/USDT", "AVAX/USDT"} <= set(late["symbol"])  # traded once listed
    session = replay(cfg, shared_data / "binance-1d", tmp_path / "state")
    session.close()
    assert_same_frames(bt, load_run(tmp_path / "state"))


def test_replay_of_a_synthetic_config_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    """`orch-bt data export` + `orch-live --paper --replay` reproduce `orch-bt run` of the shipped
    example (synthetic data), and `orch-live status` / `orch-bt report` read the state dir."""
    from orchestra.cli import bt, live

    monkeypatch.delenv("ORCHESTRA_DISCORD_WEBHOOK", raising=False)

    runner = CliRunner()
    cfg = ROOT / "configs" / "example.yaml"
    res = runner.invoke(bt.main, ["data", "export", str(cfg), "--out", str(tmp_path / "bars")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(bt.main, ["run", str(cfg), "--out", str(tmp_path / "bt"), "--quiet"])
    assert res.exit_code == 0, res.output
    state = tmp_path / "live"
    args = ["--paper", str(cfg), "--replay", str(tmp_path / "bars"), "--state", str(state)]
    res = runner.invoke(live.main, [*args, "--max-bars", "100", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(live.main, ["status", "--state", str(state)])
    assert res.exit_code == 0, res.output
    assert "last bar" in res.output and "2024-04-09" in res.output  # bar 99
    assert "unsent (no webhook was set: ORCHESTRA_DISCORD_WEBHOOK)" in res.output  # daily reports
    res = runner.invoke(live.main, args)  # resumes after bar 99 and finishes
    assert res.exit_code == 0, res.output
    assert "resuming after bar 100" in res.output
    assert_same_frames(OrchestratedResult.load(tmp_path / "bt"), load_run(state))
    res = runner.invoke(bt.main, ["report", str(state)])
    assert res.exit_code == 0 and "pod-tsmom-major" in res.output, res.output


def test_every_input_row_from_truncated_history_equals_the_full_runs(tmp_path: Path) -> None:
    """Every strategy, the ATR, funding, a coarser pod on a finer clock, a symbol listed inside
    the run and both execution modes: the kernel inputs built from the history up to bar t equal
    the whole-history build's rows up to t, bit for bit; and so does each row the live loop
    builds one bar at a time from its carried state."""
    from orchestra.data.synthetic import generate

    folder = tmp_path / "bars"
    bars = generate(SYMBOLS, dt.date(2023, 10, 1), dt.date(2024, 3, 31), "4h", 11)
    listing = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)  # SYMBOLS[1] lists inside the backtest
    bars = bars.filter((pl.col("symbol") != SYMBOLS[1]) | (pl.col("timestamp") >= listing))
    write_files(bars, folder, "4h")
    write_market(tmp_path / "daily")  # funding files only
    for f in (tmp_path / "daily").glob("*_funding.parquet"):
        f.rename(folder / f.name)
    pods = []
    params = {
        "tsmom": {"lookback": 12},
        "vw-tsmom": {"lookback": 9},
        "vol-adaptive": {"fast_lookback": 5, "slow_lookback": 20, "vol_long": 40},
        "donchian-ensemble": {"lookbacks": [10, 30]},
        "ensemble": {},
    }
    from orchestra.strategies import registered_names

    for i, name in enumerate(registered_names()):
        pod = {
            "pod_id": f"p{i}",
            "strategy": name,
            "params": params.get(name, {}),
            "symbols": SYMBOLS[i % 3 : i % 3 + 2],
            "timeframe": "1d" if i % 2 else "4h",
            "initial_fraction": 0.15,
            "risk": {"use_trailing_stop": True},
        }
        if name == "ensemble":
            pod["sub_strategies"] = [
                {"name": "tsmom", "params": {"lookback": 6}},
                {"name": "donchian-ensemble", "params": {"lookbacks": [8]}},
            ]
        pods.append(pod)
    for execution in ("next_open", "close"):
        raw = {
            "data": {"source": "files", "path": str(folder), "timeframe": "4h"},
            "pods": pods,
            "backtest": {"start": "2024-01-01", "end": "2024-03-31", "execution": execution},
            "portfolio": {"funding": True},
        }
        cfg = parse_config(raw)
        loaded = load_bars(cfg)
        full = prepare(cfg, loaded=loaded).inputs
        n = full.timestamps.size
        assert n > 500 and len(pods) == 5
        for p in range(len(pods)):  # every pod has signals to compare
            assert np.abs(full.target[:, full.pod_ptr[p] : full.pod_ptr[p + 1]]).sum() > 0, p
        assert np.isfinite(full.atr).sum() > 0 and np.abs(full.funding).sum() > 0
        rng = np.random.default_rng(0)
        for cut in [0, 1, 5, n - 1, *rng.integers(0, n, 5).tolist()]:
            ts = int(full.timestamps[cut])
            upto = loaded.bars.filter(pl.col("timestamp").dt.epoch("ms") <= ts)
            part = prepare(
                cfg,
                end=dt.datetime.fromtimestamp(ts / 1000, dt.UTC).date(),
                loaded=type(loaded)(upto, "truncated", loaded.gaps),
            ).inputs
            assert part.timestamps.size == cut + 1
            for name, a in full._asdict().items():
                b = getattr(part, name)
                if isinstance(a, tuple):  # the run's settings
                    assert a == b, (execution, name, cut)
                    continue
                if a.ndim and a.shape[0] == n:
                    a = a[: cut + 1]
                assert np.array_equal(a, b, equal_nan=True), (execution, name, cut)
        # the live loop's own rows: signals stepped bar by bar (carried state), the ATR's step,
        # the funding row, the next_open lag and the pods' starts
        feed = ReplayFeed(cfg, folder)
        session = LiveSession.open(
            feed.config, tmp_path / f"s-{execution}", feed.label, feed.start_ms, feed.warmup
        )
        for t, (ts, rows) in enumerate(feed.bars_after(feed.start_ms - 1)):
            row = session._bar_inputs(ts, rows)
            assert row is not None and int(full.timestamps[t]) == ts
            for name, value in row.items():
                want = getattr(full, name)[t]
                assert np.array_equal(value[0], want, equal_nan=True), (execution, name, t)
        assert t == n - 1
        session.close()


# ---------------------------------------------------------------------------- the store
def test_resume_refuses_another_config(market: Path, tmp_path: Path) -> None:
    cfg = config_for(market)
    replay(cfg, market, tmp_path / "s", max_bars=3).close()
    other = config_for(market, backtest={**churn_raw()["backtest"], "capital": 20_000})
    with pytest.raises(StoreError, match="another config"):
        replay(other, market, tmp_path / "s", max_bars=3)
    from orchestra.cli import live

    cfg_file = tmp_path / "other.yaml"
    import yaml

    cfg_file.write_text(yaml.safe_dump(other.model_dump(mode="json")))
    res = CliRunner().invoke(
        live.main,
        ["--paper", str(cfg_file), "--replay", str(market), "--state", str(tmp_path / "s")],
    )
    assert res.exit_code == 2 and "another config" in res.output, res.output
    assert "Traceback" not in res.output


def test_a_broken_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "live.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="is damaged or unreadable"):
        Store(tmp_path)
    from orchestra.cli import live

    res = CliRunner().invoke(live.main, ["status", "--state", str(tmp_path)])
    assert res.exit_code == 2 and "state error" in res.output, res.output


def test_restore_continues_exactly_like_the_uninterrupted_engine(
    market: Path, tmp_path: Path
) -> None:
    """In process: stop after every k bars (a new session each time) and compare with one run."""
    cfg = config_for(market, backtest={**churn_raw()["backtest"], "end": "2024-04-30"})
    state = tmp_path / "s"
    for _ in range(6):
        replay(cfg, market, state, max_bars=23).close()
    replay(cfg, market, state).close()
    assert_same_frames(run_backtest(cfg), load_run(state))


def _next_bar(state: Path) -> int:
    if not (state / "live.sqlite").is_file():
        return 0
    db = sqlite3.connect(f"file:{state / 'live.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT next_bar FROM snapshot").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()
    return 0 if row is None else int(row[0])


@pytest.mark.slow
@settings(max_examples=1, deadline=None, phases=[Phase.generate], database=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sigkill_at_random_points_loses_and_doubles_nothing(seed: int, tmp_path_factory) -> None:
    """Kill `orch-live --paper --replay` with SIGKILL at 20 random points, restarting after each,
    then let it finish: the state dir equals the uninterrupted backtest (no fill lost or doubled).

    The points (from a hypothesis-chosen seed): a random bar ahead plus a random 0-15 ms (so the
    kill lands anywhere in a bar: building inputs, stepping, writing), during start-up, and —
    through the store's test hook — inside a bar's write transaction or right after its commit.
    """
    tmp = tmp_path_factory.mktemp("crash")
    market = write_market(tmp / "bars", end="2024-07-31")
    raw = churn_raw(backtest={**churn_raw()["backtest"], "end": "2024-06-30"})
    raw["data"]["path"] = str(market)
    import yaml

    cfg_file = tmp / "churn.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    cfg = parse_config(raw)
    state = tmp / "state"
    cmd = [
        sys.executable, "-m", "orchestra.cli.live", "--paper", str(cfg_file),
        "--replay", str(market), "--state", str(state), "--quiet",
    ]  # fmt: skip
    rng = np.random.default_rng(seed)
    n_bars = ReplayFeed(cfg, market).n_bars
    kills: list[tuple[str, int, int]] = []  # (kind, bar reached, next bar after the kill)
    while len(kills) < 20:
        done = _next_bar(state)
        room = max(2, (n_bars - done) // (21 - len(kills)))
        kind = rng.choice(["progress", "progress", "startup", "mid-write", "after-commit"])
        env = dict(os.environ)
        if kind in ("mid-write", "after-commit"):
            bar = int(rng.integers(done, done + room))
            env["ORCHESTRA_CRASH_AT"] = f"{bar}:{kind}"
            proc = subprocess.run(cmd, env=env, capture_output=True, timeout=300, cwd=ROOT)
            assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
            after = _next_bar(state)
            assert after == (bar if kind == "mid-write" else bar + 1), (kills, kind, bar, after)
        else:
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
            if kind == "startup":  # anywhere in start-up, at the latest right after its first bar
                bar = done
                deadline = time.monotonic() + float(rng.uniform(0.2, 3.0))
                while (
                    time.monotonic() < deadline and _next_bar(state) == done and proc.poll() is None
                ):
                    time.sleep(0.003)
            else:
                bar = int(rng.integers(done + 1, done + room))
                while _next_bar(state) < bar and proc.poll() is None:
                    time.sleep(0.003)
                time.sleep(float(rng.uniform(0.0, 0.015)))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL, (kind, proc.returncode)
            after = _next_bar(state)
        assert done <= after < n_bars, (kills, kind, after)
        kills.append((str(kind), bar, after))
    proc = subprocess.run(cmd, capture_output=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert _next_bar(state) == n_bars
    kinds = {k for k, _, _ in kills}
    assert len(kills) == 20 and len(kinds) >= 3, kills
    assert_same_frames(run_backtest(cfg), load_run(state))


# ---------------------------------------------------------------------------- polling (ccxt)
POLL_START = 1_704_067_200_000  # 2024-01-01


def _poll_config(raw_data: dict, start: str, end: str):
    return parse_config(
        {
            "data": raw_data,
            "pods": [
                {
                    "pod_id": "trend",
                    "strategy": "tsmom",
                    "params": {"lookback": 10},
                    "symbols": ["BTC/USDT", "ETH/USDT"],
                    "initial_fraction": 0.5,
                    "max_fraction": 0.7,
                    "initial_state": "production",
                    "risk": {"rebalance_threshold": 0.0},
                },
                {
                    "pod_id": "breakout",
                    "strategy": "donchian-ensemble",
                    "params": {"lookbacks": [10, 20]},
                    "symbols": ["ETH/USDT"],
                    "initial_fraction": 0.4,
                    "max_fraction": 0.7,
                    "initial_state": "production",
                },
            ],
            "backtest": {"start": start, "end": end},
        },
        source="poll.yaml",
    )


class FakeClock:
    """Time for the poll feed: sleeping advances it (the bars' closes come at once)."""

    def __init__(self, now_s: float):
        self.now = now_s
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_paper_polling_through_real_ccxt_equals_the_backtest_of_the_same_bars(
    tmp_path: Path,
) -> None:
    """Polling the local Binance-speaking server with the real ccxt client: the warm-up is
    downloaded, each bar is fetched after its close (a 429 is retried), and the paper run equals
    the backtest of the same bars."""
    import itertools

    from orchestra.data.ccxt_source import download
    from orchestra.live.feeds import PollFeed
    from tests.fake_binance import DAY_MS, FakeBinance, make_klines

    klines = {
        ("BTCUSDT", "1d"): make_klines(POLL_START, 200, DAY_MS, 1),
        ("ETHUSDT", "1d"): make_klines(POLL_START, 200, DAY_MS, 2),
    }
    with FakeBinance(klines, page_limit=100) as server:
        ex = server.exchange()
        bars = pl.concat(
            [download(ex, s, "1d", POLL_START, POLL_START + 200 * DAY_MS) for s in SYMBOLS[:2]]
        )
        write_files(bars, tmp_path / "bars", "1d")
        cfg = _poll_config({"source": "ccxt", "exchange": "binance"}, "2024-04-01", "2024-04-30")
        clock = FakeClock(dt.datetime(2024, 4, 1, 10, tzinfo=dt.UTC).timestamp())
        feed = PollFeed(cfg, exchange=ex, clock=clock, sleep=clock.sleep, backoff_s=1.0)
        assert feed.start_ms == int(dt.datetime(2024, 4, 1, tzinfo=dt.UTC).timestamp() * 1000)
        session = LiveSession.open(cfg, tmp_path / "state", feed.label, feed.start_ms, feed.warmup)
        server.fail_next = ["429"]
        session.run(itertools.islice(feed.bars_after(feed.start_ms - DAY_MS), 30))
        session.close()
        assert server.fail_next == []  # the 429 was served, and retried
    # each bar was asked for only after it closed
    assert clock.now >= dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()
    files_cfg = _poll_config(
        {"source": "files", "path": str(tmp_path / "bars")}, "2024-04-01", "2024-04-30"
    )
    bt = run_backtest(files_cfg)
    assert bt.fills.height > 10
    assert_same_frames(bt, load_run(tmp_path / "state"))


def test_polling_fills_a_bar_the_exchange_never_publishes(tmp_path: Path) -> None:
    """ETH stops publishing: after max_wait the loop books a flat bar at its last close (and
    keeps it), instead of stalling or changing history later."""
    import itertools

    from orchestra.live.feeds import PollFeed
    from tests.fake_binance import DAY_MS, FakeBinance, make_klines

    klines = {
        ("BTCUSDT", "1d"): make_klines(POLL_START, 120, DAY_MS, 1),
        ("ETHUSDT", "1d"): make_klines(POLL_START, 95, DAY_MS, 2),  # last bar 2024-04-04
    }
    with FakeBinance(klines) as server:
        cfg = _poll_config({"source": "ccxt", "exchange": "binance"}, "2024-04-01", "2024-04-10")
        clock = FakeClock(dt.datetime(2024, 4, 1, 1, tzinfo=dt.UTC).timestamp())
        feed = PollFeed(
            cfg, exchange=server.exchange(), clock=clock, sleep=clock.sleep, max_wait_s=30.0
        )
        session = LiveSession.open(cfg, tmp_path / "s", feed.label, feed.start_ms, feed.warmup)
        session.run(itertools.islice(feed.bars_after(feed.start_ms - DAY_MS), 8))
        stored = session.store.load().bars  # the anchored history the signals saw
        session.close()
    hist = stored.filter(pl.col("symbol") == "ETH/USDT").sort("timestamp")
    last_real = float(klines[("ETHUSDT", "1d")][-1][4])
    tail = hist.filter(pl.col("timestamp") > dt.datetime(2024, 4, 4, tzinfo=dt.UTC))
    assert tail.height == 4  # 04-05 .. 04-08
    assert (tail["close"] == last_real).all() and (tail["volume"] == 0).all()
    assert (tail["open"] == tail["high"]).all()
    assert session.next_bar == 8


def test_paper_without_replay_needs_a_ccxt_source(tmp_path: Path) -> None:
    from orchestra.cli import live

    res = CliRunner().invoke(
        live.main, ["--paper", str(ROOT / "configs" / "example.yaml"), "--state", str(tmp_path)]
    )
    assert res.exit_code == 2 and "data.source: ccxt" in res.output, res.output


def test_shipped_paper_config_polls_the_exchange(tmp_path: Path) -> None:
    """configs/paper-binance.yaml is valid and is a polling config: its feed starts at the bar in
    progress and downloads the warm-up (from the local Binance server)."""
    from orchestra.config import load_config
    from orchestra.live.feeds import PollFeed
    from tests.fake_binance import FakeBinance, make_klines

    cfg = load_config(ROOT / "configs" / "paper-binance.yaml")
    assert cfg.data.source == "ccxt" and cfg.clock_timeframe == "4h"
    step = 4 * 3_600_000
    klines = {
        (s.replace("/", ""), "4h"): make_klines(POLL_START, 6 * 240, step, i)
        for i, s in enumerate(cfg.symbols)
    }
    with FakeBinance(klines, page_limit=1000) as server:
        clock = FakeClock(dt.datetime(2024, 8, 1, 9, 30, tzinfo=dt.UTC).timestamp())
        feed = PollFeed(cfg, exchange=server.exchange(), clock=clock, sleep=clock.sleep)
        assert feed.start_ms == int(dt.datetime(2024, 8, 1, 8, tzinfo=dt.UTC).timestamp() * 1000)
        warm = feed.warmup()
    assert set(warm["symbol"].unique()) == set(cfg.symbols)
    assert warm["timestamp"].max() < dt.datetime(2024, 8, 1, 8, tzinfo=dt.UTC)
    assert warm["timestamp"].min() >= dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def test_ctrl_c_stops_after_the_last_committed_bar_and_the_same_command_resumes(
    market: Path, tmp_path: Path
) -> None:
    import yaml

    raw = churn_raw(backtest={**churn_raw()["backtest"], "end": "2024-05-31"})
    raw["data"]["path"] = str(market)
    cfg_file = tmp_path / "churn.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    state = tmp_path / "state"
    cmd = [
        sys.executable, "-m", "orchestra.cli.live", "--paper", str(cfg_file),
        "--replay", str(market), "--state", str(state),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while _next_bar(state) < 30 and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    stopped = _next_bar(state)
    assert f"stopped after bar {stopped - 1}" in stderr.decode()
    assert "stopping after the bar in flight" in stderr.decode()
    assert "Traceback" not in stderr.decode()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert f"resuming after bar {stopped}" in done.stderr.decode()
    assert_same_frames(run_backtest(parse_config(raw)), load_run(state))


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_replay_parity_on_an_intraday_clock_from_finer_data(execution: str, tmp_path: Path) -> None:
    """Hourly files, a 4h pod and a daily pod (clock 4h): the replay groups the data bars into
    clock bars, and still equals the backtest."""
    from orchestra.data.synthetic import generate

    syms = SYMBOLS[:3]
    write_files(
        generate(syms, dt.date(2023, 11, 1), dt.date(2024, 2, 29), "1h", 3), tmp_path / "b", "1h"
    )
    raw = {
        "data": {"source": "files", "path": str(tmp_path / "b"), "timeframe": "1h"},
        "orchestrator": {"allocation_method": "risk_parity", "min_history": 10},
        "pods": [
            {"pod_id": "a", "strategy": "tsmom", "params": {"lookback": 12}, "symbols": syms[:2],
             "timeframe": "4h", "initial_state": "production", "initial_fraction": 0.4},
            {"pod_id": "b", "strategy": "donchian-ensemble", "params": {"lookbacks": [10, 20]},
             "symbols": syms[1:], "timeframe": "1d", "initial_state": "production",
             "initial_fraction": 0.4, "risk": {"use_trailing_stop": True}},
        ],
        "backtest": {"start": "2024-01-01", "end": "2024-02-15", "execution": execution},
    }  # fmt: skip
    cfg = parse_config(raw)
    bt = run_backtest(cfg)
    assert bt.fills.height > 20 and bt.allocations["timestamp"].n_unique() > 3
    replay(cfg, tmp_path / "b", tmp_path / "s").close()
    assert_same_frames(bt, load_run(tmp_path / "s"))


def test_a_paper_state_is_not_resumed_as_a_live_run(market: Path, tmp_path: Path) -> None:
    cfg = config_for(market)
    replay(cfg, market, tmp_path / "s", max_bars=2).close()
    feed = ReplayFeed(cfg, market)
    with pytest.raises(StoreError, match="holds a paper run, not live"):
        LiveSession.open(
            feed.config, tmp_path / "s", feed.label, feed.start_ms, feed.warmup, identity=cfg,
            mode="live",
        )  # fmt: skip
