"""The YAML configuration (SPEC §4) as frozen pydantic models.

Every model is frozen and forbids unknown keys; every field is documented (``docs/config.md`` is the
reference). :func:`load_config` is the public entry: it reads YAML, validates, resolves a relative
``data.path`` against the config file's folder, and raises :class:`ConfigError` with one readable
message per problem (file, field path such as ``pods[1].risk.max_leverage``, the bad value, what is
allowed). The CLI prints those messages and exits with code 2.

``Config.config_hash`` is a SHA-256 of the canonical JSON of the validated model (defaults filled
in), so two files that mean the same thing hash the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import types
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestra.strategies.registry import (
    NumbersAreNotBooleans,
    StrategyNotFound,
    StrategyParams,
    add_strategy_path,
    get_strategy,
)
from orchestra.timeframes import TimeframeError, timeframe_ms

SYMBOL_PATTERN = r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$"
MAX_WARMUP_DAYS = 36_500  # a century of warm-up is already far more than any data holds


class _Frozen(NumbersAreNotBooleans):
    # inf and NaN are never meaningful settings (capital: .inf, cost_bps: .nan ...)
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )


def _check_timeframe(value: str) -> str:
    try:
        timeframe_ms(value)
    except TimeframeError as exc:
        raise ValueError(str(exc)) from None
    return value


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


class DataConfig(_Frozen):
    """Where bars come from (SPEC §5)."""

    source: Literal["synthetic", "files", "ccxt"] = Field(
        "synthetic", description="synthetic (embedded generator) | files (a folder) | ccxt"
    )
    timeframe: str = Field(
        "1d",
        description="Timeframe of the bars to load; every pod timeframe is a whole multiple of it.",
    )
    path: Path | None = Field(
        None,
        description="files: folder with one file per symbol (BTC-USDT_1d.parquet or .csv); "
        "relative paths resolve against the config file's folder.",
    )
    exchange: str = Field("binance", description="ccxt: exchange id")
    market: Literal["spot", "swap"] = Field(
        "spot",
        description="The venue the pods trade: spot (long-only, gross exposure ≤ 1 in paper and "
        "live trading) or swap (Binance USDⓈ-M perpetuals: long/short); with ccxt also where "
        "the bars come from",
    )
    cache: Path = Field(
        Path("~/.cache/orchestra"),
        description="ccxt: parquet cache folder (only the tail is fetched)",
    )
    seed: int = Field(7, description="synthetic: random seed (the data is deterministic per seed)")
    gaps: Literal["error", "ffill"] | None = Field(
        None,
        description="Policy for missing bars: error, or ffill (flat bar at the previous close, "
        "volume 0, with a warning). Default: error for files and synthetic, ffill for ccxt.",
    )

    @field_validator("timeframe")
    @classmethod
    def _tf(cls, v: str) -> str:
        return _check_timeframe(v)

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return None
        v = Path(v).expanduser()
        base = (info.context or {}).get("base_dir")
        if not v.is_absolute() and base is not None:
            v = (Path(base) / v).resolve()
        return v

    @model_validator(mode="after")
    def _source_fields(self) -> DataConfig:
        if self.source == "files" and self.path is None:
            raise ValueError("source 'files' needs 'path' (a folder of BTC-USDT_1d.parquet files)")
        if self.source == "ccxt":
            from orchestra.data.ccxt_source import unknown_exchange_message

            problem = unknown_exchange_message(self.exchange)
            if problem is not None:
                raise ValueError(f"exchange: {problem}")
        return self

    @property
    def gap_policy(self) -> str:
        """The effective gap policy (``gaps`` or the source's default)."""
        if self.gaps is not None:
            return self.gaps
        return "ffill" if self.source == "ccxt" else "error"


# ---------------------------------------------------------------------------------------------
# orchestrator
# ---------------------------------------------------------------------------------------------


class RebalanceConfig(_Frozen):
    """When the allocator recomputes fractions (SPEC §7.3)."""

    trigger: Literal["calendar", "threshold", "hybrid"] = Field(
        "hybrid", description="calendar: every calendar_days; threshold: PRC drift; hybrid: either"
    )
    calendar_days: int = Field(7, ge=1, description="Days between calendar rebalances")
    drift_threshold: float = Field(
        0.10, gt=0, le=1, description="max |PRC_i - budget_i| that triggers a threshold rebalance"
    )


class PortfolioRiskConfig(_Frozen):
    """Portfolio-level risk limits (SPEC §10)."""

    max_portfolio_volatility: float = Field(
        0.20, gt=0, description="Annualised ex-ante volatility cap on the sum of fractions"
    )
    max_portfolio_drawdown: float = Field(0.15, gt=0, lt=1, description="Drawdown alert level")
    drawdown_action: Literal["alert", "derisk", "flatten"] = Field(
        "alert", description="What to do beyond max_portfolio_drawdown"
    )
    max_gross_leverage: float = Field(3.0, gt=0, description="Σ_s |n[s]| cap at every bar")
    min_effective_n: float = Field(
        2.0,
        ge=0,
        description="A WARNING when the effective number of strategies (1 / Σ PRC²) falls below "
        "this, with two or more pods (the plan's 2; 0 disables)",
    )
    max_single_pod_risk_pct: float = Field(
        0.40, gt=0, le=1, description="Alert when one pod's PRC exceeds this"
    )
    daily_loss_limit: float = Field(
        0.03, gt=0, lt=1, description="Circuit breaker: loss from the UTC day's opening equity"
    )
    margin_ratio_warning: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Live on perpetuals: a WARNING when maintenance margin / margin balance "
        "exceeds this (1 is liquidation)",
    )


