"""Conformance checking against pm4py on the full log: fitness, precision, generalization and
simplicity from variants weighted by their counts; per-case deviations in the store; sampling,
filters, warnings and errors; real logs with BPMN models made by other tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pm4py
import pytest

from conftest import pm4py_frame
from procestra import (
    InvalidArgumentError,
    LogNotFoundError,
    LogSchema,
    ModelError,
    Workspace,
)
from procestra.errors import EmptyResultError, ModelNotFoundError
from procestra.mining.conformance import (
    ConformanceResult,
    conform,
    conformance_runs,
    deviations,
    deviations_table,
    drop_conformance,
)
from procestra.mining.discover import discover
from procestra.mining.filters import Filter
from procestra.mining.generate import generate_log
from procestra.models.repository import save_model

pytestmark = [pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),  # pm4py's numpy.matrix
              pytest.mark.filterwarnings("ignore:log activities not in the model:UserWarning"),  # IMf dropped it
              pytest.mark.filterwarnings("ignore:Install the optional requirement:UserWarning")]

EXACT = 1e-12  # sums of floats in another order: equal up to rounding
CASE_ATTRS = LogSchema(case_attributes=("amount", "channel"))
NOISY = {"events": 1_500, "seed": 3, "noise": 0.1}  # the noisy log's generator arguments


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace with a clean log (no noise) and a noisy one, both generated."""
    ws = Workspace.init(tmp_path_factory.mktemp("conformance") / "ws")
    ws.ingest(generate_log(2_000, seed=7, noise=0.0), log="clean", schema=CASE_ATTRS, progress=False)
    ws.ingest(generate_log(**NOISY), log="noisy", schema=CASE_ATTRS, progress=False)
    ws.ingest(generate_log(600, seed=1, process="order"), log="orders", progress=False)
    return ws


@pytest.fixture(scope="module")
def noisy(gen: Workspace) -> tuple[Any, tuple[Any, Any, Any]]:
    """The noisy log as pm4py's DataFrame (from the generator's table, not from the store),
    and pm4py's IMf (0.3) Petri net, which does not fit it all."""
    df = pm4py_frame(generate_log(**NOISY))
    return df, pm4py.discover_petri_net_inductive(df, noise_threshold=0.3)


def _approx(ours: dict[str, float], theirs: dict[str, float]) -> None:
    for key in ("log_fitness", "average_trace_fitness", "percentage_of_fitting_traces"):
        assert ours[key] == pytest.approx(theirs[key], abs=EXACT), key


def _count(ws: Workspace, sql: str, params: list[Any]) -> int:
    with ws.store.read() as con:
        return int(con.execute(sql, params).fetchall()[0][0])


def test_im_model_fits_its_own_log_perfectly(gen: Workspace) -> None:
    model = discover(gen, "clean")
    for method in ("tokens", "alignments"):
        result = conform(gen, "clean", model, method=method, progress=False)
        assert result.fitness["average_trace_fitness"] == 1.0
        assert result.fitness["percentage_of_fitting_traces"] == 100.0
        assert result.headline_fitness == pytest.approx(1.0, abs=1e-3)
        assert result.n_cases == result.covered_cases == gen.info("clean").cases
        assert result.n_variants == result.covered_variants == gen.info("clean").variants
        assert not result.sampled and result.warnings == []
        assert 0 < result.precision <= 1 and 0 < result.generalization <= 1 and 0 < result.simplicity <= 1
        rows = deviations(gen, "clean", result.run_id)
        assert len(rows) == result.n_cases and rows["is_fit"].all()
        assert all(len(d) == 0 for d in rows["deviations"])


def test_tokens_equal_pm4py_on_the_full_log(gen: Workspace, noisy: Any) -> None:
    df, (net, im, fm) = noisy
    with pytest.warns(UserWarning, match="log activities not in the model: Escalate to manager"):
        result = conform(gen, "noisy", (net, im, fm), method="tokens", progress=False, save=False)
    assert result.warnings == ["log activities not in the model: Escalate to manager"]
    _approx(result.fitness, pm4py.fitness_token_based_replay(df, net, im, fm))
    assert result.fitness["percentage_of_fitting_traces"] < 100  # the model does not fit: a real comparison
    assert result.precision == pytest.approx(pm4py.precision_token_based_replay(df, net, im, fm), abs=EXACT)
    assert result.generalization == pytest.approx(pm4py.generalization_tbr(df, net, im, fm), abs=EXACT)
    from pm4py.algo.evaluation.simplicity import algorithm as simplicity

    assert result.simplicity == simplicity.apply(net)
    assert result.run_id is None


