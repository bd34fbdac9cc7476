"""Command start-up and catalogue reads, against what they cost before the catalogue kept the counts.

    python benchmarks/bench_cli.py [--events 10000000] [--repeat 5] [--workspace DIR]

1. Process start of the commands that do not mine (``--help``, ``logs``, ``cases``, ``tasks``,
   ``runs``), each run ``--repeat`` times as a real process; the median. Target: < 0.5 s.
   The reference is a bare ``python -c "import click"`` start, printed beside it.
2. ``procestra logs`` and ``procestra info LOG`` on a workspace holding a log of ``--events``
   events (generated, ingested once; ``--workspace`` reuses one that holds log ``bench``).
   Target: under 0.3 s plus process start (``--help``'s time). The reference is the query
   ``info`` ran before the split, which recounted the variants from the events on every call
   (``count(DISTINCT list(activity ORDER BY ts, event_id))``), timed in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PROCESTRA_NO_PROGRESS", "1")
LOG = "bench"


def timed(cmd: list[str], repeat: int) -> float:
    """Median wall time of ``cmd`` run as a process ``repeat`` times (after one warm-up run)."""
    subprocess.run(cmd, capture_output=True, check=True)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def prepare(workspace: Path, events: int) -> None:
    from procestra import Workspace
    from procestra.mining.generate import generate_log, write_log

    ws = Workspace.init(workspace)
    if any(i.name == LOG and i.events >= events * 0.99 for i in ws.logs()):
        return
    t0 = time.perf_counter()
    path = write_log(generate_log(events, seed=11), workspace / "tmp" / "bench.parquet")
    ws.ingest(path, log=LOG, mode="replace")
    path.unlink()
    print(f"prepared {events:,} events in {time.perf_counter() - t0:.1f}s")


def old_info_query(workspace: Path, repeat: int) -> float:
    """The variant recount ``info`` ran on every call before the split (same fresh connection)."""
    from procestra.store import catalogue
    from procestra.store.events import Store

    store = Store(workspace / "events.duckdb")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with store.read() as con:
            ev = f"ev_{catalogue.log_id(con, LOG)}"
            con.execute(f"SELECT count(DISTINCT v) FROM (SELECT list(activity ORDER BY ts, event_id) AS v "
                        f"FROM {ev} GROUP BY case_id)").fetchall()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workspace", type=Path)
    args = parser.parse_args()
    tmp = None
    if args.workspace is None:
        tmp = tempfile.TemporaryDirectory(prefix="procestra-bench-cli-")
        args.workspace = Path(tmp.name) / "ws"
    prepare(args.workspace, args.events)
    cli = [sys.executable, "-m", "procestra.cli", "-w", str(args.workspace)]
    bare = timed([sys.executable, "-c", "import click"], args.repeat)
    print(f"\nprocess start (median of {args.repeat}); bare `python -c 'import click'`: {bare:.3f}s")
    print("| command | time | target |\n|---|---|---|")
    start = {}
    for name, extra in (("--help", ["--help"]), ("logs", ["logs"]), ("cases", ["cases"]),
                        ("tasks", ["tasks"]), ("runs", ["runs"])):
        start[name] = timed(cli + extra, args.repeat)
        print(f"| `procestra {name}` | {start[name]:.3f} s | < 0.5 s |")
    info = timed(cli + ["info", LOG], args.repeat)
    logs = start["logs"]
    old = old_info_query(args.workspace, args.repeat)
    print(f"\n{args.events:,}-event log; process start (`--help`) {start['--help']:.3f} s")
    print("| what | time | minus process start | target |\n|---|---|---|---|")
    print(f"| `procestra logs` | {logs:.3f} s | {logs - start['--help']:.3f} s | < 0.3 s |")
    print(f"| `procestra info {LOG}` | {info:.3f} s | {info - start['--help']:.3f} s | < 0.3 s |")
    print(f"| before the split: `info`'s variant recount alone | {old:.3f} s | | |")
    print(f"ratio old recount / new info (both minus nothing): {old / max(info - start['--help'], 1e-3):.0f}x")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