class GraduationConfig(_Frozen):
    """Criteria for incubation → production (SPEC §8.1)."""

    min_live_days: int = Field(90, ge=0, description="Days since the pod started")
    min_sharpe: float = Field(0.8, description="Annualised Sharpe of daily returns")
    max_drawdown: float = Field(0.30, gt=0, le=1, description="Max drawdown so far")
    min_trade_count: int = Field(30, ge=0, description="Fills on the pod's book")
    min_calmar: float = Field(0.5, description="CAGR / max drawdown")
    max_backtest_live_gap: float = Field(
        0.02,
        ge=0,
        description="Live only: the largest |live NAV / model NAV - 1| of a pod before a WARNING "
        "alert (the live–model gap: the pod's books on the exchange's fills against the same pod "
        "on the model's fills, docs/live.md)",
    )
    max_portfolio_correlation: float = Field(
        0.50, ge=-1, le=1, description="Correlation of the pod with the rest of the portfolio"
    )


class RetirementConfig(_Frozen):
    """Warning, probation and retirement rules (SPEC §8.1)."""

    max_drawdown_breach: float = Field(0.60, gt=0, le=1, description="Hard stop drawdown")
    consecutive_loss_months: int = Field(9, ge=1, description="Hard stop: losing months in a row")
    rolling_sharpe_floor: float = Field(-0.5, description="Warning below this rolling Sharpe")
    rolling_sharpe_window: int = Field(365, ge=2, description="Days in the rolling Sharpe")
    probation_days: int = Field(90, ge=1, description="Days in probation before retirement")
    warning_days: int = Field(90, ge=1, description="Days in warning before probation")
    strong_recovery_margin: float = Field(
        0.5,
        gt=0,
        description="Probation → production needs the rolling Sharpe ≥ rolling_sharpe_floor + "
        "this (always stricter than the floor; the plan's 2 × 0.3 is 0.3 + 0.3)",
    )
    min_dwell_days: int = Field(
        5,
        ge=0,
        description="Hysteresis: days a pod stays in any state before a soft transition out of "
        "it (the hard stops act at once)",
    )
    recovery_drawdown_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Hysteresis: recovery from warning needs the pod drawdown below this × "
        "its drawdown_warning",
    )
    recovery_sharpe_margin: float = Field(
        0.25,
        ge=0,
        description="Hysteresis: recovery from warning needs the rolling Sharpe ≥ "
        "rolling_sharpe_floor + this (a pod hovering at the floor does not flap)",
    )


