"""Keyed random streams in batches (orchestra.data.streams): numpy's own streams, bit for bit."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.data import synthetic
from orchestra.data.streams import generator, seed_states, seed_states_grid

# parts of a key as numpy's SeedSequence reads them: 0 (one zero word), one 32-bit word, two or
# more words (past 2**32, past 2**63, past 2**64)
PART = st.one_of(
    st.just(0),
    st.integers(0, 2**32 - 1),
    st.integers(2**32, 2**64 + 5),
    st.integers(2**64, 2**100),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(PART, max_size=9), min_size=1, max_size=12))
def test_batched_seed_states_are_numpys_seed_sequence(keys: list[list[int]]) -> None:
    got = seed_states(keys)
    for key, state in zip(keys, got, strict=True):
        assert np.array_equal(state, np.random.SeedSequence(key).generate_state(4, np.uint64))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 5).flatmap(
        lambda n: st.lists(st.lists(PART, min_size=n, max_size=n), min_size=1, max_size=5)
    ),
    st.lists(st.integers(0, 2**33), min_size=1, max_size=6),
)
def test_a_grid_of_keys_is_seed_states_of_each(prefixes: list[list[int]], counters: list[int]):
    got = seed_states_grid(prefixes, counters)
    assert got.shape == (len(prefixes), len(counters), 4)
    for i, prefix in enumerate(prefixes):
        assert np.array_equal(got[i], seed_states([(*prefix, c) for c in counters]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6), st.integers(1, 50))
def test_a_stream_from_its_state_draws_what_default_rng_draws(key: list[int], n: int) -> None:
    ours, numpys = generator(seed_states([key])[0]), np.random.default_rng(key)
    assert np.array_equal(ours.standard_t(4.0, size=n), numpys.standard_t(4.0, size=n))
    assert np.array_equal(ours.normal(0.0, 0.5, n), numpys.normal(0.0, 0.5, n))
    assert np.array_equal(ours.random(n), numpys.random(n))


def test_negative_key_parts_are_refused_as_numpy_refuses_them() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        seed_states([[1, -2]])
    with pytest.raises(ValueError):
        np.random.SeedSequence([1, -2])


@pytest.mark.parametrize("tf", ["1h", "5m"])
def test_intraday_bars_equal_one_default_rng_per_stream(tf: str, monkeypatch) -> None:
    """The generator's intraday streams, batched, against the per-stream construction they
    replace: every synthetic number is unchanged."""
    symbols = ["BTC/USDT", "ZZZ/USDT", "ETH/USDT"]
    args = (symbols, dt.date(2023, 12, 20), dt.date(2024, 2, 3), tf, 11)
    batched = synthetic.generate_market(*args)
    monkeypatch.setattr(
        synthetic, "seed_states_grid", lambda pre, cnt: [[[*p, c] for c in cnt] for p in pre]
    )
    monkeypatch.setattr(synthetic, "generator", np.random.default_rng)
    one_by_one = synthetic.generate_market(*args)
    for field in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(batched, field), getattr(one_by_one, field)), field


def test_chunks_split_between_threads_give_the_same_bars(monkeypatch) -> None:
    """Long histories split the stream chunks between a thread per core, each placing its
    chunks' bars into the matrices: the same matrices as one thread, and as the long frame."""
    args = (["BTC/USDT", "ETH/USDT", "ZZZ/USDT"], dt.date(2024, 1, 1), dt.date(2024, 3, 9), "5m", 3)
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    single = synthetic.generate_market(*args)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    threaded = synthetic.generate_market(*args)
    frame = synthetic.generate(*args)
    for field in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(single, field), getattr(threaded, field)), field
        long = frame.pivot(on="symbol", index="timestamp", values=field)
        assert np.array_equal(long.select(single.symbols).to_numpy(), getattr(single, field))
