"""The strategy registry: names → (function, params model).

A strategy is a function ``fn(bars: pl.DataFrame, params: ParamsModel) -> pl.DataFrame`` from a
pod's bar frame (all its symbols, whole history, the columns of SPEC §5.1) to internal target
weights ``timestamp, symbol, weight``. Its parameters are a frozen pydantic model that forbids
unknown keys, so a typo in a config is an error, not silently ignored.

Built-ins register with :func:`register`. A config may also name ``package.module:function``;
that function must carry its params model as ``fn.params_model`` (the :func:`strategy`
decorator sets it).

This module imports nothing from the rest of the package so that ``orchestra.config`` can use it.
"""

from __future__ import annotations

import importlib
import os
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _is_number_type(annotation: Any) -> bool:
    """True for ``int``, ``float`` and optional/annotated unions of them only."""
    if get_origin(annotation) is Annotated:
        return _is_number_type(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_is_number_type(a) for a in args)
    return annotation in (int, float)


class NumbersAreNotBooleans(BaseModel):
    """Mixin: a YAML ``true``/``false`` given for a number field is an error, not 1/0.

    pydantic's lax mode reads ``lookback: true`` as 1; a config never means that.
    """

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and _is_number_type(field.annotation):
                raise ValueError(f"a number is expected, not the boolean {value}")
        return value


class StrategyParams(NumbersAreNotBooleans):
    """Base of every strategy's params model: frozen, unknown keys rejected, booleans never read
    as numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def warmup_bars(self) -> int:
        """Bars of history the strategy needs before its first non-zero weight.

        Used for ``backtest.warmup_days: auto``. Override in strategies with long lookbacks.
        """
        return 0

    def can_short(self) -> bool:
        """Whether the strategy can ask for a negative weight. A ``market: spot`` paper or live
        run refuses a pod whose strategy can (spot is long-only); declare False on a long-only
        user strategy. The default, True, is the safe assumption."""
        return True

    def history_bars(self) -> int | None:
        """Bars of history (at the pod's timeframe) the weight of the last bar depends on.

        The live loop computes a user's long-frame strategy on this trailing window only, so its
        per-bar cost stays flat; None (the default) means the whole history, recomputed at every
        live bar. Declare it on a user strategy's params model (built-ins run in step form and
        ignore it). Live weights equal the backtest's when the strategy's weight at t really
        depends on the last ``history_bars`` bars only (see ``docs/live.md``).
        """
        return None


StrategyFn = Callable[[pl.DataFrame, Any], pl.DataFrame]


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: its name, function and params model."""

    name: str
    func: StrategyFn
    params_model: type[StrategyParams]

    def parse_params(self, params: dict[str, Any] | None) -> StrategyParams:
        """Validate ``params`` with the strategy's model (raises pydantic ``ValidationError``)."""
        return self.params_model.model_validate(params or {})


class StrategyNotFound(LookupError):
    """Unknown strategy name or an import path that cannot be loaded."""


class StrategyError(ValueError):
    """A strategy returned unusable weights (missing columns, inf, duplicate rows) or a user's
    strategy raised. The engine adds the pod's name; the CLI prints it as one line."""


class StrategyWarning(UserWarning):
    """A user's strategy asked for more gross exposure than its pod's ``risk.max_leverage``
    allows; its weights were scaled down pro rata (the warning counts the bars)."""


_REGISTRY: dict[str, StrategySpec] = {}

DEFAULT_STRATEGY_TIMEOUT_S = 600.0


def strategy_timeout() -> float:
    """Seconds a user's strategy may run in one call before the run stops with a
    :class:`StrategyError`: ``ORCHESTRA_STRATEGY_TIMEOUT`` (``orch-bt --strategy-timeout`` and
    ``orch-live --strategy-timeout`` set it), default 600; 0 or less means no limit."""
    raw = os.environ.get("ORCHESTRA_STRATEGY_TIMEOUT", "")
    try:
        return float(raw) if raw.strip() else DEFAULT_STRATEGY_TIMEOUT_S
    except ValueError:
        return DEFAULT_STRATEGY_TIMEOUT_S


