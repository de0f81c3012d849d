"""Sweeps (issue #14): the grid expands as specified, each row equals a single run of the same
config, 2 joblib workers equal 1 worker exactly, walk-forward folds measure out of sample, and a
bad grid file is a clear error."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from orchestra.config import ConfigError, load_config
from orchestra.engine import run_backtest
from orchestra.sweep import (
    SweepSpec,
    apply,
    expand,
    fold_windows,
    load_spec,
    run_sweep,
    variant_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base():
    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    raw["backtest"].update(start="2024-01-01", end="2024-09-30")
    from orchestra.config import parse_config

    return parse_config(raw, source="example (short)")


def test_the_grid_expands_as_specified() -> None:
    spec = SweepSpec(
        grid={"a.b": [1, 2], "pods.x.params.lookback": [10, 20, 30]},
        random_n=3,
        random_seed=5,
        space={"c": {"float": [0.0, 1.0]}, "d": {"int": [1, 3]}},
    )
    v = expand(spec)
    assert v[:6] == [
        {"a.b": a, "pods.x.params.lookback": lb} for a in (1, 2) for lb in (10, 20, 30)
    ]
    assert len(v) == 9 and all(set(x) == {"c", "d"} for x in v[6:])
    assert all(0.0 <= x["c"] <= 1.0 and x["d"] in (1, 2, 3) for x in v[6:])
    assert expand(spec) == v  # seeded
    raw = {"orchestrator": {"a": 1}, "pods": [{"pod_id": "x", "params": {}}, {"pod_id": "y"}]}
    out = apply(raw, {"pods.x.params.lookback": 5, "pods.1.min_fraction": 0.1, "orchestrator.a": 2})
    assert out["pods"][0]["params"]["lookback"] == 5 and out["pods"][1]["min_fraction"] == 0.1
    assert raw["pods"][0]["params"] == {}  # the base is not modified
    with pytest.raises(KeyError, match="no pod 'z'"):
        apply(raw, {"pods.z.params.lookback": 1})


def test_rows_equal_single_runs_and_workers_do_not_change_results(base) -> None:
    spec = SweepSpec(
        grid={
            "orchestrator.allocation_method": ["risk_parity", "equal_weight"],
            "pods.pod-tsmom-major.params.lookback": [20, 40],
        }
    )
    one, _ = run_sweep(base, spec, workers=1)
    two, _ = run_sweep(base, spec, workers=2)
    assert one.height == 4 and one.equals(two)
    for row in one.iter_rows(named=True):
        overrides = {
            "orchestrator.allocation_method": row["orchestrator.allocation_method"],
            "pods.pod-tsmom-major.params.lookback": int(
                row["pods.pod-tsmom-major.params.lookback"]
            ),
        }
        single = run_backtest(variant_config(base, overrides, "check"))
        acct = single.metrics.filter(pl.col("entity") == "account").row(0, named=True)
        assert row["sharpe"] == acct["sharpe"] and row["total_return"] == acct["total_return"]
        assert row["final_equity"] == single.summary["final_equity"]
    assert one["sharpe"].is_sorted(descending=True)


def test_walk_forward_chooses_in_sample_and_measures_out_of_sample(base) -> None:
    spec = SweepSpec(
        grid={"pods.pod-tsmom-major.params.lookback": [15, 45]},
        train_days=120,
        test_days=60,
        metric="sharpe",
    )
    _, folds = run_sweep(base, spec)
    windows = fold_windows(base.backtest.start, base.backtest.end, 120, 60)
    assert folds is not None and folds.height == len(windows) == 2
    for row, (a, b, c, d) in zip(folds.iter_rows(named=True), windows, strict=True):
        assert row["train"] == f"{a} → {b}"
        assert row["test"] == f"{c} → {d}" and c == b + dt.timedelta(days=1)
        chosen = variant_config(
            base, {"pods.pod-tsmom-major.params.lookback": [15, 45][row["chosen_variant"]]}, "x"
        )
        test = run_backtest(chosen, start=c, end=d)
        acct = test.metrics.filter(pl.col("entity") == "account").row(0, named=True)
        assert row["out_of_sample_sharpe"] == acct["sharpe"]


def test_cli_sweep_writes_results_and_ranking(tmp_path: Path) -> None:
    from orchestra.cli.bt import main

    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    raw["backtest"].update(start="2024-01-01", end="2024-06-30")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    grid = tmp_path / "g.yaml"
    grid.write_text(
        yaml.safe_dump(
            {"grid": {"orchestrator.allocation_method": ["risk_parity", "equal_weight"]}}
        )
    )
    res = CliRunner().invoke(
        main,
        ["sweep", str(cfg), "--grid", str(grid), "--out", str(tmp_path / "s"), "--workers", "2"],
    )
    assert res.exit_code == 0, res.output
    table = pl.read_parquet(tmp_path / "s" / "results.parquet")
    assert table.height == 2 and "sharpe" in table.columns
    page = (tmp_path / "s" / "ranking.html").read_text()
    assert "Ranking by sharpe" in page and "deflated Sharpe ratio" in page
    assert "Probability of backtest overfitting" in page and "sharpe over" in page
    assert (tmp_path / "s" / "returns.parquet").is_file()
    assert "probability of backtest overfitting" in res.output


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"grid": {"orchestrator.allocation_method": []}}, "non-empty list"),
        ({"grdi": {}}, "unknown section"),
        ({"grid": {"pods.nope.params.lookback": [1]}}, "no pod 'nope'"),
        ({"grid": {"orchestrator.allocation_method": ["magic"]}}, "allocation_method"),
        (
            {"walk_forward": {"train_days": 0, "test_days": 5}, "grid": {"seed": [1]}},
            "walk_forward.train_days: 0 is not an integer ≥ 1",
        ),
        # issue #25: random draws that used to raise a traceback
        (
            {"random": {"n": -1, "space": {"pods.0.params.lookback": {"int": [5, 9]}}}},
            "random.n: -1 is not an integer ≥ 0",
        ),
        (
            {"random": {"n": 2, "space": {"pods.0.params.lookback": {"int": [90, 10]}}}},
            "lo 90 is above hi 10",
        ),
        (
            {"random": {"n": 2, "space": {"pods.0.params.lookback": {"int": [1.5, 10]}}}},
            "int bounds must be [lo, hi], two finite ints",
        ),
        ({"random": {"n": 2}}, "n draws need a space"),
        ({"random": {"n": "many"}}, "random.n: 'many' is not an integer"),
        ({"walk_forward": {"train_days": "x", "test_days": 5}}, "walk_forward.train_days: 'x'"),
        ({"grid": [1, 2]}, "grid: a mapping is expected"),
    ],
)
def test_bad_grid_files_are_clear_errors(tmp_path: Path, grid: dict, message: str) -> None:
    from orchestra.cli.bt import main

    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid))
    res = CliRunner().invoke(
        main,
        [
            "sweep",
            str(ROOT / "configs" / "example.yaml"),
            "--grid",
            str(path),
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output
    if "pods.nope" in str(grid) or "magic" in str(grid):
        with pytest.raises(ConfigError):
            run_sweep(load_config(ROOT / "configs" / "example.yaml"), load_spec(path))


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "grids").glob("*.yaml")), ids=str)
def test_shipped_grid_files_load(path: Path) -> None:
    spec = load_spec(path)
    base = load_config(ROOT / "configs" / f"{path.stem}.yaml")
    for i, v in enumerate(expand(spec)):
        variant_config(base, v, f"variant {i}")  # every variant is a valid config


@pytest.mark.slow
def test_the_ray_backend_equals_local_processes(base) -> None:
    """joblib's Ray backend on a local Ray instance (2 CPUs) gives the loky results exactly."""
    pytest.importorskip("ray", reason="ray is a dev dependency: uv sync installs it")
    spec = SweepSpec(grid={"pods.pod-tsmom-major.params.lookback": [20, 40, 60]})
    loky, _ = run_sweep(base, spec, workers=2)
    ray_res, _ = run_sweep(base, spec, workers=2, backend="ray")
    import ray

    ray.shutdown()
    assert loky.equals(ray_res)