class DegradationConfig(_Frozen):
    """Page-Hinkley on standardised daily pod returns (SPEC §8.2)."""

    delta: float = Field(0.005, ge=0, description="Tolerated drift per observation")
    lambda_: float = Field(50.0, gt=0, description="Alarm threshold on m_t - M_t")
    alpha: float = Field(0.9999, gt=0, le=1, description="Forgetting factor of m_t")
    min_instances: int = Field(30, ge=1, description="Values seen before an alarm may fire")


class CorrelationConfig(_Frozen):
    """Pod correlation monitoring (SPEC §10)."""

    lookback: int = Field(90, ge=2, description="Days of pod returns")
    stress_threshold: float = Field(0.70, ge=-1, le=1, description="Alert above this average")


# Lifecycle defaults. "study": the limits research/lifecycle_study.py chose on the real candles
# (sound crypto pods draw down 30-40 % and go a year with a flat Sharpe); "plan": the original
# plan's values (docs/lifecycle.md measures what each costs in false retirements).
LIFECYCLE_PROFILES: dict[str, dict[str, Any]] = {
    "study": {
        "graduation": {"min_sharpe": 0.8, "max_drawdown": 0.30, "min_calmar": 0.5},
        "retirement": {
            "max_drawdown_breach": 0.60,
            "consecutive_loss_months": 9,
            "rolling_sharpe_floor": -0.5,
            "rolling_sharpe_window": 365,
            "probation_days": 90,
            "warning_days": 90,
            "strong_recovery_margin": 0.5,
        },
        "pod_max_drawdown": 0.50,
        "warning_ratio": 0.7,
    },
    "plan": {
        "graduation": {"min_sharpe": 1.0, "max_drawdown": 0.15, "min_calmar": 0.8},
        "retirement": {
            "max_drawdown_breach": 0.25,
            "consecutive_loss_months": 6,
            "rolling_sharpe_floor": 0.3,
            "rolling_sharpe_window": 180,
            "probation_days": 30,
            "warning_days": 30,
            "strong_recovery_margin": 0.3,
        },
        "pod_max_drawdown": 0.15,
        "warning_ratio": 2.0 / 3.0,
    },
}


def _default_warning(data: Any, ratio: float) -> Any:
    """A pod risk mapping without ``drawdown_warning``: ``ratio × max_drawdown`` (when that is a
    number; anything else is left to the field checks)."""
    if isinstance(data, dict) and "drawdown_warning" not in data:
        md = data.get("max_drawdown")
        if isinstance(md, int | float) and not isinstance(md, bool) and 0 < md <= 1:
            data = {**data, "drawdown_warning": round(ratio * md, 12)}
    return data


def _apply_profile(raw: Any) -> Any:
    """Fill the lifecycle settings a config leaves out from its ``lifecycle_profile``."""
    if not isinstance(raw, dict):
        return raw
    orch = raw.get("orchestrator")
    name = orch.get("lifecycle_profile", "study") if isinstance(orch, dict) else "study"
    profile = LIFECYCLE_PROFILES.get(name) if isinstance(name, str) else None
    if profile is None:
        return raw  # an unknown profile: the field check names it
    raw = dict(raw)
    if name != "study":  # the study's values are the fields' own defaults
        orch = dict(orch or {})
        for section in ("graduation", "retirement"):
            given = orch.get(section)
            if given is None or isinstance(given, dict):
                orch[section] = {**profile[section], **(given or {})}
        raw["orchestrator"] = orch
    pods = raw.get("pods")
    if isinstance(pods, list):
        filled = []
        for pod in pods:
            if isinstance(pod, dict) and (pod.get("risk") is None or isinstance(pod["risk"], dict)):
                risk = {"max_drawdown": profile["pod_max_drawdown"], **(pod.get("risk") or {})}
                pod = {**pod, "risk": _default_warning(risk, profile["warning_ratio"])}
            filled.append(pod)
        raw["pods"] = filled
    return raw


