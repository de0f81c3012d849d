"""``orch-bt``: the research command line (SPEC §12). Thin: parse, load, call the library, print.

User errors (bad config, bad data, unknown run directory) print readable messages and exit with
code 2, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's user-facing errors into messages and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # the error types are imported only when one is raised
            _user_error(exc)
            raise

    return wrapper


def _user_error(exc: Exception) -> None:
    """Print a user-facing error in one readable line (or its problems) and exit 2; return for
    anything else (a bug: its traceback is shown)."""
    from orchestra.live.lock import StoreError

    if isinstance(exc, StoreError):  # before the heavier imports: a refused lock is instant
        err.print("[bold red]state error[/]: ", end="", highlight=False)
        err.print(str(exc), highlight=False, markup=False)
        sys.exit(2)
    from orchestra.config import ConfigError
    from orchestra.data.ccxt_source import SourceUnavailable
    from orchestra.data.schema import DataError
    from orchestra.results.result import RunDirError
    from orchestra.runs import RunTargetError
    from orchestra.strategies.registry import StrategyError, StrategyNotFound

    if isinstance(exc, ConfigError):
        err.print(f"[bold red]config error[/] in {exc.source}:", highlight=False)
        for p in exc.problems:
            err.print(f"  • {p}", highlight=False, markup=False)
    elif isinstance(exc, DataError):
        err.print("[bold red]data error[/]:", highlight=False)
        err.print(str(exc), highlight=False, markup=False)
    elif isinstance(exc, (StrategyError, SourceUnavailable)):
        kind = "strategy error" if isinstance(exc, StrategyError) else "exchange error"
        err.print(f"[bold red]{kind}[/]: ", end="", highlight=False)
        err.print(str(exc), highlight=False, markup=False)
    elif isinstance(exc, RunTargetError):
        err.print("[bold red]run directory error[/]: ", end="", highlight=False)
        err.print(str(exc), highlight=False, markup=False)
    elif isinstance(exc, RunDirError):
        err.print("[bold red]run directory error[/]: ", end="", highlight=False)
        err.print(str(exc), highlight=False, markup=False)
    elif isinstance(exc, (StrategyNotFound, FileNotFoundError)):
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
    else:
        return
    sys.exit(2)


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _set_strategy_timeout(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    if value is not None:  # the environment carries it to sweep workers and child processes
        import os

        os.environ["ORCHESTRA_STRATEGY_TIMEOUT"] = repr(value)


strategy_timeout_option = click.option(
    "--strategy-timeout",
    type=click.FloatRange(min=0),
    callback=_set_strategy_timeout,
    expose_value=False,
    help="Seconds a user strategy may run in one call before the run stops with an error "
    "(default 600, or ORCHESTRA_STRATEGY_TIMEOUT; 0 = no limit).",
)


def _tag(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    import re

    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}", value):
        raise click.BadParameter(
            f"{value!r}: use letters, digits, '.', '_' or '-' (at most 40, it names a folder)"
        )
    return value


def _cold_start(quiet: bool, group: str = "bar-loop") -> None:
    """When the numba kernels are not compiled yet (once per checkout): say so, and compile the
    ``group`` kernels (see :func:`orchestra.precompile.start`) in a second process while
    this one loads data and computes signals; the engine waits for it before its first bar."""
    from orchestra import precompile

    if precompile.kernel_cached(precompile.GROUPS[group][0]):
        return
    if not quiet:  # measured (docs/benchmarks.md, C): ~8.5 s on 2 cores, ~16 s on one
        took = precompile.compile_estimate("~9 s", "~16 s")
        err.print(f"compiling the numba kernels once ({took}; later runs start at once)")
    precompile.start(group)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print the library's warnings (gaps filled, data range) as one readable line each."""
    err.print("[yellow]warning[/]: ", end="", highlight=False)
    err.print(str(message), highlight=False, markup=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="orchestra")
