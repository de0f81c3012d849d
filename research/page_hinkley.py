"""Page-Hinkley with the default parameters: detection delay and false-alarm rate.

Streams of standardised daily returns (unit variance, Student-t with 5 degrees of freedom, like
fat-tailed crypto returns) run for 365 days at mean 0, then the mean shifts down by ``shift``
(in standard deviations per day) for up to 365 more days. For each shift size we report, over
``--runs`` seeded streams:

* false alarms per year before the shift (alarms in the first 365 days),
* detection rate (an alarm within 365 days after the shift) and the median delay in days.

  python research/page_hinkley.py [--runs 300] [--delta 0.005] [--lambda 50] [--alpha 0.9999]
"""

from __future__ import annotations

import argparse

import numpy as np
from rich.console import Console
from rich.table import Table

from orchestra.lifecycle import page_hinkley_alarms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--delta", type=float, default=0.005)
    ap.add_argument("--lambda", dest="lam", type=float, default=50.0)
    ap.add_argument("--alpha", type=float, default=0.9999)
    ap.add_argument("--min-instances", type=int, default=30)
    args = ap.parse_args()
    table = Table(
        title=f"Page-Hinkley δ={args.delta} λ={args.lam} α={args.alpha} ({args.runs} streams per row)"
    )
    for col in [
        "shift (σ/day)",
        "false alarms / year",
        "detected within 1y",
        "median delay (days)",
        "p90 delay",
    ]:
        table.add_column(col, justify="right")
    scale = np.sqrt(3 / 5)  # t(5) has variance 5/3
    for shift in [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]:
        false, delays = 0, []
        for seed in range(args.runs):
            rng = np.random.default_rng(seed)
            z = rng.standard_t(5, 730) * scale
            z[365:] -= shift
            alarms = page_hinkley_alarms(z, args.delta, args.lam, args.alpha, args.min_instances)
            false += int(np.sum(alarms < 365))
            after = alarms[alarms >= 365]
            if shift > 0 and after.size:
                delays.append(int(after[0] - 365))
        rate = len(delays) / args.runs if shift > 0 else float("nan")
        med = f"{np.median(delays):.0f}" if delays else "-"
        p90 = f"{np.percentile(delays, 90):.0f}" if delays else "-"
        table.add_row(
            f"{shift:.2f}",
            f"{false / args.runs:.3f}",
            "-" if shift == 0 else f"{rate:.0%}",
            med,
            p90,
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
