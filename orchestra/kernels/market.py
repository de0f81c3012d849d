"""Market-derived inputs: Wilder's ATR, as one clock bar's step and over a whole history."""

from __future__ import annotations

import numpy as np
from numba import njit

ATR_BARS = 14  # the trailing stop's ATR window (clock bars)
ATR_STATE = 3  # per symbol: true ranges seen, ATR, previous tradable close


def new_atr_state(n_symbols: int) -> np.ndarray:
    """The state of :func:`atr_step_nb` before any bar."""
    state = np.zeros((n_symbols, ATR_STATE))
    state[:, 2] = np.nan
    return state


@njit(cache=True, nogil=True)
def atr_step_nb(high, low, close, tradable, window, state, out):
    """Wilder's ATR(``window``) of one clock bar, every symbol; ``state`` is ``(S, 3)``.

    ``TR_t = max(h_t − l_t, |h_t − c_prev|, |l_t − c_prev|)`` over the symbol's tradable bars
    (``c_prev`` the previous tradable bar's close; ``h − l`` on its first bar), and
    ``ATR_t = ATR_prev + α·(TR_t − ATR_prev)`` with ``α = 1/window``, seeded with the first TR. NaN
    until ``window`` true ranges exist, and wherever the close is NaN (not listed yet); on a bar
    without a trade (after delisting) the last value holds.
    """
    alpha = 1.0 / window
    for s in range(close.size):
        count, atr, prev_close = int(state[s, 0]), state[s, 1], state[s, 2]
        if tradable[s]:
            tr = high[s] - low[s]
            if not np.isnan(prev_close):
                tr = max(tr, abs(high[s] - prev_close), abs(low[s] - prev_close))
            atr = tr if count == 0 else atr + alpha * (tr - atr)
            count += 1
            prev_close = close[s]
        state[s, 0], state[s, 1], state[s, 2] = count, atr, prev_close
        out[s] = atr if count >= window and not np.isnan(close[s]) else np.nan


@njit(cache=True, nogil=True)
def atr_nb(high, low, close, tradable, window, state, out):
    """:func:`atr_step_nb` over ``(T, S)`` bars on the clock into ``out`` (``(T, S)``, from numpy:
    large numpy arrays get transparent huge pages, numba's do not); ``state`` is left after the
    last bar."""
    n = close.shape[0]
    for t in range(n):
        atr_step_nb(high[t], low[t], close[t], tradable[t], window, state, out[t])
    return out