def test_alignments_equal_pm4py_on_the_full_log(gen: Workspace, noisy: Any) -> None:
    df, (net, im, fm) = noisy
    result = conform(gen, "noisy", (net, im, fm), method="alignments", progress=False)
    _approx(result.fitness, pm4py.fitness_alignments(df, net, im, fm))
    assert result.headline_fitness == result.fitness["average_trace_fitness"] < 1
    assert result.precision == pytest.approx(pm4py.precision_alignments(df, net, im, fm), abs=EXACT)
    rows = deviations(gen, "noisy", result.run_id)
    # one deviation per non-synchronous visible move: the alignment's cost
    assert (rows["cost"] == rows["deviations"].map(len)).all()
    assert (rows["is_fit"] == (rows["cost"] == 0)).all()
    moves = {d.split(": ")[0] for ds in rows["deviations"] for d in ds}
    assert moves == {"skipped", "inserted", "not in model"}  # "Escalate to manager" is not in the model


def test_precision_needs_the_case_weights(gen: Workspace, noisy: Any) -> None:
    """pm4py's precision on a log of one trace per variant differs from the full log's;
    ours, with prefixes weighted by their cases, equals the full log's."""
    from procestra.mining.conformance import _variant_log

    df, (net, im, fm) = noisy
    variants = pm4py.get_variants(df)
    one_per_variant = _variant_log(list(variants))
    full = pm4py.precision_token_based_replay(df, net, im, fm)
    assert pm4py.precision_token_based_replay(one_per_variant, net, im, fm) != pytest.approx(full, abs=1e-6)
    assert conform(gen, "noisy", (net, im, fm), progress=False, save=False).precision == pytest.approx(full,
                                                                                                     abs=EXACT)


def test_deviations_table_rows_are_cases_and_filter_in_sql(gen: Workspace, noisy: Any) -> None:
    df, model = noisy
    result = conform(gen, "noisy", model, method="tokens", progress=False)
    rows = deviations(gen, "noisy")  # the latest run
    assert set(rows["run_id"]) == {result.run_id}
    assert len(rows) == rows["case_id"].nunique() == gen.info("noisy").cases
    assert set(rows["case_id"]) == set(df["case:concept:name"])
    assert set(rows["method"]) == {"tokens"} and set(rows["model"]) == {result.model}
    with gen.store.read() as con:
        log_id = gen.store.log_id(con, "noisy")
    table = deviations_table(log_id)
    unfit = _count(gen, f"SELECT count(*) FROM {table} WHERE run_id = ? AND NOT is_fit", [result.run_id])
    assert unfit == round(result.n_cases * (1 - result.fitness["percentage_of_fitting_traces"] / 100))
    assert unfit == (~rows["is_fit"]).sum() > 0
    # count the cases per deviation in SQL and in pandas: the same
    with gen.store.read() as con:
        by_sql = dict(con.execute(
            f"SELECT d, count(DISTINCT case_id) FROM (SELECT case_id, unnest(deviations) AS d FROM {table} "
            "WHERE run_id = ?) GROUP BY d", [result.run_id]).fetchall())
    by_pandas = rows.explode("deviations").dropna(subset=["deviations"]).groupby("deviations")["case_id"].nunique()
    assert by_sql == by_pandas.to_dict() and by_sql
    some = next(iter(by_sql))
    assert _count(gen, f"SELECT count(*) FROM {table} WHERE run_id = ? AND list_contains(deviations, ?)",
                  [result.run_id, some]) == by_sql[some]
    assert all(d.startswith(("missing token before ", "remaining token before ", "not in model: "))
               for d in by_sql)
    # one entry per remaining token; missing tokens named by the transition that lacked them
    def entries(prefix: str) -> Any:
        return rows["deviations"].map(lambda ds: sum(d.startswith(prefix) for d in ds))

    assert (entries("remaining token before ") == rows["remaining_tokens"]).all()
    missing = entries("missing token before ")
    assert (missing <= rows["missing_tokens"]).all() and ((missing > 0) == (rows["missing_tokens"] > 0)).all()
    # fitness of the unfit cases comes from their tokens
    unfit_rows = rows[~rows["is_fit"]]
    assert ((unfit_rows["missing_tokens"] + unfit_rows["remaining_tokens"]) > 0).all()
    assert (unfit_rows["fitness"] < 1).all()
    # runs are kept apart and listed
    runs = conformance_runs(gen, "noisy")
    assert runs["run_id"].iloc[0] == result.run_id and runs["fitness"].iloc[0] == result.headline_fitness
    assert json.loads(runs["details"].iloc[0])["fitness"] == result.fitness
    with pytest.raises(InvalidArgumentError, match="no conformance run 9999 on log 'noisy'"):
        deviations(gen, "noisy", 9999)


