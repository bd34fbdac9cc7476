"""Engine speed: durable completed cases per second against SpiffWorkflow with a JSON snapshot per task.

    python benchmarks/bench_engine.py [--cases 2000] [--baseline-cases 300] [--timers 20] [--concurrency 32]

The model has 8 tasks: Receive -> Score -> exclusive gateway (small: Approve
automatically, large: Approve with limits) -> parallel split (Check A, Check B, Check C)
-> join -> Notify; each case runs 7 of them. Every task is a Python handler that returns
at once (``bench_engine:done``, through the real connector).

- **Baseline** (one process; run before and after ours, the mean is the reference):
  SpiffWorkflow alone. After every task the whole workflow is serialised with
  ``BpmnWorkflowSerializer.serialize_json`` (ServiceTask registered, as in
  ``procestra.engine.runtime.spiff()``) and written to a SQLite table (WAL, ``synchronous=FULL``, one
  transaction per task), then read back and deserialised to continue, as a restarted worker
  would. Handlers run through the same connector; conditions use SpiffWorkflow's own
  script engine.
- **Ours** (1, then 2 worker processes: ``engine.Worker`` with its defaults, started and
  warmed up before the clock): a fresh workspace per run; the clock runs from the first
  start until the last case is completed in the operational store.
  ``single``: this process starts the cases with one ``engine.start_case`` each while the
  workers run (end to end); ``batch``: the same with ``engine.start_cases`` of 100;
  ``workers``: every case is started before the workers go (the workers' own throughput).
- **Timers**: ``--timers`` cases wait for a timer due at a known instant (a date timer
  from the case data, 1.5 s ahead, spread 100 ms apart); one worker with its default
  polling (``poll=0.2`` s) fires them. Latency = the fired step's time - the due time.

The machine may be shared: the load average is printed at the start and the end.
Prints a table and writes ``benchmarks/output/bench_engine.json``.

    python benchmarks/bench_engine.py --postgres [--pg-cases 400] [--pg-concurrency 32] [--pg-runs 2]

**PostgreSQL against SQLite** (only this, instead of the above): one worker (concurrency 32)
runs three-step cases (Receive -> Score -> Notify, the same handler) with its operational
store on a PostgreSQL server on this machine, started the way the tests start it (Debian's
binaries, a throwaway cluster: ``tests/pg_cluster.py``; a fresh database per run), and on
SQLite, in alternation; ``workers`` and ``batch`` as above. Also the median time of a short
operation (``engine.get_case``; each opens a connection) on either store. Prints both side by
side and writes ``benchmarks/output/bench_engine_postgres.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("PROCESTRA_NO_PROGRESS", "1")
HERE = Path(__file__).resolve().parent
MODEL = "bench8"
MODEL3 = "bench3"  # Receive -> Score -> Notify (--postgres)
HANDLER = "bench_engine:done"
TASKS = ("Receive", "Score", "Approve automatically", "Approve with limits", "Check A", "Check B", "Check C",
         "Notify")


# -- the handler the model binds (imported by the workers from this file) -------------------------------
def done(ctx: Any) -> dict[str, Any]:
    """Returns at once: one small result per task."""
    return {f"{ctx.task_id}_ok": True}


# -- helpers ----------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def build_model() -> Any:
    from procestra.engine.connectors import python
    from procestra.engine.tobe import ToBeModel

    m = ToBeModel(MODEL)
    m.declare("amount", "number", required=True)
    start = m.add_event("start", id="StartEvent_1")
    prev = start
    ids = {}
    for name in TASKS:
        ids[name] = m.add_task(name, id="Activity_" + name.lower().replace(" ", "_"))
        m.bind(ids[name], python(HANDLER, outputs=[ids[name] + "_ok"]))
    m.connect(prev, ids["Receive"])
    m.connect(ids["Receive"], ids["Score"])
    size = m.add_gateway("exclusive", name="Size?", id="Gateway_size", after=ids["Score"])
    m.connect(size, ids["Approve automatically"], condition="amount < 1000")
    m.connect(size, ids["Approve with limits"], condition="amount >= 1000")
    merge = m.add_gateway("exclusive", id="Gateway_merge")
    split = m.add_gateway("parallel", id="Gateway_split")
    join = m.add_gateway("parallel", id="Gateway_join")
    m.connect(ids["Approve automatically"], merge)
    m.connect(ids["Approve with limits"], merge)
    m.connect(merge, split)
    for name in ("Check A", "Check B", "Check C"):
        m.connect(split, ids[name])
        m.connect(ids[name], join)
    m.connect(join, ids["Notify"])
    m.add_event("end", id="EndEvent_1", after=ids["Notify"])
    problems = [p for p in m.validate() if p.severity == "error"]
    assert not problems, problems
    return m


def three_step_model() -> Any:
    """Receive -> Score -> Notify, each the benchmark's handler."""
    from procestra.engine.connectors import python
    from procestra.engine.tobe import ToBeModel

    m = ToBeModel(MODEL3)
    m.declare("amount", "number", required=True)
    prev = m.add_event("start", id="StartEvent_1")
    for name in ("Receive", "Score", "Notify"):
        prev = m.add_task(name, id="Activity_" + name.lower(), after=prev)
        m.bind(prev, python(HANDLER, outputs=[prev + "_ok"]))
    m.add_event("end", id="EndEvent_1", after=prev)
    return m


