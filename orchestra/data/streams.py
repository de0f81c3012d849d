"""Many keyed random streams, cheaply: numpy's ``default_rng(key)`` for thousands of keys at once.

The synthetic generator draws every chunk of days from its own stream, keyed by (seed, symbol,
component, chunk): five years of hourly bars for 50 symbols are ~17,000 streams. Building each
with ``np.random.default_rng(key)`` costs ~9 µs, most of it numpy's ``SeedSequence`` hashing the
key in Python-level steps, one key at a time; that was a third of such a run's data stage.

:func:`seed_states` does the same hashing for a whole batch of keys with numpy array operations
(numpy's SeedSequence algorithm — its hashmix/mix rounds on a pool of four 32-bit words — on
``(N,)`` columns instead of scalars), and :func:`generator` builds ``Generator(PCG64(...))``
from one precomputed state through numpy's own ``ISeedSequence`` protocol: PCG64 seeds itself
from those words exactly as it would from the SeedSequence. So ``generator(seed_states([k])[0])``
draws the same numbers as ``np.random.default_rng(k)``, bit for bit (tested with hypothesis over
keys of any length, zeros and words past 2**32, against numpy itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.random.bit_generator import ISeedSequence

# numpy's SeedSequence constants (numpy/random/bit_generator.pyx)
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = np.uint32(0xCA01F9DD)
_MIX_MULT_R = np.uint32(0x4973F715)
_XSHIFT = np.uint32(16)
_POOL = 4
_MASK = 0xFFFFFFFF


def _words(n: int) -> list[int]:
    """An entropy integer as numpy's SeedSequence reads it: little-endian 32-bit words, ``[0]``
    for 0."""
    n = int(n)
    if n < 0:
        raise ValueError(f"random stream keys must be non-negative integers, got {n}")
    if n == 0:
        return [0]
    out = []
    while n:
        out.append(n & _MASK)
        n >>= 32
    return out


def _hashmix(value: np.ndarray, h: list[int]) -> np.ndarray:
    """numpy's ``hashmix`` on a column of words; ``h[0]`` is the running hash constant."""
    value = value ^ np.uint32(h[0])
    h[0] = (h[0] * _MULT_A) & _MASK
    value = value * np.uint32(h[0])
    return value ^ (value >> _XSHIFT)


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result: np.ndarray = _MIX_MULT_L * x - _MIX_MULT_R * y  # uint32, wrapping
    return result ^ (result >> _XSHIFT)


def _states_same_length(entropy: np.ndarray) -> np.ndarray:
    """``(N, L)`` uint32 entropy words → ``(N, 4)`` uint64 PCG64 seed words."""
    n, length = entropy.shape
    h = [_INIT_A]
    zero = np.zeros(n, dtype=np.uint32)
    with np.errstate(over="ignore"):
        pool = [_hashmix(entropy[:, i] if i < length else zero, h) for i in range(_POOL)]
        for i_src in range(_POOL):
            for i_dst in range(_POOL):
                if i_src != i_dst:
                    pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], h))
        for i_src in range(_POOL, length):
            for i_dst in range(_POOL):
                pool[i_dst] = _mix(pool[i_dst], _hashmix(entropy[:, i_src], h))
        hb = _INIT_B
        out = np.empty((n, 8), dtype=np.uint32)
        for i_dst in range(8):
            value = pool[i_dst % _POOL] ^ np.uint32(hb)
            hb = (hb * _MULT_B) & _MASK
            value = value * np.uint32(hb)
            out[:, i_dst] = value ^ (value >> _XSHIFT)
    return out.astype("<u4").view("<u8").astype(np.uint64)


def seed_states(keys: Sequence[Sequence[int]]) -> np.ndarray:
    """``(N, 4)`` uint64: ``np.random.SeedSequence(key).generate_state(4, np.uint64)`` for each
    key (a sequence of non-negative integers), computed for all keys at once."""
    out = np.empty((len(keys), 4), dtype=np.uint64)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    for length, idx in by_length.items():
        group = [keys[i] for i in idx]
        try:  # the usual case: every part one 32-bit word
            parts = np.array(group, dtype=np.int64).reshape(len(idx), length)
        except OverflowError:  # a part past 2**63
            parts = None
        if parts is not None and (parts < 0).any():
            raise ValueError(f"random stream keys must be non-negative integers, got {keys!r}")
        if parts is not None and (parts <= _MASK).all():
            out[idx] = _states_same_length(parts.astype(np.uint32))
            continue
        # a part of several 32-bit words: numpy's reading of each part, key by key
        rows = [[w for part in key for w in _words(part)] for key in group]
        for n_words in {len(r) for r in rows}:
            sub = [j for j, r in enumerate(rows) if len(r) == n_words]
            entropy = np.array([rows[j] for j in sub], dtype=np.uint32).reshape(len(sub), n_words)
            out[[idx[j] for j in sub]] = _states_same_length(entropy)
    return out


def seed_states_grid(prefixes: Sequence[Sequence[int]], counters: Sequence[int]) -> np.ndarray:
    """``(len(prefixes), len(counters), 4)``: :func:`seed_states` of every key
    ``(*prefix, counter)``, built with numpy (no Python tuple per key)."""
    pre = np.asarray(prefixes, dtype=object)
    cnt = np.asarray(counters, dtype=np.int64)
    n_p, n_c = len(prefixes), cnt.size
    try:  # past 2**63: the general path below
        parts = pre.astype(np.int64) if n_p and n_c and pre.ndim == 2 else None
    except OverflowError:
        parts = None
    if parts is not None:
        one_word = (parts >= 0).all() and (parts <= _MASK).all()
        if one_word and (cnt >= 0).all() and (cnt <= _MASK).all():
            entropy = np.empty((n_p, n_c, parts.shape[1] + 1), dtype=np.uint32)
            entropy[:, :, :-1] = parts[:, None, :]
            entropy[:, :, -1] = cnt[None, :]
            flat = _states_same_length(entropy.reshape(n_p * n_c, -1))
            return flat.reshape(n_p, n_c, 4)
    keys = [(*p, int(c)) for p in prefixes for c in cnt]
    return seed_states(keys).reshape(n_p, n_c, 4)


class _Seeded:
    """A precomputed SeedSequence state, served through numpy's ``ISeedSequence`` protocol."""

    __slots__ = ("state",)

    def __init__(self, state: np.ndarray):
        self.state = state

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        if n_words != 4 or np.dtype(dtype) != np.dtype(np.uint64):  # only PCG64's request
            raise ValueError("a precomputed stream state serves PCG64's 4 uint64 words only")
        return self.state


ISeedSequence.register(_Seeded)


def generator(state: np.ndarray) -> np.random.Generator:
    """``np.random.default_rng(key)`` from ``seed_states([key])[0]``: the same stream."""
    # numpy accepts any ISeedSequence here (its stubs name SeedSequence only)
    return np.random.Generator(np.random.PCG64(_Seeded(state)))  # type: ignore[arg-type]
