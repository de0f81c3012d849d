"""Compile the bar-loop kernel in a second process while the first one gets on with its work.

With an empty numba cache, compiling ``run_segment_nb`` and the day-end chain it calls is
~12 of the ~20 s a backtest's kernels take, and nothing a run does before its first bar needs
it: loading data and the strategies' kernels and signals come first. :func:`start` launches
``python -m orchestra.precompile <group>``, which imports numpy, numba and the kernels
only, calls the group's kernels on a tiny State of the engine's exact types
(:func:`probe_arguments`; a test checks them against the engine's) and so writes them to numba's
cache; :func:`wait`, called by the engine before its first bar, waits for it, and the kernel then
loads from the cache. On two cores a fresh checkout's first run takes the longer of the two paths
instead of their sum (``make bench``, workload C, shows both). The compile work is the same, so
with a single core available to the process no child starts (it would only compete with the
parent and import everything twice).

Nothing depends on the child succeeding: if it fails, is killed, or the cache cannot be written,
the engine compiles the kernel itself as before (only slower). ``ORCHESTRA_PRECOMPILE=0`` turns
it off.

Two processes writing numba's cache at once is safe here: numba writes each file to a temporary
name and renames it, and a function both processes compile (a helper of the bar loop and of the
live step halves, say) has one signature, so both store the same entry under the same key. (Two
*different* signatures of one function compiled at once could pick the same data file name; no
kernel compiled while the child runs has a second signature: only ``prior_extreme``, a strategy
helper the child never compiles, has two.)
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from orchestra.kernels.state import (
    Inputs,
    State,
    lifecycle_off,
    new_outputs,
    new_state,
    zero_params,
)

_job: subprocess.Popen | None = None


def kernel_cached(name: str = "run_segment_nb") -> bool:
    """Whether the kernel ``name`` of :mod:`orchestra.kernels.step` has a compiled version in
    numba's cache (any signature; the engine uses one)."""
    from orchestra.kernels import step

    try:
        index = getattr(step, name)._cache._cache_file._index_path
        return Path(index).is_file()
    except AttributeError:  # another numba layout: assume cold, which only costs a compile
        return False


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, as under taskset
    or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def probe_arguments() -> tuple[Inputs, State, object]:
    """``(inputs, state, outputs)`` of one pod trading one symbol over two bars, with the
    dtypes and layouts :func:`orchestra.engine.build.prepare` gives (numba compiles per type)."""
    t, s, p, k = 2, 1, 1, 1
    f2 = np.zeros((t, s))
    i1 = lambda n: np.zeros(n, dtype=np.int64)  # noqa: E731
    inputs = Inputs(
        timestamps=i1(t),
        day_id=i1(t),
        day_end=np.zeros(t, dtype=np.bool_),
        month_end=np.zeros(t, dtype=np.bool_),
        open=f2,
        close=f2.copy(),
        tradable=np.zeros((t, s), dtype=np.bool_),
        atr=f2.copy(),
        target=np.zeros((t, k)),
        funding=f2.copy(),
        slot_pod=i1(k),
        slot_sym=i1(k),
        pod_ptr=i1(p + 1),
        sym_ptr=i1(s + 1),
        sym_slots=i1(k),
        pod_max_leverage=np.ones(p),
        pod_threshold=np.zeros(p),
        pod_stop_loss=np.zeros(p),
        pod_trailing=np.zeros(p, dtype=np.bool_),
        pod_trail_mult=np.zeros(p),
        pod_max_drawdown=np.zeros(p),
        pod_drawdown_warning=np.zeros(p),
        pod_min_fraction=np.zeros(p),
        params=zero_params(),
        lifecycle=lifecycle_off(),
    )
    return inputs, new_state(p, s, k), new_outputs(t, p, 4)


def probe_stops() -> np.ndarray:
    """The driver's ``stops`` array (int8 per bar) of :func:`probe_arguments`' two bars."""
    return np.zeros(2, dtype=np.int8)