def timer_model() -> Any:
    from procestra.engine.connectors import python
    from procestra.engine.tobe import ToBeModel

    m = ToBeModel("bench-timers")
    m.declare("due", "string", required=True)
    start = m.add_event("start", id="StartEvent_1")
    timer = m.add_event("timer", name="Wait", id="Event_wait", timer="due", after=start)
    m.elements[timer].timer_kind = "date"  # the expression gives an ISO date (refine has no keyword for it)
    after = m.add_task("After", id="Activity_after", after=timer)
    m.bind(after, python(HANDLER, outputs=["Activity_after_ok"]))
    m.add_event("end", id="EndEvent_1", after=after)
    return m


def amounts(n: int, seed: int) -> list[float]:
    """Case amounts from the project's generator (about half below 1000 after scaling)."""
    from procestra.mining.generate import generate_log

    table = generate_log(max(n * 12, 1000), seed=seed)
    seen: dict[str, float] = {}
    for row in table.select(["case_id", "amount"]).to_pylist():
        if row["amount"] is not None:
            seen.setdefault(row["case_id"], float(row["amount"]) / 8)
    values = list(seen.values())
    while len(values) < n:
        values += values
    return values[:n]


def new_workspace(root: Path, name: str, url: str | None = None) -> Any:
    """A workspace with the benchmark's models; its operational store on the PostgreSQL ``url`` if given."""
    from procestra import Workspace
    from procestra.store import ops

    ws = Workspace.init(root / name)
    if url is not None:
        ops.set_url(ws, url)
    build_model().save(ws)
    timer_model().save(ws)
    three_step_model().save(ws)
    return ws


