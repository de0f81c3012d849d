"""``orch-live``: the live adapter's command line (SPEC §12, §13). Thin: parse, open, loop, print.

* ``orch-live --paper CONFIG [--replay FOLDER] [--state DIR]`` — paper trading: bar by bar through
  the backtest's driver, state committed after every bar; run it again to resume.
* ``orch-live status [--state DIR]`` — pods, states, fractions, P&L, last bar, alerts.

User errors exit with code 2 and one readable message. Ctrl-C (or SIGTERM) finishes and commits
the bar in flight, then stops (exit 130 / 143); the same command resumes.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from orchestra.cli.bt import (
    _cold_start,
    _show_warning,
    err,
    out,
    strategy_timeout_option,
    user_errors,
)

STATE_ROOT = Path("runs")


def _default_state(config: Path) -> Path:
    return STATE_ROOT / f"live-{config.stem}"


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--paper",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Paper-trade CONFIG (fills like the backtest; no orders leave the machine).",
)
@click.option(
    "--live",
    "live_config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trade CONFIG with real orders through ccxt (keys from ORCHESTRA_API_KEY / "
    "ORCHESTRA_API_SECRET; needs --i-understand-this-trades-real-money).",
)
@click.option(
    "--i-understand-this-trades-real-money",
    "confirmed",
    is_flag=True,
    help="Required with --live.",
)
@click.option(
    "--rebaseline",
    is_flag=True,
    help="With --live: accept the exchange balances as they are now and lift a "
    "reconciliation halt.",
)
@click.option(
    "--replay",
    type=click.Path(file_okay=False, path_type=Path),
    help="Replay the bars of a files folder (BTC-USDT_1d.parquet, ...) from backtest.start to "
    "backtest.end instead of polling the exchange.",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory (default runs/live-<config-stem>/); also a run directory for orch-bt "
    "report.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
@click.option("--max-bars", type=click.IntRange(min=1), help="Stop after this many bars.")
@click.option(
    "--paper-slippage-bps",
    type=click.FloatRange(min=0),
    default=None,
    help="Paper: fill every order this many bps worse than the model (and measure the "
    "live–model gap against the model's fills).",
)
@click.option("--quiet", is_flag=True, help="No progress bar, no per-bar lines, no summary.")
@strategy_timeout_option
@click.version_option(package_name="orchestra")
@click.pass_context
@user_errors
def main(
    ctx: click.Context,
    config: Path | None,
    live_config: Path | None,
    confirmed: bool,
    rebaseline: bool,
    replay: Path | None,
    state_dir: Path | None,
    metrics_port: int | None,
    max_bars: int | None,
    quiet: bool,
    paper_slippage_bps: float | None,
) -> None:
    """orchestra live adapter: paper trading bar by bar with crash-safe state.

    \b
    orch-live --paper CONFIG [--replay FOLDER] [--state DIR] [--metrics-port N]
    orch-live --live CONFIG --i-understand-this-trades-real-money [--rebaseline] [...]
    orch-live status [--state DIR]

    Discord: ORCHESTRA_DISCORD_WEBHOOK (or one per channel: ..._ALERTS, ..._TRADES, ..._DAILY).
    """
    import warnings

    warnings.showwarning = _show_warning
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if ctx.invoked_subcommand is not None:
        if config is not None or live_config is not None:
            raise click.UsageError("--paper/--live and a subcommand do not go together")
        return
    if config is not None and live_config is not None:
        raise click.UsageError("give --paper or --live, not both")
    if live_config is not None:
        _live(live_config, confirmed, rebaseline, replay, state_dir, metrics_port, max_bars, quiet)
        return
    if config is None:
        click.echo(ctx.get_help())
        err.print("[bold red]error[/]: give --paper CONFIG (or a subcommand, e.g. status)")
        sys.exit(2)
    _paper(
        config,
        replay,
        state_dir or _default_state(config),
        metrics_port,
        max_bars,
        quiet,
        paper_slippage_bps,
    )


def _lock(state_dir: Path):
    """The state directory's writer lock, taken before loading data (see StateLock)."""
    from orchestra.live.lock import StateLock

    state_dir.mkdir(parents=True, exist_ok=True)
    return StateLock(state_dir)


def _check_venue(cfg) -> None:
    """Spot is long-only: a config whose pods could go short or lever is a config error."""
    from orchestra.config import ConfigError, venue_problems

    problems = venue_problems(cfg)
    if problems:
        raise ConfigError(cfg.source, problems)


def _refuse(message: str) -> None:
    err.print(f"[bold red]refusing to trade[/]: {message}", highlight=False)
    sys.exit(2)


