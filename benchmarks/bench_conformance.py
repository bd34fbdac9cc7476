"""Conformance checking: ours against pm4py's, side by side in one run; prints ratios.

    python benchmarks/bench_conformance.py [--events 1000000] [--skip-receipt] [--skip-pm4py]

The figures of the "Conformance" section of RESULTS.md:

1. **Alignments on receipt** (``../shared``; skipped when absent) against its inductive-miner
   model (pm4py's IM Petri net, which equals ours): ``conform(method="alignments",
   quality=False, save=False)`` (variants read from the store, one alignment per variant,
   weighted by its cases) against ``pm4py.fitness_alignments`` on the frame
   ``pm4py.read_xes`` gives (which also aligns one trace per variant: expect about 1x).
2. **Token replay on a generated log** of ``--events`` events (``generate_log(events,
   seed=7)``) against its IM model: ``conform(method="tokens", save=False)``, whose
   ``timings`` split the replay from the precision, against
   ``pm4py.fitness_token_based_replay`` and ``pm4py.precision_token_based_replay`` on the
   generator's own table as pm4py's frame (``format_dataframe``, outside the timing).

Both sides get the same Petri net, and both must give the same fitness and precision (to
1e-9): a fast wrong answer fails the run (exit code 1). Each side runs once, since each
takes tens of seconds at full size; ``--events 100000`` is a quick check.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PROCESTRA_NO_PROGRESS", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED_LOGS = ROOT.parent / "shared" / "event_logs" / "logs"
TOLERANCE = 1e-9
FITNESS = ("log_fitness", "average_trace_fitness", "percentage_of_fitting_traces")  # pm4py's keys, ours too


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``fn`` takes, and its value (pm4py's progress bars silenced)."""
    with contextlib.redirect_stderr(io.StringIO()):
        started = time.perf_counter()
        value = fn()
    return time.perf_counter() - started, value


def same(ours: float | None, theirs: float) -> bool:
    return ours is not None and math.isclose(ours, theirs, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def same_fitness(ours: dict[str, float], theirs: dict[str, float]) -> bool:
    return all(same(ours[k], theirs[k]) for k in FITNESS)


def line(what: str, ours: float, theirs: float | None, agree: bool | None) -> None:
    ratio = f"{theirs / ours:>7.2f}x" if theirs is not None else "       -"
    pm = f"{theirs:>9.1f}s" if theirs is not None else "        -"
    check = "" if agree is None else ("  equal" if agree else "  DIFFERENT")
    print(f"  {what:<34} {ours:>9.1f}s {pm} {ratio}{check}", flush=True)


def bench_alignments(ws: Any, skip_pm4py: bool) -> bool:
    """Receipt, alignments, fitness only. Returns whether both sides agree."""
    import pm4py

    from procestra.mining.conformance import conform

    path = SHARED_LOGS / "receipt.xes.gz"
    if not path.exists():
        print("  (skipped receipt: not in ../shared/event_logs/logs)")
        return True
    ws.ingest(path, log="receipt", progress=False)
    with contextlib.redirect_stderr(io.StringIO()):  # pm4py's progress bar
        df = pm4py.read_xes(str(path))
    model = pm4py.discover_petri_net_inductive(df)
    info = ws.info("receipt")
    print(f"receipt: {info.events:,} events, {info.cases:,} cases, {info.variants:,} variants")
    ours_s, result = timed(lambda: conform(ws, "receipt", model, method="alignments", quality=False,
                                           save=False, progress=False))
    if skip_pm4py:
        line("alignments (fitness)", ours_s, None, None)
        return True
    pm_s, fitness = timed(lambda: pm4py.fitness_alignments(df, *model))
    agree = same_fitness(result.fitness, fitness)
    line("alignments (fitness)", ours_s, pm_s, agree)
    return agree


def bench_tokens(ws: Any, events: int, skip_pm4py: bool) -> bool:
    """A generated log, token replay and its precision. Returns whether both sides agree."""
    import pm4py

    from procestra.mining.conformance import conform
    from procestra.mining.discover import discover
    from procestra.mining.generate import PM4PY_COLUMNS, generate_log

    table = generate_log(events, seed=7)
    log = f"gen-{events // 1000}k"
    ws.ingest(table, log=log, progress=False)
    model = discover(ws, log).to_petri()  # the IM tree, identical to pm4py's (tests/mining/test_discover.py)
    info = ws.info(log)
    print(f"{log}: {info.events:,} events, {info.cases:,} cases, {info.variants:,} variants")
    total_s, result = timed(lambda: conform(ws, log, model, method="tokens", save=False, progress=False))
    replay_s, precision_s = result.timings["replay"], result.timings["precision"]
    if skip_pm4py:
        line("token replay (fitness)", replay_s, None, None)
        line("precision (ETConformance)", precision_s, None, None)
        line("conform, all stages", total_s, None, None)
        return True
    frame = table.to_pandas().rename(columns=PM4PY_COLUMNS).drop(columns=["start_timestamp"])
    df = pm4py.format_dataframe(frame, case_id="case:concept:name", activity_key="concept:name",
                                timestamp_key="time:timestamp")
    del frame
    pm_fit_s, fitness = timed(lambda: pm4py.fitness_token_based_replay(df, *model))
    line("token replay (fitness)", replay_s, pm_fit_s, same_fitness(result.fitness, fitness))
    pm_prec_s, precision = timed(lambda: pm4py.precision_token_based_replay(df, *model))
    line("precision (ETConformance)", precision_s, pm_prec_s, same(result.precision, precision))
    line("all of conform / fitness+precision", total_s, pm_fit_s + pm_prec_s, None)
    return same_fitness(result.fitness, fitness) and same(result.precision, precision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the generated log")
    parser.add_argument("--skip-receipt", action="store_true", help="leave out the alignments on receipt")
    parser.add_argument("--skip-pm4py", action="store_true", help="time ours only")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    import pm4py  # noqa: F401  (imported before timing: the import is slow and prints a banner)

    from procestra import Workspace

    print(f"Conformance: procestra (variants from the store) vs pm4py on a DataFrame "
          f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print(f"  {'':<34} {'procestra':>10} {'pm4py':>10} {'ratio':>8}")
    agree = True
    with tempfile.TemporaryDirectory(prefix="bench-conformance-") as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        if not args.skip_receipt:
            agree &= bench_alignments(ws, args.skip_pm4py)
        agree &= bench_tokens(ws, args.events, args.skip_pm4py)
    print("same numbers on both sides" if agree else "NUMBERS DIFFER between procestra and pm4py")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