# -- the baseline -----------------------------------------------------------------------------------------
def baseline(ws: Any, values: list[float], *, persist: bool = True, engine_class: bool = False) -> dict[str, Any]:
    """SpiffWorkflow alone, a whole-workflow JSON snapshot stored (and read back) after every task.

    Without ``persist``: the same in memory, nothing stored (the bound for any engine built on
    SpiffWorkflow running the cases one after another in one process). ``engine_class`` uses the
    engine's subclass of ``BpmnWorkflow`` (its faster task lookups) instead of SpiffWorkflow's own.
    """
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG
    from SpiffWorkflow.bpmn.serializer.default.task_spec import BpmnTaskSpecConverter
    from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
    from SpiffWorkflow.util.task import TaskState

    from procestra.engine.connectors import python, run_handler
    from procestra.models.repository import model_info

    config = dict(DEFAULT_CONFIG)
    config[ServiceTask] = BpmnTaskSpecConverter
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))
    parser = BpmnParser()
    parser.add_bpmn_file(str(Path(model_info(ws, MODEL).path) / "model.bpmn"))
    process_id = build_model().process_id
    spec, subs = parser.get_spec(process_id), parser.get_subprocess_specs(process_id)
    handler = python(HANDLER)
    if engine_class:
        from procestra.engine import runtime

        workflow_class = runtime.spiff()[1]
    else:
        workflow_class = BpmnWorkflow
    db = Path(ws.path) / ("baseline.sqlite" if persist else "memory.sqlite")
    con = sqlite3.connect(str(db), isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = FULL")
    con.execute("DROP TABLE IF EXISTS workflows")
    con.execute("CREATE TABLE workflows (case_id TEXT PRIMARY KEY, status TEXT, state TEXT)")
    sizes: list[int] = []
    tasks = 0
    t0 = time.perf_counter()
    for i, amount in enumerate(values):
        case = f"b-{i}"
        wf = workflow_class(spec, subs)
        wf.task_tree.data.update({"amount": amount})
        wf.do_engine_steps()
        if persist:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO workflows VALUES (?, 'running', ?)", (case, serializer.serialize_json(wf)))
            con.execute("COMMIT")
        while True:
            if persist:
                state = con.execute("SELECT state FROM workflows WHERE case_id = ?", (case,)).fetchone()[0]
                wf = serializer.deserialize_json(state)  # continue from the stored state, as a restarted worker
            ready = wf.get_tasks(state=TaskState.STARTED)
            if not ready:
                break
            task = ready[0]
            result = run_handler(handler, data=dict(task.data), idempotency_key=f"{case}:{task.task_spec.name}",
                                 case_id=case, task_id=task.task_spec.bpmn_id)
            task.data.update(result.data)
            task.complete()
            wf.do_engine_steps()
            tasks += 1
            if persist:
                text = serializer.serialize_json(wf)
                sizes.append(len(text))
                status = "completed" if wf.is_completed() else "running"
                con.execute("BEGIN IMMEDIATE")
                con.execute("UPDATE workflows SET state = ?, status = ? WHERE case_id = ?", (text, status, case))
                con.execute("COMMIT")
            if wf.is_completed():
                break
    seconds = time.perf_counter() - t0
    completed = con.execute("SELECT count(*) FROM workflows WHERE status = 'completed'").fetchone()[0]
    con.close()
    assert completed == len(values) or not persist, (completed, len(values))
    if not persist:
        return {"cases": len(values), "tasks": tasks, "seconds": seconds, "cases_per_s": len(values) / seconds}
    return {"cases": len(values), "tasks": tasks, "seconds": seconds, "cases_per_s": len(values) / seconds,
            "snapshot_bytes_p50": int(statistics.median(sizes)), "snapshot_bytes_max": max(sizes)}


# -- ours -------------------------------------------------------------------------------------------------
WORKER = """
import json, os, sys, threading, time
from procestra import Workspace, engine
from procestra.engine import runtime
ws = Workspace(sys.argv[1])
stop, ready, go = sys.argv[2], sys.argv[3], sys.argv[5]
w = engine.Worker(ws, concurrency=int(sys.argv[4]))
runtime.runnable(ws, {model!r})  # parse the model before the clock starts (a warm worker)
import duckdb, pandas, pyarrow, procestra.engine.connectors, procestra.ingest, procestra.engine.sandbox  # the flusher's and handlers' imports
def watch():
    while not os.path.exists(stop):
        time.sleep(0.01)
    w.stop()
threading.Thread(target=watch, daemon=True).start()
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
report = w.run()
print(json.dumps(report.to_dict()))
"""


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PROCESTRA_NO_PROGRESS": "1"}


def start_workers(ws: Any, n: int, concurrency: int, tag: str,
                  model: str = MODEL) -> tuple[list[subprocess.Popen[str]], Path, Path]:  # fmt: skip
    """``n`` warm worker processes (``model`` parsed), waiting for the returned ``go`` file; touch ``stop`` to end them."""
    stop, go = Path(ws.path) / f"stop-{tag}", Path(ws.path) / f"go-{tag}"
    procs, readies = [], []
    for i in range(n):
        ready = Path(ws.path) / f"ready-{tag}-{i}"
        readies.append(ready)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER.format(model=model), str(ws.path), str(stop),
                                       str(ready), str(concurrency), str(go)], env=_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in readies):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker did not start: " + "".join(p.stderr.read() for p in procs
                                                                       if p.poll() is not None))
        time.sleep(0.01)
    return procs, stop, go


def stop_workers(procs: list[subprocess.Popen[str]], stop: Path) -> list[dict[str, Any]]:
    stop.touch()
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"a worker failed: {err[-3000:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def completed(ws: Any, model: str, pg: Any = None) -> int:
    """Completed cases of ``model``: in ``ops.sqlite``, or on ``pg``, an open connection to a PostgreSQL store
    (polling through the engine's API would open a connection every time)."""
    if pg is not None:
        return int(pg.execute("SELECT count(*) FROM cases WHERE model = %s AND status = 'completed'",
                              (model,)).fetchone()[0])
    con = sqlite3.connect(str(Path(ws.path) / "ops.sqlite"), timeout=30)
    try:
        return int(con.execute("SELECT count(*) FROM cases WHERE model = ? AND status = 'completed'",
                               (model,)).fetchone()[0])
    finally:
        con.close()


