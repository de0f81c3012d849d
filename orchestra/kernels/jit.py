"""Numba options the kernels share."""

from __future__ import annotations

from numba import njit

# For helpers called from other kernels only: compiled without the CPython wrapper, which would
# unbox the ~100 arrays of Inputs/State/Outputs and is half such a helper's compile time. A
# helper decorated with it cannot be called from Python.
kernel_helper = njit(cache=True, no_cpython_wrapper=True)  # type: ignore[call-overload]
