"""Ingest speed against pm4py and pandas, side by side in one run; prints ratios.

    python benchmarks/bench_ingest.py [--events 1000000] [--skip-xes] [--skip-csv] [--skip-rss]
                                      [--lock-events 300000] [--lock-runs 5] [--skip-lock]

1. XES: ``Workspace.ingest`` of bpic2012.xes.gz (from ../shared) against
   ``pm4py.read_xes`` of the same file. Target: at least 5x faster.
2. CSV: ingest of a generated 1M-event CSV against ``pandas.read_csv`` plus
   ``pm4py.format_dataframe``. Target: at least 3x faster.
3. Peak RSS of an XES ingest at 1x and 4x file sizes, each in a fresh process.
   Target: flat (the 4x run should not need ~4x the memory).
4. The writer lock during a 300k-event load (``--lock-events``) and an append of as many
   again, with a reader in another process opening the store every 20 ms: how long
   ``Store.write`` held the writer lock and the file (its own measure, logged at DEBUG
   with ``held_seconds`` and ``open_seconds``), and the longest the reader waited to get
   in. Target: under a second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
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


_READER = """
import json, sys, time
from pathlib import Path
from procestra.store.events import Store
store, stop = Store(sys.argv[1]), Path(sys.argv[2])
longest, reads = 0.0, 0
print("ready", flush=True)
while not stop.exists():
    t = time.perf_counter()
    with store.read() as con:
        waited = time.perf_counter() - t
        con.execute("SELECT count(*) FROM logs").fetchall()
    longest, reads = max(longest, waited), reads + 1
    time.sleep(0.02)  # a reader that polls; back-to-back reopening starves the writer (see RESULTS.md)
print(json.dumps({"longest_wait_s": longest, "reads": reads}))
"""


class _Held(logging.Handler):
    """Collects what ``Store.write`` logs when it releases the writer lock: (held, file open) seconds."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "held_seconds"):
            self.seconds.append((record.held_seconds, record.open_seconds))


def bench_lock(tmp: Path, events: int, runs: int) -> dict:
    from procestra import Workspace
    from procestra.mining.generate import generate_log, write_log

    first = write_log(generate_log(events, seed=11), tmp / "lock-a.csv")
    second = write_log(generate_log(events, seed=12), tmp / "lock-b.csv")
    held = _Held()
    store_log = logging.getLogger("procestra.store.events")
    store_log.addHandler(held)
    store_log.setLevel(logging.DEBUG)
    rows: dict[str, list[dict]] = {"load": [], "append": []}
    try:
        for run in range(runs):
            ws = Workspace.init(tmp / f"lock-ws-{run}")
            for kind, src, mode in (("load", first, "create"), ("append", second, "append")):
                stop = tmp / f"lock-stop-{run}-{kind}"
                reader = subprocess.Popen([sys.executable, "-c", _READER, str(ws.store.path), str(stop)],
                                          stdout=subprocess.PIPE, text=True)
                assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
                held.seconds.clear()
                t = time.perf_counter()
                r = ws.ingest(src, log="x", mode=mode, progress=False)
                total = time.perf_counter() - t
                stop.touch()
                seen = json.loads(reader.communicate(timeout=120)[0])
                assert len(held.seconds) == 1, held.seconds  # one write: the commit
                rows[kind].append({"events_added": r.events_added, "ingest_s": total, "held_s": held.seconds[0][0],
                                   "open_s": held.seconds[0][1], "reader_wait_s": seen["longest_wait_s"],
                                   "reader_reads": seen["reads"]})
    finally:
        store_log.removeHandler(held)
    for kind, rs in rows.items():
        held, opened = sorted(x["held_s"] for x in rs), sorted(x["open_s"] for x in rs)
        print(f"  writer lock, {kind} of {rs[0]['events_added']:,} events ({runs} runs): held median "
              f"{statistics.median(held):.2f} s, max {held[-1]:.2f} s; the file open median "
              f"{statistics.median(opened):.2f} s, max {opened[-1]:.2f} s; whole ingest median "
              f"{statistics.median(x['ingest_s'] for x in rs):.2f} s; a reader polling every 20 ms "
              f"waited at most {max(x['reader_wait_s'] for x in rs):.2f} s (target: under 1 s)")
    return {"lock": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--skip-xes", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-csv", action="store_true")
    ap.add_argument("--lock-events", type=int, default=300_000)
    ap.add_argument("--lock-runs", type=int, default=5)
    ap.add_argument("--skip-lock", action="store_true")
    args = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="procestra-bench-") as d:
        tmp = Path(d)
        print("Ingest benchmark (best of 2 for procestra; pm4py/pandas once)")
        if not args.skip_xes:
            results.update(bench_xes(tmp))
        if not args.skip_csv:
            results.update(bench_csv(tmp, args.events))
        if not args.skip_rss:
            results.update(bench_rss(tmp))
        if not args.skip_lock:
            results.update(bench_lock(tmp, args.lock_events, args.lock_runs))
    out = ROOT / "benchmarks" / "output"
    out.mkdir(exist_ok=True)
    (out / "bench_ingest.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