def test_a_sweep_measures_its_selection_luck_and_stitches_the_walk_forward(base) -> None:
    """Issue #24: each variant's deflated Sharpe ratio (against all the sweep's trials), the
    probability of backtest overfitting over the variants' daily returns, and one stitched
    out-of-sample curve: each fold's chosen variant on its test window, as single runs give."""
    from orchestra.overfitting import deflated_sharpe_of_trials, pbo_cscv
    from orchestra.results.analytics import daily_returns
    from orchestra.sweep import sweep

    spec = SweepSpec(
        grid={"pods.pod-tsmom-major.params.lookback": [15, 30, 45]},
        random_n=2,
        random_seed=3,
        space={"orchestrator.retirement.rolling_sharpe_floor": {"float": [-1.0, 0.0]}},
        train_days=120,
        test_days=60,
    )
    outcome = sweep(base, spec)
    matrix = outcome.returns.drop("date").to_numpy()
    assert matrix.shape == (outcome.returns.height, 5)
    dsr = deflated_sharpe_of_trials(matrix)
    by_variant = dict(
        zip(outcome.results["variant"], outcome.results["deflated_sharpe"], strict=True)
    )
    assert [by_variant[i] for i in range(5)] == pytest.approx(dsr.tolist(), rel=1e-12)
    assert all(0 <= v <= 1 for v in dsr)
    assert outcome.pbo == pbo_cscv(matrix)
    # random draws are readable: 4 significant digits
    floors = [float(v) for v in outcome.results["orchestrator.retirement.rolling_sharpe_floor"]
              if v != "(config)"]  # fmt: skip
    assert floors and all(f == float(f"{f:.4g}") for f in floors)
    # the stitched out-of-sample curve chains the folds' test windows
    assert outcome.folds is not None and outcome.oos is not None
    pieces = []
    for row in outcome.folds.iter_rows(named=True):
        c, d = (dt.date.fromisoformat(x) for x in row["test"].split(" → "))
        variant = outcome.results.filter(pl.col("variant") == row["chosen_variant"]).row(
            0, named=True
        )
        overrides = {k: v for k, v in variant.items() if "." in k and v != "(config)"}
        overrides = {
            k: (int(v) if k.endswith("lookback") else float(v)) for k, v in overrides.items()
        }
        single = run_backtest(variant_config(base, overrides, "check"), start=c, end=d)
        pieces.append(daily_returns(single)["return"].to_numpy())
    assert np.array_equal(outcome.oos["return"].to_numpy(), np.concatenate(pieces))
    r = outcome.oos["return"].to_numpy()
    assert outcome.oos_sharpe == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(365))


