"""Discovery from the store: every miner, the registry, the inputs from SQL, and the
inductive miner's trees against pm4py's, on generated logs and on every real log."""

from __future__ import annotations

import importlib
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pm4py
import pytest
from pm4py.algo.discovery.inductive.fall_through.activity_concurrent import (
    ActivityConcurrentUVCL,
)
from pm4py.objects.process_tree.obj import ProcessTree
from pm4py.util.compression import util as comut

from conftest import pm4py_frame
from procestra import InvalidArgumentError, LogNotFoundError, Workspace
from procestra.errors import EmptyResultError, UserError
from procestra.mining.discover import (
    DiscoveryResult,
    discover,
    fast_dfg_uvcl,
    inductive_tree,
    log_variants,
)
from procestra.mining.filters import Filter, plan_filter
from procestra.mining.generate import generate_log

# The module, not the function the package may re-export under the same name.
disc = importlib.import_module("procestra.mining.discover")

ORIGINAL_DFG = comut.discover_dfg_uvcl


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tables(loan_table: Any) -> dict[str, Any]:
    """The generated tables, by log name: a noisy loan log, a lifecycle (start/complete) log, orders."""
    return {"loans": loan_table, "lifecycle": generate_log(3_000, seed=5, lifecycle=True),
            "orders": generate_log(2_000, seed=9, process="order")}


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory, tables: dict[str, Any]) -> Workspace:
    """A workspace holding every generated table under its log name."""
    ws = Workspace.init(tmp_path_factory.mktemp("discover") / "ws")
    for log, table in tables.items():
        ws.ingest(table, log=log)
    return ws


