"""Compile the bar loop in a second process while the first one gets on with its work.

With an empty numba cache most of a first run is compiling, and the bar loop (``run_segment_nb``
with the pod rules, execution, marking, the lifecycle and the drift check it calls) is about
half of it; nothing a run does before its first bar needs it. :func:`start` launches
``python -m orchestra.precompile <group>``, which imports numpy, numba and the kernels only and
compiles the group's kernels from their signatures for the engine's exact types (:func:`probe_arguments`,
:func:`probe_types`; tests check them against the engine's), writing them to numba's cache.
The engine waits before its first bar until the bar loop is in the cache
(:func:`wait_for_kernel`), so its bars run while the child finishes the last after-loop kernel;
the results wait for the child itself (:func:`wait`), and the kernels then load from the cache. The work is split so that both cores stay busy (``make bench``, workload C):

* the child: the kernels' references (:mod:`orchestra.kernels.refs`; the parent's first bar
  needs them), the drift check, the bar loop, then the after-loop kernels from the last;
* the parent, at :func:`start`: the day-end chain (the bar loop's compile meets it late, when
  the parent has long finished it); then its own work (data, the strategies' kernels, signals);
  then, while the child is still busy, the after-loop kernels from the first
  (:func:`compile_while_waiting`): the results', the allocator's, the risk monitor's.

The two claim each after-loop kernel in a shared folder before compiling it
(:func:`compile_after_loop`), so none is compiled twice. With a single core available to the
process no child starts (it would only compete with the parent and import everything twice).

Nothing depends on the child succeeding: if it fails, is killed, or the cache cannot be written,
the engine compiles the kernels itself as before (only slower). ``ORCHESTRA_PRECOMPILE=0`` turns
it off.

Two processes writing numba's cache at once is safe here: numba writes each file to a temporary
name and renames it, and a function both processes compile (a helper of the bar loop and of the
allocator, say) has one signature, so both store the same entry under the same key. (Two
*different* signatures of one function compiled at once could pick the same data file name; no
kernel compiled while the child runs has a second signature: only ``prior_extreme``, a strategy
helper the child never compiles, has two, and ``cholesky_factor`` passes the allocator's
memoised, read-only Σ as a writable copy so that ``_cholesky_into`` keeps one.)
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from orchestra.kernels.state import (
    Inputs,
    Outputs,
    State,
    lifecycle_off,
    new_outputs,
    new_state,
    zero_params,
)

_job: subprocess.Popen | None = None
_group: str | None = None  # the group the child compiles
# a folder where the parent and the child claim the after-loop kernels they compile (one file
# per kernel, created exclusively), so that they never compile the same one at once
CLAIMS_ENV = "ORCHESTRA_PRECOMPILE_CLAIMS"
_claims: str | None = None


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


def probe_arguments() -> tuple[Inputs, State, Outputs]:
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
    global _job, _claims, _group
    if group not in GROUPS:
        raise ValueError(f"unknown kernel group {group!r}; one of {sorted(GROUPS)}")
    if _job is not None or os.environ.get("ORCHESTRA_PRECOMPILE", "1") == "0":
        return False
    if kernel_cached(GROUPS[group][0]) or usable_cores() < 2:
        return False
    try:
        claims = tempfile.mkdtemp(prefix="orchestra-precompile-")
        _job = subprocess.Popen(
            [sys.executable, "-m", "orchestra.precompile", group],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, CLAIMS_ENV: claims},
        )
    except OSError:  # no process to spare: the engine compiles in-process
        return False
    _claims, _group = claims, group
    atexit.register(_stop)
    if group == "bar-loop":
        compile_day_end()  # the child meets it late (see the module docstring)
    return True


def wait() -> None:
    """Block until a background compile started by :func:`start` has finished (no-op if none).

    A bar-loop child still running is on the after-loop kernels, from the last: this process
    compiles the ones it has not claimed yet, from the first, rather than wait idle (the
    results need them all)."""
    global _job, _claims
    job, _job = _job, None
    if job is not None:
        if _group == "bar-loop" and job.poll() is None:
            compile_after_loop(until=lambda: job.poll() is not None)
        job.wait()
    if _claims is not None:
        shutil.rmtree(_claims, ignore_errors=True)
        _claims = None


def wait_for_kernel(name: str = "run_segment_nb", poll: float = 0.005) -> None:
    """Block until the child has put ``name`` in numba's cache (or has finished), not until it
    has finished: the engine needs the bar loop now, and the after-loop kernels only for the
    results, so its bar loop runs while the child compiles the last of them. The results join
    the child first (:func:`wait`, called by
    :func:`~orchestra.results.result.build_result`). No-op without a child."""
    job = _job
    if job is None:
        return
    while job.poll() is None and not kernel_cached(name):
        time.sleep(poll)
    if job.poll() is not None:
        wait()


def _stop() -> None:
    """At exit (an error or Ctrl-C before the engine ran): do not leave the child behind."""
    if _job is not None and _job.poll() is None:
        _job.kill()
        _job.wait()
    if _claims is not None:
        shutil.rmtree(_claims, ignore_errors=True)


def probe_types() -> tuple:
    """The numba types of the kernels' ``(inputs, state, outputs)`` arguments (the references
    :class:`~orchestra.kernels.refs.KernelArgs` builds for :func:`probe_arguments`), found without
    compiling anything."""
    from orchestra.kernels.refs import ref_types

    return ref_types(*probe_arguments())


def compile_step_kernel() -> float:
    """Compile (or load) ``run_segment_nb`` for the engine's types; returns the seconds taken.

    Compiled from its signature, so no references need building (the child compiles their
    constructors separately first, for the parent: :func:`_child_bar_loop`)."""
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
        _cholesky_into,
        _ledoit_wolf_into,
        cholesky_factor,
        pod_shares_nb,
        prc_drift,
        prc_drift_into,
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
    return [  # the largest first: the parent, which starts here, takes it while the child
        # still compiles the bar loop; the child, from the other end, has the small ones left
        # for when the parent runs its bars (the last three: the child's drift check compiled
        # them, so they are cached by then)
        (
            _trips_nb,
            lambda: round_trips(
                i64(0, 1), np.ones((2, 1)), np.zeros((2, 1)), ["a"], ["X"], i64(0), fills
            ),
        ),
        (slot_books_nb, lambda: slot_books(fills, 1)),
        (
            account_units_nb,
            lambda: _account_frame(i64(0, 1), i64(0, 0), i64(0, 0), np.ones(2), ["X"]),
        ),
        (_average_correlation_nb, lambda: average_correlation(returns)),
        (request_rebalance_nb, lambda: request_rebalance_nb(two.copy(), np.zeros(2, bool), two)),
        (pod_shares_nb, lambda: pod_shares_nb(two)),
        (_ledoit_wolf_into, lambda: shrunk_covariance(returns)),
        (_cholesky_into, lambda: cholesky_factor(np.eye(2))),
        (prc_drift_into, lambda: prc_drift(returns, 365.0, SINGULAR_REL_TOL, two, two, True)),
    ]


def compile_after_loop(reverse: bool = False, until: Callable[[], bool] | None = None) -> int:
    """Compile the kernels of :func:`after_loop_calls` that numba's cache does not hold yet, one at
    a time, in their order (``reverse``: from the last), stopping early once ``until()`` is true.
    Returns how many it compiled.

    The parent runs through them forwards while the child is busy (:func:`compile_while_waiting`),
    the child backwards once the bar loop is compiled, so the two share the list. A kernel both
    reach at the same moment is compiled twice into the same cache entry (each has one
    signature: see the module docstring)."""
    calls = after_loop_calls()
    done = 0
    for kernel, call in reversed(calls) if reverse else calls:
        if until is not None and until():
            break
        if _has_cache_entry(kernel) or not _claim(kernel):
            continue
        call()
        done += 1
    return done


def compile_while_waiting() -> int:
    """While the child still compiles the bar loop, compile here what the run needs after it
    (:func:`compile_after_loop`), stopping once the bar loop is in the cache or the child is
    done (the rest: the child compiles them while this process runs its bars, or they load from
    the cache or compile when the run first calls them). A parent with nothing left to do
    before its first bar would wait for the child anyway, so this costs the run nothing."""
    job = _job
    if job is None:
        return 0
    return compile_after_loop(until=lambda: job.poll() is not None or kernel_cached())


def _claim(kernel: Any) -> bool:
    """Whether this process may compile ``kernel``: no other one has claimed it (always, with
    no second process)."""
    folder = _claims or os.environ.get(CLAIMS_ENV)
    if not folder:
        return True
    name = f"{kernel.py_func.__module__}.{kernel.py_func.__qualname__}"
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    except OSError:  # the folder is gone (the parent is done waiting): nothing to share
        return True
    return True


def _has_cache_entry(kernel: Any) -> bool:
    try:
        return Path(kernel._cache._cache_file._index_path).is_file()
    except AttributeError:  # another numba layout: assume not, which only costs a compile
        return False


def compile_day_end() -> float:
    """Compile (or load) the bar loop's day-end chain (``day_end_nb``: the lifecycle) for the
    engine's types; returns the seconds taken. The parent's share of the bar loop's compile
    (the module docstring says why this part)."""
    from numba import typeof

    from orchestra.kernels.lifecycle import day_end_nb

    t = time.perf_counter()
    day_end_nb.compile((*probe_types(), typeof(0)))
    return time.perf_counter() - t


def compile_drift_check() -> float:
    """Compile (or load) the bar loop's PRC-drift check (``drift_due_nb`` and the Ledoit–Wolf,
    Cholesky and drift numerics it calls) for the engine's types; returns the seconds taken."""
    from numba import typeof

    from orchestra.kernels.step import drift_due_nb

    t = time.perf_counter()
    _inputs, state, outputs = probe_arguments()
    scalar = typeof(0.0)  # Inputs.params' fields
    arrays = (state.pod_state, state.pod_joined, state.memo_navs, state.memo_index,
              state.memo_target, state.scratch_drift, outputs.pod_equity[0])  # fmt: skip
    drift_due_nb.compile((*map(typeof, arrays), *[scalar] * 5))
    return time.perf_counter() - t


def _child_bar_loop() -> None:
    """The child's work for the "bar-loop" group: the references' constructors (the parent's
    first call of the bar loop needs them), the drift check (so that the parent has long
    finished the day-end chain when the bar loop's compile reaches it), the bar loop, then the
    after-loop kernels from the last (:func:`compile_after_loop`)."""
    from orchestra.kernels.refs import as_refs

    as_refs(*probe_arguments())
    compile_drift_check()
    compile_step_kernel()
    compile_after_loop(reverse=True)


# group -> (the kernel whose cache entry says the group is compiled, the function compiling it)
GROUPS = {
    "bar-loop": ("run_segment_nb", _child_bar_loop),
    "live": ("step_post_nb", compile_live_kernels),
}


if __name__ == "__main__":
    GROUPS[sys.argv[1] if len(sys.argv) > 1 else "bar-loop"][1]()
