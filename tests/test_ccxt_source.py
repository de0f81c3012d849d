"""The ccxt source with the real ccxt client against a local Binance-speaking HTTP server."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from orchestra.data.ccxt_source import SourceUnavailable, fetch_cached
from tests.fake_binance import DAY_MS, FakeBinance, make_klines

START = 1_704_067_200_000  # 2024-01-01
N = 350


@pytest.fixture
def server():
    with FakeBinance(
        {
            ("BTCUSDT", "1d"): make_klines(START, N, DAY_MS, 1),
            ("ETHUSDT", "1d"): make_klines(START, N, DAY_MS, 2),
        },
        page_limit=100,
    ) as fake:
        yield fake


def test_paginates_until_the_end(server: FakeBinance, tmp_path: Path) -> None:
    ex = server.exchange()
    bars = fetch_cached(ex, "BTC/USDT", "1d", START, tmp_path, backoff=0.01)
    assert bars.height == N
    assert bars["timestamp"].is_sorted() and bars["timestamp"].n_unique() == N
    assert len(server.requests) >= 4  # 350 bars in pages of 100
    starts = [int(r["startTime"]) for r in server.requests]
    assert starts[:4] == [START + i * 100 * DAY_MS for i in range(4)]


def test_retries_a_429_then_succeeds(server: FakeBinance, tmp_path: Path) -> None:
    server.fail_next = ["429", "500"]
    bars = fetch_cached(server.exchange(), "ETH/USDT", "1d", START, tmp_path, backoff=0.01)
    assert bars.height == N


def test_retries_a_timeout_then_succeeds(server: FakeBinance, tmp_path: Path) -> None:
    server.stall_s = 1.5
    server.fail_next = ["timeout"]
    bars = fetch_cached(
        server.exchange(timeout_ms=300), "BTC/USDT", "1d", START, tmp_path, backoff=0.01
    )
    assert bars.height == N


def test_gives_up_after_the_retries(server: FakeBinance, tmp_path: Path) -> None:
    import ccxt

    server.fail_next = ["429"] * 10
    with pytest.raises(SourceUnavailable, match="after 3 tries") as info:
        fetch_cached(server.exchange(), "BTC/USDT", "1d", START, tmp_path, retries=2, backoff=0.01)
    assert isinstance(info.value.__cause__, ccxt.NetworkError)


def test_second_run_fetches_only_the_tail(server: FakeBinance, tmp_path: Path) -> None:
    ex = server.exchange()
    first = fetch_cached(
        ex, "BTC/USDT", "1d", START, tmp_path, until_ms=START + 200 * DAY_MS, backoff=0.01
    )
    assert first.height == 200
    server.requests.clear()
    second = fetch_cached(ex, "BTC/USDT", "1d", START, tmp_path, backoff=0.01)
    assert second.height == N
    asked = [int(r["startTime"]) for r in server.requests]
    assert asked[0] == START + 200 * DAY_MS  # starts right after the cached bars
    assert all(a >= START + 200 * DAY_MS for a in asked)
    cache = pl.read_parquet(tmp_path / "binance" / "spot" / "BTC-USDT_1d.parquet")
    assert cache.height == N
    server.requests.clear()
    third = fetch_cached(ex, "BTC/USDT", "1d", START, tmp_path, backoff=0.01)
    assert third.equals(second)
    assert all(int(r["startTime"]) > START + (N - 1) * DAY_MS for r in server.requests)


def test_cli_data_fetch_writes_files_source(
    server: FakeBinance, tmp_path: Path, monkeypatch
) -> None:
    from orchestra.cli import bt
    from orchestra.data import read_files

    monkeypatch.setattr(
        "orchestra.data.ccxt_source.make_exchange", lambda *a, **k: server.exchange()
    )
    out = tmp_path / "bars"
    res = CliRunner().invoke(
        bt.main,
        [
            "data",
            "fetch",
            "--exchange",
            "binance",
            "--symbols",
            "BTC/USDT,ETH/USDT",
            "--timeframe",
            "1d",
            "--since",
            "2024-01-01",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 0, res.output
    bars = read_files(out, ["BTC/USDT", "ETH/USDT"], "1d")
    assert bars.height == 2 * N


def test_funding_history_via_ccxt_is_cached_and_fetched_by_tail(tmp_path: Path) -> None:
    """Perpetual funding (SPEC §9.4) through the real ccxt client and the USDⓈ-M endpoints."""
    from orchestra.data.ccxt_source import fetch_funding

    eight_h = 8 * 3_600_000
    rates = [(START + i * eight_h, 0.0001 * ((i % 5) - 1)) for i in range(250)]
    with FakeBinance({}, page_limit=100, funding={"BTCUSDT": rates}) as fake:
        ex = fake.exchange(market="swap")
        first = fetch_funding(
            ex, "BTC/USDT:USDT", START, START + 150 * eight_h, tmp_path, backoff=0.01
        )
        assert first.height == 150 and first["rate"][2] == pytest.approx(0.0001)
        fake.requests.clear()
        full = fetch_funding(
            ex, "BTC/USDT:USDT", START, START + 250 * eight_h, tmp_path, backoff=0.01
        )
        assert full.height == 250
        asked = [int(r["startTime"]) for r in fake.requests if r.get("funding")]
        assert asked and asked[0] > START + 149 * eight_h  # only the tail after the cached rows
