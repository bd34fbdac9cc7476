"""Benchmark the notebook scheduler: per-job overhead against bare papermill, and Dask scale-out.

1. **Overhead per job.** The same trivial two-cell notebook, ``--runs`` times each, in this
   one process: bare ``papermill.execute_notebook`` in a loop, against one scheduler pass
   (``tick``) that runs ``--runs`` due slots of a job one at a time (planning, claiming,
   parameter checks, injected context, watchdog, HTML export, run history, the ``jobs``
   events and their flush into the event store: everything a scheduled run costs).
   Both sides get one warm-up run first; the rounds alternate so drift hits both. Also shown:
   the scheduled path with kernels started on demand only (``warm_kernels=False``).
   Target: at most 10 % more time per job.
2. **Dask throughput.** Batches of ``--dask-jobs`` runs of a notebook that computes briefly
   and then waits ``--wait`` s (as a report waiting on its database does), through the Dask
   executor on a ``LocalCluster`` of 1 worker and one of 2 workers (1 thread each), both up
   at once, batches alternating between them. Target: >= 1.7x.

    python benchmarks/bench_schedule.py
    python benchmarks/bench_schedule.py --runs 20 --dask-jobs 6 --dask-rounds 2 --wait 2
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toolkit"))

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
START = datetime(2025, 1, 6, tzinfo=UTC)


def _notebook(path: Path, *cells: str) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(metadata={"kernelspec": KERNELSPEC})
    p = new_code_cell("x = 1")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, *(new_code_cell(c) for c in cells)]
    nbformat.write(nb, str(path))
    return path


def _bare(nb: Path, out: Path, n: int) -> float:
    import papermill

    started = time.perf_counter()
    for i in range(n):
        papermill.execute_notebook(str(nb), str(out / f"bare-{i}.ipynb"), parameters={"x": i},
                                   kernel_name="python3", progress_bar=False)
    return time.perf_counter() - started


def _scheduled(root: Path, nb: Path, n: int, tag: str, warm: bool = True) -> tuple[float, int]:
    from procestra import Workspace
    from procestra.schedule.executors import LocalExecutor
    from procestra.schedule.jobs import add_job
    from procestra.schedule.runs import list_runs
    from procestra.schedule.scheduler import tick

    ws = Workspace.init(root / f"ws-{tag}")
    add_job(ws, "bench", nb, cron="* * * * *", catchup="all", catchup_limit=n, overlap="queue", start=START,
            parameters={"x": 2})
    executor = LocalExecutor(concurrency=1, warm_kernels=warm)
    try:
        started = time.perf_counter()
        result = tick(ws, START + timedelta(minutes=n, seconds=1), executor=executor)
        seconds = time.perf_counter() - started
    finally:
        executor.close()
    ok = [r for r in list_runs(ws, job="bench") if r.status == "succeeded" and r.html]
    assert len(ok) == n, f"{len(ok)} of {n} scheduled runs succeeded"
    return seconds, result.flushed


def overhead(runs: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-schedule-") as tmp:
        root = Path(tmp)
        nb = _notebook(root / "trivial.ipynb", "y = x + 1")
        (root / "out").mkdir()
        _bare(nb, root / "out", 1)  # warm-up: imports, kernel spec lookup
        _scheduled(root, nb, 1, "warm")  # warm-up: nbconvert templates, the store
        bare_t, ours_t, cold_t, flushed = [], [], [], 0
        per_round = max(runs // rounds, 1)
        for r in range(rounds):
            bare_t.append(_bare(nb, root / "out", per_round))
            seconds, moved = _scheduled(root, nb, per_round, f"r{r}")
            ours_t.append(seconds)
            flushed += moved
            cold_t.append(_scheduled(root, nb, per_round, f"c{r}", warm=False)[0])
        n = per_round * rounds
        bare, ours, cold = sum(bare_t) / n, sum(ours_t) / n, sum(cold_t) / n
        return {"runs": n, "bare": bare, "ours": ours, "cold": cold, "overhead": ours / bare - 1,
                "cold_overhead": cold / bare - 1, "events": flushed}


def _dask_batch(ex, nb: Path, root: Path, jobs: int, tag: str) -> float:
    from procestra.schedule.executors import RunSpec

    started = time.perf_counter()
    futures = [ex.submit(RunSpec(f"{tag}-{i}", str(nb), str(root / f"{tag}-{i}.ipynb"), html=False))
               for i in range(jobs)]
    results = [f.result() for f in futures]
    seconds = time.perf_counter() - started
    assert all(r.status == "succeeded" for r in results), [r.error for r in results if r.error]
    return seconds


def dask_scaling(jobs: int, wait: float, rounds: int) -> dict[str, float]:
    """Both clusters up at once; batches alternate between them so that load changes hit both."""
    from distributed import LocalCluster

    from procestra.schedule.executors import DaskExecutor, RunSpec

    logging.getLogger("distributed").setLevel(logging.ERROR)
    out: dict[str, float] = {"jobs": jobs * rounds, "w1": 0.0, "w2": 0.0}
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        root = Path(tmp)
        nb = _notebook(root / "report.ipynb", "total = sum(i * i for i in range(200_000))",
                       f"import time\ntime.sleep({wait})  # waiting on a database")
        clusters = [LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                 silence_logs=logging.ERROR) for n in (1, 2)]
        executors = [DaskExecutor(c.scheduler_address) for c in clusters]
        try:
            for n, ex in zip((1, 2), executors):  # warm-up: worker imports, a first kernel per worker
                for f in [ex.submit(RunSpec(f"warm{n}-{i}", str(nb), str(root / f"warm{n}-{i}.ipynb"), html=False))
                          for i in range(n)]:
                    f.result()
            for r in range(rounds):
                for n, ex in zip((1, 2), executors):
                    out[f"w{n}"] += _dask_batch(ex, nb, root, jobs, f"r{r}w{n}")
        finally:
            for ex in executors:
                ex.close()
            for c in clusters:
                c.close()
    out["speedup"] = out["w1"] / out["w2"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs per side for the overhead")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds the runs are split into")
    parser.add_argument("--dask-jobs", type=int, default=6, help="jobs per batch")
    parser.add_argument("--dask-rounds", type=int, default=2, help="batches per cluster, alternating")
    parser.add_argument("--wait", type=float, default=2.0, help="seconds each Dask job waits")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()

    if not args.skip_overhead:
        o = overhead(args.runs, args.rounds)
        print(f"overhead per job, {o['runs']} runs each of a trivial notebook (one process, alternating rounds):")
        print(f"  bare papermill.execute_notebook  {o['bare'] * 1000:8.0f} ms/job")
        print(f"  scheduled (tick, HTML, history)  {o['ours'] * 1000:8.0f} ms/job   "
              f"({o['events']} jobs-log events flushed)   {o['overhead'] * 100:+.1f} %")
        print(f"  the same without warm kernels    {o['cold'] * 1000:8.0f} ms/job   {o['cold_overhead'] * 100:+.1f} %")
        verdict = "ok" if o["overhead"] <= 0.10 else "ABOVE TARGET"
        print(f"  overhead {o['overhead'] * 100:+.1f} %  (target <= 10 %: {verdict})")
    if not args.skip_dask:
        d = dask_scaling(args.dask_jobs, args.wait, args.dask_rounds)
        print(f"Dask LocalCluster, {d['jobs']:.0f} jobs (brief compute + {args.wait:g} s wait), 1 thread per worker:")
        print(f"  1 worker  {d['w1']:6.1f} s   {d['jobs'] / d['w1']:.2f} jobs/s")
        print(f"  2 workers {d['w2']:6.1f} s   {d['jobs'] / d['w2']:.2f} jobs/s")
        verdict = "ok" if d["speedup"] >= 1.7 else "BELOW TARGET"
        print(f"  throughput 2 vs 1 workers: {d['speedup']:.2f}x  (target >= 1.7x: {verdict})")


if __name__ == "__main__":
    main()
