"""The step kernel against the pure-Python reference, and the invariants of SPEC §9.3 at every bar."""

from __future__ import annotations

import ast
import pathlib
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.kernels.refs import as_refs
from orchestra.kernels.state import new_outputs
from orchestra.kernels.step import run_segment_nb
from tests import reference
from tests.kernel_cases import fresh_state, kernel_cases, make_inputs, run_kernel

REL = 1e-9


def close(a, b, rel=REL, abs_=1e-7):
    return np.allclose(
        np.asarray(a, float), np.asarray(b, float), rtol=rel, atol=abs_, equal_nan=True
    )


def fills_by_slot(bars, slots, units, prices, fees, dust=1e-9):
    """Σ units, Σ cash, Σ fee per (bar, slot); fills below ``dust`` notional are float noise."""
    agg = defaultdict(lambda: np.zeros(3))
    for b, k, u, p, f in zip(bars, slots, units, prices, fees, strict=True):
        if abs(u * p) > dust:
            agg[(int(b), int(k))] += [u, u * p, f]
    return agg


@pytest.mark.slow
@settings(max_examples=1500)
@given(case=kernel_cases())
def test_kernel_equals_reference(case) -> None:
    """Equity, pod equity, account units, fills and fees equal the reference to 1e-9 relative."""
    inp, fractions = case
    transfers = {}
    T = inp.timestamps.shape[0]
    if T > 4:
        f2 = np.roll(fractions, 1)
        transfers[T // 2] = f2
    st_, out = run_kernel(inp, fractions, transfers=transfers)
    ref = reference.simulate(inp, 100_000.0, fractions, transfers)
    r = reference.as_arrays(ref)
    scale = 100_000.0
    assert close(out.equity, r["equity"], abs_=1e-9 * scale)
    assert close(out.unallocated, r["unallocated"], abs_=1e-9 * scale)
    assert close(out.pod_equity, r["pod_equity"], abs_=1e-9 * scale)
    assert close(st_.account_units, r["account_units"][-1], abs_=1e-9)
    n = int(out.fill_count[0])
    mine = fills_by_slot(
        out.fill_bar[:n],
        out.fill_slot[:n],
        out.fill_units[:n],
        out.fill_price[:n],
        out.fill_fee[:n],
    )
    theirs = (
        fills_by_slot(*zip(*[(f[0], f[1], f[2], f[3], f[4]) for f in ref.fills], strict=True))
        if ref.fills
        else {}
    )
    assert set(mine) == set(theirs)
    for key, v in mine.items():
        assert close(v, theirs[key], abs_=1e-9 * max(1.0, abs(v[1])))
    assert close(st_.account_fees[0], ref.account_fees, abs_=1e-9)
    assert close(st_.pod_fees, ref.pod_fees[-1], abs_=1e-9)
    assert close(st_.pod_alone_fees, ref.pod_alone_fees[-1], abs_=1e-9)


@pytest.mark.slow
@settings(max_examples=1500)
@given(case=kernel_cases())
def test_invariants_at_every_bar(case) -> None:
    """SPEC §9.3: units sum, equity and P&L sum (fees included), fees ≤ fees alone, at every bar."""
    inp, fractions = case
    capital = 100_000.0
    pnl_prev = {"acct": 0.0}

    def check(t: int, s) -> None:
        prices = inp.close[t]
        # 1. Σ_p q[p,s] = Q[s]
        pod_units = np.zeros_like(s.account_units)
        np.add.at(pod_units, inp.slot_sym, s.units)
        assert close(
            pod_units, s.account_units, abs_=1e-9 * max(1.0, np.abs(s.account_units).max(initial=0))
        )
        # 2. Σ_p E_p + unallocated = E_total, hence Σ_p P&L_p = account P&L
        held = np.where(s.units != 0, s.units * np.nan_to_num(prices[inp.slot_sym]), 0.0)
        pod_eq = s.pod_cash.copy()
        np.add.at(pod_eq, inp.slot_pod, held)
        acct = s.account_cash[0] + np.sum(
            np.where(s.account_units != 0, s.account_units * np.nan_to_num(prices), 0.0)
        )
        assert close(pod_eq.sum() + s.unallocated[0], acct, abs_=1e-9 * capital)
        assert close(s.pod_cash.sum() + s.unallocated[0], s.account_cash[0], abs_=1e-9 * capital)
        # 3. account fees ≤ what the pods would pay alone; Σ pod fees = account fees
        assert s.account_fees[0] <= s.pod_alone_fees.sum() * (1 + 1e-12) + 1e-12
        assert close(s.pod_fees.sum(), s.account_fees[0], abs_=1e-9)
        pnl_prev["acct"] = acct

    run_kernel(inp, fractions, capital, per_bar=check)


@settings(max_examples=200)
@given(case=kernel_cases(max_bars=60))
def test_segment_equals_bar_by_bar(case) -> None:
    """One long segment and bar-by-bar steps give bit-identical State and outputs."""
    inp, fractions = case
    T = inp.timestamps.shape[0]
    s1 = fresh_state(inp, fractions)
    o1 = new_outputs(T, inp.pod_ptr.shape[0] - 1, 4 * T * inp.slot_pod.shape[0] + 8)
    t, stopped = run_segment_nb(*as_refs(inp, s1, o1), 0, T, np.zeros(T, dtype=np.int8))
    assert (t, stopped) == (T, False)
    s2, o2 = run_kernel(inp, fractions)
    for a, b in zip(s1, s2, strict=True):
        if a is s1.scratch_target or a is s1.scratch_delta:
            continue
        assert np.array_equal(a, b, equal_nan=True)
    for a, b in zip(o1, o2, strict=True):
        assert np.array_equal(a, b, equal_nan=True)


@settings(max_examples=300)
@given(case=kernel_cases(), data=st.data())
def test_next_open_fills_ignore_that_bars_close(case, data) -> None:
    """Look-ahead guard: with next_open, changing bar t+1's close never changes fills at t+1."""
    inp, fractions = case
    inp = inp._replace(params=inp.params._replace(exec_mode=0.0))  # next_open
    T = inp.timestamps.shape[0]
    t1 = data.draw(st.integers(1, T - 1))
    close2 = inp.close.copy()
    close2[t1] *= data.draw(st.floats(0.5, 2.0))
    _, o_a = run_kernel(inp, fractions)
    _, o_b = run_kernel(inp._replace(close=close2), fractions)
    for o in (o_a, o_b):
        assert o.fill_count[0] >= 0
    sel_a = o_a.fill_bar[: o_a.fill_count[0]] <= t1
    sel_b = o_b.fill_bar[: o_b.fill_count[0]] <= t1
    for field in ("fill_bar", "fill_slot", "fill_units", "fill_price", "fill_fee"):
        a = getattr(o_a, field)[: o_a.fill_count[0]][sel_a]
        b = getattr(o_b, field)[: o_b.fill_count[0]][sel_b]
        assert np.array_equal(a, b)


def _two_pod_inputs(w_a: float, w_b: float, cost: float = 0.001, slip: float = 0.0):
    rng = np.random.default_rng(0)
    inp = make_inputs(
        rng,
        2,
        1,
        3,
        exec_close=False,
        cost=cost,
        slip=slip,
        max_gross=0.0,
        daily_loss=0.0,
        stop=False,
        trailing=False,
        late_listing=False,
    )
    target = np.zeros((3, 2))
    target[1:, 0] = w_a
    target[1:, 1] = w_b
    return inp._replace(
        slot_pod=np.array([0, 1]),
        slot_sym=np.array([0, 0]),
        pod_ptr=np.array([0, 1, 2]),
        sym_ptr=np.array([0, 2]),
        sym_slots=np.array([0, 1]),
        target=target,
        pod_threshold=np.zeros(2),
        pod_max_leverage=np.full(2, 5.0),
        funding=np.zeros_like(inp.close),
    )


def test_opposite_pods_cross_internally_without_fees() -> None:
    """Golden: equal and opposite trades cross entirely inside; the exchange sees nothing."""
    inp = _two_pod_inputs(1.0, -1.0)
    inp = inp._replace(pod_threshold=np.full(2, 0.9))  # only the opening trade, no re-targeting
    s, out = run_kernel(inp, np.array([0.5, 0.5]))
    n = int(out.fill_count[0])
    assert n == 2 and set(out.fill_venue[:n].tolist()) == {1}
    assert out.fill_units[0] == -out.fill_units[1] != 0.0
    assert s.account_units[0] == 0.0 and s.account_fees[0] == 0.0
    assert s.pod_alone_fees.sum() > 0  # what they would have paid alone = netting savings


@pytest.mark.parametrize(("b", "m"), [(0.1, 1.1), (0.07, 2.9), (0.03, 1.1)])
def test_trades_that_cancel_up_to_round_off_cross_entirely_inside(b: float, m: float) -> None:
    """Issue #25: pod A buys what pod B sells, up to float round-off (fractions b·m and b, weights
    1 and −m). The net order of ~1e-15 units is not an exchange fill: both trades cross inside,
    no fee, and the books still balance."""
    inp = _two_pod_inputs(1.0, -m)
    inp = inp._replace(pod_threshold=np.full(2, 0.9))  # only the opening trade
    s, out = run_kernel(inp, np.array([b * m, b]))
    n = int(out.fill_count[0])
    assert n == 2 and out.fill_venue[:n].tolist() == [1, 1], out.fill_units[:n]
    assert s.account_fees[0] == 0.0
    assert s.account_units[0] == s.units.sum()
    assert abs(s.account_units[0]) < 1e-12 * abs(s.units[0])
    equity = s.account_cash[0] + s.account_units[0] * inp.close[-1, 0]
    pods = s.pod_cash.sum() + s.units.sum() * inp.close[-1, 0]
    assert np.isclose(equity, pods + s.unallocated[0], rtol=1e-12)


def test_partial_netting_shares_fee_by_size() -> None:
    """Golden: pod A buys 2 units' worth, pod B sells 1: ΔQ = +1 external, A pays the whole fee."""
    inp = _two_pod_inputs(1.0, -0.5, cost=0.001, slip=0.0005)
    inp = inp._replace(pod_threshold=np.full(2, 0.4))  # only the opening trade, no re-targeting
    s, out = run_kernel(inp, np.array([0.5, 0.5]))
    n = int(out.fill_count[0])
    assert set(out.fill_bar[:n].tolist()) == {1}
    venues = out.fill_venue[:n]
    slots = out.fill_slot[:n]
    ext = venues == 0
    assert slots[ext].tolist() == [0]  # only the net side goes out
    px = inp.open[1, 0]
    q_a, q_b = s.units
    assert np.isclose(out.fill_units[:n][ext][0], q_a + q_b)
    assert np.isclose(out.fill_price[:n][ext][0], px * 1.0005)
    assert np.isclose(s.account_fees[0], 0.001 * (q_a + q_b) * px * 1.0005)
    assert s.pod_fees[1] == 0.0
    saved = s.pod_alone_fees.sum() - s.account_fees[0]
    assert saved > 0


def test_kernels_import_only_numpy_numba_and_themselves() -> None:
    """STYLE rule 1: orchestra.kernels imports nothing but numpy, numba, itself (and __future__)."""
    allowed = {"numpy", "numba", "orchestra", "__future__", "typing"}
    for path in pathlib.Path("orchestra/kernels").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                assert root in allowed, f"{path} imports {name}"
                if root == "orchestra":
                    assert name.startswith("orchestra.kernels"), f"{path} imports {name}"


@settings(max_examples=500)
@given(case=kernel_cases(), cap=st.sampled_from([0.25, 1.0, 2.0]))
def test_gross_leverage_never_exceeds_the_cap(case, cap: float) -> None:
    """After every execution, Σ_s |Q[s]|·price / equity ≤ max_gross_leverage (SPEC §10)."""
    inp, fractions = case
    params = inp.params._replace(max_gross=cap)
    inp = inp._replace(params=params, funding=np.zeros_like(inp.close))
    exec_close = params.exec_mode == 1.0
    prev = {"Q": np.zeros(inp.close.shape[1])}

    def check(t: int, s) -> None:
        px = inp.close[t] if exec_close else inp.open[t]
        traded = np.nansum(np.abs(s.account_units - prev["Q"]) * np.nan_to_num(px))
        prev["Q"] = s.account_units.copy()
        held = s.account_units != 0
        if not inp.tradable[t][held].all():
            return  # a position in a symbol with no bar cannot be traded down at this bar
        eq = s.account_cash[0] + np.sum(s.account_units[held] * px[held])
        # the cap is exact on the equity before this bar's fees and slippage
        eq_before_costs = eq + (params.cost + params.slippage) * (1 + params.slippage) * traded
        if eq <= 0:
            return
        assert np.sum(np.abs(s.account_units[held] * px[held])) / eq_before_costs <= cap * (
            1 + 1e-9
        )

    run_kernel(inp, fractions, per_bar=check)
