"""Parameter sweeps and walk-forward (``orch-bt sweep CONFIG --grid grid.yaml``).

A grid file names config fields by dotted path and the values to try::

    grid:                                   # every combination (cartesian product)
      orchestrator.allocation_method: [risk_parity, equal_weight]
      pods.pod-tsmom-major.params.lookback: [20, 30, 60]   # a pod by its pod_id (or index)
    random:                                 # optional: n random draws (after the grid's)
      n: 10
      seed: 1
      space:
        orchestrator.kelly_fraction: {float: [0.0, 0.5]}
        pods.pod-tsmom-major.params.lookback: {int: [10, 90]}
    walk_forward:                           # optional: out-of-sample check of the choice
      train_days: 365
      test_days: 90
      metric: sharpe                        # any account metric; higher is better
      # (max_drawdown, volatility: lower is better)

Each variant is the base config with those fields replaced, validated like a config file (a bad
path or value names the variant and the field). Variants run in ``--workers`` processes (this
one and loky's workers, each taking the next variant when free), or on Ray (``--backend ray``: the cluster at ``RAY_ADDRESS``, else a local Ray);
each worker loads the compiled kernels from numba's cache, and the results do not depend on the
number of workers or the backend (tested equal). Results: one row per variant with its
parameters and the account's metrics (``results.parquet``), ranked by the metric; walk-forward
adds one row per fold: the variant chosen on the training window and its metric on the test
window that follows (``walk_forward.parquet``), so the best in-sample row is not mistaken for an
out-of-sample result.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from orchestra.config import Config, ConfigError, parse_config
from orchestra.overfitting import deflated_sharpe_of_trials, pbo_cscv

LOWER_IS_BETTER = {"max_drawdown", "volatility"}


@dataclass(frozen=True)
class SweepSpec:
    grid: dict[str, list[Any]] = field(default_factory=dict)
    random_n: int = 0
    random_seed: int = 0
    space: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    train_days: int | None = None
    test_days: int | None = None
    metric: str = "sharpe"


def _whole(value: Any, where: str, problems: list[str], minimum: int) -> int:
    """``value`` as an integer ≥ ``minimum``, or 0 with a problem naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"{where}: {value!r} is not an integer ≥ {minimum}")
        return 0
    return value