def test_points_share_the_data_window_and_pod_signals_bit_for_bit(base) -> None:
    """Issue #26: with sharing on, a second point that differs only in allocation loads no data
    and computes no signal or ATR again, and its inputs and results equal a fresh run's exactly;
    a point with another lookback recomputes only that pod."""
    from orchestra.engine import build, prepare

    fresh = run_backtest(
        variant_config(base, {"orchestrator.allocation_method": "equal_weight"}, "x")
    )
    shared = build.share_work(True)
    try:
        prepare(base)
        other = variant_config(base, {"orchestrator.allocation_method": "equal_weight"}, "x")
        hits = dict(shared.hits)
        again = run_backtest(other)
        assert shared.hits["data"] == hits["data"] + 1
        assert shared.hits["signals"] == hits["signals"] + len(base.pods)
        assert shared.hits["atr"] == hits["atr"] + 1  # the window's ATR, computed once
        for name, frame in fresh.frames().items():
            assert frame.equals(getattr(again, name)), name
        before = shared.hits["signals"]
        prepare(variant_config(base, {"pods.pod-donchian-alt.params.lookbacks": [20, 40]}, "y"))
        assert shared.hits["signals"] - before in (0, len(base.pods) - 1)
    finally:
        build.share_work(False)
    assert build._SHARED is None