class OrchestratorConfig(_Frozen):
    """Capital allocation, lifecycle and portfolio risk (SPEC §4, §7, §8, §10)."""

    lifecycle_profile: Literal["study", "plan"] = Field(
        "study",
        description="Defaults of the lifecycle limits a config leaves out: study (the limits "
        "research/lifecycle_study.py chose on real candles) or plan (the original plan's: "
        "warning at 10 % drawdown, probation at 15 %, Sharpe floor 0.3 over 180 days)",
    )

    allocation_method: Literal[
        "equal_weight", "inverse_volatility", "risk_parity", "adaptive_kelly"
    ] = Field("risk_parity", description="How fractions are set at each rebalance")
    kelly_fraction: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Fractional Kelly: the Kelly leg's size and its maximum blend weight "
        "(kelly_rule)",
    )
    kelly_rule: Literal["plan", "full"] = Field(
        "plan",
        description="adaptive_kelly: plan = the original plan's w = (1−α)·w_rp + α·(kelly_fraction"
        "·f*), α = confidence·kelly_fraction; full = the full Kelly f* blended once (a Kelly leg "
        "1/kelly_fraction × the plan's)",
    )
    kelly_confidence_ramp: int = Field(180, ge=1, description="Days to reach the full blend")
    allocation_lookback: int = Field(90, ge=2, description="Days of pod returns for moments")
    min_history: int = Field(
        30, ge=2, description="Fewer days than this → inverse volatility fallback"
    )
    rebalance: RebalanceConfig = Field(default_factory=RebalanceConfig)  # type: ignore[arg-type]
    risk: PortfolioRiskConfig = Field(default_factory=PortfolioRiskConfig)  # type: ignore[arg-type]
    graduation: GraduationConfig = Field(default_factory=GraduationConfig)  # type: ignore[arg-type]
    retirement: RetirementConfig = Field(default_factory=RetirementConfig)  # type: ignore[arg-type]
    degradation: DegradationConfig = Field(default_factory=DegradationConfig)  # type: ignore[arg-type]
    correlation: CorrelationConfig = Field(default_factory=CorrelationConfig)  # type: ignore[arg-type]
    max_pods: int = Field(10, ge=1, description="Upper bound on the number of pods")
    min_pod_capital: float = Field(
        1000.0,
        ge=0,
        description="A pod asked for less capital than this (quote currency) is not funded: "
        "its fraction is 0, with a WARNING naming the pod (the plan's $1,000: below it "
        "exchange minimum order sizes distort a pod's trades); 0 disables",
    )


# ---------------------------------------------------------------------------------------------
# pods
# ---------------------------------------------------------------------------------------------


class PodRiskConfig(_Frozen):
    """One pod's own risk rules (SPEC §9.2) and drawdown limits (SPEC §8.1)."""

    max_drawdown: float = Field(0.50, gt=0, le=1, description="warning → probation above this")
    drawdown_warning: float = Field(
        0.35,
        gt=0,
        le=1,
        description="production → warning above (default: 0.7 × max_drawdown; the plan "
        "profile: 2/3 × max_drawdown)",
    )
    max_leverage: float = Field(2.0, gt=0, description="Σ_s |w[p,s]| cap")
    system_stop_loss: float | None = Field(
        0.10, gt=0, lt=1, description="Close when loss from entry exceeds this; null disables"
    )
    use_trailing_stop: bool = Field(True, description="ATR(14) trailing stop")
    trailing_stop_atr_multiplier: float = Field(3.0, gt=0, description="m in close < high - m·ATR")
    rebalance_threshold: float = Field(
        0.05, ge=0, description="Trade a symbol only if |w_target - w_current| exceeds this"
    )

    @model_validator(mode="before")
    @classmethod
    def _warning_follows_max(cls, data: Any) -> Any:
        return _default_warning(data, LIFECYCLE_PROFILES["study"]["warning_ratio"])

    @model_validator(mode="after")
    def _dd_order(self) -> PodRiskConfig:
        if self.drawdown_warning > self.max_drawdown:
            raise ValueError(
                f"drawdown_warning ({self.drawdown_warning}) must be ≤ max_drawdown "
                f"({self.max_drawdown})"
            )
        return self


