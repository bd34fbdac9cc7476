"""Ingest speed against pm4py and pandas, side by side in one run; prints ratios.

    python benchmarks/bench_ingest.py [--events 1000000] [--skip-xes] [--skip-rss]

1. XES: ``Workspace.ingest`` of bpic2012.xes.gz (from ../shared) against
   ``pm4py.read_xes`` of the same file. Target: at least 5x faster.
2. CSV: ingest of a generated 1M-event CSV against ``pandas.read_csv`` plus
   ``pm4py.format_dataframe``. Target: at least 3x faster.
3. Peak RSS of an XES ingest at 1x and 4x file sizes, each in a fresh process.
   Target: flat (the 4x run should not need ~4x the memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PROCESTRA_NO_PROGRESS", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED_LOGS = ROOT.parent / "shared" / "event_logs" / "logs"


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_xes(tmp: Path) -> dict:
    import pm4py

    from procestra import Workspace

    src = SHARED_LOGS / "bpic2012.xes.gz"
    if not src.exists():
        print("  (skipped: ../shared/event_logs/logs/bpic2012.xes.gz not found)")
        return {}
    pm = timed(lambda: pm4py.read_xes(str(src)))
    ws_dir = tmp / "xes-ws"

    def ours() -> None:
        import shutil

        shutil.rmtree(ws_dir, ignore_errors=True)
        ws = Workspace.init(ws_dir)
        r = ws.ingest(src, log="bpic2012")
        assert r.events == 262_200, r.events

    t = timed(ours, repeat=2)
    print(f"  XES bpic2012 (262,200 events): pm4py.read_xes {pm:.2f}s, procestra ingest {t:.2f}s "
          f"-> {pm / t:.1f}x faster (target >= 5x)")
    return {"xes_pm4py_s": pm, "xes_procestra_s": t, "xes_ratio": pm / t}


def bench_csv(tmp: Path, events: int) -> dict:
    import pandas as pd
    import pm4py

    from procestra import Workspace
    from procestra.mining.generate import generate_log, write_log

    csv = write_log(generate_log(events, seed=3), tmp / "gen.csv")
    with open(csv) as fh:
        n = sum(1 for _ in fh) - 1

    def baseline() -> None:
        df = pd.read_csv(csv)
        pm4py.format_dataframe(df, case_id="case_id", activity_key="activity", timestamp_key="timestamp")

    pm = timed(baseline)
    ws_dir = tmp / "csv-ws"

    def ours() -> None:
        import shutil

        shutil.rmtree(ws_dir, ignore_errors=True)
        ws = Workspace.init(ws_dir)
        r = ws.ingest(csv, log="gen")
        assert r.events == n, (r.events, n)

    t = timed(ours, repeat=2)
    print(f"  CSV {n:,} events: pandas.read_csv + pm4py.format_dataframe {pm:.2f}s, procestra ingest {t:.2f}s "
          f"-> {pm / t:.1f}x faster (target >= 3x)")
    return {"csv_events": n, "csv_baseline_s": pm, "csv_procestra_s": t, "csv_ratio": pm / t}


_RSS_CHILD = """
import json, resource, sys, time
from procestra import Workspace
ws = Workspace.init(sys.argv[2])
t = time.perf_counter()
r = ws.ingest(sys.argv[1], log="x")
print(json.dumps({"events": r.events, "seconds": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_rss(tmp: Path) -> dict:
    from procestra.mining.generate import generate_log, write_log

    out = {}
    base = 250_000
    for factor in (1, 4):
        path = write_log(generate_log(base * factor, seed=5), tmp / f"rss-{factor}x.xes.gz")
        proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path), str(tmp / f"rss-ws-{factor}")],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        out[factor] = r
        print(f"  XES {factor}x ({r['events']:,} events, {path.stat().st_size / 1e6:.0f} MB gz): "
              f"peak RSS {r['rss_mb']:.0f} MB, {r['seconds']:.1f}s")
    print(f"  RSS 4x / 1x = {out[4]['rss_mb'] / out[1]['rss_mb']:.2f} (flat is ~1; data grew 4x)")
    return {"rss": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--skip-xes", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="procestra-bench-") as d:
        tmp = Path(d)
        print("Ingest benchmark (best of 2 for procestra; pm4py/pandas once)")
        if not args.skip_xes:
            results.update(bench_xes(tmp))
        results.update(bench_csv(tmp, args.events))
        if not args.skip_rss:
            results.update(bench_rss(tmp))
    out = ROOT / "benchmarks" / "output"
    out.mkdir(exist_ok=True)
    (out / "bench_ingest.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
