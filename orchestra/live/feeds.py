"""Where the live loop's bars come from: a replay folder, or closed bars polled through ccxt.

A feed tells the session where the run starts (``start_ms``, the open of its first traded clock
bar), gives the warm-up history before it (``warmup()``), and yields ``(clock_ts, bars)`` for
each clock bar after a given one: the market rows (at ``data.timeframe``) of the clock bar opened
at ``clock_ts``, complete.

* :class:`ReplayFeed` — a files folder (SPEC §5.2 layout) replayed bar by bar from
  ``backtest.start`` to ``backtest.end``: the bars ``orch-bt run`` uses for the same config and
  folder, so the replay equals the backtest.
* :class:`PollFeed` — paper trading on the config's ccxt exchange (public endpoints, no keys).
  The first traded bar is the one in progress at start-up; each bar is fetched once it has closed
  (plus ``delay_s``), retried with backoff while the exchange is unreachable or the bar is not
  there yet. A symbol still missing after ``max_wait_s`` gets a flat bar at its last close and
  zero volume (``data.gaps: ffill``'s rule; a warning line says so), so the history the signals
  see never changes afterwards. After downtime, the missed closed bars are processed at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from orchestra.config import Config, parse_config
from orchestra.data.schema import BAR_COLUMNS, validate_bars
from orchestra.timeframes import DAY_MS, epoch_ms, polars_every, timeframe_ms

log = logging.getLogger("orchestra.live")


def anchor_ms(config: Config, start_ms: int) -> int:
    """The first warm-up day's midnight (the anchored history starts there)."""
    from orchestra.strategies.warmup import warmup_days

    return (start_ms // DAY_MS - warmup_days(config)) * DAY_MS


def clock_label(config: Config) -> pl.Expr:
    """The open time of the clock bar a data bar belongs to (the resampler's label)."""
    return pl.col("timestamp").dt.truncate(polars_every(config.clock_timeframe))


def replay_config(config: Config, directory: str | Path) -> Config:
    """``config`` with its data read from the files folder ``directory``."""
    raw = config.model_dump(mode="json")
    raw["data"].update({"source": "files", "path": str(directory)})
    return parse_config(raw, source=f"{config.source} (replaying {directory})")


class ReplayFeed:
    """The bars of a files folder, replayed from ``backtest.start`` to ``backtest.end``."""

    def __init__(self, config: Config, directory: str | Path):
        from orchestra.data import load_bars

        self.directory = Path(directory).resolve()
        self.config = replay_config(config, self.directory)
        self.label = f"replay: {self.directory}"
        self.start_ms = epoch_ms(config.backtest.start)
        loaded = load_bars(self.config)
        self.notes = loaded.notes
        self.bars = loaded.bars.with_columns(clock_label(config).alias("_clock"))

    def warmup(self) -> pl.DataFrame:
        start = dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC)
        return self.bars.filter(pl.col("timestamp") < start).select(BAR_COLUMNS)

    @property
    def n_bars(self) -> int:
        """Clock bars to replay."""
        start = dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC)
        return int(self.bars.filter(pl.col("_clock") >= start)["_clock"].n_unique())

    def bars_after(self, last_ts: int) -> Iterator[tuple[int, pl.DataFrame]]:
        """The clock bars opened after ``last_ts`` (``start_ms - 1`` for all of them)."""
        start = dt.datetime.fromtimestamp((last_ts + 1) / 1000, dt.UTC)
        rest = self.bars.filter(pl.col("_clock") >= start)
        for (label,), part in rest.partition_by(
            "_clock", as_dict=True, maintain_order=True
        ).items():
            yield epoch_ms(label), part.select(BAR_COLUMNS)


