"""Run one clipscope command line in this process and report wall time and peak memory.

Peak memory: the process's maximum resident set size (``peak_rss_mb``, everything: Python,
torch, the command), and that minus its resident size right before the command starts, after
imports (``peak_extra_mb``, what the command itself holds).
Usage: python benchmarks/_measure.py clipscope-args...   (prints one JSON line)
       python benchmarks/_measure.py --read-only CACHE   (read and normalise every row once, block by
                                                          block, holding one block: the disk baseline)
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
    import torch  # noqa: F401

    import clipscope.analysis.geometry  # noqa: F401  (imports before the baseline)
    import clipscope.cli.main as cli
    import clipscope.tasks.blindpairs  # noqa: F401
    import clipscope.tasks.gap  # noqa: F401
    import clipscope.tasks.uniformity  # noqa: F401

    before = rss_mb()
    t0 = time.perf_counter()
    nbytes = 0
    if sys.argv[1] == "--read-only":
        from clipscope.cache import Cache
        from clipscope.tasks import STREAM_BLOCK

        with Cache.open(sys.argv[2]) as cache:
            for modality in ("image", "text"):
                n = len(cache.rows(modality))
                for r0 in range(0, n, STREAM_BLOCK):
                    nbytes += cache.normalized_span(modality, r0, min(n, r0 + STREAM_BLOCK)).nbytes
        code = 0
    else:
        code = cli.main(sys.argv[1:])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"code": code, "seconds": seconds, "peak_extra_mb": peak - before, "peak_rss_mb": peak,
                      "baseline_mb": before, "bytes_read": nbytes}))


if __name__ == "__main__":
    main()
