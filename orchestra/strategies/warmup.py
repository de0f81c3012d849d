"""How many days of history before ``backtest.start`` warm the signals up (the strategies'
warm-up bars and the trailing stop's ATR)."""

from __future__ import annotations

import math

from orchestra.kernels.market import ATR_BARS
from orchestra.timeframes import DAY_MS, timeframe_ms


def pod_warmup_days(pod) -> int:
    """Days a pod's strategy needs: its warm-up bars at its timeframe, plus 10 % and one bar."""
    from orchestra.strategies import pod_params
    from orchestra.strategies.registry import get_strategy

    spec = get_strategy(pod.strategy)
    bars = spec.parse_params(pod_params(pod)).warmup_bars()
    days = (bars + 1) * timeframe_ms(pod.timeframe) / DAY_MS
    return math.ceil(days * 1.1)


def warmup_days(config) -> int:
    """``backtest.warmup_days``, or with ``auto`` the longest need over pods (and the ATR)."""
    wd = config.backtest.warmup_days
    if wd != "auto":
        return int(wd)
    atr_days = math.ceil((ATR_BARS + 1) * timeframe_ms(config.clock_timeframe) / DAY_MS)
    return max([atr_days, *(pod_warmup_days(p) for p in config.pods)])
