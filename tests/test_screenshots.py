"""Issue #24: screenshots of the example report, a pod's report, a comparison and a sweep
ranking, taken by a real headless Chromium-based browser when one is installed (the page's
scripts run, plotly draws). Skipped, with the reason, on a machine without one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestra.cli.bt import main

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)

pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no headless Chromium-based browser on this machine (looked for "
    + ", ".join(BROWSERS)
    + "); the charts were rendered with kaleido instead (docs/results.md)",
)


def shoot(page: Path, png: Path) -> None:
    subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=15000", "--window-size=1280,6000", f"--screenshot={png}",
         page.resolve().as_uri()],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    assert png.is_file() and png.stat().st_size > 50_000  # drawn charts, not a blank page


def test_screenshots_of_the_reports(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cfg = ROOT / "configs" / "example.yaml"
    run = CliRunner().invoke(main, ["run", str(cfg), "--html", "--out", str(runs / "ex")])
    assert run.exit_code == 0, run.output
    pod = CliRunner().invoke(main, ["report", str(runs / "ex"), "--html", "--pod",
                                    "pod-donchian-alt"])  # fmt: skip
    assert pod.exit_code == 0, pod.output
    for page in (runs / "ex" / "report.html", runs / "ex" / "report-pod-donchian-alt.html"):
        shoot(page, tmp_path / f"{page.stem}.png")


def test_screenshots_of_a_comparison_and_a_sweep_ranking(tmp_path: Path) -> None:
    import yaml

    cfg = ROOT / "configs" / "example.yaml"
    runner = CliRunner()
    for out, extra in (("a", []), ("b", ["--start", "2025-01-01"])):
        res = runner.invoke(
            main, ["run", str(cfg), "--quiet", "--out", str(tmp_path / out), *extra]
        )
        assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--html",
                               "--out", str(tmp_path / "cmp")])  # fmt: skip
    assert res.exit_code == 0, res.output
    shoot(tmp_path / "cmp" / "compare.html", tmp_path / "compare.png")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(
        {"grid": {"orchestrator.allocation_method": ["risk_parity", "equal_weight"],
                  "pods.pod-tsmom-major.params.lookback": [20, 40]}}
    ))  # fmt: skip
    res = runner.invoke(main, ["sweep", str(cfg), "--grid", str(grid), "--quiet",
                               "--out", str(tmp_path / "sweep")])  # fmt: skip
    assert res.exit_code == 0, res.output
    shoot(tmp_path / "sweep" / "ranking.html", tmp_path / "ranking.png")
