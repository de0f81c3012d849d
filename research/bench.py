"""Benchmarks (``make bench``): wall time per stage, throughput and peak memory per workload,
beside the naive per-bar pure-Python loop (the tests' reference implementation) on a slice.

Workloads:
  S  the example config (3 pods, 5 symbols, 2 years of daily synthetic bars)
  M  10 pods × 50 symbols × 5 years of hourly synthetic bars (each pod trades 25 of them)
  L  8 pods × 50 symbols × 1 year of minute synthetic bars (each pod trades 25 of them)
  (M and L run as run_backtest does: streamed, the bars, signals and bar loop a step at a time)
  R  the live loop (`orch-live --paper`'s LiveSession) with 1,000 / 10,000 / 40,000 hourly bars
     of history behind it (10 pods × 50 symbols) and a year of minute bars (4 pods × 10 symbols):
     ms per bar (inputs + step + SQLite commit) over 200 bars, resident memory before and after
     them, the restart (load the store, rebuild the signal states), beside the old way of
     building one bar's inputs (prepare over the whole anchored history)
  V  vectorbt 1.x on the same work, in its own environment (research/vectorbt, `uv run
     --project`): one pod at its target weights at 10 and 50 symbols (equity must agree within
     1e-9), and M's 10 pods as vectorbt column groups beside orchestra's netted run
  W  a 50-lookback tsmom sweep on the real 1h candles (../shared/data, 10 pairs, 2021–2025):
     `orch-bt sweep` with 1 and 2 workers (fresh process, and warm in one process) beside
     vectorbt's broadcast of the same sweep in one call (research/vectorbt/run_vbt_sweep.py);
     the best point against a single run of its config, the Sharpe ratios against vectorbt's
  G  the example grid (configs/grids/example.yaml: 13 variants + walk-forward, 83 backtests)
     as a fresh `orch-bt sweep`, 1 and 2 workers
  C  cold start: `orch-bt run configs/example.yaml` in a fresh process with an empty numba cache
     (the bar loop compiling in a second process, as shipped), the same with everything compiled
     in one process (ORCHESTRA_PRECOMPILE=0), then again with the cache the first run left (what
     a user sees after `make install`)

Each workload runs in its own subprocess (so peak RSS is its own), twice: a first run that may
compile/load numba caches, then a warm run that is reported (the cold run's objects are freed
first, so the peak RSS is one run's). Throughput is pod-symbol-bars per
second of the kernel stage. The naive loop runs the same inputs for a slice of bars and its
throughput is compared in the same run (ratio = kernel / naive). Figures are only comparable
within one run: the machine is shared and noisy.

  python research/bench.py [--only S,M,L,R,V,W,G,C] [--naive-bars N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYMBOLS = [f"C{i:02d}/USDT" for i in range(50)]
STRATS = [
    ("tsmom", {"lookback": 48}),
    ("donchian-ensemble", {"lookbacks": [24, 96]}),
    ("vw-tsmom", {"lookback": 48}),
    ("vol-adaptive", {"fast_lookback": 24, "slow_lookback": 96, "vol_short": 24, "vol_long": 120}),
]


def workload_config(name: str):
    from orchestra.config import load_config, parse_config

    if name == "S":
        return load_config(ROOT / "configs" / "example.yaml")
    n_pods, tf, start, end = {
        "M": (10, "1h", "2021-01-01", "2025-12-31"),
        "L": (8, "1m", "2025-01-01", "2025-12-31"),
    }[name]
    pods = []
    for p in range(n_pods):
        strat, params = STRATS[p % len(STRATS)]
        pods.append(
            {
                "pod_id": f"pod{p}",
                "strategy": strat,
                "params": params,
                "timeframe": tf,
                "symbols": SYMBOLS[(p * 5) % 50 :][:25]
                + SYMBOLS[: max(0, 25 - len(SYMBOLS[(p * 5) % 50 :]))],
                "initial_fraction": 0.09,
                "min_fraction": 0.02,
                "max_fraction": 0.3,
                "initial_state": "production",
                "risk": {"rebalance_threshold": 0.005, "max_leverage": 2.0},
            }
        )
    return parse_config(
        {
            "data": {"source": "synthetic", "timeframe": tf, "seed": 1},
            "orchestrator": {
                "allocation_method": "risk_parity",
                "max_pods": 10,
                "rebalance": {"trigger": "calendar", "calendar_days": 7},
            },
            "pods": pods,
            "backtest": {"start": start, "end": end, "capital": 1e7, "warmup_days": 10},
        }
    )


def erc_resolve_ms(eng, dates: int = 200, lookback: int = 90) -> float | None:
    """Median ERC re-solve time (cvxpy + Clarabel + polish), compile excluded: one problem for all
    the pods, re-solved on the Ledoit-Wolf covariance of the run's own daily pod returns at
    successive dates (the allocator's situation with an unchanged pod set)."""
    import numpy as np

    from orchestra.allocation.moments import SingularCovariance, cholesky_factor, shrunk_covariance
    from orchestra.allocation.problems import ErcProblem

    navs = eng.out.pod_nav[eng.day_end_bars()]
    rets = navs[1:] / navs[:-1] - 1.0
    n = rets.shape[1]
    noise = np.random.default_rng(0).normal(0, 1e-4, rets.shape)  # keeps flat pods non-singular
    problem = ErcProblem(n)
    budgets = np.full(n, 1.0 / n)
    times = []
    for d in range(max(lookback, rets.shape[0] - dates), rets.shape[0]):
        try:
            chol = cholesky_factor(
                shrunk_covariance(rets[d - lookback : d] + noise[d - lookback : d])
            )
        except SingularCovariance:
            continue
        t = time.perf_counter()
        problem.solve(chol, budgets)
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]) * 1000) if len(times) > 1 else None


