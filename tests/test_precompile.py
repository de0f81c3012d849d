"""The bar loop compiled in a second process on a cold cache (:mod:`orchestra.precompile`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import pytest

from orchestra import precompile
from orchestra.config import load_config
from orchestra.engine import Engine, prepare
from orchestra.engine.warm import warm_config
from tests.conftest import CONFIGS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("source", ["example", "warm"])
def test_the_probe_has_the_engines_types(source: str) -> None:
    """The child compiles for the probe's types; were they not the engine's, numba would compile
    the kernel again in the parent and the second process would be wasted work."""
    cfg = load_config(CONFIGS / "example.yaml") if source == "example" else warm_config()
    eng = Engine(prepare(cfg))
    engine_types = numba.typeof((eng.inputs, eng.state, eng.out))
    assert numba.typeof(precompile.probe_arguments()) == engine_types
    assert numba.typeof(precompile.probe_stops()) == numba.typeof(eng._stops)
    refs = eng._kernel_args(eng.inputs, eng.state, eng.out)  # what the engine passes the kernels
    assert tuple(numba.typeof(r) for r in refs) == precompile.probe_types()


def test_live_trading_calls_the_step_halves_with_the_probes_types() -> None:
    """The "live" group compiles ``step_pre_nb`` / ``step_post_nb`` for the types
    :meth:`Engine.step_with_fills` passes: stepping adds no second signature."""
    import numpy as np

    from orchestra.kernels.step import step_post_nb, step_pre_nb

    precompile.compile_live_kernels()
    eng = Engine(prepare(load_config(CONFIGS / "example.yaml")))
    nan = lambda n: np.full(n, np.nan)  # noqa: E731  (NaN fills: modelled)
    for _ in range(3):
        eng.step_with_fills(lambda t, net, px: (nan(net.size), nan(net.size), nan(net.size), None))
    assert len(step_pre_nb.signatures) == 1 and len(step_post_nb.signatures) == 1


def test_a_failed_or_killed_child_only_costs_the_compile(monkeypatch) -> None:
    """The engine waits for the child whatever becomes of it, then runs (compiling the kernel
    itself if the child left nothing in the cache)."""
    from orchestra import run_backtest

    for code in (
        "import sys; sys.exit(3)",
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    ):
        child = subprocess.Popen([sys.executable, "-c", code])
        monkeypatch.setattr(precompile, "_job", child)
        res = run_backtest(CONFIGS / "example.yaml")
        assert precompile._job is None and child.returncode != 0
        assert res.equity.height > 0


def test_unknown_group_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kernel group"):
        precompile.start("nope")


def test_nothing_starts_when_the_kernel_is_cached_or_it_is_turned_off(monkeypatch) -> None:
    precompile.compile_step_kernel()  # compiles or loads: cached afterwards
    assert precompile.kernel_cached()
    assert precompile.start() is False
    precompile.wait()  # no job: returns at once
    monkeypatch.setattr(precompile, "kernel_cached", lambda: False)
    monkeypatch.setenv("ORCHESTRA_PRECOMPILE", "0")
    assert precompile.start() is False


def run_with_empty_cache(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh process whose numba cache is an empty folder (must succeed)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    env.pop("ORCHESTRA_PRECOMPILE", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_no_child_on_a_single_core(tmp_path: Path) -> None:
    """Pinned to one CPU (as under ``taskset -c 0``), a cold cache starts no second process: it
    would only share the core with the parent."""
    code = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from orchestra import precompile\n"
        "assert not precompile.kernel_cached(), 'the cache should be empty'\n"
        "print(precompile.usable_cores(), precompile.start())\n"
    )
    proc = run_with_empty_cache(code, tmp_path)
    assert proc.stdout.split() == ["1", "False"]


@pytest.mark.slow
def test_a_cold_run_loads_the_kernel_the_second_process_compiled(tmp_path: Path) -> None:
    """Fresh process, empty numba cache: the child compiles ``run_segment_nb``, the engine waits
    and loads it from the cache (a hit, no compile of its own), and the run completes."""
    if precompile.usable_cores() < 2:
        pytest.skip("one CPU: no second process starts (test_no_child_on_a_single_core)")
    code = (
        "from orchestra import precompile\n"
        "assert precompile.start(), 'cold cache: a process should start'\n"
        "from orchestra import run_backtest\n"
        f"res = run_backtest({str(CONFIGS / 'example.yaml')!r})\n"
        "from orchestra.kernels.step import run_segment_nb as k\n"
        "print(sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))\n"
    )
    proc = run_with_empty_cache(code, tmp_path)
    hits, misses = map(int, proc.stdout.split()[-2:])
    assert (hits, misses) == (1, 0)


def test_make_install_warms_again_when_a_kernel_outside_the_step_module_is_cold(
    monkeypatch,
) -> None:
    """Issue #26: a checkout that gained a kernel (the allocator's, the transposes) is not
    'cached' for `make install` until that kernel is; every listed kernel exists."""
    import importlib

    from orchestra.engine import warm

    for module, name in warm.OTHER_KERNELS:
        assert hasattr(getattr(importlib.import_module(module), name), "_cache"), name
    monkeypatch.setattr(warm, "_cached", lambda module, name: name != "_cholesky_into")
    monkeypatch.setattr("orchestra.precompile.kernel_cached", lambda name="run_segment_nb": True)
    assert not warm.kernels_all_cached()
    monkeypatch.setattr(warm, "_cached", lambda module, name: True)
    assert warm.kernels_all_cached()


def test_every_kernel_compiled_ahead_has_a_runs_types(tmp_path: Path) -> None:
    """What the two processes compile ahead of the run (the child's references, drift check and
    bar loop; the parent's day-end chain; the after-loop kernels either may compile) is each
    kernel for a run's exact types: a fresh process that compiled them all then runs the example
    and its results without adding a signature to any of them (a new one would be a second
    compile, the first wasted)."""
    code = (
        "from orchestra import precompile, run_backtest\n"
        "from orchestra.kernels import refs, step, lifecycle\n"
        "precompile.compile_day_end(); precompile.compile_drift_check()\n"
        "refs.as_refs(*precompile.probe_arguments()); precompile.compile_step_kernel()\n"
        "calls = precompile.after_loop_calls()\n"
        "for _, call in calls:\n"
        "    call()\n"
        "kernels = [k for k, _ in calls] + [lifecycle.day_end_nb, step.drift_due_nb,\n"
        "    step.run_segment_nb, refs.inputs_ref, refs.state_ref, refs.outputs_ref]\n"
        "before = [set(k.signatures) for k in kernels]\n"
        f"run_backtest({str(CONFIGS / 'example.yaml')!r})\n"
        "grown = [k.py_func.__name__ for k, b in zip(kernels, before) if set(k.signatures) != b]\n"
        "print('grown:', grown, 'used:', all(before))\n"
    )
    env = {**os.environ, "ORCHESTRA_PRECOMPILE": "0"}  # the repository's (warm) numba cache
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == "grown: [] used: True"


class _FakeKernel:
    """Stands in for a numba dispatcher in :func:`precompile.compile_after_loop` (no cache)."""

    def __init__(self, name: str, log: list[str]) -> None:
        def py_func() -> None: ...

        py_func.__qualname__ = name
        self.py_func = py_func
        self.name, self.log = name, log

    def call(self) -> None:
        self.log.append(self.name)


def test_the_two_processes_share_the_after_loop_kernels(monkeypatch, tmp_path: Path) -> None:
    """The parent runs forwards, the child backwards; each kernel is compiled by whichever
    claims it first, never by both."""
    log: list[str] = []
    kernels = [_FakeKernel(n, log) for n in "abcde"]
    monkeypatch.setattr(precompile, "after_loop_calls", lambda: [(k, k.call) for k in kernels])
    monkeypatch.setenv(precompile.CLAIMS_ENV, str(tmp_path))
    monkeypatch.setattr(precompile, "_claims", None)
    assert precompile.compile_after_loop(reverse=True, until=lambda: len(log) == 2) == 2
    assert log == ["e", "d"]  # the child, from the last, until it is told to stop
    assert precompile.compile_after_loop() == 3  # the parent skips what the child claimed
    assert log == ["e", "d", "a", "b", "c"]
    assert precompile.compile_after_loop() == 0 and precompile.compile_after_loop(True) == 0
    monkeypatch.delenv(precompile.CLAIMS_ENV)  # one process: no claims, everything compiles
    assert precompile.compile_after_loop() == 5


def test_the_bar_loop_starts_once_its_kernel_is_cached_and_the_results_join_the_child(
    monkeypatch,
) -> None:
    """The engine waits for the bar loop's cache entry, not for the child's exit (the child
    may still be compiling a results' kernel); the results wait for the child."""
    from orchestra.engine import Engine, prepare
    from orchestra.results.result import build_result

    cfg = load_config(CONFIGS / "example.yaml")
    engine = Engine(prepare(cfg))
    engine.step()  # the kernel is in this process's cache (and on disk, as the child leaves it)
    assert precompile.kernel_cached("run_segment_nb")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monkeypatch.setattr(precompile, "_job", child)
        engine.run()  # would wait 60 s for the child's exit before the change
        assert child.poll() is None and precompile._job is child
        monkeypatch.setattr(child, "wait", lambda *a, **k: child.kill() or 0)
        build_result(engine, cfg)  # the results join the child (here: end it)
        assert precompile._job is None
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("group", ["bar-loop", "live"])
def test_the_parent_stops_at_the_cached_bar_loop_and_helps_the_child_at_the_results(
    monkeypatch, tmp_path: Path, group: str
) -> None:
    """Before its bars the parent compiles after-loop kernels only until the bar loop is in the
    cache (its bars then run while the child compiles the rest); at the results it compiles
    those the child has not claimed instead of waiting idle, then joins the child. A live
    child compiles no after-loop kernel, so there it only waits."""
    log: list[str] = []
    kernels = [_FakeKernel(n, log) for n in "abcde"]
    monkeypatch.setattr(precompile, "after_loop_calls", lambda: [(k, k.call) for k in kernels])
    monkeypatch.setattr(precompile, "_claims", str(tmp_path))
    monkeypatch.setattr(precompile, "_group", group)
    monkeypatch.setattr(precompile, "kernel_cached", lambda name="run_segment_nb": bool(log))
    claimed = kernels[-1].py_func  # the child is on the last one
    (tmp_path / f"{claimed.__module__}.{claimed.__qualname__}").touch()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monkeypatch.setattr(precompile, "_job", child)
        assert precompile.compile_while_waiting() == 1  # "a", then the bar loop is cached
        assert log == ["a"]
        # (the child's join ends it: it would sleep on)
        monkeypatch.setattr(child, "wait", lambda: (child.kill(), subprocess.Popen.wait(child))[1])
        precompile.wait()
        assert log == (["a", "b", "c", "d"] if group == "bar-loop" else ["a"])
        assert precompile._job is None and child.poll() is not None
    finally:
        child.kill()
        child.wait()
