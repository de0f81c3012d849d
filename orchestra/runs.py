"""One entry point for reading any run folder: a backtest's run directory or a live state
directory (the run so far). It sits above both ``results`` and ``live`` so that neither imports
the other."""

from __future__ import annotations

from pathlib import Path

from orchestra.results.result import OrchestratedResult


def is_live_dir(directory: str | Path) -> bool:
    """A live state directory: a ``live.sqlite`` and no ``summary.json``."""
    d = Path(directory)
    return not (d / "summary.json").is_file() and (d / "live.sqlite").is_file()


def load_run(directory: str | Path) -> OrchestratedResult:
    """The run in ``directory``: a run directory written by ``OrchestratedResult.save``, or a
    live state directory (the run so far, rebuilt from its store; read-only, safe while the
    loop runs: see ``docs/live.md``)."""
    if is_live_dir(directory):
        from orchestra.live.reader import load_live_result

        return load_live_result(directory)
    return OrchestratedResult.load(directory)


__all__ = ["is_live_dir", "load_run"]
