"""One writer per state directory, a damaged store is one clear line, and spot is long-only:
real `orch-live` processes, real SQLite files, the real CLI."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestra import load_run
from orchestra.config import parse_config, venue_problems
from orchestra.engine import run_backtest
from tests.test_live import assert_same_frames, churn_raw, write_market

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    return write_market(tmp_path_factory.mktemp("market") / "bars")


def _config_file(tmp_path: Path, folder: Path, **data) -> tuple[Path, dict]:
    raw = churn_raw()
    raw["data"].update(path=str(folder), **data)
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def _committed(state: Path) -> int:
    db_path = state / "live.sqlite"
    if not db_path.is_file():
        return 0
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT next_bar FROM snapshot").fetchone()
    except sqlite3.OperationalError:
        row = None
    finally:
        db.close()
    return 0 if row is None else int(row[0])


def _hourly(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A year of hourly bars and a two-pod config over it: a replay long enough (thousands of
    bars) for a second process to start while the first runs."""
    import datetime as dt

    from orchestra.data.files import write_files
    from orchestra.data.synthetic import generate
    from tests.test_live import SYMBOLS

    folder = tmp_path / "hourly"
    write_files(
        generate(SYMBOLS, dt.date(2023, 12, 1), dt.date(2024, 12, 31), "1h", 5), folder, "1h"
    )
    pod = {"timeframe": "1h", "initial_fraction": 0.4, "initial_state": "production"}
    raw = {
        "data": {"source": "files", "path": str(folder), "timeframe": "1h", "market": "swap"},
        "pods": [
            {**pod, "pod_id": "trend", "strategy": "tsmom", "params": {"lookback": 48},
             "symbols": SYMBOLS[:2]},
            {**pod, "pod_id": "breakout", "strategy": "donchian-ensemble",
             "params": {"lookbacks": [24, 96]}, "symbols": SYMBOLS[1:]},
        ],
        "backtest": {"start": "2024-01-01", "end": "2024-12-31"},
    }  # fmt: skip
    path = tmp_path / "hourly.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, folder, raw


def test_a_second_process_on_the_same_state_is_refused_at_once(tmp_path: Path) -> None:
    """The second `orch-live` exits 2 naming the first one's pid; the first finishes undisturbed
    and its state equals the backtest."""
    cfg_file, folder, raw = _hourly(tmp_path)
    state = tmp_path / "state"
    cmd = [
        sys.executable, "-m", "orchestra.cli.live", "--paper", str(cfg_file),
        "--replay", str(folder), "--state", str(state), "--quiet",
    ]  # fmt: skip
    first = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _committed(state) < 5 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=60)
    assert first.poll() is None, "the first process ended before the second was refused"
    err = second.stderr.decode()
    assert second.returncode == 2, err[-2000:]
    assert f"pid {first.pid}" in err and "in use by another orch-live process" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    from orchestra.cli import live

    status = CliRunner().invoke(live.main, ["status", "--state", str(state)])
    assert status.exit_code == 0, status.output  # a reader is not refused
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr.decode()[-2000:]
    assert_same_frames(run_backtest(parse_config(raw)), load_run(state))


