"""Compile the numba kernels into their on-disk cache once, so later runs start at once.

The kernels are compiled on first use and cached by numba next to their source
(``orchestra/kernels/__pycache__``; numba's user cache when that folder is read-only). A fresh
checkout pays ~10–20 s once: ``make install`` runs ``python -m orchestra.engine.warm``, and
``orch-bt run`` / ``orch-live`` say so when the cache is still cold. Both compile the bar loop in
a second process meanwhile (:mod:`orchestra.precompile`).
"""

from __future__ import annotations

import time
from typing import Any


def kernels_cached() -> bool:
    """Whether the step kernel has a compiled version in numba's cache."""
    from orchestra.precompile import kernel_cached

    return kernel_cached()


def warm_config():
    """A tiny synthetic config that reaches every kernel: every built-in strategy, a rebalance,
    a pod joining, the lifecycle."""
    from orchestra.config import parse_config

    pod = {"strategy": "tsmom", "params": {"lookback": 5}, "symbols": ["BTC/USDT"]}
    subs = [{"name": "tsmom", "params": {"lookback": 5}}, {"name": "vw-tsmom", "params": {}}]
    others: list[dict[str, Any]] = [  # every built-in strategy's kernel
        {"strategy": "vw-tsmom", "params": {"lookback": 5}},
        {"strategy": "donchian-ensemble", "params": {"lookbacks": [5, 10]}},
        {"strategy": "vol-adaptive", "params": {"vol_short": 5, "vol_long": 20}},
        {
            "strategy": "ensemble",
            "params": {"aggregation": "inverse_volatility"},
            "sub_strategies": subs,
        },
        {"strategy": "ensemble", "params": {}, "sub_strategies": subs},
    ]
    return parse_config(
        {
            "data": {"source": "synthetic", "market": "swap"},  # long/short pods
            "orchestrator": {"allocation_method": "risk_parity", "min_history": 5},
            "pods": [
                {**pod, "pod_id": "a", "initial_state": "production"},
                {**pod, "pod_id": "b", "symbols": ["ETH/USDT"], "initial_state": "production"},
                {**pod, "pod_id": "c", "start": "2024-01-20"},
                *[{**pod, **o, "pod_id": f"s{i}"} for i, o in enumerate(others)],
            ],
            "backtest": {"start": "2024-01-01", "end": "2024-02-29", "warmup_days": 10},
        },
        source="kernel warm-up",
    )


def warm_kernels() -> float:
    """Compile (or load) every kernel: the bar loop in a second process when its cache is cold
    (:mod:`orchestra.precompile`), meanwhile live trading's step halves here, then
    :func:`warm_config`'s backtest (every strategy's kernel), then a day of hourly bars (the
    intraday generator's kernel, :mod:`orchestra.engine.fused`'s path). Returns the seconds it
    took."""
    from orchestra import precompile
    from orchestra.config import parse_config
    from orchestra.engine import run_backtest

    cfg = warm_config()
    t = time.perf_counter()
    precompile.start("bar-loop")
    precompile.compile_live_kernels()
    run_backtest(cfg)  # waits for the second process before its first bar
    hourly = cfg.model_dump(mode="json")
    hourly["data"]["timeframe"] = "1h"
    for pod in hourly["pods"]:
        pod.update(timeframe="1h", start=None)
    hourly["backtest"].update(start="2024-01-01", end="2024-01-03")
    run_backtest(parse_config(hourly, source="kernel warm-up"))
    return time.perf_counter() - t


# kernels outside the step module a run compiles (module, function): `make install` warms
# them too, so a checkout that gained one does not compile it in its first run
OTHER_KERNELS = (
    ("orchestra.kernels.moments", "_ledoit_wolf_into"),
    ("orchestra.kernels.moments", "_cholesky_into"),
    ("orchestra.kernels.moments", "prc_drift_into"),
    ("orchestra.kernels.moments", "demeaned_into"),
    ("orchestra.kernels.moments", "pod_shares_nb"),
    ("orchestra.risk", "_average_correlation_nb"),
    ("orchestra.kernels.layout", "gather_transpose_nb"),
    ("orchestra.kernels.layout", "place_rows_nb"),
    ("orchestra.kernels.layout", "place_weights_nb"),
    ("orchestra.kernels.layout", "bar_spans_nb"),
    ("orchestra.results.trades", "account_units_nb"),
)


def _cached(module: str, name: str) -> bool:
    import importlib
    from pathlib import Path

    try:
        func = getattr(importlib.import_module(module), name)
        return Path(func._cache._cache_file._index_path).is_file()
    except AttributeError:  # another numba layout: assume cold, which only costs a compile
        return False


def kernels_all_cached() -> bool:
    from orchestra.precompile import GROUPS, kernel_cached

    return all(kernel_cached(name) for name, _ in GROUPS.values()) and all(
        _cached(module, name) for module, name in OTHER_KERNELS
    )


def main() -> None:
    if kernels_all_cached():
        print("numba kernels: cached")
        return
    from orchestra.precompile import compile_estimate

    took = compile_estimate("~11 s", "~18 s")  # measured: 11 s on 2 cores (19 s CPU), 18 s on 1
    print(f"numba kernels: compiling once ({took} on this machine's cores) ...", flush=True)
    print(f"numba kernels: compiled and cached in {warm_kernels():.0f} s")


if __name__ == "__main__":
    main()