def _live(
    config: Path,
    confirmed: bool,
    rebaseline: bool,
    replay: Path | None,
    state_dir: Path | None,
    metrics_port: int | None,
    max_bars: int | None,
    quiet: bool,
) -> None:
    """Real orders: every safety check first (keys, confirmation, a valid ccxt config)."""
    from orchestra import load_config
    from orchestra.live.trading import KEY_ENV, SECRET_ENV, keys_from_env

    if replay is not None:
        _refuse("--replay is for paper trading; live trading polls the exchange")
    try:
        key, secret = keys_from_env()
    except KeyError as exc:
        _refuse(f"no API key: set {exc.args[0]} in the environment ({KEY_ENV}, {SECRET_ENV})")
    if not confirmed:
        _refuse("live trading sends real orders: add --i-understand-this-trades-real-money")
    cfg = load_config(config)  # a config error exits here with its messages
    _check_venue(cfg)
    if cfg.data.market == "swap" and not cfg.portfolio.funding:
        _refuse(
            f"{config}: portfolio.funding is false, but perpetuals charge funding: set "
            "portfolio.funding: true so the books carry what the exchange pays and charges"
        )
    if cfg.data.source != "ccxt":
        _refuse(
            f"{config}: data.source is {cfg.data.source!r}; live trading needs data.source: ccxt"
        )
    _cold_start(quiet, "live")  # live trading steps each bar around the exchange's fills
    _trade(cfg, config, key, secret, rebaseline, state_dir, metrics_port, max_bars, quiet)


def _trade(cfg, config, key, secret, rebaseline, state_dir, metrics_port, max_bars, quiet):
    from orchestra.config import parse_config
    from orchestra.data.ccxt_source import make_exchange
    from orchestra.live.feeds import PollFeed
    from orchestra.live.session import LiveSession
    from orchestra.live.trading import CcxtBroker

    raw = cfg.model_dump(mode="json")
    raw["backtest"]["execution"] = "close"  # live orders go out at the signal bar's close
    live_cfg = parse_config(raw, source=cfg.source)
    state = state_dir or STATE_ROOT / f"trade-{config.stem}"
    _lock(state)  # held until the process exits
    stop = _GracefulStop()
    feed = PollFeed(live_cfg, sleep=stop.wait, stopped=stop.is_set)
    session = LiveSession.open(
        live_cfg, state, feed.label, feed.start_ms, feed.warmup, identity=cfg, mode="live"
    )
    exchange = make_exchange(cfg.data.exchange, cfg.data.market, apiKey=key, secret=secret)
    exchange.load_markets()
    from orchestra.live.trading import TradingSetupError

    broker = CcxtBroker(
        exchange, session.store, str(session.meta["run_id"]), market=cfg.data.market
    )
    try:
        problems = session.start_trading(broker, rebaseline)
    except TradingSetupError as exc:
        session.close()
        _refuse(str(exc))
    for p in problems:
        err.print(f"[bold red]HALTED[/] reconciliation: {p}", highlight=False)
    session.monitor = _monitor(live_cfg, session, state, metrics_port, quiet)
    if not quiet:
        err.print(f"orch-live LIVE on {feed.label}; state {state}")
    _run_loop(session, feed, stop, max_bars, quiet)
    _finish(session, stop)


def _run_loop(session, feed, stop, max_bars: int | None, quiet: bool, replay_total=None) -> None:
    """The bar loop of paper and live alike: from the bar after the last committed one; SIGINT /
    SIGTERM stop it after the bar in flight (``stop.signum`` says which)."""
    import itertools

    from orchestra.timeframes import timeframe_ms

    step = timeframe_ms(session.config.clock_timeframe)
    last = session.last_ts if session.last_ts is not None else session.start_ms - step
    bars = feed.bars_after(last)
    if max_bars is not None:
        bars = itertools.islice(bars, max_bars)
    stop.install()
    try:
        if replay_total is not None:
            _replay(session, bars, replay_total, quiet, stop.is_set)
        else:
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
            session.run(bars, on_bar=None if quiet else _print_bar, should_stop=stop.is_set)
    except KeyboardInterrupt:  # a second Ctrl-C: the bar in flight was not committed
        stop.signum = signal.SIGINT
    finally:
        stop.uninstall()


def _finish(session, stop) -> None:
    """Close the monitor and the store; after a signal, say where to resume and exit 128+N."""
    session.monitor.close(flush_s=2.0 if stop.signum is not None else 5.0)
    session.close()
    if stop.signum is not None:
        err.print(
            f"stopped after bar {session.next_bar - 1} ({_iso(session.last_ts)}); "
            "run the same command to resume"
        )
        sys.exit(128 + int(stop.signum))


