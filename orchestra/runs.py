"""One entry point for reading any run folder: a backtest's run directory or a live state
directory (the run so far). It sits above both ``results`` and ``live`` so that neither imports
the other."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from orchestra.results.result import OrchestratedResult


def is_live_dir(directory: str | Path) -> bool:
    """A live state directory: a ``live.sqlite`` and no ``summary.json``."""
    d = Path(directory)
    return not (d / "summary.json").is_file() and (d / "live.sqlite").is_file()


class RunTargetError(ValueError):
    """A run would replace a folder that holds something else (one line for the CLI)."""


def check_run_target(directory: str | Path, config_hash: str) -> None:
    """Refuse to write a run into ``directory`` when it holds another run (a ``summary.json`` of
    another config hash), a live state directory, or files that are not a run's. The same
    config's folder is rewritten (the same inputs give the same run)."""
    d = Path(directory)
    if not d.exists():
        return
    if not d.is_dir():
        raise RunTargetError(f"{d} is a file, not a run directory")
    if is_live_dir(d):
        raise RunTargetError(f"{d} is a live state directory: choose another --out")
    summary = d / "summary.json"
    if summary.is_file():
        try:
            held = json.loads(summary.read_text(encoding="utf-8")).get("config_hash")
        except (ValueError, AttributeError):
            held = None
        if held != config_hash:
            raise RunTargetError(
                f"{d} holds another run (config hash {str(held)[:8]}, this one "
                f"{config_hash[:8]}): choose another --out, add --tag, or delete it first"
            )
        return
    if any(d.iterdir()):
        raise RunTargetError(f"{d} is not empty and holds no run: choose another --out")


def list_runs(root: str | Path = "runs") -> list[dict[str, Any]]:
    """Every run folder under ``root`` (backtests and live state directories), newest first:
    name, kind, created, config, tag, window, return, Sharpe, max drawdown (backtests)."""
    rows: list[dict[str, Any]] = []
    base = Path(root)
    if not base.is_dir():
        return rows
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        if is_live_dir(d):
            opened = dt.datetime.fromtimestamp((d / "live.sqlite").stat().st_mtime, dt.UTC)
            rows.append({"run": d.name, "kind": "live", "created": opened.isoformat()[:19]})
            continue
        summary = d / "summary.json"
        if not summary.is_file():
            continue
        try:
            s = json.loads(summary.read_text(encoding="utf-8"))
        except ValueError:
            rows.append({"run": d.name, "kind": "damaged", "created": ""})
            continue
        rng = s.get("data_range", {})
        account = _account_metrics(d)
        created = (
            s.get("created")
            or dt.datetime.fromtimestamp(summary.stat().st_mtime, dt.UTC).isoformat()
        )
        rows.append(
            {
                "run": d.name,
                "kind": "sweep" if (d / "results.parquet").is_file() else "backtest",
                "created": str(created)[:19],
                "config": s.get("config_source", ""),
                "tag": s.get("tag") or "",
                "window": f"{str(rng.get('first_bar', ''))[:10]} → {str(rng.get('last_bar', ''))[:10]}",
                "return": account.get("total_return"),
                "sharpe": account.get("sharpe"),
                "max_drawdown": account.get("max_drawdown"),
            }
        )
    rows.sort(key=lambda r: r["created"], reverse=True)
    return rows


def _account_metrics(d: Path) -> dict[str, float]:
    """The account row of a run's metrics (empty when the file is missing or unreadable)."""
    import polars as pl

    try:
        m = pl.read_parquet(d / "metrics.parquet", columns=["entity", "total_return", "sharpe",
                                                             "max_drawdown"])  # fmt: skip
        return m.filter(pl.col("entity") == "account").row(0, named=True)
    except Exception:  # a damaged or foreign file: the listing shows blanks
        return {}


def load_run(directory: str | Path) -> OrchestratedResult:
    """The run in ``directory``: a run directory written by ``OrchestratedResult.save``, or a
    live state directory (the run so far, rebuilt from its store; read-only, safe while the
    loop runs: see ``docs/live.md``)."""
    if is_live_dir(directory):
        from orchestra.live.reader import load_live_result

        return load_live_result(directory)
    return OrchestratedResult.load(directory)


__all__ = ["RunTargetError", "check_run_target", "is_live_dir", "list_runs", "load_run"]