def _check_space(space: Any, problems: list[str]) -> dict[str, dict[str, list[float]]]:
    if not isinstance(space, dict):
        problems.append("random.space: a mapping of field → {int: [lo, hi]} or {float: [lo, hi]}")
        return {}
    for key, dist in space.items():
        where = f"random.space.{key}"
        if not (isinstance(dist, dict) and len(dist) == 1 and set(dist) <= {"int", "float"}):
            problems.append(f"{where}: use {{int: [lo, hi]}} or {{float: [lo, hi]}}")
            continue
        kind, bounds = next(iter(dist.items()))
        numbers = int if kind == "int" else (int, float)
        if not (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(isinstance(b, numbers) and not isinstance(b, bool) for b in bounds)
            and all(np.isfinite(float(b)) for b in bounds)
        ):
            problems.append(f"{where}: {kind} bounds must be [lo, hi], two finite {kind}s")
        elif bounds[0] > bounds[1]:
            problems.append(f"{where}: lo {bounds[0]} is above hi {bounds[1]}; give [lo, hi]")
    return space


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a grid file (raises :class:`ConfigError` naming every problem)."""
    import yaml

    src = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(src, [f"cannot read the grid file: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(src, ["the grid file must be a mapping with grid, random, walk_forward"])
    problems: list[str] = []
    unknown = set(raw) - {"grid", "random", "walk_forward"}
    if unknown:
        problems.append(f"unknown section(s) {sorted(map(str, unknown))}: use grid, random, "
                        "walk_forward")  # fmt: skip
    sections = {}
    for name in ("grid", "random", "walk_forward"):
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            problems.append(f"{name}: a mapping is expected, got {type(section).__name__}")
            section = {}
        sections[name] = section
    grid, rnd, wf = sections["grid"], sections["random"], sections["walk_forward"]
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"grid.{key}: give a non-empty list of values")
    unknown_rnd = set(rnd) - {"n", "seed", "space"}
    if unknown_rnd:
        problems.append(f"random: unknown key(s) {sorted(map(str, unknown_rnd))}: n, seed, space")
    random_n = _whole(rnd.get("n", 0), "random.n", problems, 0)
    seed = _whole(rnd.get("seed", 0), "random.seed", problems, 0)
    space = _check_space(rnd.get("space") or {}, problems)
    if random_n and not space:
        problems.append("random: n draws need a space (random.space.FIELD: {float: [lo, hi]})")
    from orchestra.results.metrics import METRIC_COLUMNS

    unknown_wf = set(wf) - {"train_days", "test_days", "metric"}
    if unknown_wf:
        problems.append(f"walk_forward: unknown key(s) {sorted(map(str, unknown_wf))}: "
                        "train_days, test_days, metric")  # fmt: skip
    metric = wf.get("metric", "sharpe")
    if metric not in METRIC_COLUMNS:
        problems.append(f"walk_forward.metric {metric!r}: one of {', '.join(METRIC_COLUMNS)}")
    train = _whole(wf.get("train_days"), "walk_forward.train_days", problems, 1) if wf else 0
    test = _whole(wf.get("test_days"), "walk_forward.test_days", problems, 1) if wf else 0
    if not grid and not random_n and not any("random.n" in p for p in problems):
        problems.append("nothing to sweep: give a grid or random.n")
    if problems:
        raise ConfigError(src, problems)
    return SweepSpec(
        grid={k: list(v) for k, v in grid.items()},
        random_n=random_n,
        random_seed=seed,
        space=space,
        train_days=train if wf else None,
        test_days=test if wf else None,
        metric=metric,
    )


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """The variants: the grid's cartesian product (in file order), then the random draws."""
    keys = list(spec.grid)
    out = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(spec.grid[k] for k in keys))
    ] if keys else []  # fmt: skip
    rng = np.random.default_rng(spec.random_seed)
    for _ in range(spec.random_n):
        draw: dict[str, Any] = {}
        for key, dist in spec.space.items():
            kind, (lo, hi) = next(iter(dist.items()))
            if kind == "int":
                draw[key] = int(rng.integers(int(lo), int(hi) + 1))
            else:  # 4 significant digits: a setting a person can read and type again
                draw[key] = float(f"{rng.uniform(lo, hi):.4g}")
        out.append(draw)
    return out


