"""The engine: build inputs, run the drivers, assemble the result.

:func:`run_backtest` is the public entry (SPEC §11.1).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

from orchestra.config import Config, load_config
from orchestra.engine.build import Prepared, prepare
from orchestra.engine.core import Engine

__all__ = ["Engine", "Prepared", "prepare", "run_backtest", "with_dates"]


def with_dates(cfg: Config, start: dt.date | None = None, end: dt.date | None = None) -> Config:
    """The config with ``backtest.start``/``end`` overridden, validated like the file
    (raises :class:`~orchestra.config.ConfigError`, e.g. when start is not before end)."""
    if start is None and end is None:
        return cfg
    from orchestra.config import parse_config

    raw = cfg.model_dump(mode="json")
    raw["backtest"].update(
        {k: str(v) for k, v in (("start", start), ("end", end)) if v is not None}
    )
    return parse_config(raw, source="--start/--end override")


def _warn_venue(cfg: Config) -> None:
    """One warning line when the pods do what a spot account cannot (short, lever): the
    backtest models it; paper and live trading refuse it (see ``venue_problems``)."""
    import warnings

    from orchestra.config import VenueWarning, venue_problems

    problems = venue_problems(cfg)
    if problems:
        warnings.warn(
            f"data.market is spot, but {len(problems)} setting(s) need shorts or leverage a spot "
            f"account cannot hold (first: {problems[0]}); the backtest models them, paper and "
            "live trading refuse them: set data.market: swap to trade them on perpetuals",
            VenueWarning,
            stacklevel=3,
        )


def run_backtest(
    config: Config | str | Path,
    start: dt.date | None = None,
    end: dt.date | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """Run an orchestrated backtest of ``config`` (a :class:`Config` or a YAML path).

    ``start``/``end`` override ``backtest.start``/``end``. ``progress(done, total)`` is called
    between segments. Returns an :class:`~orchestra.results.result.OrchestratedResult`.
    """
    from orchestra.results.result import build_result

    cfg = config if isinstance(config, Config) else load_config(config)
    cfg = with_dates(cfg, start, end)
    _warn_venue(cfg)
    prepared = prepare(cfg, stream=True)  # synthetic intraday: bars, signals and bar loop in steps
    timings = dict(prepared.timings)
    engine = Engine(prepared)
    total = engine.n_bars
    engine.run(None if progress is None else (lambda done: progress(done, total)))
    timings.update(engine.timings)
    t = time.perf_counter()
    result = build_result(engine, cfg, timings, release_target=True)
    timings["results"] = time.perf_counter() - t
    return result