class SubStrategyConfig(_Frozen):
    """One component of an ``ensemble`` pod."""

    name: str = Field(description="Registered strategy name or package.module:function")
    params: dict[str, Any] = Field(default_factory=dict, description="Its parameters")

    @model_validator(mode="after")
    def _check(self) -> SubStrategyConfig:
        _validate_strategy_params(self.name, self.params)
        if self.name == "ensemble" and not self.params.get("sub_strategies"):
            raise ValueError(
                "a nested 'ensemble' needs its own params.sub_strategies list "
                "(e.g. params: {sub_strategies: [{name: tsmom, params: {lookback: 30}}]})"
            )
        return self


def _validate_strategy_params(name: str, params: dict[str, Any]) -> StrategyParams:
    try:
        spec = get_strategy(name)
    except StrategyNotFound as exc:
        raise ValueError(str(exc)) from None
    try:
        return spec.parse_params(params)
    except ValidationError as exc:
        allowed = ", ".join(spec.params_model.model_fields) or "(none)"
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "params"
            if err["type"] == "extra_forbidden":
                problems.append(
                    f"params.{where}: unknown parameter of {name!r} (allowed: {allowed})"
                )
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"params.{where}: {msg} (got {err.get('input')!r})")
        raise ValueError("; ".join(problems)) from None


class PodConfig(_Frozen):
    """One pod: a strategy instance with its symbols, capital slice and risk rules."""

    pod_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="Unique name of the pod (it names files: letters, digits, '_', '-', '.'; "
        "at most 64 characters, starting with a letter or digit)",
    )
    strategy: str = Field(description="Registry name, or package.module:function")
    params: dict[str, Any] = Field(default_factory=dict, description="Strategy parameters")
    sub_strategies: list[SubStrategyConfig] = Field(
        default_factory=list, description="ensemble only: the strategies it combines"
    )
    symbols: list[str] = Field(min_length=1, description="BASE/QUOTE symbols the pod trades")
    timeframe: str = Field("1D", description="Signal timeframe: a whole multiple of data.timeframe")
    start: dt.date | None = Field(None, description="Date the pod joins (incubates from there)")
    initial_fraction: float = Field(0.10, ge=0, le=1, description="Starting capital slice")
    max_fraction: float = Field(0.40, ge=0, le=1, description="Upper bound of its slice")
    min_fraction: float = Field(0.05, ge=0, le=1, description="Lower bound (and probation slice)")
    initial_state: Literal["incubation", "production"] = Field(
        "incubation", description="production for a pod with a known track record"
    )
    risk: PodRiskConfig = Field(default_factory=PodRiskConfig)  # type: ignore[arg-type]

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        import re

        bad = [s for s in v if not re.match(SYMBOL_PATTERN, s)]
        if bad:
            raise ValueError(f"symbols must look like BASE/QUOTE (e.g. BTC/USDT); got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate symbols in {v}")
        return v

    @field_validator("timeframe")
    @classmethod
    def _tf(cls, v: str) -> str:
        return _check_timeframe(v)

    @model_validator(mode="after")
    def _check(self) -> PodConfig:
        if not (self.min_fraction <= self.initial_fraction <= self.max_fraction):
            raise ValueError(
                "fractions must satisfy 0 ≤ min_fraction ≤ initial_fraction ≤ max_fraction ≤ 1; "
                f"got min={self.min_fraction}, initial={self.initial_fraction}, "
                f"max={self.max_fraction}"
            )
        _validate_strategy_params(self.strategy, self.params)
        if self.strategy == "ensemble" and not self.sub_strategies:
            raise ValueError("strategy 'ensemble' needs a non-empty 'sub_strategies' list")
        if self.strategy != "ensemble" and self.sub_strategies:
            raise ValueError("'sub_strategies' is only allowed with strategy 'ensemble'")
        return self

    def strategy_params(self) -> StrategyParams:
        """The validated params model of the pod's strategy."""
        return get_strategy(self.strategy).parse_params(self.params)


# ---------------------------------------------------------------------------------------------
# backtest and portfolio
# ---------------------------------------------------------------------------------------------


