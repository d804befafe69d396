"""The release gate's family-wise false-alarm rate and power, by simulation.

Draws pairs of samples from the populations of tests/simulate.py (1:1 pairs, three captions
per image, fixed class prompts), writes their gap and uniformity reports, and compares them as
`clipscope compare` does (every metric of both reports in one family). Prints, per layout and
rule, the share of same-distribution comparisons that flag any regression, and the share of
comparisons with a planted degradation that flag it.

    python benchmarks/gate_simulation.py                  # 400 comparisons per layout, n = 200
    python benchmarks/gate_simulation.py --compares 100 --power-runs 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import simulate as S  # noqa: E402

PLANTED = {"pairs": [("widen", 0.16, "centroid_distance"), ("shift", 0.15, "paired_cosine")],
           "captions": [("widen", 0.16, "centroid_distance"), ("shift", 0.18, "paired_cosine")],
           "classes": [("widen", 0.25, "centroid_distance")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compares", type=int, default=400)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--power-runs", type=int, default=100)
    ap.add_argument("--power-n", type=int, default=1000)
    args = ap.parse_args()
    from clipscope.analysis import geometry as g
    from clipscope.report.compare import compare_reports, decide

    t0 = time.time()
    print(f"false alarms: {args.compares} comparisons of two samples of one population per layout, n = {args.n}")
    for layout in PLANTED:
        draws = [S.reports(*S.draw(layout, args.n, k), k) for k in range(2 * args.compares)]
        for rule in ("both", "significance", "tolerance"):
            flagged = 0
            for k in range(args.compares):
                rows = [r for b, n in zip(draws[2 * k], draws[2 * k + 1]) for r in compare_reports(b, n)]
                decide(rows, rule=rule)
                flagged += any(r.status == "regression" for r in rows)
            print(f"  {layout:<9} rule {rule:<12} {flagged / args.compares:6.3f} of comparisons flag a regression")
    print(f"power: planted degradations at n = {args.power_n}, {args.power_runs} comparisons each, rule both")
    for layout, plants in PLANTED.items():
        for kind, size, metric in plants:
            I, T, p = S.draw(layout, 20000, 99)
            I2, T2, p2 = S.draw(layout, 20000, 99, **{kind: size})
            change = g.gap_metrics(I2, T2, p2)[metric]["value"] - g.gap_metrics(I, T, p)[metric]["value"]
            hits = 0
            for k in range(args.power_runs):
                rows = [r for b, n in zip(S.reports(*S.draw(layout, args.power_n, 2 * k), 2 * k),
                                          S.reports(*S.draw(layout, args.power_n, 2 * k + 1, **{kind: size}), 2 * k + 1))
                        for r in compare_reports(b, n)]
                decide(rows)
                hits += any(r.metric == metric and r.status == "regression" for r in rows)
            print(f"  {layout:<9} {metric} {change:+.3f}: flagged in {hits / args.power_runs:.3f}")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