class PollFeed:
    """Closed bars of the config's ccxt exchange, polled on the bar clock."""

    def __init__(
        self,
        config: Config,
        exchange: Any = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
        delay_s: float = 2.0,
        max_wait_s: float = 300.0,
        backoff_s: float = 5.0,
        stopped: Callable[[], bool] = lambda: False,
    ):
        d = config.data
        if d.source != "ccxt":
            from orchestra.config import ConfigError

            raise ConfigError(
                config.source,
                [
                    f"data.source is {d.source!r}: paper trading without --replay polls an "
                    "exchange; set data.source: ccxt (and data.exchange), or pass --replay FOLDER"
                ],
            )
        if exchange is None:
            from orchestra.data.ccxt_source import make_exchange

            exchange = make_exchange(d.exchange, d.market)
        self.config = config
        self.exchange = exchange
        self.clock, self.sleep = clock, sleep
        self.delay_s, self.max_wait_s, self.backoff_s = delay_s, max_wait_s, backoff_s
        self.stopped = stopped  # a shutdown was requested: stop waiting, yield nothing more
        self.step = timeframe_ms(config.clock_timeframe)
        self.data_step = timeframe_ms(d.timeframe)
        self.label = f"ccxt: {d.exchange} {d.market}"
        now = int(self.clock() * 1000)
        self.start_ms = now // self.step * self.step  # the bar in progress: first traded
        self.last_close: dict[str, float] = {}

    def _download(self, symbol: str, since: int, until: int) -> pl.DataFrame:
        from orchestra.data.ccxt_source import download

        return download(self.exchange, symbol, self.config.data.timeframe, since, until)

    def warmup(self) -> pl.DataFrame:
        since = anchor_ms(self.config, self.start_ms)
        parts = [self._download(s, since, self.start_ms) for s in self.config.symbols]
        bars, _ = validate_bars(
            pl.concat(parts), self.config.data.timeframe, self.config.data.gap_policy, "ccxt"
        )
        self._remember(bars)
        return bars

    def _remember(self, bars: pl.DataFrame) -> None:
        if bars.height:
            last = bars.sort("timestamp").group_by("symbol").agg(pl.col("close").last())
            self.last_close.update(dict(zip(last["symbol"], last["close"], strict=True)))

    def bars_after(self, last_ts: int) -> Iterator[tuple[int, pl.DataFrame]]:
        """The clock bars opened after ``last_ts``, as each closes (endless)."""
        from orchestra.data.ccxt_source import SourceUnavailable

        ts = last_ts // self.step * self.step + self.step
        per_bar = max(self.step // self.data_step, 1)
        while not self.stopped():
            close = ts + self.step
            wait = close / 1000 + self.delay_s - self.clock()
            if wait > 0:
                self.sleep(wait)
            waited = 0.0
            while not self.stopped():
                try:
                    parts = [self._download(s, ts, close) for s in self.config.symbols]
                except SourceUnavailable as exc:
                    log.warning("bar %s: %s; retrying in %.0f s", _iso(ts), exc, self.backoff_s)
                    self.sleep(self.backoff_s)
                    continue
                have = {p["symbol"][0]: p for p in parts if p.height}
                missing = [
                    s
                    for s in self.config.symbols
                    if s in self.last_close and (s not in have or have[s].height < per_bar)
                ]
                if not missing or waited >= self.max_wait_s:
                    break
                self.sleep(self.backoff_s)
                waited += self.backoff_s
            if self.stopped():
                return
            frames = [p for s, p in have.items() if s not in missing]
            for s in missing:
                log.warning("bar %s: no bar for %s after %.0f s: flat bar", _iso(ts), s, waited)
                frames.append(_flat_bars(s, ts, close, self.data_step, self.last_close[s], have))
            if frames:
                bars = pl.concat(frames).sort("symbol", "timestamp")
                bars, _ = validate_bars(bars, self.config.data.timeframe, "ffill", "ccxt")
                self._remember(bars)
                yield ts, bars
            ts = close


def _flat_bars(symbol, ts, close, data_step, last_close, have) -> pl.DataFrame:
    got = set()
    if symbol in have:
        got = set(have[symbol]["timestamp"].dt.epoch("ms").to_list())
    times = [t for t in range(ts, close, data_step) if t not in got]
    flat = pl.DataFrame(
        {
            "timestamp": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
            "symbol": [symbol] * len(times),
            "open": [last_close] * len(times),
            "high": [last_close] * len(times),
            "low": [last_close] * len(times),
            "close": [last_close] * len(times),
            "volume": [0.0] * len(times),
        }
    )
    return pl.concat([have[symbol], flat]) if symbol in have else flat


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="minutes")
