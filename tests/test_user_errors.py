"""Issue #9: bad data, broken strategies, unreachable exchanges and odd ranges give one readable
line and exit code 2 (never a traceback); the data a run uses is checked only where it is used;
synthetic bars depend only on (seed, symbol, timestamp); account positions are exact."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from orchestra import run_backtest
from orchestra.cli.bt import main
from orchestra.config import parse_config
from orchestra.data import DataError, DataRangeWarning, load_bars
from orchestra.data.ccxt_source import SourceUnavailable, fetch_cached
from orchestra.data.synthetic import generate
from orchestra.strategies import StrategyError

ROOT = Path(__file__).resolve().parents[1]


def daily_csv(folder: Path, start: str = "2023-01-01", end: str = "2024-06-01", **edits) -> Path:
    """A clean BTC-USDT_1d.csv; ``edits`` maps (row, column) → value to break it."""
    folder.mkdir(parents=True, exist_ok=True)
    ts = pl.datetime_range(
        dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end), "1d", eager=True
    )
    n = ts.len()
    close = 100.0 + np.arange(n) * 0.1
    df = pl.DataFrame(
        {
            "timestamp": ts.dt.strftime("%Y-%m-%d"),
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": np.ones(n),
        }
    )
    for (row, col), value in edits.get("cells", {}).items():
        df = df.with_columns(
            pl.when(pl.int_range(pl.len()) == row)
            .then(pl.lit(value))
            .otherwise(pl.col(col).cast(pl.String if isinstance(value, str) else pl.Float64))
            .alias(col)
        )
    for day in edits.get("drop", []):
        df = df.filter(pl.col("timestamp") != day)
    path = folder / "BTC-USDT_1d.csv"
    df.write_csv(path)
    return path


def write_config(tmp: Path, data: dict, **backtest) -> Path:
    cfg = {
        "data": data,
        "pods": [
            {"pod_id": "a", "strategy": "tsmom", "symbols": ["BTC/USDT"], "initial_fraction": 0.3}
        ],
        "backtest": {"start": "2024-01-01", "end": "2024-03-01", **backtest},
    }
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_user_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for n in needles:
        assert n in result.output, result.output


# ---------------------------------------------------------------- data files


def test_garbage_timestamp_names_the_row_and_value(tmp_path: Path) -> None:
    daily_csv(tmp_path / "d", cells={(5, "timestamp"): "notadate"})
    cfg = write_config(tmp_path, {"source": "files", "path": "d"})
    res = run_cli("run", str(cfg), "--quiet", "--out", str(tmp_path / "r"))
    assert_user_error(res, "row 6: 'notadate'", "cfg.yaml: data.path")


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_values_are_rejected_like_nan(tmp_path: Path, column: str, value: float) -> None:
    daily_csv(tmp_path / "d", cells={(400, column): value})
    with pytest.raises(DataError) as info:
        load_bars(
            parse_config(
                yaml.safe_load(
                    write_config(
                        tmp_path, {"source": "files", "path": str(tmp_path / "d")}
                    ).read_text()
                )
            )
        )
    assert f"BTC/USDT 2024-02-05 00:00:00+00:00: {column} is infinite" in str(info.value)


def test_a_gap_years_before_the_window_does_not_stop_the_run(tmp_path: Path) -> None:
    daily_csv(tmp_path / "d", drop=["2023-02-01"])
    cfg = write_config(tmp_path, {"source": "files", "path": "d"})
    assert run_cli("run", str(cfg), "--quiet", "--out", str(tmp_path / "r")).exit_code == 0
    # inside the window it still is an error
    daily_csv(tmp_path / "d", drop=["2024-02-01"])
    assert_user_error(run_cli("run", str(cfg), "--quiet"), "1 missing bar(s): 2024-02-01")


def test_range_outside_the_data_warns_and_says_what_is_used(tmp_path: Path) -> None:
    daily_csv(tmp_path / "d")
    cfg = write_config(tmp_path, {"source": "files", "path": "d"}, end="2025-01-01")
    res = run_cli("run", str(cfg), "--quiet", "--out", str(tmp_path / "r"))
    assert res.exit_code == 0
    assert "the data ends 2024-06-01, before backtest.end 2025-01-01" in res.output
    val = run_cli("validate", str(cfg))
    assert "range used: 2024-01-01 → 2024-06-01" in val.output
    assert "the data ends 2024-06-01" in val.output
    with pytest.warns(DataRangeWarning):
        load_bars(
            parse_config(
                yaml.safe_load(cfg.read_text())
                | {"data": {"source": "files", "path": str(tmp_path / "d")}}
            )
        )


def test_missing_folder_names_config_field_and_how_to_fetch(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"source": "files", "path": "nosuch"})
    assert_user_error(
        run_cli("run", str(cfg), "--quiet"),
        "cfg.yaml: data.path",
        "does not exist",
        "orch-bt data fetch --exchange binance --symbols BTC/USDT --timeframe 1d",
    )


def test_path_that_is_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    cfg = write_config(tmp_path, {"source": "files", "path": "afile"})
    assert_user_error(run_cli("run", str(cfg), "--quiet"), "is a file, not a folder")


# ---------------------------------------------------------------- user strategies


@pytest.mark.parametrize(
    ("func", "needle"),
    [
        ("inf_weights", "infinite weight(s)"),
        ("duplicate_rows", "duplicate (timestamp, symbol)"),
        # issue #25: the output contract, enforced with pod, symbol and timestamp
        ("nan_weights", "missing weight(s) (null or NaN) after its first number, first BTC/USDT"),
        ("null_after_start", "missing weight(s) (null or NaN) after its first number"),
        ("string_weights", "weights of type String: return numbers"),
        ("foreign_symbol", "first DOGE/USDT 2023-"),
        ("half_rows", "returned no row for"),
    ],
)
def test_broken_user_strategy_is_one_line(tmp_path: Path, func: str, needle: str) -> None:
    raw = yaml.safe_load(write_config(tmp_path, {"source": "synthetic"}).read_text())
    raw["pods"][0]["strategy"] = f"tests.user_strategy:{func}"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    res = run_cli("run", str(tmp_path / "cfg.yaml"), "--quiet")
    assert_user_error(res, "pods[0] (a)", needle)
    with pytest.raises(StrategyError):
        run_backtest(parse_config(raw))


# ---------------------------------------------------------------- exchanges


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_exchange_fails_fast_in_one_line(tmp_path: Path) -> None:
    import ccxt

    ex = ccxt.binance({"enableRateLimit": False, "timeout": 2000})
    ex.urls["api"]["public"] = f"http://127.0.0.1:{_closed_port()}/api/v3"
    with pytest.raises(SourceUnavailable) as info:  # fast: 2 tries, not 5 (no timing asserted)
        fetch_cached(ex, "BTC/USDT", "1d", 1_700_000_000_000, tmp_path, backoff=0.05)
    msg = str(info.value)
    assert "\n" not in msg and "connection was refused" in msg and "127.0.0.1" in msg, msg
    assert "after 2 tries" in msg


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


@pytest.mark.skipif(
    _resolves("api.binance.com"), reason="this machine reaches the network: nothing to test"
)
def test_data_fetch_without_network_is_one_line_exit_2(tmp_path: Path) -> None:
    """The real `orch-bt data fetch` in a subprocess, on a machine without network (CI)."""
    proc = subprocess.run(
        [sys.executable, "-m", "orchestra.cli.bt", "data", "fetch", "--exchange", "binance",
         "--symbols", "BTC/USDT", "--timeframe", "1d", "--since", "2024-01-01",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "binance GET https://api.binance.com" in lines[0], proc.stderr


def test_unknown_exchange_lists_close_matches() -> None:
    res = run_cli(
        "data", "fetch", "--exchange", "binanse", "--symbols", "BTC/USDT", "--timeframe", "1d",
        "--since", "2024-01-01",
    )  # fmt: skip
    assert_user_error(res, "did you mean binance")


# ---------------------------------------------------------------- synthetic determinism


def test_synthetic_bar_depends_only_on_seed_symbol_timestamp() -> None:
    a = generate(["BTC/USDT", "ETH/USDT"], dt.date(2024, 1, 1), dt.date(2024, 6, 30))
    b = generate(["SOL/USDT", "ETH/USDT"], dt.date(2022, 3, 7), dt.date(2024, 3, 1))
    j = a.join(b, on=["timestamp", "symbol"])
    assert j.height == 61
    for c in ("open", "high", "low", "close", "volume"):
        assert (j[c] == j[f"{c}_right"]).all(), c
    h1 = generate(["BTC/USDT"], dt.date(2024, 1, 1), dt.date(2024, 1, 31), "1h")
    h2 = generate(["BTC/USDT"], dt.date(2023, 12, 1), dt.date(2024, 1, 10), "1h")
    jh = h1.join(h2, on=["timestamp", "symbol"])
    assert jh.height == 10 * 24 and (jh["close"] == jh["close_right"]).all()
    # an hourly day ends at the daily close
    day_close = a.filter(pl.col("symbol") == "BTC/USDT")["close"][:31].to_numpy()
    hour_close = h1["close"].to_numpy()[23::24]
    assert np.allclose(day_close, hour_close, rtol=1e-12)


def test_two_configs_with_the_same_seed_see_the_same_market() -> None:
    """Changing a lookback (hence the warm-up) or the end used to change earlier closes."""
    base = {
        "data": {"source": "synthetic", "seed": 7},
        "pods": [{"pod_id": "a", "strategy": "tsmom", "params": {"lookback": 10},
                  "symbols": ["BTC/USDT"], "initial_fraction": 0.3}],
        "backtest": {"start": "2024-01-01", "end": "2024-06-30"},
    }  # fmt: skip
    other = yaml.safe_load(yaml.safe_dump(base))
    other["pods"][0]["params"]["lookback"] = 120
    other["backtest"]["end"] = "2024-12-31"
    a = load_bars(parse_config(base)).bars
    b = load_bars(parse_config(other)).bars
    j = a.join(b, on=["timestamp", "symbol"])
    assert j.height == a.height and (j["close"] == j["close_right"]).all()


# ---------------------------------------------------------------- results


def test_account_positions_are_exact_and_only_where_units_change() -> None:
    from tests.test_engine import small_config

    res = run_backtest(small_config())
    ap = res.account_positions.sort("symbol", "timestamp")
    prev = pl.col("units").shift(1).over("symbol").fill_null(0.0)
    assert ap.filter(pl.col("units") == prev).height == 0  # every row is a change
    # recompute Q from the pods' positions: equal, and flat means exactly 0
    pods = res.positions.sort("timestamp")
    for sym in ap["symbol"].unique():
        last = {}
        for row in pods.filter(pl.col("symbol") == sym).iter_rows(named=True):
            last[row["pod_id"]] = row["units"]
        final = ap.filter(pl.col("symbol") == sym)["units"][-1]
        assert final == pytest.approx(sum(last.values()), abs=1e-9)
        if all(v == 0.0 for v in last.values()):
            assert final == 0.0
    flat = ap.filter(pl.col("units").abs() < 1e-6)
    assert (flat["units"] == 0.0).all(), flat


def test_report_pod_writes_that_pods_report(tmp_path: Path) -> None:
    from tests.test_engine import small_config

    run_backtest(small_config()).save(tmp_path)
    res = run_cli("report", str(tmp_path), "--html", "--pod", "b")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report-b.html").read_text()
    assert "pod b" in page
    assert "<tr><td>b</td>" in page  # the metrics table holds pod b only
    assert "<tr><td>a</td>" not in page and "<tr><td>c</td>" not in page


# ---------------------------------------------------------------------------- more hostile input
def test_a_config_that_is_not_utf8_or_holds_a_huge_integer_is_one_line(tmp_path: Path) -> None:
    from orchestra.cli import bt

    latin = tmp_path / "latin.yaml"
    latin.write_bytes("pods:\n  - pod_id: café\n".encode("latin-1"))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    huge = tmp_path / "huge.yaml"
    huge.write_text("pods:\n  - {pod_id: a, strategy: tsmom, symbols: [BTC/USDT], params: "
                    "{lookback: " + "9" * 5000 + "}}\n")  # fmt: skip
    for path, fragment in ((latin, "not UTF-8"), (binary, "not UTF-8"), (huge, "cannot be read")):
        res = CliRunner().invoke(bt.main, ["validate", str(path)])
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output and fragment in res.output, res.output


def test_pod_ids_and_start_dates_are_checked() -> None:
    from orchestra.config import ConfigError, parse_config

    def pods(**extra):
        return {
            "pods": [{"pod_id": "a", "strategy": "tsmom", "symbols": ["BTC/USDT"], **extra}],
            "backtest": {"start": "2024-01-01", "end": "2024-06-30"},
        }

    for bad in ("x" * 100_000, "../../etc/passwd", "a b", ""):
        with pytest.raises(ConfigError, match="pod_id"):
            parse_config({**pods(), "pods": [{**pods()["pods"][0], "pod_id": bad}]})
    with pytest.raises(ConfigError, match=r"pods\[0\].start 2025-01-01 is after backtest.end"):
        parse_config(pods(start="2025-01-01"))
    assert parse_config(pods(start="2024-06-30")).pods[0].start is not None


def test_a_csv_and_a_parquet_for_one_symbol_is_a_data_error(tmp_path: Path) -> None:
    from orchestra.data.files import symbol_file, write_files
    from orchestra.data.schema import DataError
    from orchestra.data.synthetic import generate

    bars = generate(["BTC/USDT"], dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    write_files(bars, tmp_path, "1d")
    (parquet,) = tmp_path.glob("BTC-USDT_*.parquet")
    assert symbol_file(tmp_path, "BTC/USDT", "1d") == parquet
    bars.drop("symbol").write_csv(parquet.with_suffix(".csv"))
    with pytest.raises(DataError, match="both hold its 1d bars: keep one of them"):
        symbol_file(tmp_path, "BTC/USDT", "1d")


def test_a_user_strategy_calling_sys_exit_is_a_strategy_error(tmp_path: Path) -> None:
    import yaml

    from orchestra.cli import bt

    cfg = tmp_path / "exits.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "pods": [
                    {"pod_id": "x", "strategy": "tests.user_strategy:exits",
                     "symbols": ["BTC/USDT"]}
                ],
                "backtest": {"start": "2024-01-01", "end": "2024-03-31"},
            }
        )
    )  # fmt: skip
    res = CliRunner().invoke(bt.main, ["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "strategy error" in res.output and "SystemExit" in res.output, res.output
    assert "Traceback" not in res.output


def _user_pod_config(tmp_path: Path, func: str, **pod) -> Path:
    raw = yaml.safe_load(write_config(tmp_path, {"source": "synthetic"}).read_text())
    raw["pods"][0].update({"strategy": f"tests.user_strategy:{func}", **pod})
    path = tmp_path / f"{func}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_warmup_nulls_read_as_zero_and_nothing_else_changes(tmp_path: Path) -> None:
    """Leading nulls of a symbol are the warm-up: weight 0 there, the strategy's numbers after."""
    from orchestra.strategies import compute_weights

    bars = generate(["BTC/USDT", "ETH/USDT"], dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    w = compute_weights("tests.user_strategy:warmup_nulls", bars)
    assert w.height == bars.height and w["weight"].null_count() == 0
    first = w.group_by("symbol").agg(pl.col("weight").head(10).abs().sum(), pl.len())
    assert first["weight"].to_list() == [0.0, 0.0]
    assert set(w["weight"].tail(30).to_list()) <= {-1.0, 1.0}


def test_weights_above_the_leverage_cap_are_scaled_with_a_counted_warning(tmp_path: Path) -> None:
    cfg = _user_pod_config(tmp_path, "huge_weights")
    res = run_cli("run", str(cfg), "--quiet", "--out", str(tmp_path / "r"))
    assert res.exit_code == 0, res.output
    assert "pods[0] (a): strategy 'tests.user_strategy:huge_weights' asked for gross weight" in (
        res.output
    )
    assert "largest 1e+12" in res.output and "scaled down pro rata" in res.output
    pos = pl.read_parquet(tmp_path / "r" / "positions.parquet")
    assert pos.height


def test_a_strategy_that_never_returns_stops_the_run_in_one_line(tmp_path: Path) -> None:
    """In a real process (the stuck strategy thread must not keep it alive)."""
    cfg = _user_pod_config(tmp_path, "never_returns")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestra.cli.bt", "run", str(cfg), "--quiet",
         "--strategy-timeout", "2", "--out", str(tmp_path / "r")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        "pods[0] (a): strategy 'tests.user_strategy:never_returns' did not return within 2 s"
        in (proc.stderr)
    ), proc.stderr


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("bad_summary", "summary.json: not valid JSON"),
        ("truncated_equity", "equity.parquet: not a readable parquet file"),
        ("garbage_metrics", "metrics.parquet: not a readable parquet file"),
        ("missing_equity", "equity.parquet: missing"),
        ("missing_pod_equity", "pod_equity.parquet: missing"),
        ("foreign_fills", "fills.parquet: no column(s)"),
    ],
)
def test_report_on_a_damaged_run_dir_is_one_line(tmp_path: Path, damage: str, needle: str) -> None:
    from tests.test_engine import small_config

    run = tmp_path / "run"
    run_backtest(small_config()).save(run)
    match damage:
        case "bad_summary":
            (run / "summary.json").write_text("{bad")
        case "truncated_equity":
            data = (run / "equity.parquet").read_bytes()
            (run / "equity.parquet").write_bytes(data[: len(data) // 2])
        case "garbage_metrics":
            (run / "metrics.parquet").write_text("garbage")
        case "missing_equity":
            (run / "equity.parquet").unlink()
        case "missing_pod_equity":
            (run / "pod_equity.parquet").unlink()
        case "foreign_fills":
            pl.DataFrame({"x": [1]}).write_parquet(run / "fills.parquet")
    assert_user_error(run_cli("report", str(run)), "run directory error", needle)


def test_a_strategy_module_beside_the_config_is_found(tmp_path: Path, monkeypatch) -> None:
    """`strategy: beside_cfg:always` with beside_cfg.py next to the config, run from elsewhere
    (an installed `orch-bt` does not put the current directory on sys.path)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    (tmp_path / "beside_cfg.py").write_text(
        "import polars as pl\n"
        "from orchestra.strategies import StrategyParams, strategy\n"
        "class P(StrategyParams):\n    weight: float = 0.5\n"
        "@strategy(P)\ndef always(bars, params):\n"
        "    return bars.select('timestamp', 'symbol', pl.lit(params.weight).alias('weight'))\n"
    )
    cfg = _user_pod_config(tmp_path, "x")
    raw = yaml.safe_load(cfg.read_text())
    raw["pods"][0]["strategy"] = "beside_cfg:always"
    cfg.write_text(yaml.safe_dump(raw))
    res = run_cli("run", str(cfg), "--quiet", "--out", str(tmp_path / "r"))
    assert res.exit_code == 0, res.output
    assert str(tmp_path) in sys.path and str(tmp_path) in os.environ["PYTHONPATH"]
    raw["pods"][0]["strategy"] = "not_there_at_all:always"
    cfg.write_text(yaml.safe_dump(raw))
    assert_user_error(run_cli("run", str(cfg), "--quiet"), "put not_there_at_all.py")