class BacktestConfig(_Frozen):
    """The simulated period and execution model."""

    start: dt.date = Field(dt.date(2024, 1, 1), description="First bar traded (UTC date)")
    end: dt.date = Field(dt.date(2025, 12, 31), description="Last day traded, inclusive")
    capital: float = Field(
        100_000.0, gt=0, le=1e15, description="Starting equity in quote currency"
    )
    execution: Literal["next_open", "close"] = Field(
        "next_open",
        description="next_open: fill at bar t+1's open; close: at t's close (optimistic)",
    )
    warmup_days: int | Literal["auto"] = Field(
        "auto", description="Days before start used only to warm signals up; auto from strategies"
    )
    benchmark: str = Field(
        "auto",
        description="What the report measures the book against: a traded symbol (buy and hold), "
        "basket (the traded symbols, equal weight, rebalanced daily), none, or auto (BTC/USDT "
        "or BTC/USDT:USDT when traded, else basket)",
    )

    @field_validator("warmup_days")
    @classmethod
    def _warm(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v <= MAX_WARMUP_DAYS:
            raise ValueError(f"warmup_days must be 'auto' or an integer in [0, {MAX_WARMUP_DAYS}]")
        return v

    @model_validator(mode="after")
    def _dates(self) -> BacktestConfig:
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end})")
        return self


class PortfolioConfig(_Frozen):
    """Trading costs (SPEC §9.4)."""

    cost_bps: float = Field(
        4.0, ge=0, le=1000, description="Fee on traded notional, basis points (at most 10 %)"
    )
    slippage_bps: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="Execution price moved against the trade, basis points (at most 10 %)",
    )
    funding: bool = Field(False, description="Charge perpetual funding (needs a funding series)")


class Config(_Frozen):
    """The whole configuration file."""

    data: DataConfig = Field(default_factory=DataConfig)  # type: ignore[arg-type]
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)  # type: ignore[arg-type]
    pods: list[PodConfig] = Field(min_length=1, description="The pods")
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)  # type: ignore[arg-type]
    portfolio: PortfolioConfig = Field(default_factory=PortfolioConfig)  # type: ignore[arg-type]
    _source: str | None = PrivateAttr(None)  # the file it was loaded from (for error messages)

    @property
    def source(self) -> str:
        """Where the config came from: its file, or ``<config>`` when built in code."""
        return self._source or "<config>"

    @model_validator(mode="before")
    @classmethod
    def _profile(cls, data: Any) -> Any:
        return _apply_profile(data)

    @model_validator(mode="after")
    def _check(self) -> Config:
        ids = [p.pod_id for p in self.pods]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        if dups:
            raise ValueError(f"duplicate pod_id {dups}: every pod_id must be unique")
        if len(self.pods) > self.orchestrator.max_pods:
            raise ValueError(
                f"{len(self.pods)} pods exceed orchestrator.max_pods = {self.orchestrator.max_pods}"
            )
        total = sum(p.initial_fraction for p in self.pods)
        if total > 1 + 1e-12:
            raise ValueError(f"the pods' initial_fraction values sum to {total:.4g}; must be ≤ 1")
        data_ms = timeframe_ms(self.data.timeframe)
        for i, pod in enumerate(self.pods):
            if timeframe_ms(pod.timeframe) % data_ms:
                raise ValueError(
                    f"pods[{i}].timeframe {pod.timeframe!r} is not a whole multiple of "
                    f"data.timeframe {self.data.timeframe!r}"
                )
        self._check_warmup()
        bench = self.backtest.benchmark
        traded = sorted({s for p in self.pods for s in p.symbols})
        if bench not in ("auto", "basket", "none") and bench not in traded:
            raise ValueError(
                f"backtest.benchmark {bench!r} is not traded by any pod: use auto, basket, none "
                f"or one of {', '.join(traded)}"
            )
        for i, pod in enumerate(self.pods):
            if pod.start is not None and pod.start > self.backtest.end:
                raise ValueError(
                    f"pods[{i}].start {pod.start} is after backtest.end {self.backtest.end}: "
                    "the pod would never trade (allowed: a start on or before backtest.end)"
                )
        if self.portfolio.funding and self.data.source == "synthetic":
            raise ValueError(
                "portfolio.funding: true needs funding rates; the synthetic source has none "
                "(use source files with *_funding files, or set funding: false)"
            )
        return self

    def _check_warmup(self) -> None:
        """Each pod's warm-up must fit in the calendar (a lookback of 1e7 bars would not)."""
        from orchestra.strategies.warmup import pod_warmup_days

        earliest = dt.date(1970, 1, 1)
        for i, pod in enumerate(self.pods):
            try:
                days = pod_warmup_days(pod)
            except (OverflowError, ValueError) as exc:
                raise ValueError(f"pods[{i}].params: warm-up cannot be computed ({exc})") from None
            if days > MAX_WARMUP_DAYS or self.backtest.start - dt.timedelta(days=days) < earliest:
                raise ValueError(
                    f"pods[{i}].params: pod {pod.pod_id!r} needs {days} days of warm-up before "
                    f"backtest.start {self.backtest.start}, reaching before {earliest}; "
                    "shorten its lookbacks"
                )
        wd = self.backtest.warmup_days
        if wd != "auto" and self.backtest.start - dt.timedelta(days=int(wd)) < earliest:
            raise ValueError(
                f"backtest.warmup_days: {wd} days before {self.backtest.start} reach before "
                f"{earliest}"
            )

    @cached_property
    def config_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the validated config."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def symbols(self) -> list[str]:
        """All symbols any pod trades, in first-seen order."""
        seen: dict[str, None] = {}
        for pod in self.pods:
            for s in pod.symbols:
                seen.setdefault(s, None)
        return list(seen)

    @property
    def clock_timeframe(self) -> str:
        """The simulation clock: the finest pod timeframe (SPEC §5.3)."""
        return min((p.timeframe for p in self.pods), key=timeframe_ms)