def _monitor(cfg, session, state_dir: Path, metrics_port: int | None, quiet: bool):
    import os

    from orchestra import __version__
    from orchestra.monitoring import Monitor
    from orchestra.monitoring.notify import CHANNEL_ENVS, WEBHOOK_ENV, WebhookSender, webhook_urls

    metrics = None
    if metrics_port is not None:
        from orchestra.monitoring.prom import LiveMetrics

        metrics = LiveMetrics(cfg, [p.pod_id for p in cfg.pods], __version__)
        try:
            metrics.serve(metrics_port)
        except OSError as exc:
            raise click.UsageError(f"--metrics-port {metrics_port}: {exc.strerror}") from None
        if not quiet:
            err.print(f"metrics: http://127.0.0.1:{metrics_port}/metrics")
    sender = None
    urls = webhook_urls(dict(os.environ))
    if urls:
        sender = WebhookSender(state_dir / "live.sqlite", urls, str(session.meta["run_id"]))
        sender.start()
        if not quiet:
            own = [c for c in CHANNEL_ENVS if os.environ.get(CHANNEL_ENVS[c], "").strip()]
            shared = [c for c in urls if c not in own]
            where = ", ".join(
                [f"{c} from ${CHANNEL_ENVS[c]}" for c in own]
                + ([f"{'/'.join(shared)} from ${WEBHOOK_ENV}"] if shared else [])
            )
            err.print(f"Discord: {where}")
    monitor = Monitor(metrics, sender)
    monitor.start(session)
    return monitor


def _paper(
    config: Path,
    replay: Path | None,
    state_dir: Path,
    metrics_port: int | None,
    max_bars: int | None,
    quiet: bool,
    slippage_bps: float | None = None,
) -> None:
    _lock(state_dir)  # a second process on the directory is refused before any work (held to exit)
    from orchestra import load_config
    from orchestra.live.feeds import PollFeed, ReplayFeed
    from orchestra.live.session import LiveSession

    cfg = load_config(config)
    _check_venue(cfg)
    _cold_start(quiet)
    if replay is not None and not replay.is_dir():
        raise FileNotFoundError(f"--replay {replay}: no such folder")
    stop = _GracefulStop()
    feed: ReplayFeed | PollFeed = (
        ReplayFeed(cfg, replay)
        if replay is not None
        else PollFeed(cfg, sleep=stop.wait, stopped=stop.is_set)
    )
    broker = None
    if slippage_bps is not None:
        from orchestra.live.broker import SlippagePaperBroker

        p = cfg.portfolio
        broker = SlippagePaperBroker(p.cost_bps / 1e4, p.slippage_bps / 1e4, slippage_bps)
    session = LiveSession.open(
        feed.config, state_dir, feed.label, feed.start_ms, feed.warmup, identity=cfg, broker=broker
    )
    try:
        session.monitor = _monitor(cfg, session, state_dir, metrics_port, quiet)
    except BaseException:
        session.close()
        raise
    resumed = session.next_bar
    if not quiet:
        verb = f"resuming after bar {resumed} ({_iso(session.last_ts)})" if resumed else "starting"
        err.print(f"orch-live paper: {verb}; source {feed.label}; state {state_dir}")
    total = feed.n_bars - resumed if isinstance(feed, ReplayFeed) else None
    _run_loop(session, feed, stop, max_bars, quiet, total)
    _finish(session, stop)
    if session.engine is None:
        err.print("no new bar to process")
        return
    if not quiet:
        from orchestra.results.summary import print_summary
        from orchestra.runs import load_run

        print_summary(load_run(state_dir), out)
        ms = sorted(session.bar_seconds)
        if ms:
            out.print(
                f"bars this session: {len(ms)}, median {1e3 * ms[len(ms) // 2]:.1f} ms/bar "
                f"(build inputs + step + commit)"
            )
    click.echo(f"state directory: {state_dir} (orch-bt report {state_dir} --html)")