def call_user_strategy(name: str, func: Callable[..., Any], *args: Any) -> Any:
    """Call a user's strategy ``func(*args)``; whatever it raises (``SystemExit`` included)
    becomes a :class:`StrategyError`, and so does a call that has not returned within
    :func:`strategy_timeout` seconds.

    The call runs on a daemon thread: Python cannot stop a thread, so a strategy that never
    returns is left running while the run reports the error and exits (a daemon thread does not
    keep the process alive). Built-ins are called directly.
    """
    limit = strategy_timeout()
    result: list[Any] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(func(*args))
        except BaseException as exc:  # sys.exit in a strategy is an error too
            failure.append(exc)

    worker = threading.Thread(target=target, name=f"strategy {name}", daemon=True)
    worker.start()
    worker.join(limit if limit > 0 else None)
    if worker.is_alive():
        raise StrategyError(
            f"strategy {name!r} did not return within {limit:g} s (a loop that never ends?); "
            "raise the limit with --strategy-timeout SECONDS or ORCHESTRA_STRATEGY_TIMEOUT"
        )
    if failure:
        exc = failure[0]
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        raise StrategyError(f"strategy {name!r} raised {type(exc).__name__}: {exc}") from exc
    return result[0]


def register(name: str, params_model: type[StrategyParams]) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator registering a built-in strategy under ``name``."""

    def deco(fn: StrategyFn) -> StrategyFn:
        fn.params_model = params_model  # type: ignore[attr-defined]
        _REGISTRY[name] = StrategySpec(name, fn, params_model)
        return fn

    return deco


def strategy(params_model: type[StrategyParams]) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator for a user's own strategy, referenced in a config as ``package.module:function``.

    It attaches the params model to the function; the function is not added to the registry.
    """

    def deco(fn: StrategyFn) -> StrategyFn:
        fn.params_model = params_model  # type: ignore[attr-defined]
        return fn

    return deco


def add_strategy_path(folder: str | os.PathLike[str]) -> None:
    """Let ``package.module:function`` strategies be imported from ``folder`` (and from the
    current directory): appended to ``sys.path`` — after the installed packages, so a user file
    never shadows one — and to ``PYTHONPATH`` so that sweep workers and the live loop's child
    processes find them too. ``load_config`` calls it with the config file's folder."""
    import sys

    known = (
        os.environ.get("PYTHONPATH", "").split(os.pathsep) if os.environ.get("PYTHONPATH") else []
    )
    for entry in (str(folder), os.getcwd()):
        if entry not in sys.path:
            sys.path.append(entry)
        if entry not in known:
            known.append(entry)
    os.environ["PYTHONPATH"] = os.pathsep.join(known)


def registered_names() -> list[str]:
    """Sorted names of the built-in strategies."""
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    # Importing the package registers every built-in (each module calls ``register``).
    importlib.import_module("orchestra.strategies")


def get_strategy(name: str) -> StrategySpec:
    """Look a strategy up by registry name or ``package.module:function`` path."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import failure is a user error here
            hint = ""
            if isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0]:
                hint = (
                    f" (put {module_name.split('.')[0]}.py or its package beside the config "
                    "file or in the current directory, or install it / add its folder to "
                    "PYTHONPATH)"
                )
            raise StrategyNotFound(
                f"cannot import module {module_name!r} for strategy {name!r}: "
                f"{type(exc).__name__}: {exc}{hint}"
            ) from exc
        fn = getattr(module, attr, None)
        if fn is None or not callable(fn):
            raise StrategyNotFound(f"module {module_name!r} has no function {attr!r}")
        model = getattr(fn, "params_model", None)
        if not (isinstance(model, type) and issubclass(model, StrategyParams)):
            raise StrategyNotFound(
                f"{name!r} has no params model: decorate it with "
                "@orchestra.strategies.strategy(MyParams) where MyParams subclasses "
                "orchestra.strategies.StrategyParams"
            )
        return StrategySpec(name, fn, model)
    raise StrategyNotFound(
        f"unknown strategy {name!r}; registered: {', '.join(registered_names())} "
        "(or 'package.module:function' for your own)"
    )
