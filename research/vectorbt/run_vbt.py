"""vectorbt's side of the benchmark (runs in ``research/vectorbt``'s own environment).

  uv run --project research/vectorbt python research/vectorbt/run_vbt.py IN.npz OUT.npz

Reads ``close (T, K)``, ``target (T, K)`` target weights, ``group (K,)`` group ids, ``init_cash
(G,)`` and ``fees``; runs ``Portfolio.from_orders`` with ``size_type="targetpercent"`` at the close,
cash shared within each group and sells before buys (``call_seq="auto"``), once to compile and
then timed (median of ``repeats``). Writes each group's value ``(T, G)`` and the seconds.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import vectorbt as vbt


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    d = np.load(src)
    close = pd.DataFrame(d["close"])
    target = pd.DataFrame(d["target"])
    group = d["group"]
    repeats = int(d["repeats"])

    def run():
        return vbt.Portfolio.from_orders(
            close,
            target,
            size_type="targetpercent",
            direction="both",
            fees=float(d["fees"]),
            init_cash=d["init_cash"],
            cash_sharing=True,
            group_by=group,
            call_seq="auto",
            freq="1h",
        )

    t = time.perf_counter()
    pf = run()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pf = run()
        times.append(time.perf_counter() - t)
    value = pf.value().to_numpy().reshape(close.shape[0], -1)
    np.savez(dst, value=value, seconds=np.median(times), first=first, version=vbt.__version__)


if __name__ == "__main__":
    main()