def test_a_points_light_figures_equal_the_full_results(base) -> None:
    """Issue #26: a sweep point builds only the account's figures, with the full result's own
    function: every metric and the daily returns equal a single run's, bit for bit."""
    from orchestra.results.analytics import daily_returns
    from orchestra.results.metrics import METRIC_COLUMNS
    from orchestra.sweep import _metrics

    start, end = dt.date(2024, 2, 1), dt.date(2024, 5, 31)
    light = _metrics(base, start, end)
    full = run_backtest(base, start=start, end=end)
    acct = full.metrics.filter(pl.col("entity") == "account").row(0, named=True)
    for k in METRIC_COLUMNS:
        assert light[k] == acct[k] or (np.isnan(light[k]) and np.isnan(acct[k])), k
    assert light["final_equity"] == full.summary["final_equity"]
    daily = daily_returns(full)
    assert light["_dates"] == daily["date"].to_list()
    assert np.array_equal(light["_returns"], daily["return"].to_numpy())


def test_a_lookback_sweep_warms_every_variant_up_alike_and_best_yaml_reproduces_the_top_row(
    tmp_path: Path,
) -> None:
    """Issue #26: with ``warmup_days: auto`` each lookback would need its own warm-up (and its
    own window of bars); a sweep gives every variant the longest, so the points share one data
    window, and ``best.yaml`` — the top variant as it ran — reproduces its row in a single run."""
    from orchestra.cli.bt import main
    from orchestra.engine import build
    from orchestra.strategies.warmup import warmup_days
    from orchestra.sweep import variant_configs

    raw = load_config(ROOT / "configs" / "example.yaml").model_dump(mode="json")
    raw["pods"] = raw["pods"][:1]  # tsmom alone: its warm-up follows its lookback
    raw["pods"][0].update(initial_fraction=1.0, max_fraction=1.0)
    raw["orchestrator"]["allocation_method"] = "equal_weight"
    raw["backtest"].update(start="2024-01-01", end="2024-06-30")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    base = load_config(cfg)
    lookbacks = [10, 60, 120]
    variants = [{"pods.pod-tsmom-major.params.lookback": lb} for lb in lookbacks]
    own = [warmup_days(variant_config(base, v, "x")) for v in variants]
    assert len(set(own)) == 3  # each lookback alone would warm up differently
    configs = variant_configs(base, variants)
    assert {c.backtest.warmup_days for c in configs} == {max(own)}
    shared = build.share_work(True)
    try:
        run_sweep(base, SweepSpec(grid={"pods.pod-tsmom-major.params.lookback": lookbacks}))
    finally:
        build.share_work(False)
    assert shared.hits["data"] == len(lookbacks) - 1  # one window loaded, then shared
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"grid": {"pods.pod-tsmom-major.params.lookback": lookbacks}}))
    res = CliRunner().invoke(main, ["sweep", str(cfg), "--grid", str(grid), "--out",
                                    str(tmp_path / "s"), "--quiet", "--keep", "2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    ranked = pl.read_parquet(tmp_path / "s" / "results.parquet")
    top = ranked.row(0, named=True)
    # --keep 2: the top two variants as full run directories, equal to their rows
    kept = sorted((tmp_path / "s").glob("variant-*"))
    assert len(kept) == 2 and res.output.count("kept run:") == 2
    for row in ranked.head(2).iter_rows(named=True):
        (run,) = [k for k in kept if k.name.startswith(f"variant-{row['variant']}-")]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["final_equity"] == row["final_equity"]
        assert (run / "fills.parquet").is_file() and (run / "trades.parquet").is_file()
    bad = CliRunner().invoke(main, ["sweep", str(cfg), "--grid", str(grid), "--keep", "some"])
    assert bad.exit_code == 2 and "whole number" in bad.output
    best = load_config(tmp_path / "s" / "best.yaml")
    assert best.pods[0].params["lookback"] == int(top["pods.pod-tsmom-major.params.lookback"])
    single = run_backtest(best)
    acct = single.metrics.filter(pl.col("entity") == "account").row(0, named=True)
    from orchestra.results.metrics import METRIC_COLUMNS

    for k in METRIC_COLUMNS:
        assert top[k] == acct[k] or (np.isnan(top[k]) and np.isnan(acct[k])), k
    assert top["final_equity"] == single.summary["final_equity"]


def test_recalled_solutions_and_moments_equal_fresh_ones_bit_for_bit(base) -> None:
    """Issue #26: a run whose ERC solutions and covariance windows are all recalled from the
    process's memo equals a run that computed every one of them."""
    from orchestra.allocation import allocator, problems

    problems.SOLUTIONS.store.clear()
    allocator._MOMENTS.store.clear()
    hits = problems.SOLUTIONS.hits
    fresh = run_backtest(base)
    assert problems.SOLUTIONS.hits == hits  # nothing to recall in the first run of its numbers
    again = run_backtest(base)
    assert problems.SOLUTIONS.hits > hits and len(allocator._MOMENTS.store) > 0
    assert len(again.allocations) == len(fresh.allocations)
    for name, frame in fresh.frames().items():
        assert frame.equals(getattr(again, name)), name
    memo = problems.Solutions(size=2)
    for i in range(3):
        memo.put(("k", i), np.array([float(i)]))
    assert memo.get(("k", 0)) is None and memo.get(("k", 2)) is not None  # bounded, LRU


@pytest.mark.parametrize("bad", [0, 3, 5])
def test_this_process_and_the_workers_share_the_jobs_and_raise_the_first_error(
    base, bad: int
) -> None:
    """With 2 workers this process runs jobs beside one loky worker (orchestra.sweep
    ``_run_here_and_in_workers``): results come back in job order, equal to one worker's, with
    one progress tick per job; a job that fails (here: data that cannot load), whichever
    process takes it, stops the sweep with its own error."""
    from orchestra.data import DataError
    from orchestra.sweep import run_jobs

    configs = [
        variant_config(base, {"pods.pod-tsmom-major.params.lookback": lb}, f"v{lb}")
        for lb in (10, 15, 20, 25, 30, 35)
    ]
    jobs = [(c, None, None) for c in configs]
    ticks: list[int] = []
    two = run_jobs(jobs, workers=2, progress=ticks.append)
    one = run_jobs(jobs, workers=1)
    assert sum(ticks) == len(jobs) and [r["final_equity"] for r in two] == [
        r["final_equity"] for r in one
    ]
    missing = base.data.model_copy(update={"source": "files", "path": "/nonexistent/candles"})
    jobs[bad] = (configs[bad].model_copy(update={"data": missing}), None, None)
    with pytest.raises(DataError, match="nonexistent"):
        run_jobs(jobs, workers=2)


def test_user_errors_survive_a_worker_process() -> None:
    """A worker's error reaches the sweep's process pickled: it must arrive as it was raised."""
    import pickle

    from orchestra.data import DataError

    for exc in (DataError(["BTC/USDT: no file", "ETH/USDT: no file"], "data folder x"),
                ConfigError("grid.yaml [v3]", ["pods.x: unknown pod"])):  # fmt: skip
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert back.problems == exc.problems


def test_workers_start_before_the_sweep_and_stop_without_being_waited_for(
    base, monkeypatch
) -> None:
    """``orch-bt sweep`` starts its loky workers first (they start Python and import while it
    loads the config and the data) and lets them go once the jobs are done: the sweep runs on
    the workers it started, and a stopped pool takes no more work. Not on a cold numba cache
    (the compile has both cores then)."""
    from orchestra import precompile, sweep

    sweep.stop_workers()
    monkeypatch.setattr(precompile, "kernel_cached", lambda name="run_segment_nb": False)
    sweep.start_workers(2)
    assert sweep._pool is None  # cold: nothing started
    monkeypatch.setattr(precompile, "kernel_cached", lambda name="run_segment_nb": True)
    sweep.start_workers(1)
    assert sweep._pool is None  # one worker: this process only
    sweep.start_workers(2)
    started = sweep._pool
    assert started is not None
    configs = [
        variant_config(base, {"pods.pod-tsmom-major.params.lookback": lb}, f"v{lb}")
        for lb in (10, 20, 30)
    ]
    jobs = [(c, None, None) for c in configs]
    two = sweep.run_jobs(jobs, workers=2)
    assert sweep._pool is started  # the same processes ran the jobs
    assert [r["final_equity"] for r in two] == [
        r["final_equity"] for r in sweep.run_jobs(jobs, workers=1)
    ]
    sweep.stop_workers()
    assert sweep._pool is None
    with pytest.raises(RuntimeError):  # shut down: no more work
        started.submit(sweep._warm_up)
