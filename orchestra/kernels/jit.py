"""Numba options the kernels share."""

from __future__ import annotations

from numba import njit

# The bar loop's functions run without numba's reference counting (``_nrt=False``): they
# allocate nothing, and counting the references of the run's arrays and records (atomic
# increments at every call and field read) cost ~25 % of the bar loop's time. They read the
# run's arrays through :mod:`orchestra.kernels.refs`, whose field reads and unboxing work
# without it. A function compiled so cannot allocate (it fails to compile if it tries).

# Python's entries to the bar loop (``run_segment_nb``, the live halves). They release the GIL:
# a streamed run's bar loop runs in one thread while the other computes the pods' signals and
# the next bars (orchestra/engine/fused.py), whose numpy and Python glue would otherwise wait
# for each segment of bars (L's stream: 4.2 -> 3.7 s).
kernel_entry = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]

# Helpers called from other kernels only, also without the CPython wrapper, which is half a
# small helper's compile time (a helper decorated with it cannot be called from Python).
kernel_helper = njit(cache=True, no_cpython_wrapper=True, _nrt=False)  # type: ignore[call-overload]

# The bodies of the live halves (``pre_nb``/``post_nb``), inlined into the bar loop and into the
# halves themselves: one call level less, and numba re-optimises a callee's code in every caller
# (numba's IR inlining: the same source in both places, never a copy of it).
kernel_inline = njit(cache=True, no_cpython_wrapper=True, _nrt=False, inline="always")  # type: ignore[call-overload]