class _GracefulStop(threading.Event):
    """SIGINT / SIGTERM: finish the bar in flight, commit it, then stop. A second Ctrl-C stops at
    once (the uncommitted bar is redone on resume)."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        self.set()
        err.print("stopping after the bar in flight (Ctrl-C again to stop at once)")

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _replay(session, bars, total: int, quiet: bool, should_stop) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    if quiet or not sys.stderr.isatty():
        session.run(bars, should_stop=should_stop)
        return
    with Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bars · {task.fields[when]}"),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=max(total, 0), when="")
        session.run(
            bars,
            on_bar=lambda s: bar.update(task, advance=1, when=_iso(s.last_ts)),
            should_stop=should_stop,
        )


def _print_bar(session) -> None:
    eng = session.engine
    t = eng.next_bar - 1
    row = eng.rows(t, t + 1)
    out.print(
        f"{_iso(session.last_ts)}  equity {float(row['equity'][0]):,.2f}  unallocated "
        f"{float(row['unallocated'][0]):,.2f}",
        highlight=False,
    )


@main.command()
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory (default: the only runs/live-* directory).",
)
@user_errors
def status(state_dir: Path | None) -> None:
    """Pods, states, fractions, P&L, the last bar and recent alerts of a live run."""
    from rich.table import Table

    from orchestra.live.reader import load_live_result
    from orchestra.live.store import Store, StoreError
    from orchestra.results.summary import pod_table

    if state_dir is None:
        found = sorted(
            p
            for pattern in ("live-*", "trade-*")
            for p in STATE_ROOT.glob(pattern)
            if (p / "live.sqlite").is_file()
        )
        if len(found) != 1:
            listed = ", ".join(str(p) for p in found) or "none"
            raise StoreError(f"give --state DIR (live state directories under runs/: {listed})")
        state_dir = found[0]
    with Store(state_dir, readonly=True) as store:
        committed = store.load()
    meta = committed.meta
    head = Table.grid(padding=(0, 2))
    head.add_row("run", f"{meta.get('run_id')} ({meta.get('mode')}), started {meta.get('created')}")
    head.add_row("config", f"{meta.get('config_source')} (hash {str(meta.get('config_hash'))[:8]})")
    head.add_row("source", str(meta.get("source")))
    if committed.snapshot is None:
        out.print(head)
        out.print("no bar processed yet")
        return
    result = load_live_result(state_dir)
    snap = committed.snapshot
    last = committed.journal[-1]
    eq = result.equity
    capital = float(result.summary.get("capital", 0.0))
    equity = float(eq["equity"][-1])
    head.add_row("last bar", f"{_iso(int(last['ts']))} (bar {int(last['end_bar']) - 1})")
    head.add_row("equity", f"{equity:,.2f} ({equity / capital - 1:+.2%} since start)")
    halted = int(snap["state.halted"][0])
    breaker = int(snap["state.breaker"][0])
    flags = []
    if halted:
        flags.append("HALTED (" + ("drawdown flatten" if halted == 1 else "account bust") + ")")
    if breaker:
        flags.append("daily-loss breaker " + ("pending" if breaker == 1 else "blocking today"))
    if int(snap["state.derisk"][0]):
        flags.append("de-risked (portfolio drawdown)")
    halt = meta.get("halt")
    if halt:
        flags.insert(0, f"HALTED (reconciliation: {halt['reason']})")
    head.add_row("trading", ", ".join(flags) or "normal")
    margin = meta.get("margin")
    if margin:  # perpetuals: the exchange's margin ratio and liquidation prices
        liq = ", ".join(f"{s} {p:,.6g}" for s, p in margin.get("liquidation_price", {}).items())
        head.add_row(
            "margin",
            f"ratio {margin['ratio']:.2%} (maintenance / margin balance "
            f"{margin.get('balance', 0.0):,.2f}); liquidation: {liq or 'no position'}",
        )
    with Store(state_dir, readonly=True) as store:
        counts: dict[str, int] = {}
        for m in store.outbox():
            counts[m["status"]] = counts.get(m["status"], 0) + 1
        orders: dict[str, int] = {}
        for o in store.orders():
            orders[o["status"]] = orders.get(o["status"], 0) + 1
    if counts:
        why = {"unsent": "unsent (no webhook was set: ORCHESTRA_DISCORD_WEBHOOK)"}
        head.add_row(
            "notifications", ", ".join(f"{n} {why.get(s, s)}" for s, n in sorted(counts.items()))
        )
    if orders:
        head.add_row("orders", ", ".join(f"{n} {s}" for s, n in sorted(orders.items())))
    out.print(head)
    out.print(pod_table(result))
    alerts = result.alerts.tail(5)
    if alerts.height:
        table = Table(title="Recent alerts", title_justify="left")
        for col in ("time", "severity", "type", "message"):
            table.add_column(col)
        for r in alerts.iter_rows(named=True):
            table.add_row(
                str(r["timestamp"])[:16], r["severity"], r["alert_type"], r["message"] or ""
            )
        out.print(table)
    else:
        out.print("no alerts")


if __name__ == "__main__":  # pragma: no cover
    main()