# ---------------------------------------------------------------------------------------------
# loading and readable errors
# ---------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """A user error in a config file: one readable message per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))

    def __reduce__(self):  # pickled whole (a sweep's worker process raises it to the parent)
        return type(self), (self.source, self.problems)


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per pydantic error: ``field.path: message (got value)``."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        path = _loc_to_path(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key (not in the schema; check the spelling)")
            continue
        if err["type"] == "missing":
            problems.append(f"{path}: required field is missing")
            continue
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        problems.append(f"{msg}{shown}" if not loc else f"{path}: {msg}{shown}")
    return problems


def parse_config(raw: Any, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate a mapping (parsed YAML) into a :class:`Config`; raises :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must be a YAML mapping with at least 'pods'"])
    try:
        return Config.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file.

    A relative ``data.path`` resolves against the config file's folder. Raises
    :class:`ConfigError` for a missing file, bad YAML or invalid fields.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["file not found"])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path),
            [f"not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r}): "
             "save the config as UTF-8 YAML"],
        ) from None  # fmt: skip
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    except ValueError as exc:  # e.g. an integer literal past Python's digit limit
        raise ConfigError(str(path), [f"a value cannot be read: {exc}"]) from None
    add_strategy_path(path.resolve().parent)  # its own strategy modules sit beside it
    cfg = parse_config(raw, str(path), base_dir=path.resolve().parent)
    cfg._source = str(path)
    return cfg


class VenueWarning(UserWarning):
    """A backtest on ``data.market: spot`` whose pods short or lever (see venue_problems)."""


def venue_problems(config: Config) -> list[str]:
    """Why the pods cannot trade on a ``data.market: spot`` venue, one line each (empty: they
    can). Spot is long-only with gross exposure ≤ 1: a pod whose strategy can go short
    (``params.can_short()``), a pod ``max_leverage`` above 1 or a portfolio
    ``max_gross_leverage`` set above 1 would sell assets the account does not hold or borrow
    (the cap's default, 3, is not an error: long-only pods at leverage ≤ 1 cannot reach it). Paper
    and live trading refuse such a config; a backtest models the shorts and says so."""
    if config.data.market != "spot":
        return []
    out = []
    for i, pod in enumerate(config.pods):
        params = dict(pod.params)
        if pod.sub_strategies:
            params["sub_strategies"] = [s.model_dump() for s in pod.sub_strategies]
        if _validate_strategy_params(pod.strategy, params).can_short():
            out.append(
                f"pods[{i}] ({pod.pod_id}): strategy {pod.strategy!r} can go short, and "
                "data.market spot is long-only: use data.market swap (perpetuals) or a long-only "
                "strategy (e.g. donchian-ensemble with long_only: true)"
            )
        if pod.risk.max_leverage > 1:
            out.append(
                f"pods[{i}].risk.max_leverage: {pod.risk.max_leverage} > 1 on data.market spot "
                "(allowed: ≤ 1, or data.market swap)"
            )
    # pods long-only at max_leverage ≤ 1 hold gross ≤ 1 whatever the portfolio cap's default;
    # a cap above 1 that the config sets says it means to lever
    risk = config.orchestrator.risk
    gross = risk.max_gross_leverage
    if gross > 1 and "max_gross_leverage" in risk.model_fields_set:
        out.append(
            f"orchestrator.risk.max_gross_leverage: {gross} > 1 on data.market spot "
            "(allowed: ≤ 1, or data.market swap)"
        )
    return out