def apply(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (a config as a dict) with the dotted-path ``overrides`` set; pods by id or index."""
    raw = copy.deepcopy(raw)
    for path, value in overrides.items():
        parts = path.split(".")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = _pod(node, part, path)
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
            if not isinstance(node, dict | list):
                raise KeyError(f"{path}: {'.'.join(parts[: i + 1])} is not a section")
        if isinstance(node, list):
            raise KeyError(f"{path}: name a field of the pod")
        node[parts[-1]] = value
    return raw


def _pod(pods: list, key: str, path: str) -> dict:
    for p in pods:
        if p.get("pod_id") == key:
            return p
    if key.isdigit() and int(key) < len(pods):
        return pods[int(key)]
    ids = ", ".join(str(p.get("pod_id")) for p in pods)
    raise KeyError(f"{path}: no pod {key!r} (pods: {ids})")


def variant_config(base: Config, overrides: dict[str, Any], label: str) -> Config:
    raw = base.model_dump(mode="json")
    try:
        return parse_config(apply(raw, overrides), source=f"{base.source} [{label}]")
    except KeyError as exc:
        raise ConfigError(f"{base.source} [{label}]", [str(exc.args[0])]) from None


def _metrics(cfg: Config, start: dt.date | None, end: dt.date | None) -> dict[str, Any]:
    """The account's metrics and final equity, and its daily returns (``_dates``, ``_returns``:
    the deflated Sharpe ratio, PBO and the stitched walk-forward curve need them).

    A point needs only the account's figures: the engine runs as in ``run_backtest`` and the
    account's row comes from the same function as the full result's
    (:func:`~orchestra.results.result.account_metrics`), without building the frames (fills,
    positions, trades, alerts...) nobody reads here. Equal to a single run's figures (tested).
    """
    from orchestra.engine import Engine, prepare, with_dates
    from orchestra.results.analytics import daily_returns_of
    from orchestra.results.result import ACCOUNT_FILL_FIELDS, TS, account_metrics

    cfg = with_dates(cfg, start, end)
    engine = Engine(prepare(cfg))
    engine.run()
    T = engine.next_bar
    row: dict[str, Any] = account_metrics(engine, cfg, engine.fills(ACCOUNT_FILL_FIELDS))
    eq = engine.out.equity[:T]
    row["final_equity"] = float(eq[-1]) if T else float(cfg.backtest.capital)
    frame = pl.DataFrame(
        {"timestamp": pl.Series(engine.inputs.timestamps[:T]).cast(TS), "equity": eq}
    )
    daily = daily_returns_of(frame, "equity", float(cfg.backtest.capital))
    row["_dates"] = daily["date"].to_list()
    row["_returns"] = daily["return"].to_numpy()
    return row


def _run(job: tuple[Config, dt.date | None, dt.date | None]) -> dict[str, Any]:
    from orchestra.engine.build import share_work

    share_work(True)  # points of a sweep share data windows and pod signals (per process)
    return _metrics(*job)


BACKENDS = ("loky", "ray")


def _warm_up() -> None:
    """A fresh worker's first task: the imports every job needs (~0.6 s of CPU)."""
    import orchestra.engine
    import orchestra.results.analytics
    import orchestra.results.result  # noqa: F401


_pool: Any = None  # the loky executor this process's sweeps last used


def _workers(others: int) -> Any:
    """loky's reusable executor with ``others`` processes (the same one across sweeps)."""
    global _pool
    from joblib.externals.loky import get_reusable_executor

    _pool = get_reusable_executor(max_workers=others)
    return _pool