def start(group: str = "bar-loop") -> bool:
    """Compile ``group``'s kernels in a background process if the cache does not hold them yet
    (and ``ORCHESTRA_PRECOMPILE`` is not ``0``); returns whether a process was started.

    ``"bar-loop"``: ``run_segment_nb`` (backtests, paper trading, replays). ``"live"``:
    ``step_pre_nb`` / ``step_post_nb``, the halves live trading calls around the exchange's fills.
    """
    global _job
    if group not in GROUPS:
        raise ValueError(f"unknown kernel group {group!r}; one of {sorted(GROUPS)}")
    if _job is not None or os.environ.get("ORCHESTRA_PRECOMPILE", "1") == "0":
        return False
    if kernel_cached(GROUPS[group][0]) or usable_cores() < 2:
        return False
    try:
        _job = subprocess.Popen(
            [sys.executable, "-m", "orchestra.precompile", group],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:  # no process to spare: the engine compiles in-process
        return False
    atexit.register(_stop)
    return True


def wait() -> None:
    """Block until a background compile started by :func:`start` has finished (no-op if none)."""
    global _job
    job, _job = _job, None
    if job is not None:
        job.wait()


def _stop() -> None:
    """At exit (an error or Ctrl-C before the engine ran): do not leave the child behind."""
    if _job is not None and _job.poll() is None:
        _job.kill()
        _job.wait()


def probe_types() -> tuple:
    """The numba types of the kernels' ``(inputs, state, outputs)`` arguments (the references
    :class:`~orchestra.kernels.refs.KernelArgs` builds for :func:`probe_arguments`), found without
    compiling anything."""
    from orchestra.kernels.refs import ref_types

    return ref_types(*probe_arguments())


def compile_step_kernel() -> float:
    """Compile (or load) ``run_segment_nb`` for the engine's types; returns the seconds taken.

    Compiled from its signature: the child never builds the references (their constructors are
    the parent's to compile, :func:`orchestra.engine.core.Engine.advance`)."""
    from numba import typeof

    from orchestra.kernels.step import run_segment_nb

    t = time.perf_counter()
    run_segment_nb.compile((*probe_types(), typeof(0), typeof(0), typeof(probe_stops())))
    return time.perf_counter() - t


def compile_estimate(two_cores: str, one_core: str) -> str:
    """The compile time measured on the project's 2-core machine, or on one core when that is
    all this machine has (numba compiles in one thread; the second core runs the precompile
    child or the other compile units)."""
    import os

    return two_cores if (os.cpu_count() or 1) >= 2 else one_core


def compile_live_kernels() -> float:
    """Compile (or load) ``step_pre_nb`` / ``step_post_nb`` for the engine's types (the live
    loop passes its fills as float64 arrays); returns the seconds taken."""
    from numba import typeof

    from orchestra.kernels.step import step_post_nb, step_pre_nb

    t = time.perf_counter()
    refs = probe_types()
    step_pre_nb.compile((*refs, typeof(0)))
    fills = typeof(np.zeros(1))  # the filled units, prices and fees per symbol
    step_post_nb.compile((*refs, typeof(0), fills, fills, fills))
    return time.perf_counter() - t


def after_loop_calls() -> list[tuple[Any, Callable[[], object]]]:
    """Tiny calls, through the functions a run itself calls (so with a run's exact argument
    types), that compile the kernels a run needs once its bar loop is running: the results'
    trips, books and account units, the allocator's covariance, Cholesky check and PRC drift,
    the risk monitor's correlation. Pairs ``(kernel, call)`` in the order a run meets them; a
    test checks that a run after these calls adds no signature to any of the kernels."""
    from orchestra.allocation.moments import (
        SINGULAR_REL_TOL,
        _cholesky_nb,
        _ledoit_wolf_nb,
        cholesky_factor,
        pod_shares_nb,
        prc_drift_nb,
        shrunk_covariance,
    )
    from orchestra.kernels.capital import request_rebalance_nb
    from orchestra.results.result import _account_frame, slot_books
    from orchestra.results.trades import _trips_nb, account_units_nb, round_trips, slot_books_nb
    from orchestra.risk import _average_correlation_nb, average_correlation

    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    fills = {
        "bar": i64(0, 1),
        "slot": i64(0, 0),
        "units": np.array([1.0, -1.0]),
        "price": np.array([1.0, 1.0]),
        "fee": np.zeros(2),
    }
    returns = np.random.default_rng(0).normal(size=(6, 2))
    two = np.array([0.5, 0.5])
    return [  # the results' kernels first: the allocator's share numerics with the bar loop's
        # drift check, which the child compiles, so they cost least once the child is done
        (slot_books_nb, lambda: slot_books(fills, 1)),
        (
            account_units_nb,
            lambda: _account_frame(i64(0, 1), i64(0, 0), i64(0, 0), np.ones(2), ["X"]),
        ),
        (
            _trips_nb,
            lambda: round_trips(
                i64(0, 1), np.ones((2, 1)), np.zeros((2, 1)), ["a"], ["X"], i64(0), fills
            ),
        ),
        (_average_correlation_nb, lambda: average_correlation(returns)),
        (request_rebalance_nb, lambda: request_rebalance_nb(two.copy(), np.zeros(2, bool), two)),
        (pod_shares_nb, lambda: pod_shares_nb(two)),
        (_ledoit_wolf_nb, lambda: shrunk_covariance(returns)),
        (_cholesky_nb, lambda: cholesky_factor(np.eye(2))),
        (prc_drift_nb, lambda: prc_drift_nb(returns, 365.0, SINGULAR_REL_TOL, two, two, True)),
    ]


def compile_while_waiting() -> int:
    """While the child still compiles the bar loop, compile here the kernels the run needs after
    it (:func:`after_loop_calls`), one at a time, stopping as soon as the child is done (the rest
    compile when the run first calls them). Returns how many it compiled: a parent with nothing
    left to do before its first bar waits on the child anyway, so this costs the run nothing."""
    job = _job
    done = 0
    for _kernel, call in after_loop_calls():
        if job is None or job.poll() is not None:
            break
        call()
        done += 1
    return done


# group -> (the kernel whose cache entry says the group is compiled, the function compiling it)
GROUPS = {
    "bar-loop": ("run_segment_nb", compile_step_kernel),
    "live": ("step_post_nb", compile_live_kernels),
}


if __name__ == "__main__":
    GROUPS[sys.argv[1] if len(sys.argv) > 1 else "bar-loop"][1]()
