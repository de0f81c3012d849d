"""vectorbt's side of the W workload: a lookback sweep of time-series momentum in one broadcast.

  uv run --project research/vectorbt python research/vectorbt/run_vbt_sweep.py IN.npz OUT.npz

Reads ``close (T, S)`` (the clock's closes from the warm-up's first bar), ``start`` (the first
simulated bar), ``lookbacks (N,)``, ``vol_window``, ``vol_target``,
``per_year``, ``max_leverage``, ``fees``, ``init_cash``, ``day (T,)`` (each bar's day number)
(of the simulated bars) and ``repeats``. The timed work is what a vectorbt user writes for this sweep: the signals of
every lookback at once (``sign(c/c.shift(L) − 1) · vol_target / σ / S``, σ the annualised
rolling standard deviation of log returns; the gross capped at ``max_leverage``), one
``Portfolio.from_orders(size_type="targetpercent")`` over the ``N·S`` columns grouped by
lookback (cash shared within a group, sells first), ``value()``, and each group's Sharpe ratio
of daily returns (the first from the initial cash, as orchestra's metrics). Run once to compile,
then the median of ``repeats`` timed runs. Writes the
Sharpe ratios, final values and the seconds.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import vectorbt as vbt

VOL_FLOOR = 1e-6


def main() -> None:
    d = np.load(sys.argv[1])
    close = pd.DataFrame(d["close"])
    lookbacks = [int(x) for x in d["lookbacks"]]
    n_sym = close.shape[1]
    vol_window, vol_target = int(d["vol_window"]), float(d["vol_target"])
    cap, fees = float(d["max_leverage"]), float(d["fees"])
    day, start = d["day"], int(d["start"])

    def run():
        sigma = np.log(close / close.shift(1)).rolling(vol_window).std() * np.sqrt(
            float(d["per_year"])
        )
        scale = (vol_target / sigma.clip(lower=VOL_FLOOR) / n_sym).to_numpy()
        blocks = []
        for lb in lookbacks:
            w = np.sign((close / close.shift(lb) - 1.0).to_numpy()) * scale
            w = np.nan_to_num(w, nan=0.0)
            gross = np.abs(w).sum(axis=1, keepdims=True)
            w = np.where(gross > cap, w * (cap / np.where(gross > 0, gross, 1.0)), w)
            blocks.append(w[start:])
        target = pd.DataFrame(np.hstack(blocks))
        wide_close = pd.DataFrame(np.tile(close.to_numpy()[start:], (1, len(lookbacks))))
        pf = vbt.Portfolio.from_orders(
            wide_close,
            target,
            size_type="targetpercent",
            direction="both",
            fees=fees,
            init_cash=float(d["init_cash"]),
            cash_sharing=True,
            group_by=np.repeat(np.arange(len(lookbacks)), n_sym),
            call_seq="auto",
            freq="1h",
        )
        value = pf.value().to_numpy()
        daily = pd.DataFrame(value).groupby(day).last().to_numpy()
        daily = np.vstack([np.full((1, daily.shape[1]), float(d["init_cash"])), daily])
        rets = np.diff(daily, axis=0) / daily[:-1]  # the first day from the initial cash
        sharpe = rets.mean(axis=0) / rets.std(axis=0, ddof=1) * np.sqrt(365.0)
        return sharpe, value[-1]

    t = time.perf_counter()
    run()
    first = time.perf_counter() - t
    times = []
    for _ in range(int(d["repeats"])):
        t = time.perf_counter()
        sharpe, final = run()
        times.append(time.perf_counter() - t)
    np.savez(
        sys.argv[2], sharpe=sharpe, final=final, seconds=np.median(times), first=first,
        version=vbt.__version__,
    )  # fmt: skip


if __name__ == "__main__":
    main()
