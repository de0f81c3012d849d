"""Config schema: every example validates; every broken config gives a clear message, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestra.cli.bt import main
from orchestra.config import Config, ConfigError, load_config, parse_config
from tests.conftest import CONFIGS, SHARED_DATA

BROKEN = Path(__file__).parent / "broken_configs"

EXPECTED = {
    "unknown_key.yaml": "backtest.capitl: unknown key",
    "fractions_min_gt_max.yaml": "pods[0]: fractions must satisfy 0 ≤ min_fraction ≤ initial_fraction ≤ max_fraction ≤ 1; got min=0.5",
    "fractions_sum.yaml": "initial_fraction values sum to 1.2; must be ≤ 1",
    "duplicate_pod.yaml": "duplicate pod_id ['twin']",
    "unknown_strategy.yaml": "pods[0]: unknown strategy 'momentum-magic'; registered: donchian-ensemble, ensemble, tsmom, vol-adaptive, vw-tsmom",
    "param_typo.yaml": "pods[0]: params.lookbak: unknown parameter of 'tsmom' (allowed: lookback, vol_target, vol_window)",
    "bad_dates.yaml": "backtest: start (2025-01-01) must be before end (2024-01-01)",
    "unparsable_date.yaml": "backtest.start: Input should be a valid date",
    "bad_timeframe.yaml": "pods[0].timeframe: '3x' is not a timeframe",
    "timeframe_not_multiple.yaml": "pods[0].timeframe '6h' is not a whole multiple of data.timeframe '4h'",
    "bad_symbol.yaml": "pods[0].symbols: symbols must look like BASE/QUOTE",
    "too_many_pods.yaml": "2 pods exceed orchestrator.max_pods = 1",
    "nested_risk.yaml": "pods[1].risk.max_leverage: Input should be greater than 0 (got -1)",
    "not_yaml.yaml": "not valid YAML",
    "files_without_path.yaml": "data: source 'files' needs 'path'",
    # issue #9: numbers that used to crash or run nonsense
    "capital_inf.yaml": "backtest.capital: Input should be a finite number (got inf)",
    "cost_inf.yaml": "portfolio.cost_bps: Input should be a finite number (got inf)",
    "slippage_huge.yaml": "portfolio.slippage_bps: Input should be less than or equal to 1000",
    "lookback_huge.yaml": "pods[0].params: pod 'a' needs 11000003 days of warm-up",
    "warmup_huge.yaml": "backtest.warmup_days: warmup_days must be 'auto' or an integer in [0, 36500]",
    "nested_ensemble.yaml": "pods[0].sub_strategies[0]: a nested 'ensemble' needs its own params.sub_strategies",
    # issue #25: YAML booleans are not numbers
    "lookback_bool.yaml": "pods[0]: params.lookback: a number is expected, not the boolean True",
    "capital_bool.yaml": "backtest.capital: a number is expected, not the boolean True",
    "unknown_exchange.yaml": "unknown ccxt exchange 'binanse': did you mean binance",
}


def example_configs() -> list[Path]:
    return sorted(CONFIGS.glob("*.yaml"))


def test_every_broken_config_has_an_expectation() -> None:
    assert {p.name for p in BROKEN.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("path", example_configs(), ids=lambda p: p.name)
def test_example_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, Config) and len(cfg.config_hash) == 64


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_config_message(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(BROKEN / name)
    text = str(info.value)
    assert EXPECTED[name] in text, text
    assert str(BROKEN / name) in text  # names the file


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_validate_exits_2_without_traceback(name: str) -> None:
    result = CliRunner().invoke(main, ["validate", str(BROKEN / name)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert EXPECTED[name].split(":")[0] in result.output


def test_cli_run_on_missing_file_exits_2() -> None:
    result = CliRunner().invoke(main, ["run", "no/such/config.yaml"])
    assert result.exit_code == 2 and "file not found" in result.output


def test_config_hash_is_stable_and_sensitive() -> None:
    raw = {"pods": [{"pod_id": "a", "strategy": "tsmom", "symbols": ["BTC/USDT"]}]}
    a = parse_config(raw)
    b = parse_config(
        {"pods": [{"symbols": ["BTC/USDT"], "strategy": "tsmom", "pod_id": "a", "params": {}}]}
    )
    assert a.config_hash == b.config_hash  # same meaning, same hash (defaults filled, keys sorted)
    c = parse_config(
        {
            "pods": [
                {
                    "pod_id": "a",
                    "strategy": "tsmom",
                    "symbols": ["BTC/USDT"],
                    "params": {"lookback": 31},
                }
            ]
        }
    )
    assert c.config_hash != a.config_hash


def test_configs_are_frozen() -> None:
    cfg = parse_config({"pods": [{"pod_id": "a", "strategy": "tsmom", "symbols": ["BTC/USDT"]}]})
    with pytest.raises(Exception, match="frozen"):
        cfg.pods[0].initial_fraction = 0.9  # type: ignore[misc]


def test_relative_data_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.yaml"
    p.write_text(
        "data: {source: files, path: ../bars}\npods:\n  - {pod_id: a, strategy: tsmom, symbols: [BTC/USDT]}\n"
    )
    assert load_config(p).data.path == (tmp_path / "bars").resolve()


def test_binance_majors_points_at_the_shared_data() -> None:
    cfg = load_config(CONFIGS / "binance-majors.yaml")
    assert cfg.data.path == (SHARED_DATA / "binance-1d").resolve()


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "pods": [
                    {
                        "pod_id": "a",
                        "strategy": "tsmom",
                        "symbols": ["BTC/USDT"],
                        "risk": {"max_leverage": 0, "rebalance_threshold": -1},
                    }
                ]
            }
        )
    assert len(info.value.problems) == 2


def test_docs_config_reference_is_current() -> None:
    from orchestra.config import config_reference_markdown

    text = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    assert config_reference_markdown() in text, (
        "regenerate docs/config.md (see its 'Fields' section)"
    )