# the live loop's cost against the history behind it: (clock, pods, symbols, history bars)
LIVE_CASES = {
    "R1k": ("1h", 10, 50, 1_000),
    "R10k": ("1h", 10, 50, 10_000),
    "R40k": ("1h", 10, 50, 40_000),
    "R1m": ("1m", 4, 10, 525_600),
}
LIVE_BARS = 200  # bars processed and timed per case


def live_config(tf: str, n_pods: int, n_symbols: int, history: int):
    """M's pods (each trading half the symbols) on clock ``tf`` with ``history`` bars of
    warm-up before 2025-01-01 and LIVE_BARS bars after it."""
    import datetime as dt
    import math

    from orchestra.config import parse_config
    from orchestra.timeframes import DAY_MS, timeframe_ms

    step = timeframe_ms(tf)
    raw = workload_config("M").model_dump(mode="json")
    syms = SYMBOLS[:n_symbols]
    half = max(n_symbols // 2, 1)
    raw["pods"] = raw["pods"][:n_pods]
    for p, pod in enumerate(raw["pods"]):
        pod["timeframe"] = tf
        pod["symbols"] = [syms[(p * 5 + j) % n_symbols] for j in range(half)]
    start = dt.date(2025, 1, 1)
    end = start + dt.timedelta(days=math.ceil(LIVE_BARS * step / DAY_MS))
    raw["data"].update({"timeframe": tf})
    raw["backtest"].update(
        {"start": str(start), "end": str(end), "warmup_days": math.ceil(history * step / DAY_MS)}
    )
    return parse_config(raw)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_live(case: str) -> dict:
    """The live loop with a long history behind it: open a paper run on the synthetic bars (its
    warm-up is ``history`` clock bars), process LIVE_BARS bars and time each (inputs + step +
    commit), restart it (load the store, rebuild the signal states), and time the old way of
    building a bar's inputs — :func:`prepare` over the whole anchored history — on two bars."""
    import tempfile

    import numpy as np
    import polars as pl

    from orchestra.data import GapReport, LoadedData, load_bars
    from orchestra.engine import prepare
    from orchestra.live.session import LiveSession, release_memory
    from orchestra.timeframes import epoch_ms

    tf, n_pods, n_symbols, history = LIVE_CASES[case]
    cfg = live_config(tf, n_pods, n_symbols, history)
    bars = load_bars(cfg).bars
    start_ms = epoch_ms(cfg.backtest.start)
    cut = pl.lit(start_ms).cast(pl.Datetime("ms", "UTC"))
    live = bars.filter(pl.col("timestamp") >= cut).sort("timestamp")
    feed = [
        (int(part["timestamp"][0].timestamp() * 1000), part)
        for part in live.partition_by("timestamp", maintain_order=True)
    ][:LIVE_BARS]
    # the old way: a bar's inputs from the whole anchored history (two bars)
    times = []
    for ts, _ in feed[-2:]:
        upto = bars.filter(pl.col("timestamp") <= pl.lit(ts).cast(pl.Datetime("ms", "UTC")))
        t = time.perf_counter()
        prepare(cfg, start=cfg.backtest.start, loaded=LoadedData(upto, "bench", GapReport()))
        times.append(time.perf_counter() - t)
        del upto
    out: dict = {"workload": "R", "case": case, "clock": tf, "pods": n_pods}
    out["recompute_ms"] = 1000 * float(np.median(times))
    warm = [bars.filter(pl.col("timestamp") < cut)]
    history_bars = int(warm[0]["timestamp"].n_unique())
    del bars, live
    out.update({"symbols": n_symbols, "history_bars": history_bars, "bars": len(feed)})
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        t = time.perf_counter()
        session = LiveSession.open(cfg, state, "bench", start_ms, warm.pop)
        out["open_s"] = time.perf_counter() - t
        out["warm_s"] = session.warm_seconds
        session.run(feed[:2])  # compile / load the kernels
        release_memory()
        rss0 = _rss_mb()
        session.bar_seconds.clear()
        session.timings = dict.fromkeys(session.timings, 0.0)
        session.run(feed[2:])
        out["rss_before_mb"], out["rss_after_mb"] = rss0, _rss_mb()
        ms = np.array(session.bar_seconds) * 1000
        n = ms.size
        out.update({"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))})
        out["stage_ms"] = {k: 1000 * v / n for k, v in session.timings.items()}
        session.close()
        del session
        release_memory()
        t = time.perf_counter()
        session = LiveSession.open(cfg, state, "bench", start_ms, list)
        out["restart_s"] = time.perf_counter() - t
        out["restart_warm_s"] = session.warm_seconds
        session.close()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


VBT_PROJECT = ROOT / "research" / "vectorbt"


def single_pod_config(n_symbols: int):
    """One pod trading ``n_symbols`` at its target weights every bar, at the close, with every
    orchestration rule switched off: the work vectorbt's ``from_orders(targetpercent)`` does."""
    from orchestra.config import parse_config

    off = {"max_drawdown": 1.0, "drawdown_warning": 1.0, "system_stop_loss": None}
    return parse_config(
        {
            "data": {"source": "synthetic", "timeframe": "1h", "seed": 1},
            "orchestrator": {
                "allocation_method": "equal_weight",
                "risk": {
                    "daily_loss_limit": 0.99,
                    "max_portfolio_drawdown": 0.99,
                    "max_portfolio_volatility": 1e6,
                },
                "retirement": {
                    "max_drawdown_breach": 1.0,
                    "consecutive_loss_months": 10_000,
                    "rolling_sharpe_floor": -1e9,
                },
                "degradation": {"lambda_": 1e12},
            },
            "pods": [
                {
                    "pod_id": "solo",
                    "strategy": "tsmom",
                    "params": {"lookback": 48},
                    "timeframe": "1h",
                    "symbols": SYMBOLS[:n_symbols],
                    "initial_fraction": 1.0,
                    "max_fraction": 1.0,
                    "initial_state": "production",
                    "risk": {
                        **off,
                        "max_leverage": 0.95,  # vectorbt needs cash (free cash for shorts)
                        "use_trailing_stop": False,
                        "rebalance_threshold": 0.0,
                    },
                }
            ],
            "portfolio": {"cost_bps": 10, "slippage_bps": 0},
            "backtest": {
                "start": "2021-01-01",
                "end": "2025-12-31",
                "capital": 1e6,
                "execution": "close",
                "warmup_days": 10,
            },
        }
    )


def in_vectorbt(script: str, **arrays) -> dict:
    """Run ``research/vectorbt/<script>`` in vectorbt's own environment on ``arrays`` (an .npz
    each way); returns what it wrote."""
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **arrays)
        subprocess.run(
            ["uv", "run", "-q", "--project", str(VBT_PROJECT), "python",
             str(VBT_PROJECT / script), str(src), str(dst)],
            check=True,
        )  # fmt: skip
        out = np.load(dst)
        return {k: out[k] for k in out.files}


def vectorbt(close, target, group, init_cash, fees: float, repeats: int = 3) -> dict:
    """``research/vectorbt/run_vbt.py`` on these arrays (from_orders at target weights)."""
    return in_vectorbt(
        "run_vbt.py", close=close, target=target, group=group, init_cash=init_cash, fees=fees,
        repeats=repeats,
    )  # fmt: skip


def run_vectorbt_workload() -> dict:
    """Single pod at 10 and 50 symbols (equity must agree within 1e-9), then the M workload's 10
    pods as vectorbt column groups (independent books) beside orchestra's netted run."""
    import numpy as np

    from orchestra.engine import Engine, prepare

    rows = []
    for n in (10, 50):
        cfg = single_pod_config(n)
        prep = prepare(cfg)
        Engine(prep).run()  # compile / load the kernels
        times = []
        for _ in range(3):
            eng = Engine(prep)
            t = time.perf_counter()
            eng.run()
            times.append((time.perf_counter() - t, eng.timings["kernels"]))
        run_s, kernel_s = np.median(np.array(times), axis=0)
        inp = prep.inputs
        vb = vectorbt(
            inp.close, inp.target, np.zeros(inp.target.shape[1], dtype=np.int64),
            np.array([cfg.backtest.capital]), cfg.portfolio.cost_bps / 1e4,
        )  # fmt: skip
        ours = eng.out.equity
        theirs = vb["value"][:, 0]
        rows.append(
            {
                "what": f"1 pod × {n} symbols",
                "bars": int(inp.target.shape[0]),
                "orchestra_kernel_s": float(kernel_s),
                "orchestra_run_s": float(run_s),
                "vectorbt_s": float(vb["seconds"]),
                "max_rel_diff": float(np.max(np.abs(ours - theirs) / np.abs(theirs))),
                "fills": int(eng.out.fill_count[0]),
            }
        )
    cfg = workload_config("M")
    prep = prepare(cfg)
    Engine(prep).run()
    eng = Engine(prep)
    t = time.perf_counter()
    eng.run()
    run_s = time.perf_counter() - t
    inp = prep.inputs
    fr = np.array([p.initial_fraction for p in cfg.pods])
    vb = vectorbt(
        inp.close[:, inp.slot_sym], inp.target, inp.slot_pod, fr * cfg.backtest.capital,
        cfg.portfolio.cost_bps / 1e4,
    )  # fmt: skip
    rows.append(
        {
            "what": f"{len(cfg.pods)} pods × 25 symbols (vectorbt: column groups, no netting)",
            "bars": int(inp.target.shape[0]),
            "orchestra_kernel_s": float(eng.timings["kernels"]),
            "orchestra_run_s": run_s,
            "vectorbt_s": float(vb["seconds"]),
            "max_rel_diff": None,
            "fills": int(eng.out.fill_count[0]),
        }
    )
    return {"workload": "V", "rows": rows, "vectorbt": str(vb["version"])}


REAL_1H = ROOT.parent / "shared" / "data" / "binance-1h"
REAL_SYMBOLS = ["BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT"]
LOOKBACKS = list(range(10, 510, 10))


def sweep_base_config():
    """W's base: ``single_pod_config``'s pod (tsmom, every rule off, at the close) on the real
    hourly candles of the 10 pairs in ``../shared/data``, 2021–2025 (gaps forward-filled)."""
    from orchestra.config import parse_config

    raw = single_pod_config(10).model_dump(mode="json")
    raw["data"] = {"source": "files", "path": str(REAL_1H), "timeframe": "1h", "gaps": "ffill"}
    raw["pods"][0]["symbols"] = [f"{s}/USDT" for s in REAL_SYMBOLS]
    raw["backtest"]["warmup_days"] = "auto"
    return parse_config(raw, source="bench W")


def _timed_cli(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from orchestra.cli.bt import entry; entry()", *args],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - t


def run_sweep_workload() -> dict:
    """A 50-lookback tsmom sweep on the real 1h candles beside vectorbt's broadcast of the same
    sweep (signals + one ``from_orders`` over 50 × 10 columns + value + Sharpe), and the best
    point against a single run of its config."""
    import tempfile
    import warnings

    import numpy as np
    import yaml

    if not REAL_1H.is_dir():
        return {"workload": "W", "skipped": f"{REAL_1H} not found (../shared/data)"}
    warnings.simplefilter("ignore")  # the candles' forward-filled gaps
    from orchestra.data import load_bars, to_matrices
    from orchestra.engine import run_backtest
    from orchestra.engine.build import share_work
    from orchestra.strategies.warmup import warmup_days
    from orchestra.sweep import SweepSpec, sweep, variant_configs
    from orchestra.timeframes import epoch_ms

    base = sweep_base_config()
    spec = SweepSpec(grid={"pods.solo.params.lookback": LOOKBACKS})
    out: dict = {"workload": "W", "points": len(LOOKBACKS)}
    with tempfile.TemporaryDirectory() as tmp:
        cfg_file, grid_file = Path(tmp) / "w.yaml", Path(tmp) / "grid.yaml"
        cfg_file.write_text(yaml.safe_dump(base.model_dump(mode="json")))
        grid_file.write_text(yaml.safe_dump({"grid": dict(spec.grid)}))
        for workers in (1, 2):  # what a user waits for: a fresh `orch-bt sweep`, end to end
            out[f"cli_{workers}w_s"] = _timed_cli(
                ["sweep", str(cfg_file), "--grid", str(grid_file), "--workers", str(workers),
                 "--quiet", "--out", str(Path(tmp) / f"s{workers}")]
            )  # fmt: skip
    # in this process with the workers already started (vectorbt below is timed warm too)
    sweep(base, SweepSpec(grid={"pods.solo.params.lookback": [7, 9]}), 2)
    for workers in (1, 2):
        t = time.perf_counter()
        outcome = sweep(base, spec, workers)
        out[f"warm_{workers}w_s"] = time.perf_counter() - t
    share_work(False)
    best = outcome.best_config()
    single = run_backtest(best)
    acct = single.metrics.filter(single.metrics["entity"] == "account").row(0, named=True)
    top = outcome.results.row(0, named=True)
    out["best_lookback"] = int(top["pods.solo.params.lookback"])
    out["best_equals_single_run"] = (
        all(top[k] == acct[k] for k in ("sharpe", "total_return", "max_drawdown", "volatility"))
        and top["final_equity"] == single.summary["final_equity"]
    )
    # vectorbt on the same bars, warm-up included
    cfgs = variant_configs(base, [{"pods.solo.params.lookback": lb} for lb in LOOKBACKS])
    first = base.backtest.start - __import__("datetime").timedelta(days=warmup_days(cfgs[0]))
    loaded = load_bars(cfgs[0], first, base.backtest.end)
    market = to_matrices(loaded.bars, base.symbols, "1h")
    start = int(np.searchsorted(market.timestamps, epoch_ms(base.backtest.start)))
    day = (market.timestamps[start:] // 86_400_000).astype(np.int64)
    vb = in_vectorbt(
        "run_vbt_sweep.py", close=market.close, start=start, lookbacks=np.array(LOOKBACKS),
        vol_window=30, vol_target=0.35, per_year=24 * 365, max_leverage=0.95,
        fees=base.portfolio.cost_bps / 1e4, init_cash=base.backtest.capital, day=day, repeats=2,
    )  # fmt: skip
    by_variant = outcome.results.sort("variant")
    out["vectorbt_s"] = float(vb["seconds"])
    out["vectorbt"] = str(vb["version"])
    out["vectorbt_best_lookback"] = LOOKBACKS[int(np.argmax(vb["sharpe"]))]
    # compared where orchestra's 99 % portfolio-drawdown rule (which vectorbt does not have)
    # never acted: the shortest lookbacks lose ~99.9 % to fees and stop trading
    ok = by_variant["max_drawdown"].to_numpy() < 0.9
    out["compared"] = int(ok.sum())
    ours = by_variant["sharpe"].to_numpy()
    out["sharpe_max_abs_diff"] = float(np.max(np.abs(ours - vb["sharpe"])[ok]))
    final = by_variant["final_equity"].to_numpy()
    out["final_max_rel_diff"] = float(np.max((np.abs(final - vb["final"]) / vb["final"])[ok]))
    return out


def run_grid_workload() -> dict:
    """G: the example grid (13 variants + walk-forward, 83 backtests) as a user runs it, a fresh
    `orch-bt sweep configs/example.yaml --grid configs/grids/example.yaml`, 1 and 2 workers."""
    import tempfile

    out: dict = {"workload": "G"}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out[f"cli_{workers}w_s"] = _timed_cli(
                ["sweep", str(ROOT / "configs" / "example.yaml"), "--grid",
                 str(ROOT / "configs" / "grids" / "example.yaml"), "--workers", str(workers),
                 "--quiet", "--out", str(Path(tmp) / f"g{workers}")]
            )  # fmt: skip
    return out


def run_cold() -> dict:
    """`orch-bt run configs/example.yaml` in fresh processes: empty numba cache (as shipped: the
    bar loop compiles in a second process; then with ORCHESTRA_PRECOMPILE=0, all in one), then
    the warm cache."""
    import tempfile

    out = {"workload": "C"}
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in ("cold", "cold_one_process", "warm"):
            cache = "numba-one" if attempt == "cold_one_process" else "numba"
            env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / cache)}
            env["ORCHESTRA_PRECOMPILE"] = "0" if attempt == "cold_one_process" else "1"
            cmd = [
                sys.executable, "-c", "from orchestra.cli.bt import entry; entry()", "run",
                str(ROOT / "configs" / "example.yaml"), "--quiet", "--out",
                str(Path(tmp) / f"run-{attempt}"),
            ]  # fmt: skip
            t = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            out[attempt] = time.perf_counter() - t
    return out


def run_one(name: str, naive_bars: int) -> dict:
    import numpy as np

    from orchestra.engine import Engine, prepare
    from orchestra.results.result import build_result
    from tests import reference

    cfg = workload_config(name)
    out: dict = {"workload": name}
    for attempt in ("cold", "warm"):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        t_all = time.perf_counter()
        # as run_backtest: synthetic bars straight into the matrices; on intraday bars (M, L)
        # streamed: the bars, signals and bar loop step by step (orchestra/engine/fused.py)
        prep = prepare(cfg, stream=True)
        eng = Engine(prep)
        eng.run()
        t = time.perf_counter()
        build_result(eng, cfg, release_target=True)  # as run_backtest
        t_results = time.perf_counter() - t
        wall = time.perf_counter() - t_all
        after = resource.getrusage(resource.RUSAGE_SELF)
        out[attempt] = {
            # CPU of every thread: user (the work) and system (mostly the kernel providing fresh
            # pages: on this VM, pages freed a few seconds earlier go back to the host)
            "user_s": after.ru_utime - usage.ru_utime,
            "sys_s": after.ru_stime - usage.ru_stime,
            "data": prep.timings["data"],
            # on synthetic intraday bars the signals are computed as the bars are generated
            # (orchestra/engine/fused.py): the data stage's time holds both; the table shows
            # their sum for every workload
            "signals": prep.timings["signals"] + prep.timings["inputs"],
            # a streamed run's data, signals and bar loop, overlapped (None: not streamed)
            "stream": eng.timings.get("stream"),
            "kernels": eng.timings["kernels"],
            "allocation": eng.timings["allocation"],
            "results": t_results,
            "total": wall,
        }
        if attempt == "cold":
            # free the cold run's data: the warm run should not allocate beside it (slower
            # fresh pages, and a peak RSS of two runs)
            del prep, eng
            gc.collect()
            # a fresh process has no solutions or covariance windows to recall: neither does
            # the warm run (the numba cache stays warm, as after `make install`)
            from orchestra.allocation import allocator, problems

            problems.SOLUTIONS.store.clear()
            allocator._MOMENTS.store.clear()
    inp = prep.inputs
    T, K = inp.timestamps.shape[0], inp.slot_pod.shape[0]
    out["bars"], out["slots"], out["psb"] = T, K, T * K
    out["throughput"] = T * K / out["warm"]["kernels"]
    out["resolve_ms_median"] = erc_resolve_ms(eng) if len(prep.pod_ids) >= 2 else None
    out["n_pods"] = len(prep.pod_ids)
    # the naive per-bar Python loop on the first bars of the same inputs: from the run's first
    # day prepared whole (a streamed run keeps no target matrix; a bar's inputs depend only on
    # the bars up to it, so these rows are the run's)
    from orchestra.engine import with_dates
    from orchestra.timeframes import DAY_MS, timeframe_ms

    per_day = max(1, DAY_MS // timeframe_ms(cfg.clock_timeframe))
    days = -(-naive_bars // per_day)
    end = min(cfg.backtest.end, cfg.backtest.start + dt.timedelta(days=days))
    inp = prepare(with_dates(cfg, cfg.backtest.start, end)).inputs
    n = min(naive_bars, inp.timestamps.shape[0])
    sl = inp._replace(
        **{
            f: getattr(inp, f)[:n]
            for f in (
                "timestamps",
                "day_id",
                "day_end",
                "open",
                "close",
                "tradable",
                "atr",
                "funding",
            )
        },
        target=inp.target[:n],
    )
    fr = np.array([p.initial_fraction for p in cfg.pods])
    t = time.perf_counter()
    reference.simulate(sl, cfg.backtest.capital, fr)
    naive = time.perf_counter() - t
    out["naive_throughput"] = n * K / naive
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="S,M,L,R,V,W,G,C")
    ap.add_argument("--naive-bars", type=int, default=300)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        special = {
            "V": run_vectorbt_workload, "C": run_cold, "W": run_sweep_workload,
            "G": run_grid_workload,
        }  # fmt: skip
        special.update({case: (lambda c=case: run_live(c)) for case in LIVE_CASES})
        child = special.get(args.child)
        if child:
            result = child()
        else:
            result = run_one(args.child, args.naive_bars)
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    rows = []
    names = []
    for name in args.only.split(","):
        names += list(LIVE_CASES) if name == "R" else [name]
    for name in names:
        print(f"running workload {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, "--naive-bars", str(args.naive_bars)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"workload {name} failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    replays = [r for r in rows if r["workload"] == "R"]
    versus = [r for r in rows if r["workload"] == "V"]
    cold = [r for r in rows if r["workload"] == "C"]
    sweeps = [r for r in rows if r["workload"] in ("W", "G")]
    rows = [r for r in rows if r["workload"] not in ("R", "V", "C", "W", "G")]
    table = Table(title="orchestra benchmark (warm run; ratios from this run only)")
    for col in [
        "workload",
        "pods×slots×bars",
        "data + signals s",
        "streamed s",
        "kernels s",
        "alloc s",
        "results s",
        "total s (cold)",
        "CPU user / sys s",
        "kernel psb/s",
        "naive psb/s",
        "× naive",
        "ERC re-solve ms (all pods)",
        "peak RSS MB",
    ]:
        table.add_column(col, justify="right")
    for r in rows:
        w = r["warm"]
        table.add_row(
            r["workload"],
            f"{r['n_pods']}×{r['slots']}×{r['bars']:,}",
            "-" if w["stream"] else f"{w['data'] + w['signals']:.2f}",
            f"{w['stream']:.2f}" if w["stream"] else "-",
            f"{w['kernels']:.2f}",
            f"{w['allocation']:.2f}",
            f"{w['results']:.2f}",
            f"{w['total']:.2f} ({r['cold']['total']:.1f})",
            f"{w['user_s']:.1f} / {w['sys_s']:.1f}",
            f"{r['throughput'] / 1e6:.1f}M",
            f"{r['naive_throughput'] / 1e6:.3f}M",
            f"{r['throughput'] / r['naive_throughput']:.0f}×",
            "-" if r["resolve_ms_median"] is None else f"{r['resolve_ms_median']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
        )
    console = Console(width=220)
    if rows:
        console.print(table)
        console.print(
            "streamed: on synthetic intraday bars (M, L) the bars, the signals and the bar loop "
            "run together a step of bars at a time (orchestra/engine/fused.py); its wall time "
            "holds all three, and kernels s is the bar loop's share, run beside the signals"
        )
    if replays:
        live = Table(
            title="live loop: ms per bar against the history behind it (inputs + step + commit; "
            "no network)"
        )
        for col in [
            "clock",
            "pods×symbols",
            "history bars",
            "median ms/bar",
            "p95",
            "inputs / engine / commit ms",
            "recompute ms/bar (old)",
            "× faster",
            "RSS before → after MB",
            "open s (warm pass)",
            "restart s (warm pass)",
        ]:
            live.add_column(col, justify="right")
        for r in replays:
            st = r["stage_ms"]
            live.add_row(
                r["clock"],
                f"{r['pods']}×{r['symbols']}",
                f"{r['history_bars']:,}",
                f"{r['median_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{st['inputs']:.2f} / {st['engine']:.2f} / {st['commit']:.2f}",
                f"{r['recompute_ms']:.0f}",
                f"{r['recompute_ms'] / r['median_ms']:.0f}×",
                f"{r['rss_before_mb']:.0f} → {r['rss_after_mb']:.0f}",
                f"{r['open_s']:.1f} ({r['warm_s']:.1f})",
                f"{r['restart_s']:.1f} ({r['restart_warm_s']:.1f})",
            )
        console.print(live)
    for r in versus:
        vt = Table(
            title=f"against vectorbt {r['vectorbt']} (from_orders, targetpercent at the close)"
        )
        for col in [
            "work",
            "bars",
            "orchestra kernel s",
            "orchestra engine s",
            "vectorbt s",
            "× vectorbt (kernel)",
            "× vectorbt (engine)",
            "equity max rel. diff",
        ]:
            vt.add_column(col, justify="right")
        for x in r["rows"]:
            vt.add_row(
                x["what"],
                f"{x['bars']:,}",
                f"{x['orchestra_kernel_s']:.3f}",
                f"{x['orchestra_run_s']:.3f}",
                f"{x['vectorbt_s']:.3f}",
                f"{x['vectorbt_s'] / x['orchestra_kernel_s']:.1f}×",
                f"{x['vectorbt_s'] / x['orchestra_run_s']:.1f}×",
                "-" if x["max_rel_diff"] is None else f"{x['max_rel_diff']:.1e}",
            )
        console.print(vt)
    for r in sweeps:
        if r.get("skipped"):
            console.print(f"workload {r['workload']} skipped: {r['skipped']}")
            continue
        if r["workload"] == "G":
            console.print(
                f"G example grid (83 backtests), fresh `orch-bt sweep`: "
                f"{r['cli_1w_s']:.1f} s with 1 worker, {r['cli_2w_s']:.1f} s with 2"
            )
            continue
        st = Table(
            title=f"W: {r['points']}-lookback tsmom sweep, real 1h candles × 10 pairs, against "
            f"vectorbt {r['vectorbt']}'s broadcast"
        )
        for col in ["orchestra", "1 worker s", "2 workers s", "vectorbt s (warm)",
                    "× vectorbt (2 workers)"]:  # fmt: skip
            st.add_column(col, justify="right")
        for kind in ("warm", "cli"):
            st.add_row(
                "workers started (warm)" if kind == "warm" else "fresh `orch-bt sweep` (CLI)",
                f"{r[f'{kind}_1w_s']:.2f}", f"{r[f'{kind}_2w_s']:.2f}", f"{r['vectorbt_s']:.2f}",
                f"{r['vectorbt_s'] / r[f'{kind}_2w_s']:.1f}×",
            )  # fmt: skip
        console.print(st)
        console.print(
            f"best lookback {r['best_lookback']} (vectorbt: {r['vectorbt_best_lookback']}); "
            f"best point equals a single run of its config: {r['best_equals_single_run']}; "
            f"against vectorbt over the {r['compared']} lookbacks that never lost 90 %: Sharpe "
            f"max |diff| {r['sharpe_max_abs_diff']:.1e}, final equity max rel. diff "
            f"{r['final_max_rel_diff']:.1e}"
        )
    for r in cold:
        ct = Table(title="cold start: orch-bt run configs/example.yaml, fresh process")
        ct.add_column("empty numba cache s", justify="right")
        ct.add_column("empty cache, one process s", justify="right")
        ct.add_column("cache warm (after make install) s", justify="right")
        ct.add_row(f"{r['cold']:.1f}", f"{r['cold_one_process']:.1f}", f"{r['warm']:.1f}")
        console.print(ct)


if __name__ == "__main__":
    main()