def stop_workers() -> None:
    """Let the sweeps' loky processes exit now, without waiting for them: a command that is
    done with them writes its reports meanwhile instead of joining them at exit (~0.2 s on W).
    The next sweep in this process starts new ones."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False)
        _pool = None


def start_workers(workers: int, backend: str = "loky") -> None:
    """Start a sweep's ``workers − 1`` loky processes now and have them import what their jobs
    need, so that they start Python and import while this process loads the config, the grid
    and the data (a fresh worker needs ~1 s of CPU before its first job: on W, two workers'
    fresh sweep took ~1 s longer than half of one worker's). Not on a cold numba cache: the
    kernels' compile has both cores then. :func:`run_jobs` finds the same processes (loky's
    reusable executor)."""
    if backend != "loky" or workers <= 1:
        return
    from orchestra import precompile

    if not precompile.kernel_cached():
        return
    _workers(workers - 1).submit(_warm_up)


def run_jobs(
    jobs: list[tuple[Config, dt.date | None, dt.date | None]],
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    backend: str = "loky",
) -> list[dict[str, Any]]:
    """Run backtests, results in job order whatever the parallelism.

    ``backend="loky"``: ``workers`` processes, this one included (1: only this one): the
    others are loky's, and this process takes the next job whenever it is free, as each of
    them does (see :func:`_run_here_and_in_workers`). ``backend="ray"``: joblib's Ray backend —
    the Ray cluster at ``RAY_ADDRESS`` when set, else a local Ray with ``workers`` CPUs
    (``pip install orchestra[ray]``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: one of {', '.join(BACKENDS)}")
    if backend == "ray":
        from joblib import Parallel, delayed, parallel_backend

        _start_ray(workers)
        with parallel_backend("ray"):  # (no generator results there: progress at the end)
            results = list(Parallel(n_jobs=workers)(delayed(_run)(j) for j in jobs))
        if progress:
            progress(len(results))
        return results
    from orchestra.engine import build

    was_on = build._SHARED is not None
    try:
        if workers <= 1 or len(jobs) <= 1:
            out = []
            for job in jobs:
                out.append(_run(job))
                if progress:
                    progress(1)
            return out
        return _run_here_and_in_workers(jobs, workers - 1, progress)
    finally:
        if not was_on:  # this process's later runs do not keep the sweep's arrays
            build.share_work(False)


def _run_here_and_in_workers(
    jobs: list[tuple[Config, dt.date | None, dt.date | None]],
    others: int,
    progress: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    """The jobs shared by this process and ``others`` loky worker processes, one job at a time
    to whichever is free (the next in job order), results in job order.

    This process runs jobs too: it has imported everything and loaded the kernels already,
    while a fresh worker first starts Python, imports orchestra and loads numba's cache (~1 s
    of CPU, measured on W); with two workers, one fewer process to start is one core's second
    less, and this process's first job begins at once. A worker's job is submitted when the
    worker is free (its previous job done), so none waits behind another's queue. The first
    error stops the claiming of jobs and is raised once the jobs already running are done."""
    import threading

    executor = _workers(others)
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    claim = itertools.count()  # the next job's index (next() is atomic in CPython)
    errors: list[BaseException] = []
    running = [0]
    idle = threading.Condition()

    def done(i: int, future) -> None:
        error = future.exception()
        with idle:
            if error is not None:
                errors.append(error)
            else:
                results[i] = future.result()
            running[0] -= 1
            idle.notify_all()
        if error is None:
            if progress:
                progress(1)
            submit()

    def submit() -> None:
        if errors:
            return
        i = next(claim)
        if i >= len(jobs):
            return
        with idle:
            running[0] += 1
        try:
            future = executor.submit(_run, jobs[i])
        except BaseException as exc:  # the pool is broken or shut down: no callback will come
            with idle:
                errors.append(exc)
                running[0] -= 1
                idle.notify_all()
            return
        future.add_done_callback(lambda f, i=i: done(i, f))

    for _ in range(others):
        submit()
    try:
        while not errors and (i := next(claim)) < len(jobs):
            results[i] = _run(jobs[i])
            if progress:
                progress(1)
    except BaseException as exc:
        errors.insert(0, exc)
    with idle:
        idle.wait_for(lambda: running[0] == 0)
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def _start_ray(workers: int) -> None:
    import os

    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise ConfigError(
            "--backend ray", ["Ray is not installed: pip install 'orchestra[ray]'"]
        ) from None
    register_ray()
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
            )


@dataclass
class SweepOutcome:
    """Everything a sweep measured: ``results`` (one row per variant, ranked, with its deflated
    Sharpe ratio), walk-forward ``folds`` and the stitched out-of-sample curve ``oos`` (or None),
    the variants' daily ``returns`` (``date`` and one column per variant) and ``pbo`` (the
    probability of backtest overfitting by CSCV, :func:`orchestra.overfitting.pbo_cscv`)."""

    results: pl.DataFrame
    folds: pl.DataFrame | None
    oos: pl.DataFrame | None
    returns: pl.DataFrame
    pbo: dict[str, float]
    configs: list[Config] = field(default_factory=list)  # each variant's, as it ran

    def best_config(self) -> Config | None:
        """The top-ranked variant's config, as it ran (its warm-up included)."""
        if not self.configs or self.results.is_empty():
            return None
        return self.configs[int(self.results["variant"][0])]

    @property
    def oos_sharpe(self) -> float:
        """The stitched out-of-sample curve's Sharpe ratio (365 returns a year)."""
        if self.oos is None or self.oos.height < 2:
            return float("nan")
        r = self.oos["return"].to_numpy()
        sd = r.std(ddof=1)
        return float(r.mean() / sd * np.sqrt(365)) if sd > 0 else 0.0


def run_sweep(
    base: Config,
    spec: SweepSpec,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    backend: str = "loky",
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(results ranked by the metric, walk-forward folds or None); :func:`sweep` has the rest."""
    outcome = sweep(base, spec, workers, progress, backend)
    return outcome.results, outcome.folds


def sweep(
    base: Config,
    spec: SweepSpec,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    backend: str = "loky",
) -> SweepOutcome:
    """Run every variant (and the walk-forward), rank them, and measure the selection luck."""
    variants = expand(spec)
    configs = variant_configs(base, variants)
    windows = _fold_windows_of(base, spec)
    # the grid and every fold's training runs are independent: one batch for the workers
    jobs: list[tuple[Config, dt.date | None, dt.date | None]] = [(c, None, None) for c in configs]
    jobs += [(c, a, b) for (a, b, _, _) in windows for c in configs]
    done = run_jobs(jobs, workers, progress, backend)
    rows, trained = done[: len(configs)], done[len(configs) :]
    returns = _returns_matrix(rows)
    params = list(dict.fromkeys(k for v in variants for k in v))
    dsr = deflated_sharpe_of_trials(returns["matrix"]) if returns["matrix"].size else None
    results = pl.DataFrame(
        [
            {
                "variant": i,
                **{k: str(variants[i].get(k, "(config)")) for k in params},
                **{k: v for k, v in rows[i].items() if not k.startswith("_")},
                "deflated_sharpe": float(dsr[i]) if dsr is not None else float("nan"),
            }
            for i in range(len(variants))
        ]
    )
    results = results.sort(spec.metric, descending=spec.metric not in LOWER_IS_BETTER)
    folds = oos = None
    if windows:
        folds, oos = walk_forward(spec, configs, variants, windows, trained, progress)
    frame = pl.DataFrame(
        {"date": returns["dates"],
         **{f"variant_{i}": returns["matrix"][:, i] for i in range(len(variants))}}
    )  # fmt: skip
    pbo = pbo_cscv(returns["matrix"]) if returns["matrix"].size else pbo_cscv(np.zeros((0, 0)))
    return SweepOutcome(results, folds, oos, frame, pbo, configs)


def variant_configs(base: Config, variants: list[dict[str, Any]]) -> list[Config]:
    """Every variant's config, all warmed up over the same days: the longest any needs.

    With ``backtest.warmup_days: auto`` a variant's warm-up follows its own lookbacks, so a
    lookback sweep would load a different window of bars for almost every point, and variants
    would start their signals from different histories. One warm-up for all (unless the base
    config or the grid sets it) gives every point the same bars and one data window to share.
    It is in each variant's config (``best.yaml`` of ``orch-bt sweep`` carries it), so a single
    run of a variant reproduces its row exactly.
    """
    from orchestra.strategies.warmup import warmup_days

    configs = [variant_config(base, v, f"variant {i}") for i, v in enumerate(variants)]
    if base.backtest.warmup_days != "auto" or any(
        c.backtest.warmup_days != "auto" for c in configs
    ):
        return configs
    days = max((warmup_days(c) for c in configs), default=0)
    return [
        variant_config(base, {**v, "backtest.warmup_days": days}, f"variant {i}")
        for i, v in enumerate(variants)
    ]


def _returns_matrix(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The variants' daily returns as a ``(T, N)`` matrix on the dates they all have."""
    if not rows:
        return {"dates": [], "matrix": np.zeros((0, 0))}
    common = set(rows[0]["_dates"])
    for r in rows[1:]:
        common &= set(r["_dates"])
    dates = sorted(common)
    cols = []
    for r in rows:
        index = {d: i for i, d in enumerate(r["_dates"])}
        cols.append(r["_returns"][[index[d] for d in dates]])
    return {"dates": dates, "matrix": np.column_stack(cols) if cols else np.zeros((0, 0))}


def fold_windows(start: dt.date, end: dt.date, train: int, test: int) -> list[tuple[dt.date, ...]]:
    """(train start, train end, test start, test end) per fold, stepping by ``test`` days.

    >>> fold_windows(dt.date(2024, 1, 1), dt.date(2024, 12, 31), 180, 90)[0]
    (datetime.date(2024, 1, 1), datetime.date(2024, 6, 28), datetime.date(2024, 6, 29), datetime.date(2024, 9, 26))
    """
    out: list[tuple[dt.date, ...]] = []
    t0 = start
    while True:
        train_end = t0 + dt.timedelta(days=train - 1)
        test_start = train_end + dt.timedelta(days=1)
        test_end = test_start + dt.timedelta(days=test - 1)
        if test_end > end:
            break
        out.append((t0, train_end, test_start, test_end))
        t0 = t0 + dt.timedelta(days=test)
    return out


def _fold_windows_of(base: Config, spec: SweepSpec) -> list[tuple[dt.date, ...]]:
    if not (spec.train_days and spec.test_days):
        return []
    windows = fold_windows(base.backtest.start, base.backtest.end, spec.train_days, spec.test_days)
    if not windows:
        raise ConfigError(
            base.source,
            [
                f"walk_forward: train_days + test_days ({spec.train_days + spec.test_days}) do "
                f"not fit in {base.backtest.start} → {base.backtest.end}"
            ],
        )
    return windows


def walk_forward(
    spec: SweepSpec,
    configs: list[Config],
    variants: list[dict[str, Any]],
    windows: list[tuple[dt.date, ...]],
    trained: list[dict[str, Any]],
    progress: Callable[[int], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Choose on each training window, measure on the test window that follows: the folds, and
    the stitched out-of-sample daily returns (``date, return, equity``). ``trained`` holds every
    fold's training runs, fold by fold in variant order (run in one batch with the grid)."""
    sign = -1.0 if spec.metric in LOWER_IS_BETTER else 1.0
    n = len(configs)
    chosen = []
    for k in range(len(windows)):
        train = trained[k * n : (k + 1) * n]
        scores = [sign * float(np.nan_to_num(r[spec.metric], nan=-np.inf)) for r in train]
        chosen.append(int(np.argmax(scores)))
    # the test runs, one per fold (few and short: in this process)
    tests = run_jobs(
        [(configs[best], c, d) for best, (_, _, c, d) in zip(chosen, windows, strict=True)],
        1,
        progress,
    )
    rows = []
    oos_dates: list[dt.date] = []
    oos_returns: list[np.ndarray] = []
    for k, ((a, b, c, d), best, test) in enumerate(zip(windows, chosen, tests, strict=True)):
        oos_dates.extend(test["_dates"])
        oos_returns.append(test["_returns"])
        rows.append(
            {
                "fold": k,
                "train": f"{a} → {b}",
                "test": f"{c} → {d}",
                "chosen_variant": best,
                "chosen": ", ".join(f"{p}={v}" for p, v in variants[best].items()),
                f"in_sample_{spec.metric}": trained[k * n + best][spec.metric],
                f"out_of_sample_{spec.metric}": test[spec.metric],
                "out_of_sample_return": test["total_return"],
            }
        )
    # the honest curve: the chosen variant of each fold on its test window, one after another
    # (each test window starts from fresh capital; its daily returns chain the folds)
    r = np.concatenate(oos_returns) if oos_returns else np.zeros(0)
    oos = pl.DataFrame({"date": oos_dates, "return": r, "equity": np.cumprod(1.0 + r)})
    return pl.DataFrame(rows), oos


def jobs_count(spec: SweepSpec, base: Config) -> int:
    n = len(expand(spec))
    if spec.train_days and spec.test_days:
        folds = len(
            fold_windows(base.backtest.start, base.backtest.end, spec.train_days, spec.test_days)
        )
        n += folds * (n + 1)
    return n