@pytest.fixture(scope="module")
def frames(tables: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """pm4py's frames of the same logs, made from the generator's tables, not from our export."""
    return {log: pm4py_frame(table) for log, table in tables.items()}


def _df(frames: dict[str, pd.DataFrame], log: str) -> pd.DataFrame:
    """The log for pm4py, ordered by completion time only (no start_timestamp column): pm4py's
    DFG functions would sort by start time first when the column is there."""
    out = frames[log].drop(columns=["start_timestamp"], errors="ignore")
    out.attrs = {}  # format_dataframe named the start timestamp column there
    return out


def _places(net: Any) -> set[tuple[frozenset[str], frozenset[str]]]:
    """A Petri net's places as (input labels, output labels): comparable across runs."""
    return {(frozenset(a.source.label or a.source.name for a in p.in_arcs),
             frozenset(a.target.label or a.target.name for a in p.out_arcs)) for p in net.places}


def _heuristics_shape(heu: Any) -> dict[str, Any]:
    return {
        "nodes": set(heu.nodes),
        "dependency": heu.dependency_matrix,
        "dfg": heu.dfg_matrix,
        "arcs": {(n, o.node_name) for n, node in heu.nodes.items() for o in node.output_connections},
        "start": dict(heu.start_activities[0]) if heu.start_activities else {},
        "end": dict(heu.end_activities[0]) if heu.end_activities else {},
    }


# -- every miner ---------------------------------------------------------------------------
def test_each_miner_returns_its_model_kind(gen: Workspace) -> None:
    from pm4py.objects.bpmn.obj import BPMN
    from pm4py.objects.heuristics_net.obj import HeuristicsNet
    from pm4py.objects.petri_net.obj import Marking, PetriNet

    im = discover(gen, "loans")
    assert isinstance(im, DiscoveryResult) and im.miner == "inductive" and im.log == "loans"
    assert isinstance(im.tree, ProcessTree) and im.model is im.tree
    assert im.net is None and im.heuristics_net is None and im.dfg is None and im.filter is None
    assert im.params == {"noise_threshold": 0.0, "disable_fallthroughs": False}
    assert im.seconds > 0

    dfg = discover(gen, "loans", "dfg")
    graph, start, end = dfg.dfg
    assert dfg.tree is None and dfg.model == dfg.dfg
    assert graph and all(isinstance(k, tuple) and len(k) == 2 and isinstance(v, int) for k, v in graph.items())
    assert sum(start.values()) == sum(end.values()) == gen.info("loans").cases

    heu = discover(gen, "loans", "heuristics")
    assert isinstance(heu.heuristics_net, HeuristicsNet) and heu.model is heu.heuristics_net

    alpha = discover(gen, "loans", "alpha")
    assert isinstance(alpha.net, PetriNet) and isinstance(alpha.initial_marking, Marking)
    assert alpha.model == (alpha.net, alpha.initial_marking, alpha.final_marking)

    for result in (im, dfg, heu, alpha):
        net, initial, final = result.to_petri()
        assert isinstance(net, PetriNet) and len(initial) == 1 and len(final) == 1
        assert result.to_petri()[0] is net  # converted once
        assert isinstance(result.to_bpmn(), BPMN)


def test_inductive_equals_pm4py_on_generated_logs(gen: Workspace, frames: dict[str, pd.DataFrame]) -> None:
    for log in ("loans", "orders", "lifecycle"):
        df = frames[log]
        for noise in (0.0, 0.2):
            ours = discover(gen, log, noise_threshold=noise).tree
            assert str(ours) == str(pm4py.discover_process_tree_inductive(df, noise_threshold=noise)), (log, noise)


def test_lifecycle_is_not_filtered_as_in_pm4py(gen: Workspace, frames: dict[str, pd.DataFrame]) -> None:
    variants = log_variants(gen, "lifecycle")
    assert sum(map(len, variants.elements())) == gen.info("lifecycle").events  # start and complete rows
    df = frames["lifecycle"]
    assert set(df["lifecycle:transition"]) == {"start", "complete"}
    projected = comut.get_variants(comut.project_univariate(df))
    assert list(projected.items()) == list(variants.items())  # same variants, same order


def test_imf_with_noise_differs_from_im(gen: Workspace) -> None:
    im = discover(gen, "loans").tree
    imf = discover(gen, "loans", noise_threshold=0.3)
    assert imf.params["noise_threshold"] == 0.3
    assert str(imf.tree) != str(im)
    assert len(str(imf.tree)) < len(str(im))  # noise filtered away: a smaller model


def test_heuristics_has_the_activities_and_equals_pm4py(gen: Workspace, frames: dict[str, pd.DataFrame]) -> None:
    result = discover(gen, "loans", "heuristics", dependency_threshold=0.6, and_threshold=0.7)
    with gen.store.read() as con:
        lid = gen.store.log_id(con, "loans")
        acts = dict(con.execute(f"SELECT activity, count(*) FROM ev_{lid} GROUP BY activity").fetchall())
    heu = result.heuristics_net
    assert set(heu.activities) == set(acts) and heu.activities_occurrences == acts
    assert set(heu.nodes) <= set(acts) and len(heu.nodes) >= len(acts) - 2
    assert result.params["dependency_threshold"] == 0.6 and result.params["and_threshold"] == 0.7
    theirs = pm4py.discover_heuristics_net(_df(frames, "loans"), dependency_threshold=0.6, and_threshold=0.7)
    assert _heuristics_shape(heu) == _heuristics_shape(theirs)
    strict = discover(gen, "loans", "heuristics", dependency_threshold=0.99).heuristics_net
    assert sum(len(n.output_connections) for n in strict.nodes.values()) < \
        sum(len(n.output_connections) for n in heu.nodes.values())


def test_dfg_and_alpha_equal_pm4py(gen: Workspace, frames: dict[str, pd.DataFrame]) -> None:
    df = _df(frames, "orders")
    graph, start, end = discover(gen, "orders", "dfg").dfg
    theirs = pm4py.discover_dfg(df)
    assert (graph, start, end) == tuple(dict(x) for x in theirs)
    alpha = discover(gen, "orders", "alpha")
    net, _, _ = pm4py.discover_petri_net_alpha(df)
    assert _places(alpha.net) == _places(net)
    assert {t.label for t in alpha.net.transitions} == {t.label for t in net.transitions}


# -- parameters and errors -----------------------------------------------------------------
@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.2", True, None])
def test_noise_threshold_out_of_range(gen: Workspace, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", noise_threshold=bad)
    assert exc.value.parameter == "noise_threshold"
    assert "between 0 and 1" in str(exc.value)


def test_invalid_parameters(gen: Workspace) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", "split-miner")
    assert exc.value.parameter == "miner"
    for name in ("alpha", "dfg", "heuristics", "inductive"):
        assert name in str(exc.value)
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", "heuristics", dependency_threshold=2)
    assert exc.value.parameter == "dependency_threshold"
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", "heuristics", noise_threshold=0.2)
    assert exc.value.parameter == "noise_threshold" and "heuristics" in str(exc.value)
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", "alpha", dependency_threshold=0.9)
    assert exc.value.parameter == "dependency_threshold"
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", "inductive", threshold=0.1)
    assert exc.value.parameter == "threshold" and "noise_threshold" in str(exc.value)
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", "heuristics", min_act_count=-1)
    assert exc.value.parameter == "min_act_count"
    with pytest.raises(InvalidArgumentError) as exc:
        disc.get_miner("inductive").discover(gen, "loans", disable_fallthroughs="yes")
    assert exc.value.parameter == "disable_fallthroughs"
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", filter="top 5 variants")
    assert exc.value.parameter == "filter"


def test_miner_params_are_typed_frozen_and_checked() -> None:
    """Each built-in miner reads its options into a frozen dataclass: defaults filled in, values
    checked, an option it does not take named in the error."""
    from dataclasses import FrozenInstanceError

    from procestra.mining.params import HeuristicsParams, InductiveParams, MinerOptions, MinerParams

    p = InductiveParams.parse("inductive", {"noise_threshold": 0.2})
    assert p == InductiveParams(noise_threshold=0.2, disable_fallthroughs=False)
    assert p.to_dict() == {"noise_threshold": 0.2, "disable_fallthroughs": False}
    with pytest.raises(FrozenInstanceError):
        p.noise_threshold = 0.5  # type: ignore[misc]
    h = HeuristicsParams.parse("heuristics", {"min_act_count": 3})
    assert (h.min_act_count, h.dependency_threshold) == (3, 0.5)
    assert disc.get_miner("heuristics").parameters == HeuristicsParams.names()  # type: ignore[attr-defined]
    assert MinerParams.names() == () and MinerParams.parse("dfg", {}).to_dict() == {}
    with pytest.raises(InvalidArgumentError) as exc:
        MinerParams.parse("alpha", {"noise_threshold": 0.1})
    assert exc.value.parameter == "noise_threshold" and "alpha miner (it takes no options)" in str(exc.value)
    with pytest.raises(InvalidArgumentError) as exc:
        InductiveParams.parse("inductive", {"noise_threshold": 2})
    assert exc.value.parameter == "noise_threshold"
    assert set(MinerOptions.__annotations__) == {*InductiveParams.names(), *HeuristicsParams.names()}


def test_a_user_miner_declaring_parameters_gets_unknown_options_rejected(gen: Workspace, registry: None) -> None:
    disc.register_miner(FlowerMiner())
    with pytest.raises(InvalidArgumentError) as exc:
        discover(gen, "loans", "flower", dependency_threshold=0.9)
    assert exc.value.parameter == "dependency_threshold" and "flower" in str(exc.value)


def test_unknown_log(gen: Workspace) -> None:
    for miner in disc.miners():
        with pytest.raises(LogNotFoundError) as exc:
            discover(gen, "no-such-log", miner)
        assert "loans" in str(exc.value)


def test_empty_log_and_empty_filter_result(ws: Workspace) -> None:
    ws.ingest(generate_log(200, seed=1), log="small")
    nothing = Filter.case_size(min=10_000)
    for miner in disc.miners():
        with pytest.raises(EmptyResultError) as exc:
            discover(ws, "small", miner, filter=nothing)
        assert isinstance(exc.value, UserError)
        assert "no cases match the filter" in str(exc.value) and "10000" in str(exc.value)


def test_filter_matches_pm4py_filtered_log(gen: Workspace, frames: dict[str, pd.DataFrame]) -> None:
    flt = Filter.variants(top=8)
    result = discover(gen, "loans", filter=flt)
    assert result.filter == flt.describe()
    theirs = pm4py.discover_process_tree_inductive(pm4py.filter_variants_top_k(frames["loans"].copy(), 8))
    assert str(result.tree) == str(theirs)
    assert sum(log_variants(gen, "loans", flt).values()) < gen.info("loans").cases
    _, start, _ = discover(gen, "loans", "dfg", filter=flt).dfg
    assert sum(start.values()) == sum(log_variants(gen, "loans", flt).values())


def test_variants_from_derived_tables_equal_those_from_events(gen: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variants read from the derived ``va_``/``cv_`` tables equal those aggregated
    from the events (same sequences, counts and order), with and without a case filter."""
    from procestra.mining.stats import derive_log

    derive_log(gen, "loans")
    flt = Filter.case_size(min=6) & Filter.variants(top=20)
    with gen.store.read() as con:
        lid = gen.store.log_id(con, "loans")
        assert plan_filter(con, lid, flt).fast  # the derived path is the one in use
    fast = {f: list(log_variants(gen, "loans", f).items()) for f in (None, flt)}
    monkeypatch.setattr("procestra.mining.plan.is_derived", lambda con, log_id: False)
    for f in (None, flt):
        assert list(log_variants(gen, "loans", f).items()) == fast[f]
    monkeypatch.setattr(disc, "_plan", lambda con, log_id, f: None)
    assert list(log_variants(gen, "loans").items()) == fast[None]


# -- the registry ----------------------------------------------------------------------------
@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(disc, "_REGISTRY", dict(disc._REGISTRY))


class FlowerMiner:
    """A user miner: a flower model (every activity in a loop) from the variants."""

    name = "flower"
    parameters = ("noise_threshold",)

    def discover(self, workspace: Workspace, log: str, *, filter: Any = None, **params: Any) -> DiscoveryResult:
        acts = sorted({a for v in log_variants(workspace, log, filter) for a in v})
        from pm4py.objects.process_tree.utils.generic import parse

        tree = parse("*( X(" + ", ".join(f"'{a}'" for a in acts) + "), tau )")
        return DiscoveryResult(self.name, dict(params), log, None, tree=tree)


def test_registry_with_a_user_miner(gen: Workspace, registry: None) -> None:
    assert disc.miners() == ["alpha", "dfg", "heuristics", "inductive"]
    disc.register_miner(FlowerMiner())
    assert "flower" in disc.miners() and isinstance(disc.get_miner("flower"), FlowerMiner)
    result = discover(gen, "loans", "flower", noise_threshold=0.5)
    assert result.miner == "flower" and result.params == {"noise_threshold": 0.5}
    assert "Submit application" in str(result.tree)
    assert discover(gen, "loans", FlowerMiner()).miner == "flower"  # an instance works too
    with pytest.raises(InvalidArgumentError, match="already registered"):
        disc.register_miner(FlowerMiner())
    replacement = FlowerMiner()
    disc.register_miner(replacement, replace=True)
    assert disc.get_miner("flower") is replacement
    with pytest.raises(InvalidArgumentError) as exc:
        disc.register_miner(object())  # type: ignore[arg-type]
    assert exc.value.parameter == "miner"


def test_registry_is_restored_after_the_test() -> None:
    assert "flower" not in disc.miners()


# -- display -----------------------------------------------------------------------------------
def test_result_displays_itself(gen: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import sys

    result = discover(gen, "orders")
    assert "inductive on 'orders'" in repr(result) and "ProcessTree" in repr(result)
    if shutil.which("dot"):
        assert "<svg" in (result._repr_svg_() or "")
        assert "<svg" in result._repr_html_()
    monkeypatch.setitem(sys.modules, "procestra.models.render", None)  # render.py not there: no crash
    assert result._repr_svg_() is None
    html = result._repr_html_()
    assert "<pre>" in html and "orders" in html


# -- the fast DFG and the patch -----------------------------------------------------------------
def _random_log(rng: random.Random, alphabet: list[Any]) -> Counter[tuple[Any, ...]]:
    log: Counter[tuple[Any, ...]] = Counter()
    for _ in range(rng.randint(0, 25)):
        trace = tuple(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 13])))
        log[trace] = rng.choice([0, 1, 1, 2, 3, 7, 40, 10**6])
    return log


def _same_dfg(a: Any, b: Any) -> bool:
    """Equal counts and equal key order in all three counters."""
    return all(list(x.items()) == list(y.items()) for x, y in
               ((a.graph, b.graph), (a.start_activities, b.start_activities), (a.end_activities, b.end_activities)))


def test_fast_dfg_equals_original_on_random_logs() -> None:
    rng = random.Random(20240601)
    alphabets = [["a"], ["a", "b"], list("abcdef"), [f"act {i}" for i in range(40)], [3, 1, 2, 10], ["é", "e", "Z", ""]]
    for i in range(1500):
        log = _random_log(rng, alphabets[i % len(alphabets)])
        ours, theirs = fast_dfg_uvcl(log), ORIGINAL_DFG(log)
        assert type(ours) is type(theirs)
        assert _same_dfg(ours, theirs), log
        assert all(type(v) is int for v in ours.graph.values())


def test_fast_dfg_falls_back_where_it_cannot_be_exact() -> None:
    for log in (Counter({("a", "b"): 1.5, ("b",): 2}),                  # float counts
                Counter({("a", "b"): 2**60, ("b", "a"): 2**60}),          # sums beyond 2**53
                Counter({(("x", 1), ("y", 2)): 3})):                     # tuple activities
        assert _same_dfg(fast_dfg_uvcl(log), ORIGINAL_DFG(log))
    mixed = Counter({("a", 1): 1})
    with pytest.raises(TypeError):
        ORIGINAL_DFG(mixed)
    with pytest.raises(TypeError):
        fast_dfg_uvcl(mixed)
    assert _same_dfg(fast_dfg_uvcl(Counter()), ORIGINAL_DFG(Counter()))
    assert _same_dfg(fast_dfg_uvcl(Counter({(): 4})), ORIGINAL_DFG(Counter({(): 4})))


def test_candidate_projection_equals_original_on_random_logs() -> None:
    """Same cut and sub-logs as pm4py's for every candidate; when it builds the projected
    log, the DFG it derives from the parent's arrays equals the original DFG of that log
    (where projections collide the last variant's count wins, as in pm4py)."""
    rng = random.Random(7)
    original = ActivityConcurrentUVCL._process_candidate
    seen: list[Any] = []

    class Spy(ActivityConcurrentUVCL):
        @classmethod
        def _find_cut(cls, obj: Any, ev: Any, parameters: Any = None) -> Any:
            seen.append(obj)
            return super()._find_cut(obj, ev, parameters=parameters)

    found = 0
    for _ in range(200):
        log = _random_log(rng, list("abcde"))
        for c in sorted({a for t in log for a in t}):
            theirs = original(c, log, parameters={})
            disc._local.str_only = True
            try:
                ours = disc._project_candidate(Spy, c, log, parameters={})
            finally:
                disc._local.str_only = None
            while seen:
                projected = seen.pop()
                assert _same_dfg(projected.dfg, ORIGINAL_DFG(projected.data_structure))
            if theirs is None:
                assert ours is None
            else:
                found += 1
                assert str(ours[0]) == str(theirs[0])
                assert [list(o.data_structure.items()) for o in ours[1]] == \
                       [list(t.data_structure.items()) for t in theirs[1]]
    assert found > 50  # both branches are exercised


def test_cuts_hold_on_dfg_keys_alone() -> None:
    """What `_project_candidate` relies on to skip building sub-logs: pm4py's IM cuts
    decide from the DFG's keys only, not from its counts nor from the log itself."""
    from pm4py.algo.discovery.inductive.cuts.factory import CutFactory
    from pm4py.algo.discovery.inductive.dtypes.im_ds import IMDataStructureUVCL
    from pm4py.algo.discovery.inductive.variants.instances import IMInstance
    from pm4py.objects.dfg.obj import DFG

    rng = random.Random(3)
    held = 0
    for _ in range(400):
        log = _random_log(rng, list("abcdef"))
        real = IMDataStructureUVCL(log)
        dfg = real.dfg
        scrambled = DFG({k: rng.randint(1, 99) for k in dfg.graph},
                        {k: rng.randint(1, 99) for k in dfg.start_activities},
                        {k: rng.randint(1, 99) for k in dfg.end_activities})
        probe = IMDataStructureUVCL(Counter(), scrambled)
        for cut in CutFactory.get_cuts(real, IMInstance.IM, {}):
            expected = cut.holds(real, {})
            held += expected is not None
            assert cut.holds(probe, {}) == expected, cut.__name__
    assert held > 100


def test_trees_equal_pm4py_on_random_variant_logs() -> None:
    rng = random.Random(11)
    for i in range(60):
        log = _random_log(rng, list("abcdefg"))
        log = Counter({t: n for t, n in log.items() if n and t}) or Counter({("a",): 1})
        rows = [(f"c{j:05d}", a, pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(seconds=k))
                for j, trace in enumerate(t for t, n in log.items() for _ in range(min(n, 5)))
                for k, a in enumerate(trace)]
        df = pd.DataFrame(rows, columns=["case:concept:name", "concept:name", "time:timestamp"])
        variants = comut.get_variants(comut.project_univariate(df))
        for noise in (0.0, 0.25):
            theirs = pm4py.discover_process_tree_inductive(df, noise_threshold=noise)
            assert str(inductive_tree(variants, noise_threshold=noise)) == str(theirs), (i, noise)


def test_accelerated_patches_and_restores() -> None:
    from pm4py.algo.discovery.inductive.dtypes import im_ds

    candidate = ActivityConcurrentUVCL.__dict__["_process_candidate"]
    with disc.accelerated():
        assert comut.discover_dfg_uvcl is fast_dfg_uvcl and im_ds.comut.discover_dfg_uvcl is fast_dfg_uvcl
        with disc.accelerated():  # re-entrant
            assert comut.discover_dfg_uvcl is fast_dfg_uvcl
        assert comut.discover_dfg_uvcl is fast_dfg_uvcl
        assert ActivityConcurrentUVCL.__dict__["_process_candidate"] is not candidate
    assert comut.discover_dfg_uvcl is ORIGINAL_DFG
    assert ActivityConcurrentUVCL.__dict__["_process_candidate"] is candidate
    with pytest.raises(ZeroDivisionError), disc.accelerated():
        1 / 0  # noqa: B018
    assert comut.discover_dfg_uvcl is ORIGINAL_DFG


def test_accelerated_is_thread_safe(gen: Workspace) -> None:
    logs = ["loans", "orders", "lifecycle"]
    variants = {log: log_variants(gen, log) for log in logs}
    expected = {log: str(inductive_tree(v)) for log, v in variants.items()}
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(log: str) -> None:
        try:
            for _ in range(3):
                results[log] = str(inductive_tree(variants[log]))
                assert results[log] == expected[log]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == expected
    assert comut.discover_dfg_uvcl is ORIGINAL_DFG
    assert disc._PATCH["depth"] == 0


# -- the real logs ------------------------------------------------------------------------------
REAL_LOGS = [
    "running-example.xes", "receipt.xes.gz", "helpdesk.xes.gz", "teleclaims.xes.gz", "repairExample.xes.gz",
    "reviewing.xes", "roadtraffic100traces.xes", "SEPSIS_1t_per_variant.xes.gz", "bpic2013_incidents.xes.gz",
    pytest.param("bpic2012.xes.gz", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def real_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace.init(tmp_path_factory.mktemp("real") / "ws")


@pytest.mark.shared
@pytest.mark.parametrize("name", REAL_LOGS)
def test_inductive_tree_equals_pm4py_on_real_log(shared_logs: Path, real_ws: Workspace, name: str) -> None:
    path = shared_logs / name
    if not path.exists():
        pytest.skip(f"{name} is not in ../shared")
    log = name.split(".")[0]
    real_ws.ingest(path, log=log)
    df = pm4py.read_xes(str(path))
    ours = discover(real_ws, log)
    assert str(ours.tree) == str(pm4py.discover_process_tree_inductive(df))
    assert ours.tree == pm4py.discover_process_tree_inductive(df)  # pm4py's structural equality too
    theirs_variants = comut.get_variants(comut.project_univariate(df))
    assert list(log_variants(real_ws, log).items()) == list(theirs_variants.items())
    graph, start, end = discover(real_ws, log, "dfg").dfg
    assert (graph, start, end) == tuple(dict(x) for x in pm4py.discover_dfg(df))
    if name != "bpic2012.xes.gz":  # IMf too (bpic2012: IM only, to keep the slow test short)
        imf = discover(real_ws, log, noise_threshold=0.2).tree
        assert str(imf) == str(pm4py.discover_process_tree_inductive(df, noise_threshold=0.2))
