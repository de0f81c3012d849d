"""The kernels' references to a run's tuples (:mod:`orchestra.kernels.refs`)."""

from __future__ import annotations

import gc
import sys
import weakref

import numba
import numpy as np
from numba import njit

from orchestra import precompile
from orchestra.config import load_config
from orchestra.engine import Engine, prepare
from orchestra.kernels.refs import KernelArgs, as_refs, ref_types
from orchestra.kernels.state import copy_state
from tests.conftest import CONFIGS


@njit(_nrt=False)
def _write_through(st, out, value):
    """Kernel writes through the references, in a function without reference counting (as the
    bar loop is compiled)."""
    st.units[0] = value
    out.fill_count[0] = 7
    return st.pod_cash.shape[0] + st.units[0]


def test_the_references_share_the_tuples_arrays() -> None:
    """A write through a reference is a write to the tuple's array (both directions), in a
    function compiled without reference counting, and the reference has the types the bar loop
    is compiled for."""
    inp, st, out = precompile.probe_arguments()
    refs = as_refs(inp, st, out)
    assert tuple(numba.typeof(r) for r in refs) == ref_types(inp, st, out)
    st.pod_cash[:] = 2.0
    assert _write_through(refs[1], refs[2], 1.5) == st.pod_cash.size + 1.5
    assert st.units[0] == 1.5 and out.fill_count[0] == 7


def test_kernel_args_rebuild_only_for_another_tuple() -> None:
    inp, st, out = precompile.probe_arguments()
    args = KernelArgs()
    first = args(inp, st, out)
    assert args(inp, st, out) == first  # the same objects: the same references
    assert all(a is b for a, b in zip(args(inp, st, out), first, strict=True))
    st2 = copy_state(st)  # a restore swaps the State for another object
    second = args(inp, st2, out)
    assert second[1] is not first[1]
    assert second[0] is first[0] and second[2] is first[2]  # the others are kept
    st2.units[0] = 3.0
    assert _write_through(second[1], second[2], 4.0) == st2.pod_cash.size + 4.0
    assert st2.units[0] == 4.0 and st.units[0] == 0.0  # the new State, not the old one


def test_a_reference_holds_its_arrays_until_it_is_dropped() -> None:
    """A reference takes one count on each of its tuple's arrays when it is built, and gives
    each back when it is freed: the arrays outlive their tuple while a reference holds them (a
    missing increment would free them under the kernels) and are freed with it (an extra one
    would leak them)."""
    inp, st, out = precompile.probe_arguments()
    refs = as_refs(inp, st, out)
    arrays = [inp.close, inp.day_end, st.units, st.pod_state, out.pod_equity, out.fill_count]
    counts = [sys.getrefcount(a) for a in arrays]
    more = as_refs(inp, st, out)  # one more reference to each record: one more count per array
    assert [sys.getrefcount(a) for a in arrays] == [c + 1 for c in counts]
    del more
    gc.collect()
    assert [sys.getrefcount(a) for a in arrays] == counts
    alive = [weakref.ref(a) for a in arrays]
    n_pods = st.pod_cash.shape[0]
    del arrays, inp, st, out
    gc.collect()
    assert all(r() is not None for r in alive)  # the references keep them
    assert _write_through(refs[1], refs[2], 1.5) == n_pods + 1.5
    del refs
    gc.collect()
    assert [r() is None for r in alive] == [True] * len(alive)


def test_a_finished_run_frees_its_arrays() -> None:
    """The references count the arrays they hold and release them: once the engine is gone its
    (largest) arrays are freed, whatever the kernels did with them (a lost decrement would keep
    a run's gigabytes alive in a notebook or a sweep)."""
    eng = Engine(prepare(load_config(CONFIGS / "example.yaml")))
    eng.run()
    arrays = [eng.inputs.target, eng.inputs.close, eng.state.units, eng.out.pod_equity]
    alive = [weakref.ref(a) for a in arrays]
    del arrays, eng
    gc.collect()
    assert [r() is None for r in alive] == [True] * len(alive)


def test_a_run_is_the_same_whichever_references_carry_it() -> None:
    """Running half the bars, then the rest with fresh references to the same tuples, equals
    one run through (the references carry no state of their own)."""
    cfg = load_config(CONFIGS / "example.yaml")
    one = Engine(prepare(cfg))
    one.run()
    two = Engine(prepare(cfg))
    half = two.n_bars // 2
    two.advance(half)
    two._kernel_args = KernelArgs()  # new references at the next segment
    two.advance(two.n_bars)
    for a, b in zip(one.out, two.out, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    for a, b in zip(one.state, two.state, strict=True):
        assert np.array_equal(a, b, equal_nan=True)


def test_calling_the_bar_loop_leaves_the_reference_counts_as_they_were() -> None:
    """The bar loop is compiled without reference counting; unboxing its references takes one
    each and must give it back (else every call leaks one and a run's arrays are never freed)."""
    from orchestra.kernels.step import run_segment_nb, step_pre_nb

    inp, st, out = precompile.probe_arguments()
    refs = as_refs(inp, st, out)
    stops = precompile.probe_stops()
    before = [r._meminfo.refcount for r in refs]
    for _ in range(50):
        run_segment_nb(*refs, 0, 0, stops)
        step_pre_nb(*refs, 0)
    assert [r._meminfo.refcount for r in refs] == before == [1, 1, 1]


def test_a_field_cannot_be_replaced_in_a_kernel_without_reference_counting() -> None:
    """Replacing a whole array of a record there would store an array nobody counts, which the
    record frees later: it does not compile (setting an element, the kernels' use, does)."""
    import pytest

    @njit(_nrt=False)
    def replace_units(st, other):
        st.units = other

    inp, st, out = precompile.probe_arguments()
    with pytest.raises(Exception, match="without reference counting"):
        replace_units(as_refs(inp, st, out)[1], np.zeros(1))
