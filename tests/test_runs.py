"""Issue #24: runs never overwrite each other — the folder is named by the effective config
(overrides included), a folder of another run is never replaced, ``--tag`` names a run, and
``orch-bt runs`` lists them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestra.cli.bt import main


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "small.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"market": "swap"},
                "pods": [
                    {
                        "pod_id": "a",
                        "strategy": "tsmom",
                        "symbols": ["BTC/USDT"],
                        "initial_fraction": 0.4,
                    }
                ],
                "backtest": {"start": "2024-01-01", "end": "2024-06-30"},
            }
        )
    )
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_start_gives_its_own_folder_and_leaves_the_full_run_byte_identical(cfg: Path) -> None:
    full = run("run", str(cfg), "--quiet")
    assert full.exit_code == 0, full.output
    (full_dir,) = Path("runs").iterdir()
    before = snapshot(full_dir)
    part = run("run", str(cfg), "--quiet", "--start", "2024-03-01")
    assert part.exit_code == 0, part.output
    dirs = sorted(Path("runs").iterdir())
    assert len(dirs) == 2
    (part_dir,) = [d for d in dirs if d != full_dir]
    assert snapshot(full_dir) == before
    summary = json.loads((part_dir / "summary.json").read_text())
    assert summary["config"]["backtest"]["start"] == "2024-03-01"
    assert part_dir.name.endswith(summary["config_hash"][:8])
    # the same effective config again: its own folder, rewritten with the same run
    again = run("run", str(cfg), "--quiet", "--start", "2024-03-01")
    assert again.exit_code == 0 and len(list(Path("runs").iterdir())) == 2


def test_a_folder_of_another_run_is_never_replaced(cfg: Path, tmp_path: Path) -> None:
    assert run("run", str(cfg), "--quiet", "--out", "mine").exit_code == 0
    before = snapshot(tmp_path / "mine")
    res = run("run", str(cfg), "--quiet", "--out", "mine", "--end", "2024-05-31")
    assert res.exit_code == 2 and "holds another run" in res.output, res.output
    assert "Traceback" not in res.output
    assert snapshot(tmp_path / "mine") == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    res = run("run", str(cfg), "--quiet", "--out", "other")
    assert res.exit_code == 2 and "not empty and holds no run" in res.output


def test_tags_name_runs_and_runs_lists_them(cfg: Path) -> None:
    assert run("run", str(cfg), "--quiet", "--tag", "baseline").exit_code == 0
    assert run("run", str(cfg), "--quiet", "--start", "2024-02-01").exit_code == 0
    (tagged,) = [d for d in Path("runs").iterdir() if "-baseline-" in d.name]
    assert json.loads((tagged / "summary.json").read_text())["tag"] == "baseline"
    listing = run("runs")
    assert listing.exit_code == 0
    assert tagged.name in listing.output and "baseline" in listing.output
    assert "2024-02-01 → 2024-06-30" in listing.output and "small.yaml" in listing.output
    bad = run("run", str(cfg), "--quiet", "--tag", "../escape")
    assert bad.exit_code == 2 and "letters, digits" in bad.output
    assert "no runs under" in run("runs", "nowhere").output