def test_sample_variants(gen: Workspace, noisy: Any) -> None:
    df, model = noisy
    result = conform(gen, "noisy", model, sample_variants=5, progress=False)
    assert result.sampled and result.covered_variants == 5 and result.n_variants > 5
    assert result.n_cases == gen.info("noisy").cases > result.covered_cases
    assert any(w.startswith("sampled: the 5 most frequent of ") for w in result.warnings)
    rows = deviations(gen, "noisy", result.run_id)
    assert len(rows) == result.covered_cases and rows["variant"].nunique() == 5
    top = sorted(pm4py.get_variants(df).values(), reverse=True)[:5]
    assert result.covered_cases == sum(top)
    # the same numbers as pm4py on exactly those cases
    sub = df[df["case:concept:name"].isin(set(rows["case_id"]))]
    _approx(result.fitness, pm4py.fitness_token_based_replay(sub, *model))


def test_filter(gen: Workspace, noisy: Any) -> None:
    df, model = noisy
    flt = Filter.case_attribute("channel", ["online"])
    result = conform(gen, "noisy", model, filter=flt, progress=False)
    online = df[df["case:channel"] == "online"]
    assert result.n_cases == online["case:concept:name"].nunique() < gen.info("noisy").cases
    assert result.filter == flt.describe()
    _approx(result.fitness, pm4py.fitness_token_based_replay(online, *model))
    with pytest.raises(EmptyResultError, match="no cases match"):
        conform(gen, "noisy", model, filter=Filter.case_attribute("channel", ["nowhere"]), progress=False)


def test_mismatched_activities_warn(gen: Workspace) -> None:
    orders_model = discover(gen, "orders")
    with pytest.warns(UserWarning, match="model activities not in the log") as caught:
        result = conform(gen, "clean", orders_model, progress=False)
    assert any("log activities not in the model" in str(w.message) for w in caught)
    assert [w.split(":")[0] for w in result.warnings] == ["model activities not in the log",
                                                          "log activities not in the model"]
    assert result.fitness["percentage_of_fitting_traces"] == 0.0
    rows = deviations(gen, "clean", result.run_id)
    assert all(any(d.startswith("not in model: ") for d in ds) for ds in rows["deviations"])


def test_progress_callback_and_saved_models(gen: Workspace, noisy: Any) -> None:
    _, model = noisy
    seen: list[tuple[str, int, int | None]] = []
    save_model(gen, "imf", model, source_log="noisy")
    result = conform(gen, "noisy", "imf", progress=lambda *a: seen.append(a))
    assert result.model == "imf@1"
    stages = {s for s, _, _ in seen}
    assert {"reading variants", "token replay", "precision", "writing deviations"} <= stages
    replay = [(d, t) for s, d, t in seen if s == "token replay"]
    assert replay[0] == (0, result.n_variants) and replay[-1] == (result.n_variants, result.n_variants)
    assert conform(gen, "noisy", "imf@1", progress=False, save=False).fitness == result.fitness
    info = save_model(gen, "imf", model, quality=result)
    assert info.quality["fitness"] == result.headline_fitness and info.quality["precision"] == result.precision
    assert isinstance(result, ConformanceResult)
    json.dumps(result.to_dict())
    assert "precision" in result._repr_html_() and "imf@1" in repr(result)


