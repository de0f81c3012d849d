"""End-to-end: ``orch-bt run`` / ``report`` on the example configs, run dirs, the HTML report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from orchestra import OrchestratedResult, load_config, run_backtest
from orchestra.cli.bt import main
from tests.conftest import CONFIGS, needs_shared

CHART_IDS = [
    "equity",
    "pod_nav",
    "drawdowns",
    "allocation",
    "prc",
    "lifecycle",
    "net_exposure",
    "correlation",
    "netting",
]


def _run(config: Path, out: Path, *extra: str):
    res = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--html", *extra])
    assert res.exit_code == 0, res.output
    return res


def _check_run_dir(out: Path, config: Path) -> None:
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()
    summary = json.loads((out / "summary.json").read_text())
    cfg = load_config(config)
    assert summary["config_hash"] == cfg.config_hash and summary["version"]
    loaded = OrchestratedResult.load(out)
    fresh = run_backtest(cfg)
    for name, frame in fresh.frames().items():
        assert frame.equals(getattr(loaded, name)), name
    html = (out / "report.html").read_text()
    for cid in CHART_IDS:
        assert f'id="chart-{cid}"' in html, cid
    # one plotly.js beside the run folders, loaded by a relative path (issue #24: reports of
    # 5.4 MB each became ~0.9 MB)
    (js,) = out.parent.glob("plotly-*.min.js")
    assert f'<script src="../{js.name}"' in html and js.stat().st_size > 1_000_000
    assert len(html.encode()) <= 1_500_000


def test_run_example_config(tmp_path: Path) -> None:
    res = _run(CONFIGS / "example.yaml", tmp_path / "run")
    assert (
        "synthetic" in res.output
        and "(unallocated)" in res.output
        and "pod-tsmom-major" in res.output
    )
    _check_run_dir(tmp_path / "run", CONFIGS / "example.yaml")


@needs_shared
def test_run_binance_majors(tmp_path: Path) -> None:
    res = _run(
        CONFIGS / "binance-majors.yaml",
        tmp_path / "run",
        "--start",
        "2023-01-01",
        "--end",
        "2024-06-30",
    )
    assert "files:" in res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data_range"]["first_bar"].startswith("2023-01-01")
    loaded = OrchestratedResult.load(tmp_path / "run")
    assert loaded.fills.height > 0 and loaded.metrics.height == 5


def test_report_command_and_pod_filter(tmp_path: Path) -> None:
    _run(CONFIGS / "example.yaml", tmp_path / "run", "--quiet")
    res = CliRunner().invoke(main, ["report", str(tmp_path / "run"), "--pod", "pod-donchian-alt"])
    assert (
        res.exit_code == 0
        and "pod-donchian-alt" in res.output
        and "pod-tsmom-major" not in res.output
    )
    bad = CliRunner().invoke(main, ["report", str(tmp_path / "run"), "--pod", "nope"])
    assert bad.exit_code == 2 and "pods: pod-tsmom-major" in bad.output
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "not a run directory" in missing.output


def test_validate_prints_summary() -> None:
    res = CliRunner().invoke(main, ["validate", str(CONFIGS / "example.yaml")])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output and "BTC/USDT" in res.output and "synthetic" in res.output


def test_console_script_is_installed(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "orch-bt"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "validate" in out.stdout


def test_bad_date_option_is_a_usage_error() -> None:
    res = CliRunner().invoke(main, ["run", str(CONFIGS / "example.yaml"), "--start", "01/02/2024"])
    assert res.exit_code == 2 and "use YYYY-MM-DD" in res.output


def test_start_end_overrides(tmp_path: Path) -> None:
    res = run_backtest(
        CONFIGS / "example.yaml",
        start=__import__("datetime").date(2024, 3, 1),
        end=__import__("datetime").date(2024, 4, 30),
    )
    ts = res.equity["timestamp"]
    assert str(ts[0])[:10] == "2024-03-01" and str(ts[-1])[:10] == "2024-04-30"
    assert res.equity.filter(pl.col("equity").is_nan()).height == 0


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_execution_note_in_summary(execution: str) -> None:
    from orchestra.config import parse_config

    cfg = parse_config(
        {
            "pods": [{"pod_id": "a", "strategy": "tsmom", "symbols": ["BTC/USDT"]}],
            "backtest": {"execution": execution, "start": "2024-01-01", "end": "2024-03-01"},
        }
    )
    note = run_backtest(cfg).summary["execution_note"]
    assert ("optimistic" in note) == (execution == "close")


def test_date_overrides_are_validated_like_the_file() -> None:
    res = CliRunner().invoke(
        main, ["run", str(CONFIGS / "example.yaml"), "--start", "2026-06-01", "--quiet"]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--start/--end override" in res.output and "must be before end" in res.output


def test_validate_warns_when_weights_never_reach_the_threshold(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "pods:\n"
        "  - {pod_id: wide, strategy: tsmom, symbols: [BTC/USDT, ETH/USDT, SOL/USDT, BNB/USDT, AVAX/USDT],\n"
        "     params: {vol_target: 0.2}, risk: {rebalance_threshold: 0.2}}\n"
        "backtest: {start: '2024-01-01', end: '2024-06-30'}\n"
    )
    res = CliRunner().invoke(main, ["validate", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "pod wide" in res.output and "seldom trade" in res.output
    ok = CliRunner().invoke(main, ["validate", str(CONFIGS / "example.yaml")])
    assert "seldom trade" not in ok.output


def test_every_report_chart_has_a_title_and_axis_titles() -> None:
    """A documented check of the report's readability: titles and axis titles (with units) on
    every chart; pods on their own NAV chart; the correlation heatmap shows its values."""
    from orchestra import run_backtest
    from orchestra.config import load_config
    from orchestra.results.report import charts

    figs = charts(run_backtest(load_config(CONFIGS / "example.yaml")))
    assert set(CHART_IDS) <= set(figs)
    for fid, fig in figs.items():
        lay = fig.layout
        assert lay.title.text, fid
        assert lay.xaxis.title.text and lay.yaxis.title.text, fid
    assert figs["correlation"].data[0].texttemplate
    assert {t.name for t in figs["equity"].data} == {"account equity", "unallocated cash"}
    from orchestra.results.report import pod_section

    res = run_backtest(load_config(CONFIGS / "example.yaml"))
    pods = pod_section(res)
    assert pods["pod"].to_list() == [p.pod_id for p in load_config(CONFIGS / "example.yaml").pods]
    assert {"state at end", "return (NAV)", "netting savings", "lifecycle moves"} <= set(
        pods.columns
    )


def test_long_lines_are_thinned_for_display_keeping_peaks_and_troughs() -> None:
    import numpy as np

    from orchestra.results.report import MAX_POINTS, thin

    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=100_000))
    x = list(range(y.size))
    tx, ty = thin(x, y)
    assert len(tx) <= MAX_POINTS + 2 and tx == sorted(tx)
    assert max(ty) == y.max() and min(ty) == y.min() and tx[0] == 0 and tx[-1] == y.size - 1
    assert thin(x[:10], y[:10]) == (x[:10], y[:10].tolist())


def test_report_compares_several_runs(tmp_path: Path) -> None:
    """`orch-bt report RUN_A RUN_B --html`: one column per run, and compare.html with their
    equity rebased to 1 and drawdowns."""
    from orchestra.config import load_config, parse_config

    raw = load_config(CONFIGS / "example.yaml").model_dump(mode="json")
    raw["backtest"].update(start="2024-01-01", end="2024-06-30")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    import yaml

    a.write_text(yaml.safe_dump(raw))
    raw["orchestrator"]["allocation_method"] = "equal_weight"
    b.write_text(yaml.safe_dump(raw))
    for cfg, out in ((a, "run-a"), (b, "run-b")):
        res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(tmp_path / out), "--quiet"])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        main,
        [
            "report",
            str(tmp_path / "run-a"),
            str(tmp_path / "run-b"),
            "--html",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "run-a" in res.output and "run-b" in res.output and "sharpe" in res.output
    html = (tmp_path / "compare.html").read_text()
    assert "2 runs compared" in html and "rebased to 1" in html and "run-b" in html
    (js,) = tmp_path.glob("plotly-*.min.js")
    assert f'<script src="{js.name}"' in html
    one = CliRunner().invoke(main, ["report", str(tmp_path / "run-a"), "--html"])
    assert one.exit_code == 0, one.output
    report = (tmp_path / "run-a" / "report.html").stat().st_size
    assert (tmp_path / "compare.html").stat().st_size <= report  # no larger than one report
    assert parse_config(raw).orchestrator.allocation_method == "equal_weight"
    bad = CliRunner().invoke(main, ["report", str(tmp_path / "run-a"), str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "nope" in bad.output and "Traceback" not in bad.output


def test_the_cli_starts_without_importing_the_heavy_libraries() -> None:
    """`orch-bt --help` and `orch-live --help` stay fast: the top level imports lazily."""
    import subprocess
    import sys

    code = (
        "import sys, orchestra, orchestra.cli.bt, orchestra.cli.live; "
        "heavy = [m for m in ('cvxpy', 'numba', 'polars', 'sklearn') if m in sys.modules]; "
        "print(heavy); assert not heavy, heavy; orchestra.Config  # still reachable"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kernels_report_their_cache() -> None:
    from orchestra.engine.warm import kernels_cached, warm_kernels

    warm_kernels()  # compiles or loads: either way the step kernel is cached afterwards
    assert kernels_cached()


def test_the_kernel_warm_up_reaches_every_built_in_strategy() -> None:
    """`make install` compiles every built-in strategy's kernel, not only the step kernel."""
    from orchestra.engine.warm import warm_config
    from orchestra.strategies import registered_names

    cfg = warm_config()
    used = {p.strategy for p in cfg.pods} | {
        s.name for p in cfg.pods for s in (p.sub_strategies or [])
    }
    assert set(registered_names()) <= used
    assert {p.params.get("aggregation", "equal") for p in cfg.pods if p.strategy == "ensemble"} == {
        "equal",
        "inverse_volatility",
    }


