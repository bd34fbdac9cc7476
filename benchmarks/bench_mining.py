"""Mining speed against pm4py and a bare DuckDB scan, in one run; prints ratios.

    python benchmarks/bench_mining.py [--events 10000000] [--repeat 3] [--workspace DIR] [--skip-pm4py]

On a generated log (``generate_log(events)`` ingested into a workspace; ``--workspace``
reuses one that already holds log ``bench`` with that many events):

1. Ours: ``stats.dfg`` + ``stats.variants`` through the public API (each call opens
   its own short-lived connection, as every caller does), best of ``--repeat``, in a
   child process that also reports its peak RSS. Target: < 2 GB.
2. Baseline scan: ``SELECT activity, count(*) FROM ev_N GROUP BY activity`` on the
   same table, through the same kind of fresh connection. Target: ours <= 3x.
3. pm4py: ``discover_dfg`` + ``get_variants`` on ``ws.to_pandas(log)`` (the frame is
   loaded outside the timing). Target: ours >= 20x faster.

Extra lines (no targets): the performance DFG and a case-filtered DFG.

Other parts of the mining issue add themselves to :data:`HOOKS`: a function taking the
:class:`Context` and returning ``{name: seconds}`` (or more keys) that is printed and
included in the JSON summary. The inductive miner goes there.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("PROCESTRA_NO_PROGRESS", "1")
LOG = "bench"


@dataclass
class Context:
    """What a benchmark hook gets: the workspace, the log, and a cached pm4py frame."""

    workspace: Path
    log: str
    events: int
    repeat: int
    _frame: Any = field(default=None, repr=False)

    def frame(self) -> Any:
        """``ws.to_pandas(log)``, loaded once (not part of any timing)."""
        if self._frame is None:
            from procestra import Workspace

            self._frame = Workspace(self.workspace).to_pandas(self.log)
        return self._frame


#: Extra benchmarks: ``hook(ctx) -> {"label": value, ...}``. The inductive-miner part goes here.
HOOKS: list[Callable[[Context], dict[str, Any]]] = []


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def quiet_pm4py() -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import pm4py
    return pm4py


# -- setup --------------------------------------------------------------------------------
def prepare(path: Path, events: int) -> dict[str, float]:
    """Make sure ``path`` holds log ``bench`` of about ``events`` events, derived."""
    from procestra import LogNotFoundError, Workspace, stats
    from procestra.mining.generate import generate_log
    from procestra.store.derived import is_derived

    out: dict[str, float] = {}
    ws = Workspace.init(path)
    try:
        have = ws.info(LOG).events
    except LogNotFoundError:
        have = 0
    if not have or abs(have - events) > events * 0.02:
        t = time.perf_counter()
        table = generate_log(events, seed=1)
        out["generate_s"] = time.perf_counter() - t
        t = time.perf_counter()
        ws.ingest(table, log=LOG, mode="replace", progress=False)
        out["ingest_s"] = time.perf_counter() - t
        del table
    with ws.store.read() as con:
        derived = is_derived(con, ws.store.log_id(con, LOG))
    if not derived:  # until ingest calls stats.derive itself
        t = time.perf_counter()
        stats.derive_log(ws, LOG)
        out["derive_s"] = time.perf_counter() - t
    return out


# -- our part, in a child process -------------------------------------------------------------
def child(path: str, repeat: int) -> None:
    """Time ours and the bare scan; print one JSON line with seconds and peak RSS."""
    from procestra import Workspace, stats
    from procestra.mining.filters import Filter
    from procestra.schema import table_names

    ws = Workspace(path)
    with ws.store.read() as con:
        ev = table_names(ws.store.log_id(con, LOG))[0]
        events = con.execute(f"SELECT count(*) FROM {ev}").fetchone()[0]

    def scan() -> None:
        with ws.store.read() as con:
            con.execute(f"SELECT activity, count(*) FROM {ev} GROUP BY activity").fetchall()

    def ours() -> None:
        stats.dfg(ws, LOG)
        stats.variants(ws, LOG)

    scan()  # warm the OS page cache for both alike
    res = {
        "scan_s": best_of(scan, repeat),
        "dfg_s": best_of(lambda: stats.dfg(ws, LOG), repeat),
        "variants_s": best_of(lambda: stats.variants(ws, LOG), repeat),
        "ours_s": best_of(ours, repeat),
        "peak_rss_mb": peak_rss_mb(),
        "performance_dfg_s": best_of(lambda: stats.performance_dfg(ws, LOG), 1),
        "filtered_dfg_s": best_of(lambda: stats.dfg(ws, LOG, Filter.case_size(min=8) & Filter.variants(top=20)),
                                  repeat),
        "events": events,
        "variants": len(stats.variants(ws, LOG)),
        "dfg_edges": len(stats.dfg(ws, LOG).edges),
        "peak_rss_all_mb": peak_rss_mb(),
    }
    print(json.dumps(res))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it excludes what a fork inherited)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(path: Path, repeat: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", str(path), "--repeat", str(repeat)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- pm4py ------------------------------------------------------------------------------------
def pm4py_part(ctx: Context) -> dict[str, Any]:
    pm4py = quiet_pm4py()
    t = time.perf_counter()
    df = ctx.frame()
    load = time.perf_counter() - t
    t = time.perf_counter()
    dfg = pm4py.discover_dfg(df)
    t_dfg = time.perf_counter() - t
    t = time.perf_counter()
    variants = pm4py.get_variants(df)
    t_var = time.perf_counter() - t
    return {"pm4py_load_s": load, "pm4py_dfg_s": t_dfg, "pm4py_variants_s": t_var, "pm4py_s": t_dfg + t_var,
            "pm4py_dfg_edges": len(dfg[0]), "pm4py_variants": len(variants)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workspace", type=Path, help="reuse (or create) this workspace")
    ap.add_argument("--skip-pm4py", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.repeat)
        return {}

    with contextlib.ExitStack() as stack:
        path = args.workspace or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mining-"))) / "ws"
        print(f"log: {args.events:,} generated events in {path}")
        summary: dict[str, Any] = {"events_requested": args.events, **prepare(path, args.events)}
        for k in ("generate_s", "ingest_s", "derive_s"):
            if k in summary:
                print(f"  {k[:-2]}: {summary[k]:.1f}s")
        ours = run_child(path, args.repeat)
        summary.update(ours)
        print(f"  events {ours['events']:,}, variants {ours['variants']:,}, DFG edges {ours['dfg_edges']}")
        print(f"ours:  dfg {ours['dfg_s']:.3f}s + variants {ours['variants_s']:.3f}s "
              f"(together {ours['ours_s']:.3f}s); peak RSS {ours['peak_rss_mb']:.0f} MB (target < 2048)")
        ratio_scan = ours["ours_s"] / ours["scan_s"]
        summary["ratio_vs_scan"] = ratio_scan
        print(f"scan:  GROUP BY activity {ours['scan_s']:.3f}s -> ours is {ratio_scan:.2f}x a bare scan "
              f"(target <= 3x)")
        print(f"extra: performance DFG {ours['performance_dfg_s']:.3f}s, "
              f"DFG with case-size & top-20-variants filter {ours['filtered_dfg_s']:.3f}s "
              f"(peak RSS with these {ours['peak_rss_all_mb']:.0f} MB)")
        ctx = Context(path, LOG, ours["events"], args.repeat)
        if not args.skip_pm4py:
            pm = pm4py_part(ctx)
            summary.update(pm)
            summary["ratio_vs_pm4py"] = pm["pm4py_s"] / ours["ours_s"]
            print(f"pm4py: discover_dfg {pm['pm4py_dfg_s']:.2f}s + get_variants {pm['pm4py_variants_s']:.2f}s "
                  f"(to_pandas {pm['pm4py_load_s']:.1f}s, untimed) -> ours is {summary['ratio_vs_pm4py']:.0f}x "
                  "faster (target >= 20x)")
            assert pm["pm4py_variants"] == ours["variants"], "pm4py found other variants"
        for hook in HOOKS:
            extra = hook(ctx)
            summary.update(extra)
            print(f"{hook.__name__}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in extra.items()))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}))
        return summary


if __name__ == "__main__":
    main()