def _allowed_values(info: Any) -> str:
    """What a field accepts, from its type and constraints: the values of an enumeration, a
    numeric range, or the type."""
    import annotated_types as at

    annotation = info.annotation
    union = get_origin(annotation) in (Union, types.UnionType)
    args = [a for a in get_args(annotation) if a is not type(None)] if union else [annotation]
    optional = union and type(None) in get_args(annotation)
    words: list[str] = []
    for arg in args:
        if get_origin(arg) is Literal:
            words += [f"`{v}`" for v in get_args(arg)]
        elif arg is bool:
            words += ["`true`", "`false`"]
    bounds = []
    for meta in info.metadata:
        for kind, attr, sign in ((at.Ge, "ge", "≥"), (at.Gt, "gt", ">"), (at.Le, "le", "≤"),
                                 (at.Lt, "lt", "<")):  # fmt: skip
            if isinstance(meta, kind):
                bounds.append(f"{sign} {getattr(meta, attr)}")
    names = {int: "integer", float: "number", str: "text", dt.date: "date (YYYY-MM-DD)",
             Path: "folder path"}  # fmt: skip
    kinds = [names.get(a, "") for a in args]
    kinds += ["a section (below)" for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    kinds += ["list" for a in args if get_origin(a) is list]
    kinds += ["mapping" for a in args if get_origin(a) is dict]
    kinds = [k for k in kinds if k]
    if kinds:
        words.append(" or ".join(kinds) + (f" {', '.join(bounds)}" if bounds else ""))
    if optional and words:
        words.append("`null`")
    return " | ".join(words)


def config_reference_markdown() -> str:
    """The field reference of every config section, generated from the models (docs/config.md)."""
    sections: list[tuple[str, type[BaseModel]]] = [
        ("data", DataConfig),
        ("orchestrator", OrchestratorConfig),
        ("orchestrator.rebalance", RebalanceConfig),
        ("orchestrator.risk", PortfolioRiskConfig),
        ("orchestrator.graduation", GraduationConfig),
        ("orchestrator.retirement", RetirementConfig),
        ("orchestrator.degradation", DegradationConfig),
        ("orchestrator.correlation", CorrelationConfig),
        ("pods[]", PodConfig),
        ("pods[].risk", PodRiskConfig),
        ("pods[].sub_strategies[]", SubStrategyConfig),
        ("backtest", BacktestConfig),
        ("portfolio", PortfolioConfig),
    ]
    lines = []
    for name, model in sections:
        lines += [f"### `{name}`", "", (model.__doc__ or "").strip().splitlines()[0], ""]
        lines += ["| field | default | allowed | meaning |", "|---|---|---|---|"]
        for field_name, info in model.model_fields.items():
            if info.is_required():
                default = "**required**"
            elif info.default_factory is not None:
                made = info.default_factory()  # type: ignore[call-arg]
                default = "see below" if isinstance(made, BaseModel) else f"`{made!r}`"
            else:
                default = (
                    f"`{info.default!r}`"
                    if not isinstance(info.default, Path)
                    else f"`{info.default}`"
                )
            desc = (info.description or "").replace("|", "\\|")
            default = default.replace("|", "\\|")
            allowed = _allowed_values(info).replace("|", "\\|")
            lines.append(f"| `{field_name}` | {default} | {allowed} | {desc} |")
        lines.append("")
    return "\n".join(lines)
