"""Market-derived inputs computed once per run (before the bar loop)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def atr_nb(high, low, close, tradable, window):
    """Wilder's ATR(``window``) per symbol of ``(T, S)`` bars on the clock.

    ``TR_t = max(h_t − l_t, |h_t − c_prev|, |l_t − c_prev|)`` over the symbol's tradable bars
    (``c_prev`` the previous tradable bar's close; ``h − l`` on its first bar), and
    ``ATR_t = ATR_prev + α·(TR_t − ATR_prev)`` with ``α = 1/window``, seeded with the first TR. NaN
    until ``window`` true ranges exist, and wherever the symbol is not listed yet; on a bar
    without a trade (after delisting) the last value holds.
    """
    n, k = close.shape
    out = np.full((n, k), np.nan)
    alpha = 1.0 / window
    for s in range(k):
        count = 0
        atr = np.nan
        prev_close = np.nan
        for t in range(n):
            if tradable[t, s]:
                tr = high[t, s] - low[t, s]
                if not np.isnan(prev_close):
                    tr = max(tr, abs(high[t, s] - prev_close), abs(low[t, s] - prev_close))
                atr = tr if count == 0 else atr + alpha * (tr - atr)
                count += 1
                prev_close = close[t, s]
            if count >= window and not np.isnan(close[t, s]):
                out[t, s] = atr
    return out
