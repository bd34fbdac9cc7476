"""Benchmark ``generate_log``: wall time, events/s and peak RSS per log size.

Each size runs in a fresh interpreter, so the peak RSS printed is that run's own
(the process's high-water mark, imports included).

    python benchmarks/bench_generate.py                      # 1M and 10M events, loan
    python benchmarks/bench_generate.py --sizes 100000 --process order --lifecycle
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit"


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def run_one(events: int, process: str, lifecycle: bool, repeat: int) -> dict:
    """Time ``generate_log`` in this process; the best of ``repeat`` runs."""
    sys.path.insert(0, str(TOOLKIT))
    from procestra.mining.generate import generate_log

    baseline = _peak_rss_mb()
    best, rows = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        table = generate_log(events, seed=0, process=process, lifecycle=lifecycle)
        best, rows = min(best, time.perf_counter() - start), table.num_rows
        table_mb = table.nbytes / 2**20
        del table
    return {"events": events, "rows": rows, "seconds": best, "events_per_s": rows / best,
            "peak_rss_mb": _peak_rss_mb(), "import_rss_mb": baseline, "table_mb": table_mb}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--process", default="loan")
    parser.add_argument("--lifecycle", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the fastest counts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.sizes[0], args.process, args.lifecycle, args.repeat)))
        return
    print(f"generate_log(process={args.process!r}, lifecycle={args.lifecycle})")
    print(f"{'events':>12} {'rows':>12} {'seconds':>8} {'events/s':>12} {'peak RSS':>10} {'table':>9}")
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", "--sizes", str(size), "--process", args.process,
               "--repeat", str(args.repeat)] + (["--lifecycle"] if args.lifecycle else [])  # fmt: skip
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{r['events']:>12,} {r['rows']:>12,} {r['seconds']:>8.2f} {r['events_per_s']:>12,.0f} "
              f"{r['peak_rss_mb']:>7,.0f} MB {r['table_mb']:>6,.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