def main() -> None:
    """orchestra research backtester: run, validate, report, fetch data."""
    import warnings

    warnings.showwarning = _show_warning
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # numpy's 0/0 noise, not for users


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--html", "html_report", is_flag=True, help="Also write report.html (self-contained)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory (default runs/<config-stem>[-<tag>]-<hash8>/, the hash of the effective "
    "config: --start/--end give their own folder). A folder holding another run is never "
    "replaced.",
)
@click.option("--start", callback=_date, help="Override backtest.start (YYYY-MM-DD).")
@click.option("--end", callback=_date, help="Override backtest.end (YYYY-MM-DD).")
@click.option(
    "--tag",
    callback=_tag,
    help="A name for this run: in its folder name and summary.json (letters, digits, . _ -).",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary table.")
@strategy_timeout_option
@user_errors
def run(
    config: Path,
    html_report: bool,
    out_dir: Path | None,
    start: dt.date | None,
    end: dt.date | None,
    tag: str | None,
    quiet: bool,
) -> None:
    """Run the backtest of CONFIG, save the run directory and print the summary."""
    _cold_start(quiet)  # first: the second process compiles while this one imports and loads
    from orchestra import load_config, run_backtest
    from orchestra.engine import with_dates
    from orchestra.results.summary import print_summary
    from orchestra.runs import check_run_target

    cfg = with_dates(load_config(config), start, end)  # the effective config names the folder
    name = f"{config.stem}-{tag}" if tag else config.stem
    target = out_dir or Path("runs") / f"{name}-{cfg.config_hash[:8]}"
    check_run_target(target, cfg.config_hash)
    show = not quiet and sys.stderr.isatty()
    if show:
        with Progress(
            TextColumn("[bold]backtest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("bars"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("run", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = run_backtest(cfg, progress=progress)
    else:
        result = run_backtest(cfg)
    result.summary["tag"] = tag
    result.summary["config_source"] = str(config)
    result.summary["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result.save(target)
    if not quiet:
        print_summary(result, out)
    click.echo(f"run directory: {target}")
    if html_report:
        from orchestra.results.report import write_html

        path = write_html(result, target / "report.html", title=f"orchestra — {config.stem}")
        click.echo(f"HTML report: {path}")


@main.command("runs")
@click.argument("root", required=False, default="runs", type=click.Path(path_type=Path))
@user_errors
def runs_(root: Path) -> None:
    """List the runs under ROOT (default runs/): name, kind, created, config, tag, window,
    return, Sharpe, max drawdown; newest first."""
    from rich.table import Table

    from orchestra.runs import list_runs

    rows = list_runs(root)
    if not rows:
        click.echo(f"no runs under {root}")
        return
    table = Table(title=f"runs under {root}", box=None, pad_edge=False)
    for col in ("run", "kind", "created", "config", "tag", "window", "return", "Sharpe", "max DD"):
        table.add_column(col, justify="right" if col in ("return", "Sharpe", "max DD") else "left",
                         no_wrap=True)  # fmt: skip
    for r in rows:
        ret, sh, dd = r.get("return"), r.get("sharpe"), r.get("max_drawdown")
        table.add_row(
            r["run"], r["kind"], r.get("created", "").replace("T", " ")[:16],
            Path(r.get("config", "")).name, r.get("tag", ""), r.get("window", ""),
            f"{ret:+.1%}" if ret is not None else "",
            f"{sh:.2f}" if sh is not None else "",
            f"{dd:.1%}" if dd is not None else "",
        )  # fmt: skip
    wide = out if out.is_terminal else Console(soft_wrap=True, width=200)  # pipes: no cropping
    wide.print(table)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@user_errors
def validate(config: Path) -> None:
    """Check CONFIG and load and validate the data it uses; print a short summary."""
    import warnings

    from orchestra import load_config
    from orchestra.data import DataRangeWarning, load_bars
    from orchestra.strategies.warmup import warmup_days

    cfg = load_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataRangeWarning)  # printed below, with the range used
        loaded = load_bars(cfg)
    bars = loaded.bars
    out.print(f"[green]✓[/] {config}: valid (hash {cfg.config_hash[:8]})")
    out.print(
        f"  data: {loaded.source_label}, timeframe {cfg.data.timeframe}, clock {cfg.clock_timeframe}"
    )
    first = bars["timestamp"].min()
    last = bars["timestamp"].max()
    assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
    used_start = max(cfg.backtest.start, first.date())
    used_end = min(cfg.backtest.end, last.date())
    out.print(
        f"  backtest: {cfg.backtest.start} → {cfg.backtest.end}, warm-up {warmup_days(cfg)} days, execution {cfg.backtest.execution}"
    )
    out.print(
        f"  range used: {used_start} → {used_end} (data {first.date()} → {last.date()})",
        highlight=False,
    )
    for note in loaded.notes:
        out.print(f"  [yellow]warning[/]: {note}", highlight=False)
    for pod in cfg.pods:
        out.print(
            f"  pod {pod.pod_id}: {pod.strategy} on {', '.join(pod.symbols)} ({pod.timeframe}), fraction {pod.initial_fraction:.0%} [{pod.min_fraction:.0%}, {pod.max_fraction:.0%}], {pod.initial_state}"
        )
    import polars as pl

    rng = bars.group_by("symbol", maintain_order=True).agg(
        pl.col("timestamp").min().alias("first"),
        pl.col("timestamp").max().alias("last"),
        pl.len().alias("bars"),
    )
    for r in rng.iter_rows(named=True):
        out.print(f"  {r['symbol']}: {r['first']} → {r['last']} ({r['bars']} bars)")
    if loaded.gaps.total:
        out.print(f"  [yellow]gaps filled[/]: {loaded.gaps.total}")
    from orchestra.engine.build import prepare, threshold_warnings

    for line in threshold_warnings(cfg, prepare(cfg, loaded=loaded)):
        out.print(f"  [yellow]warning[/]: {line}", highlight=False)


@main.command()
@click.argument(
    "run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--html",
    "html_report",
    is_flag=True,
    help="Write report.html into RUN_DIR (with several runs: compare.html into --out).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Folder for compare.html when several runs are given.",
)
@click.option("--pod", "pod", default=None, help="Show one pod only.")
@click.option(
    "--daily",
    "daily",
    callback=_date,
    default=None,
    help="Print the daily report of this UTC day (YYYY-MM-DD), as the live loop sends it.",
)
@user_errors
def report(
    run_dirs: tuple[Path, ...],
    html_report: bool,
    out_dir: Path,
    pod: str | None,
    daily: dt.date | None,
) -> None:
    """Print the summary of a saved run (and optionally write its HTML report).

    With several RUN_DIRs: a side-by-side comparison (metrics table; with --html, compare.html
    with their equity rebased to 1, drawdowns and metrics).
    """
    from orchestra.results.summary import print_summary
    from orchestra.runs import load_run

    if len(run_dirs) > 1:
        if pod is not None or daily is not None:
            raise click.UsageError("--pod and --daily take one run directory")
        _compare(run_dirs, html_report, out_dir)
        return
    run_dir = run_dirs[0]
    result = load_run(run_dir)
    if daily is not None:
        from orchestra.monitoring import day_view_from_result, format_daily_report

        try:
            view = day_view_from_result(result, daily)
        except ValueError as exc:
            err.print(f"[bold red]error[/]: --daily {daily}: {exc}", highlight=False)
            sys.exit(2)
        click.echo(format_daily_report(view))
        return
    pods = result.metrics["entity"].to_list()[1:]
    if pod is not None and pod not in pods:
        err.print(f"[bold red]error[/]: no pod {pod!r} in {run_dir}; pods: {', '.join(pods)}")
        sys.exit(2)
    print_summary(result, out, pod=pod)
    if html_report:
        from orchestra.results.report import write_html

        if pod is None:
            path = write_html(result, run_dir / "report.html")
        else:
            path = write_html(
                result.for_pod(pod),
                run_dir / f"report-{pod}.html",
                title=f"orchestra — pod {pod} ({run_dir.name})",
            )
        click.echo(f"HTML report: {path}")


def _compare(run_dirs: tuple[Path, ...], html_report: bool, out_dir: Path) -> None:
    from rich.table import Table

    from orchestra.results.report import compare_table
    from orchestra.runs import load_run

    results = {_run_label(d, run_dirs): load_run(d) for d in run_dirs}
    table = compare_table(results)
    t = Table(title="Runs compared (account)", title_justify="left")  # one column per run
    t.add_column("")
    for label in table["run"].to_list():
        t.add_column(label, justify="right")
    for field in table.columns[1:]:
        t.add_row(field, *[str(v) for v in table[field].to_list()])
    out.print(t)
    if html_report:
        from orchestra.results.report import write_compare_html

        path = write_compare_html(results, out_dir / "compare.html")
        click.echo(f"HTML comparison: {path}")


def _run_label(d: Path, all_dirs: tuple[Path, ...]) -> str:
    """The run's folder name, or its path when two runs share a name."""
    names = [x.name for x in all_dirs]
    return d.name if names.count(d.name) == 1 else str(d)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--grid",
    "grid_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML: grid / random / walk_forward (see docs/sweeps.md).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes running variants: this one and N-1 workers (loky), or Ray CPUs.",
)
@click.option(
    "--backend",
    type=click.Choice(["loky", "ray"]),
    default="loky",
    show_default=True,
    help="loky: local processes; ray: the Ray cluster at RAY_ADDRESS, else a local Ray.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for results (default runs/sweep-<config-stem>-<grid-stem>/).",
)
@click.option(
    "--keep",
    default="0",
    show_default=True,
    callback=lambda ctx, param, v: _keep(v),
    help="Save the full runs (every frame, as `orch-bt run` would) of the top N variants, or "
    "all, under the sweep folder; the others are measured from arrays only.",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no tables.")
@strategy_timeout_option
@user_errors
def sweep(
    config: Path,
    grid_file: Path,
    workers: int,
    backend: str,
    out_dir: Path | None,
    keep: int | None,
    quiet: bool,
) -> None:
    """Run CONFIG over a grid (and random draws) of settings; rank them; walk-forward."""
    _cold_start(quiet)  # first: the second process compiles while this one imports and loads
    from orchestra import load_config
    from orchestra.sweep import jobs_count, load_spec, start_workers, stop_workers

    start_workers(workers, backend)  # they start and import while this process loads
    from orchestra.sweep import sweep as run_all
    from orchestra.sweep_report import format_frame, write_ranking

    cfg = load_config(config)
    spec = load_spec(grid_file)
    from orchestra import precompile

    precompile.wait()  # before the workers start: they load the kernel instead of each compiling it
    total = jobs_count(spec, cfg)
    show = not quiet and sys.stderr.isatty()
    with Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("backtests"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not show,
    ) as bar:
        task = bar.add_task("sweep", total=total)
        outcome = run_all(cfg, spec, workers, lambda n: bar.advance(task, n), backend)
    stop_workers()  # they exit while the reports are written
    results, folds = outcome.results, outcome.folds
    target = out_dir or Path("runs") / f"sweep-{config.stem}-{grid_file.stem}"
    target.mkdir(parents=True, exist_ok=True)
    results.write_parquet(target / "results.parquet")
    outcome.returns.write_parquet(target / "returns.parquet")
    if folds is not None and outcome.oos is not None:
        folds.write_parquet(target / "walk_forward.parquet")
        outcome.oos.write_parquet(target / "walk_forward_oos.parquet")
    write_ranking(outcome, spec, config.name, target / "ranking.html")
    best = outcome.best_config()
    if best is not None:  # `orch-bt run best.yaml` reproduces the top row exactly
        import yaml

        header = (
            f"# The top variant by {spec.metric} of `orch-bt sweep {config} --grid "
            f"{grid_file}`, as it ran\n# (every variant warms up over the same days): "
            "`orch-bt run best.yaml` reproduces its row.\n"
        )
        body = yaml.safe_dump(best.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        (target / "best.yaml").write_text(header + body, encoding="utf-8")
    for path in _keep_runs(outcome, keep, target):
        click.echo(f"kept run: {path}")
    if not quiet:
        params = [c for c in results.columns if "." in c]
        shown = ["variant", *params, spec.metric, "deflated_sharpe", "total_return", "max_drawdown"]
        _print_frame(
            format_frame(results.head(10).select(list(dict.fromkeys(shown))), short=True),
            f"Top variants by {spec.metric} (of {results.height})",
        )
        pbo = outcome.pbo["pbo"]
        out.print(
            f"probability of backtest overfitting (CSCV, {outcome.pbo['blocks']:.0f} blocks): "
            f"{pbo:.0%}"
            if math.isfinite(pbo)
            else "probability of backtest overfitting: n/a (fewer than 2 variants)",
            highlight=False,
        )
        if folds is not None:
            _print_frame(
                format_frame(folds.drop("chosen", "train")),
                "Walk-forward: chosen on the training window, measured on the next test window",
            )
            out.print(
                f"stitched out-of-sample Sharpe: {outcome.oos_sharpe:.2f} "
                f"({outcome.oos.height if outcome.oos is not None else 0} days)",
                highlight=False,
            )
    click.echo(
        f"sweep results: {target} (results.parquet, returns.parquet, ranking.html, best.yaml)"
    )


def _keep(value: str) -> int | None:
    """``--keep``: a whole number ≥ 0, or ``all`` (None)."""
    if value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise click.BadParameter(f"{value!r}: give a whole number ≥ 0 or all")
    return n


def _keep_runs(outcome, keep: int | None, target: Path) -> list[Path]:
    """The top ``keep`` variants (all with None) run in full and saved as run directories
    ``<target>/variant-<i>-<hash8>/`` (the same config's folder is rewritten; another never)."""
    from orchestra.engine import run_backtest
    from orchestra.runs import check_run_target

    order = [int(v) for v in outcome.results["variant"]]
    saved = []
    for i in order if keep is None else order[:keep]:
        cfg = outcome.configs[i]
        path = target / f"variant-{i}-{cfg.config_hash[:8]}"
        check_run_target(path, cfg.config_hash)
        run_backtest(cfg).save(path)
        saved.append(path)
    return saved


def _print_frame(frame, title: str) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in frame.columns:
        t.add_column(c, justify="right", overflow="fold")
    for row in frame.iter_rows():
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    wide = out if out.is_terminal else Console(soft_wrap=True, width=200)  # pipes: no cropping
    wide.print(t)


def _advance(bar: Progress, task: Any, _symbol: str, n: int) -> None:
    bar.advance(task, n)


@main.group()
def data() -> None:
    """Market data commands."""


@data.command("fetch")
@click.option("--exchange", required=True, help="ccxt exchange id, e.g. binance.")
@click.option("--symbols", required=True, help="Comma-separated, e.g. BTC/USDT,ETH/USDT.")
@click.option("--timeframe", required=True, help="e.g. 1d, 4h, 1h.")
@click.option("--since", required=True, callback=_date, help="First day (YYYY-MM-DD).")
@click.option("--until", callback=_date, default=None, help="Last day, inclusive (default: now).")
@click.option("--market", type=click.Choice(["spot", "swap"]), default="spot", show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    show_default=True,
    help="Folder for BTC-USDT_1d.parquet files (the files source).",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("~/.cache/orchestra"),
    show_default=True,
)
@user_errors
def fetch(
    exchange: str,
    symbols: str,
    timeframe: str,
    since: dt.date,
    until: dt.date | None,
    market: str,
    out_dir: Path,
    cache: Path,
) -> None:
    """Download bars with ccxt into the cache and write one file per symbol to --out."""
    from orchestra.data.ccxt_source import fetch_cached, make_exchange
    from orchestra.data.files import write_files
    from orchestra.data.schema import validate_bars
    from orchestra.timeframes import DAY_MS, TimeframeError, epoch_ms, timeframe_ms

    try:
        step = timeframe_ms(timeframe)
    except TimeframeError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeframe") from None
    syms = [s.strip() for s in symbols.split(",") if s.strip()]
    ex = make_exchange(exchange, market)
    start = epoch_ms(since)
    stop = epoch_ms(until) + DAY_MS if until else None
    out_dir.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bars"),
        console=err,
        disable=not sys.stderr.isatty(),
    ) as bar:
        for sym in syms:
            import time

            end_ms = stop or int(time.time() * 1000)
            task = bar.add_task(sym, total=max((end_ms - start) // step, 1))
            frame = fetch_cached(
                ex,
                sym,
                timeframe,
                start,
                cache,
                stop,
                market=market,
                progress=functools.partial(_advance, bar, task),
            )
            bar.update(task, completed=frame.height)
            frame, _ = validate_bars(frame, timeframe, "ffill", where=f"{exchange} {sym}")
            (path,) = write_files(frame, out_dir, timeframe)
            click.echo(f"{sym}: {frame.height} bars → {path}")


@data.command("export")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for BTC-USDT_1d.parquet files (the files source; orch-live --replay reads it).",
)
@user_errors
def export(config: Path, out_dir: Path) -> None:
    """Write the bars CONFIG uses (warm-up included) as a files folder.

    With it, `orch-live --paper CONFIG --replay FOLDER` replays exactly the bars of
    `orch-bt run CONFIG`, whatever CONFIG's source (synthetic, files or ccxt).
    """
    from orchestra import load_config
    from orchestra.data import load_bars
    from orchestra.data.files import write_files

    cfg = load_config(config)
    bars = load_bars(cfg).bars
    for path in write_files(bars, out_dir, cfg.data.timeframe):
        click.echo(f"→ {path}")


if __name__ == "__main__":  # pragma: no cover
    main()


def entry() -> None:
    """The ``orch-bt`` console script: :func:`main`, then an exit that skips collecting the
    process's objects.

    A finished run leaves ~0.3 s of interpreter shutdown behind it (the reference cycles of
    cvxpy's expression trees, numba's dispatchers and polars' frames, collected one by one).
    ``gc.freeze()`` moves every live object to the permanent generation, which the collection at
    shutdown skips; everything a command writes is closed by then (files are written inside
    ``with`` blocks and renamed into place), and atexit handlers still run. Tests call
    :func:`main` through click's runner, without this.
    """
    import gc

    try:
        main()
    finally:
        gc.freeze()
