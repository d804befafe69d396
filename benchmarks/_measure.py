"""Run one clipscope command line in this process and report wall time and peak memory.

Peak memory is the process's maximum resident set size minus its resident size right before
the command starts (after imports), so it counts what the command itself holds.
Usage: python benchmarks/_measure.py clipscope-args...   (prints one JSON line)
       python benchmarks/_measure.py --read-only CACHE   (only read and normalise the rows)
"""

import json
import resource
import sys
import time


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    import clipscope.cli.geometry_cmds  # noqa: F401
    import torch  # noqa: F401

    import clipscope.analysis.geometry  # noqa: F401  (imports before the baseline)
    import clipscope.cli.main as cli
    import clipscope.tasks.blindpairs  # noqa: F401

    before = rss_mb()
    t0 = time.perf_counter()
    if sys.argv[1] == "--read-only":  # the baseline: read and normalise both modalities once
        from clipscope.cache import Cache
        from clipscope.tasks import modality_rows

        with Cache.open(sys.argv[2]) as cache:
            modality_rows(cache)
        code = 0
    else:
        code = cli.main(sys.argv[1:])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"code": code, "seconds": seconds, "peak_extra_mb": peak - before, "baseline_mb": before}))


if __name__ == "__main__":
    main()
