"""Large models: a chain of N script tasks built, validated, saved, started and run, beside SpiffWorkflow.

    python benchmarks/bench_large_model.py [--sizes 500,2000,5000]

Ours: ``ToBeModel`` built through the API (``add_task`` + ``set_script`` per task), ``validate()``,
``save()`` (which validates again, parses with SpiffWorkflow and writes the repository's files),
``engine.start_case`` and one ``engine.Worker`` until the case completes. The reference, in the same
run: SpiffWorkflow alone parsing the saved BPMN and running it in memory (its parser and task
prediction recurse along the chain, so its recursion limit is raised for it as the engine raises it).
Issue 14's target: a 5,000-task model saves and starts in under 5 s. Prints one line per size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def spiff_alone(path: Path, n: int) -> float:
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 1_000 + 16 * n))
    try:
        t0 = time.perf_counter()
        parser = BpmnParser()
        parser.add_bpmn_file(str(path))
        pid = next(iter(parser.get_process_ids()))
        wf = BpmnWorkflow(parser.get_spec(pid), parser.get_subprocess_specs(pid))
        wf.do_engine_steps()
        assert wf.is_completed()
        return time.perf_counter() - t0
    finally:
        sys.setrecursionlimit(old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,2000,5000")
    args = ap.parse_args()
    from procestra import Workspace, engine
    from procestra.engine.examples import chain_model
    from procestra.models.repository import model_info

    for n in (int(x) for x in args.sizes.split(",")):
        ws = Workspace.init(Path(tempfile.mkdtemp()) / "ws")
        t0 = time.perf_counter()
        m = chain_model(n)
        t1 = time.perf_counter()
        errors = [p for p in m.validate() if p.severity == "error"]
        t2 = time.perf_counter()
        m.save(ws)
        t3 = time.perf_counter()
        case = engine.start_case(ws, "chain", {})
        t4 = time.perf_counter()
        engine.Worker(ws).run(until_idle=True, max_seconds=600)
        t5 = time.perf_counter()
        status = engine.get_case(ws, case).status
        ref = spiff_alone(Path(model_info(ws, "chain").path) / "model.bpmn", n)
        print(f"{n:,} tasks: build {t1 - t0:.2f} s, validate {t2 - t1:.2f} s ({len(errors)} errors), save "
              f"{t3 - t2:.2f} s, start {t4 - t3:.2f} s, run {t5 - t4:.2f} s ({status}); save + start "
              f"{t4 - t2:.2f} s (target < 5 s); SpiffWorkflow alone, parse + run in memory: {ref:.2f} s", flush=True)


if __name__ == "__main__":
    main()