def start_all(ws: Any, values: list[float], batch: int, model: str = MODEL) -> float:
    """Start a case per value: one ``start_case`` each (``batch`` 1) or ``start_cases`` per ``batch``; seconds."""
    from procestra import engine

    t = time.perf_counter()
    if batch <= 1:
        for amount in values:
            engine.start_case(ws, model, {"amount": amount})
    else:
        for i in range(0, len(values), batch):
            engine.start_cases(ws, model, [{"amount": a} for a in values[i:i + batch]])
    return time.perf_counter() - t


def ours(root: Path, values: list[float], workers: int, concurrency: int, mode: str, *, model: str = MODEL,
         url: str | None = None, name: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Cases per second, from the first start (or, for ``mode`` "workers", the workers' go) to the last done.

    ``mode``: "single" (one start_case per case while the workers run), "batch" (start_cases of 100
    while the workers run) or "workers" (all cases started before the workers go). ``url``: the
    operational store on that PostgreSQL database instead of SQLite.
    """
    from procestra import engine

    ws = new_workspace(root, name or f"ours-{workers}-{mode}", url)
    engine.list_cases(ws)  # the engine's tables exist before the clock starts
    pg = None
    if url is not None:
        import psycopg

        pg = psycopg.connect(url, autocommit=True)
    batch = 1 if mode == "single" else 100
    start_seconds = start_all(ws, values, batch, model) if mode == "workers" else None
    procs, stop, go = start_workers(ws, workers, concurrency, "run", model)
    go.touch()
    t0 = time.perf_counter()
    if mode != "workers":
        start_seconds = start_all(ws, values, batch, model)
    deadline = time.monotonic() + 600
    marks: list[float] = []  # seconds until a third, two thirds and all of the cases were done
    while True:
        n = completed(ws, model, pg)
        while len(marks) < 3 and n >= len(values) * (len(marks) + 1) / 3:
            marks.append(round(time.perf_counter() - t0, 2))
        if n >= len(values):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not finish within 10 minutes")
        time.sleep(0.01)
    seconds = time.perf_counter() - t0
    reports = stop_workers(procs, stop)
    if pg is not None:
        pg.close()
    failed = len(engine.list_cases(ws, model=model, status="failed"))
    assert failed == 0, f"{failed} cases failed"
    return {"workspace": str(ws.path), "workers": workers, "mode": mode, "cases": len(values), "seconds": seconds,
            "cases_per_s": len(values) / seconds, "start_seconds": start_seconds,
            "steps": sum(r["steps"] for r in reports), "commits": sum(r["commits"] for r in reports),
            "lost_leases": sum(r["lost_leases"] for r in reports), "thirds_done_at_s": marks,
            "cases_per_worker": [r["cases_completed"] for r in reports]}


def timers(root: Path, n: int) -> dict[str, Any]:
    """Latency from a timer's due time to its firing, one worker with its default polling."""
    from procestra import engine

    ws = new_workspace(root, "timers")
    engine.list_cases(ws)
    procs, stop, go = start_workers(ws, 1, 32, "timers")
    go.touch()
    base = datetime.now(UTC) + timedelta(seconds=1.5)
    due = {}
    for i in range(n):
        at = base + timedelta(seconds=0.1 * i)
        due[engine.start_case(ws, "bench-timers", {"due": at.isoformat()})] = at
    deadline = time.monotonic() + 60 + 0.1 * n
    while completed(ws, "bench-timers") < n and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_workers(procs, stop)
    latencies = []
    for case, at in due.items():
        [fired] = [s for s in engine.case_history(ws, case) if s.kind == "timer"]
        latencies.append((fired.started - at).total_seconds() * 1000)
    return {"timers": n, "p50_ms": percentile(latencies, 0.5), "p95_ms": percentile(latencies, 0.95),
            "min_ms": min(latencies), "max_ms": max(latencies), "poll_s": 0.2}


# -- PostgreSQL against SQLite ----------------------------------------------------------------------------
def short_operation_ms(path: str, n: int = 100) -> float:
    """The median milliseconds of ``engine.get_case`` on a case of the workspace at ``path`` (one short
    operation: a new connection to the operational store, one query)."""
    from procestra import Workspace, engine

    ws = Workspace(path)
    case = engine.list_cases(ws, model=MODEL3)[0].case
    times = []
    for _ in range(n):
        t = time.perf_counter()
        engine.get_case(ws, case)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def postgres_vs_sqlite(args: argparse.Namespace) -> None:
    """One worker on three-step cases with the operational store on PostgreSQL and on SQLite, side by side."""
    import psycopg

    sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' throwaway PostgreSQL server
    from pg_cluster import cluster, pg_bin

    bindir = pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed: `make test` installs Debian's postgresql")
    root = Path(tempfile.mkdtemp(prefix="bench-engine-pg-"))
    values = amounts(args.pg_cases, args.seed)
    modes = {"workers": "cases started before", "batch": "end to end, start_cases of 100"}
    rows: dict[str, dict[str, list[float]]] = {m: {"sqlite": [], "postgresql": []} for m in modes}
    short: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    result: dict[str, Any] = {"cases": args.pg_cases, "concurrency": args.pg_concurrency, "workers": 1,
                              "model": "Receive -> Score -> Notify", "cpus": os.cpu_count(), "runs": []}
    load0 = os.getloadavg()[0]
    try:
        with cluster(bindir) as server:
            print(f"PostgreSQL {bindir.parent.name} on this machine against SQLite: one worker, concurrency "
                  f"{args.pg_concurrency}, {args.pg_cases} three-step cases; {os.cpu_count()} CPUs", flush=True)
            for run in range(1, args.pg_runs + 1):
                for backend in ("sqlite", "postgresql"):
                    for mode in modes:
                        url = None
                        if backend == "postgresql":
                            db = f"bench_{run}_{mode}"
                            with psycopg.connect(server, autocommit=True) as admin:
                                admin.execute(f'CREATE DATABASE "{db}"')
                            url = server.rsplit("/", 1)[0] + "/" + db
                        r = ours(root, values, 1, args.pg_concurrency, mode, model=MODEL3, url=url,
                                 name=f"{backend}-{run}-{mode}")
                        rows[mode][backend].append(r["cases_per_s"])
                        result["runs"].append({"backend": backend, "run": run} | r)
                        print(f"run {run}, {backend}, {modes[mode]}: {r['cases_per_s']:.0f} cases/s "
                              f"({r['seconds']:.2f} s, {r['commits']} commits for {r['steps']} steps)", flush=True)
                    short[backend].append(short_operation_ms(r["workspace"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["short_operation_ms"] = short
    result["load_average"] = [load0, os.getloadavg()[0]]

    def span(values: list[float], digits: int = 0) -> str:
        lo, hi = min(values), max(values)
        return f"{lo:.{digits}f}" if round(lo, digits) == round(hi, digits) else f"{lo:.{digits}f}-{hi:.{digits}f}"

    print(f"\n{'':44}{'SQLite':>14}{'PostgreSQL':>14}")
    for mode, label in modes.items():
        print(f"{'cases/s, ' + label:44}{span(rows[mode]['sqlite']):>14}{span(rows[mode]['postgresql']):>14}")
    print(f"{'a short operation (get_case), median ms':44}{span(short['sqlite'], 1):>14}"
          f"{span(short['postgresql'], 1):>14}")
    print(f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 CPUs: above 2 means "
          "other work shared them)")
    out = HERE / "output"
    out.mkdir(exist_ok=True)
    (out / "bench_engine_postgres.json").write_text(json.dumps(result, indent=2, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000, help="cases per run of ours")
    ap.add_argument("--baseline-cases", type=int, default=300)
    ap.add_argument("--timers", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=64, help="cases one worker holds at once (the Worker default)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", action="store_true", help="keep the workspaces (printed)")
    ap.add_argument("--postgres", action="store_true",
                    help="only the operational store on PostgreSQL against SQLite (see the docstring)")
    ap.add_argument("--pg-cases", type=int, default=400, help="cases per run with --postgres")
    ap.add_argument("--pg-concurrency", type=int, default=32, help="cases the worker holds with --postgres")
    ap.add_argument("--pg-runs", type=int, default=2, help="runs per store with --postgres")
    args = ap.parse_args()
    if args.postgres:
        postgres_vs_sqlite(args)
        return

    root = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        values = amounts(max(args.cases, args.baseline_cases), args.seed)
        result: dict[str, Any] = {"cases": args.cases, "concurrency": args.concurrency, "cpus": os.cpu_count()}
        print(f"8-task model, {sum(v < 1000 for v in values[:args.cases])} of {args.cases} cases small; "
              f"{os.cpu_count()} CPUs", flush=True)
        load0 = os.getloadavg()[0]
        # the baseline runs before and after ours: the machine may be shared, the mean is the fair reference
        b1 = baseline(new_workspace(root, "baseline-1"), values[:args.baseline_cases])
        print(f"baseline (SpiffWorkflow + JSON snapshot per task), first: {b1['cases_per_s']:.1f} cases/s "
              f"({b1['cases']} cases, {b1['seconds']:.2f} s; snapshot {b1['snapshot_bytes_p50']:,} B median, "
              f"{b1['snapshot_bytes_max']:,} B max)", flush=True)
        what = {"single": "end to end, one start_case per case", "batch": "end to end, start_cases of 100",
                "workers": "workers only, cases started before"}
        for workers in (1, 2):
            for mode in ("single", "batch", "workers"):
                r = ours(root, values[:args.cases], workers, args.concurrency, mode)
                result[f"ours_{workers}w_{mode}"] = r
                print(f"ours, {workers} worker process{'es' if workers > 1 else ''} ({what[mode]}): "
                      f"{r['cases_per_s']:.0f} cases/s ({r['cases']} cases, {r['seconds']:.2f} s; starting took "
                      f"{r['start_seconds']:.2f} s; {r['commits']} commits for {r['steps']} steps; per worker "
                      f"{r['cases_per_worker']}; a third / two thirds / all done at {r['thirds_done_at_s']} s)",
                      flush=True)
        b2 = baseline(new_workspace(root, "baseline-2"), values[:args.baseline_cases])
        print(f"baseline, second: {b2['cases_per_s']:.1f} cases/s", flush=True)
        b = {"first": b1, "second": b2, "cases_per_s": (b1["cases_per_s"] + b2["cases_per_s"]) / 2}
        result["baseline"] = b
        mem = baseline(new_workspace(root, "memory"), values[:args.baseline_cases * 3], persist=False)
        result["spiff_in_memory"] = mem
        fast = baseline(new_workspace(root, "memory-engine"), values[:args.baseline_cases * 3], persist=False,
                        engine_class=True)
        result["spiff_in_memory_engine_class"] = fast
        print(f"SpiffWorkflow in memory, nothing stored (one process): {mem['cases_per_s']:.0f} cases/s = "
              f"{mem['cases_per_s'] / b['cases_per_s']:.1f}x the baseline; with the engine's workflow class "
              f"{fast['cases_per_s']:.0f} cases/s = {fast['cases_per_s'] / b['cases_per_s']:.1f}x", flush=True)
        for workers in (1, 2):
            for mode in ("single", "batch", "workers"):
                key = f"ours_{workers}w_{mode}"
                result[f"ratio_{key}"] = result[key]["cases_per_s"] / b["cases_per_s"]
        for mode in ("single", "batch", "workers"):
            result[f"scaling_1_to_2_{mode}"] = (result[f"ours_2w_{mode}"]["cases_per_s"]
                                                / result[f"ours_1w_{mode}"]["cases_per_s"])
        t = timers(root, args.timers)
        result["timers"] = t
        result["load_average"] = [load0, os.getloadavg()[0]]
        print(f"baseline mean {b['cases_per_s']:.1f} cases/s; load average {load0:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end (2 CPUs: above 2 means other work shared them)")
        for mode in ("single", "batch", "workers"):
            print(f"ratio ours/baseline ({what[mode]}): 1 worker {result[f'ratio_ours_1w_{mode}']:.1f}x, "
                  f"2 workers {result[f'ratio_ours_2w_{mode}']:.1f}x (target >= 10x); scaling 1 -> 2 workers "
                  f"{result[f'scaling_1_to_2_{mode}']:.2f}x")
        print(f"timer due -> fired ({t['timers']} timers, poll {t['poll_s']} s): p50 {t['p50_ms']:.0f} ms, "
              f"p95 {t['p95_ms']:.0f} ms, max {t['max_ms']:.0f} ms")
        out = HERE / "output"
        out.mkdir(exist_ok=True)
        (out / "bench_engine.json").write_text(json.dumps(result, indent=2, default=str))
    finally:
        if args.keep:
            print(f"workspaces kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