def test_the_allocation_chart_stacks_what_was_in_force_to_100_percent(tmp_path: Path) -> None:
    """Issue #24: the chart stacked decided fractions on the actual unallocated cash and went
    to 126 %; now every day's pods + unallocated = 100 % of the account's equity."""
    from orchestra.results.report import allocation_shares, charts, collapse_alerts

    res = run_backtest(load_config(CONFIGS / "example.yaml"))
    shares = allocation_shares(res)
    total = shares.drop("timestamp").sum_horizontal().to_numpy()
    assert shares.height >= 700 and np.allclose(total, 1.0, atol=1e-9)
    fig = charts(res)["allocation"]
    stacked = np.sum([np.asarray(tr.y, dtype=float) for tr in fig.data], axis=0)
    assert np.allclose(stacked, 1.0, atol=1e-9)
    # repeated alerts of one kind about one pod read as one row with a count
    table = collapse_alerts(res.alerts)
    assert table["count"].sum() == res.alerts.height
    assert table.select("alert_type", "pod_id").is_unique().all()
    # a pod's report is about the pod: its capital, no account-wide diversification
    pod = res.for_pod("pod-tsmom-major")
    figs = charts(pod)
    assert "diversification" not in figs and "pod-tsmom-major" in figs["equity"].layout.title.text
    from orchestra.results.report import pod_section

    assert "share of equity" not in pod_section(pod).columns


def test_console_script_runs_and_exits_like_main(tmp_path: Path) -> None:
    """The installed `orch-bt` (``entry``: main, then ``gc.freeze()`` so the shutdown skips the
    collection) writes the same run as ``main`` in-process, and keeps main's exit codes."""
    exe = Path(sys.executable).parent / "orch-bt"
    cfg = str(CONFIGS / "example.yaml")
    out = subprocess.run(
        [str(exe), "run", cfg, "--quiet", "--out", str(tmp_path / "script")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    res = CliRunner().invoke(main, ["run", cfg, "--quiet", "--out", str(tmp_path / "inproc")])
    assert res.exit_code == 0, res.output
    for name in ("equity.parquet", "fills.parquet", "allocations.parquet"):
        a = pl.read_parquet(tmp_path / "script" / name)
        assert a.equals(pl.read_parquet(tmp_path / "inproc" / name)), name
    bad = subprocess.run([str(exe), "run", str(tmp_path / "missing.yaml")], capture_output=True,
                         text=True)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