def test_the_lock_dies_with_its_process(market: Path, tmp_path: Path) -> None:
    """kill -9 leaves no stale lock: the same command resumes at once."""
    import signal

    cfg_file, _ = _config_file(tmp_path, market)
    state = tmp_path / "state"
    cmd = [
        sys.executable, "-m", "orchestra.cli.live", "--paper", str(cfg_file),
        "--replay", str(market), "--state", str(state), "--quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
    while _committed(state) < 3 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    again = subprocess.run([*cmd, "--max-bars", "2"], cwd=ROOT, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr.decode()[-2000:]


def _damage(db_path: Path, seed: int) -> None:
    """Random bytes over pages in the middle of the file (the header stays intact)."""
    import random

    rng = random.Random(seed)
    size = db_path.stat().st_size
    with open(db_path, "r+b") as f:
        for _ in range(8):
            at = rng.randrange(4096, max(size - 4096, 4097))
            f.seek(at)
            f.write(bytes(rng.randrange(256) for _ in range(2048)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_damaged_store_is_one_line_and_exit_2(market: Path, tmp_path: Path, seed: int) -> None:
    from orchestra.cli import live

    cfg_file, _ = _config_file(tmp_path, market)
    state = tmp_path / "state"
    args = ["--paper", str(cfg_file), "--replay", str(market), "--state", str(state), "--quiet"]
    runner = CliRunner()
    res = runner.invoke(live.main, [*args, "--max-bars", "60"])
    assert res.exit_code == 0, res.output
    db = sqlite3.connect(state / "live.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the main file
    db.close()
    _damage(state / "live.sqlite", seed)
    for argv in (args, ["status", "--state", str(state)]):
        res = runner.invoke(live.main, argv)
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output
        assert "live.sqlite" in res.output, res.output
        assert "damaged or unreadable" in res.output or "state error" in res.output, res.output


def test_status_reads_a_copy_without_its_wal(market: Path, tmp_path: Path) -> None:
    """A read-only copy of a state directory (no -wal/-shm beside it) is readable."""
    import shutil

    from orchestra.cli import live

    cfg_file, _ = _config_file(tmp_path, market)
    state = tmp_path / "state"
    args = ["--paper", str(cfg_file), "--replay", str(market), "--state", str(state), "--quiet"]
    assert CliRunner().invoke(live.main, [*args, "--max-bars", "20"]).exit_code == 0
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(state / "live.sqlite", copy / "live.sqlite")
    os.chmod(copy, 0o555)
    try:
        res = CliRunner().invoke(live.main, ["status", "--state", str(copy)])
    finally:
        os.chmod(copy, 0o755)
    assert res.exit_code == 0, res.output
    assert "last bar" in res.output


# ---------------------------------------------------------------------------- spot is long-only
def test_a_short_capable_pod_on_spot_is_refused_naming_the_pod(
    market: Path, tmp_path: Path
) -> None:
    from orchestra.cli import live

    cfg_file, _ = _config_file(tmp_path, market, market="spot")
    res = CliRunner().invoke(
        live.main,
        ["--paper", str(cfg_file), "--replay", str(market), "--state", str(tmp_path / "s")],
    )
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "pods[0] (" in res.output and "can go short" in res.output, res.output
    assert "max_leverage" in res.output  # churn's pods lever up to 3
    assert not (tmp_path / "s" / "live.sqlite").exists()


def test_long_only_pods_pass_on_spot_and_the_backtest_says_what_spot_cannot_hold(
    market: Path,
) -> None:
    raw = churn_raw()
    raw["data"].update(market="spot", path=str(market))
    cfg = parse_config(raw)
    problems = venue_problems(cfg)
    pods = [p.pod_id for p in cfg.pods]
    assert any(pods[0] in p for p in problems)
    with pytest.warns(UserWarning, match="data.market is spot"):
        res = run_backtest(cfg)
    assert res.summary["spot_violations"] == problems and res.summary["market"] == "spot"
    for pod in raw["pods"]:
        pod.update(strategy="donchian-ensemble", params={"lookbacks": [5], "long_only": True})
        pod.pop("sub_strategies", None)
        pod["risk"]["max_leverage"] = 1.0
    assert venue_problems(parse_config(raw)) == []
    raw["orchestrator"].setdefault("risk", {})["max_gross_leverage"] = 1.5
    assert venue_problems(parse_config(raw)) == [
        "orchestrator.risk.max_gross_leverage: 1.5 > 1 on data.market spot (allowed: ≤ 1, or "
        "data.market swap)"
    ]


def test_which_strategies_can_go_short() -> None:
    from orchestra.strategies import get_strategy

    def can(name: str, params: dict) -> bool:
        return get_strategy(name).parse_params(params).can_short()

    assert can("tsmom", {}) and can("donchian-ensemble", {})
    assert not can("donchian-ensemble", {"long_only": True})
    long_only = {"name": "donchian-ensemble", "params": {"long_only": True}}
    assert not can("ensemble", {"sub_strategies": [long_only]})
    assert can("ensemble", {"sub_strategies": [long_only, {"name": "tsmom"}]})


def test_a_live_state_dir_is_read_by_load_run_not_by_the_backtest_loader(
    market: Path, tmp_path: Path
) -> None:
    from orchestra import OrchestratedResult
    from orchestra.cli import live

    cfg_file, _ = _config_file(tmp_path, market)
    state = tmp_path / "state"
    args = ["--paper", str(cfg_file), "--replay", str(market), "--state", str(state), "--quiet"]
    assert CliRunner().invoke(live.main, [*args, "--max-bars", "10"]).exit_code == 0
    assert load_run(state).equity.height == 10
    with pytest.raises(FileNotFoundError, match="live state directory: read it with"):
        OrchestratedResult.load(state)


def test_the_shipped_venue_examples() -> None:
    from orchestra import load_config

    spot = load_config(ROOT / "configs" / "paper-binance.yaml")
    perp = load_config(ROOT / "configs" / "paper-binance-perp.yaml")
    assert spot.data.market == "spot" and venue_problems(spot) == []
    assert perp.data.market == "swap"
    assert any(
        p.strategy == "tsmom" or not p.params.get("long_only", False) for p in perp.pods
    )  # long/short