def test_errors(gen: Workspace, noisy: Any, tmp_path: Path) -> None:
    _, model = noisy
    with pytest.raises(LogNotFoundError):
        conform(gen, "no such log", model, progress=False)
    with pytest.raises(ModelNotFoundError):
        conform(gen, "noisy", "no-such-model", progress=False)
    not_bpmn = tmp_path / "x.bpmn"
    not_bpmn.write_text("<?xml version='1.0'?><definitions xmlns='urn:other'/>")
    with pytest.raises(ModelError, match="not a BPMN 2.0 file"):
        conform(gen, "noisy", not_bpmn, progress=False)
    dangling = tmp_path / "dangling.bpmn"
    dangling.write_text(
        "<definitions xmlns='http://www.omg.org/spec/BPMN/20100524/MODEL' id='d'><process id='p'>"
        "<startEvent id='s'/><task id='t' name='A'/><endEvent id='e'/>"
        "<sequenceFlow id='f1' sourceRef='s' targetRef='t'/><sequenceFlow id='f2' sourceRef='t' targetRef='gone'/>"
        "</process></definitions>")
    with pytest.raises(ModelError, match="'gone', which names no element"):
        conform(gen, "noisy", dangling, progress=False)
    with pytest.raises(InvalidArgumentError, match="method must be"):
        conform(gen, "noisy", model, method="footprints", progress=False)  # type: ignore[arg-type]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidArgumentError, match="sample_variants"):
            conform(gen, "noisy", model, sample_variants=bad, progress=False)


def test_save_false_writes_nothing_and_dropped_logs_forget_runs(ws: Workspace) -> None:
    ws.ingest(generate_log(300, seed=2, noise=0.0), log="a", progress=False)
    model = discover(ws, "a")
    before = ws.store.checksums()
    conform(ws, "a", model, save=False, progress=False)
    assert ws.store.checksums() == before
    with pytest.raises(InvalidArgumentError, match="no conformance run on log 'a' yet"):
        deviations(ws, "a")
    first = conform(ws, "a", model, progress=False)
    assert len(deviations(ws, "a")) == first.n_cases
    # a log dropped and another loaded in its place (same id): the old runs are not its runs
    ws.drop("a")
    ws.ingest(generate_log(200, seed=4, noise=0.0), log="b", progress=False)
    with pytest.raises(InvalidArgumentError, match="no conformance run on log 'b' yet"):
        deviations(ws, "b")
    with pytest.warns(UserWarning, match="model activities not in the log"):  # b lacks a rare activity
        second = conform(ws, "b", model, progress=False)
    rows = deviations(ws, "b")
    assert len(rows) == second.n_cases and set(rows["run_id"]) == {second.run_id}
    assert list(conformance_runs(ws, "b")["run_id"]) == [second.run_id]
    # what Workspace.drop calls: the log's runs and per-case table go
    with ws.store.write() as con:
        con.execute("BEGIN TRANSACTION")
        log_id = ws.store.log_id(con, "b")
        drop_conformance(con, log_id)
        con.execute("COMMIT")
    assert conformance_runs(ws, "b").empty
    assert deviations_table(log_id) not in ws.store.checksums()


# -- real logs and models made by other tools ------------------------------------------------------
@pytest.mark.shared
@pytest.mark.parametrize("log_file, model_file", [("running-example.xes", "running-example.bpmn"),
                                                  ("receipt.xes.gz", "receipt.bpmn")])
def test_real_logs_with_their_bpmn_models(ws: Workspace, shared_dir: Path, log_file: str,
                                          model_file: str) -> None:
    log_path, model_path = shared_dir / "logs" / log_file, shared_dir / "models" / model_file
    ws.ingest(log_path, log="real", progress=False)
    df = pm4py.read_xes(str(log_path))
    net, im, fm = pm4py.convert_to_petri_net(pm4py.read_bpmn(str(model_path)))  # pm4py's reading, not ours
    quick = log_file.startswith("running")
    result = conform(ws, "real", model_path, progress=False, quality=quick)
    assert result.model == str(model_path) and result.warnings == []
    _approx(result.fitness, pm4py.fitness_token_based_replay(df, net, im, fm))
    assert result.n_cases == df["case:concept:name"].nunique()
    if quick:
        assert result.precision == pytest.approx(pm4py.precision_token_based_replay(df, net, im, fm), abs=EXACT)
        aligned = conform(ws, "real", model_path, method="alignments", progress=False)
        _approx(aligned.fitness, pm4py.fitness_alignments(df, net, im, fm))
    assert len(deviations(ws, "real")) == result.n_cases
