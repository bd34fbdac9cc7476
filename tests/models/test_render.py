"""procestra.render: every model kind to every format, DFG thresholds and labels, bad input."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from procestra.errors import InvalidArgumentError, ProcestraError, UserError
from procestra.models.render import (
    DFG,
    AcceptingPetriNet,
    Diagram,
    as_svg,
    filter_dfg,
    human_duration,
    register,
    render,
    save,
    show,
    supported_kinds,
)

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}
EDGE = re.compile(r'^\s*("[^"]+"|\w+) -[->] ("[^"]+"|\w+)', re.MULTILINE)  # digraphs (->) and process trees' graphs (--)


@pytest.fixture(scope="module")
def pm_log():
    """A generated loan log (3,000 events) as a pm4py DataFrame."""
    from procestra.mining.generate import generate_log

    return generate_log(3000, seed=1).to_pandas().rename(columns={
        "case_id": "case:concept:name", "activity": "concept:name", "timestamp": "time:timestamp"})  # fmt: skip


@pytest.fixture(scope="module")
def models(pm_log) -> dict[str, Any]:
    import pm4py

    dfg, start, end = pm4py.discover_dfg(pm_log)
    perf, _, _ = pm4py.discover_performance_dfg(pm_log)
    net, im, fm = pm4py.discover_petri_net_inductive(pm_log)
    tree = pm4py.discover_process_tree_inductive(pm_log)
    return {
        "dfg": DFG.from_pm4py(dfg, start, end, performance=perf),
        "dfg_triple": (dfg, start, end),
        "petri": (net, im, fm),
        "petri_bare": net,
        "tree": tree,
        "bpmn": pm4py.convert_to_bpmn(tree),
        "heuristics": pm4py.discover_heuristics_net(pm_log),
    }


def dot_edges(source: str) -> list[tuple[str, str]]:
    return EDGE.findall(source)


def synthetic_dfg(n: int = 50, out_degree: int = 12, seed: int = 3) -> DFG:
    """A dense DFG of ``n`` activities, as a busy real process has."""
    rng = random.Random(seed)
    acts = [f"Activity {i:02d}" for i in range(n)]
    edges = {(a, b): rng.randint(1, 5000) for a in acts for b in rng.sample(acts, out_degree)}
    perf = {e: rng.uniform(30, 30 * 86400) for e in edges}
    return DFG(edges=edges, start={a: rng.randint(50, 500) for a in acts[:4]},
               end={a: rng.randint(50, 500) for a in acts[-4:]}, performance=perf)  # fmt: skip


# -- every kind, every format --------------------------------------------------------
@pytest.mark.parametrize("kind", ["dfg", "dfg_triple", "petri", "petri_bare", "tree", "bpmn", "heuristics"])
@pytest.mark.parametrize("fmt", ["svg", "png", "pdf", "dot"])
def test_every_kind_renders_to_every_format(models, kind, fmt):
    out = render(models[kind], format=fmt)
    if fmt == "svg":
        assert isinstance(out, str)
        root = etree.fromstring(out.encode("utf-8"))
        assert etree.QName(root).localname == "svg"
        assert len(root.findall(".//{http://www.w3.org/2000/svg}g")) > 3
    elif fmt == "dot":
        assert isinstance(out, str) and re.match(r"\s*(strict\s+)?(di)?graph", out)
        assert dot_edges(out)
    else:
        assert isinstance(out, bytes) and out.startswith(MAGIC[fmt]) and len(out) > 1000


def test_dfg_dot_has_one_edge_per_path(models):
    dfg = models["dfg"]
    source = render(dfg, format="dot")
    assert len(dot_edges(source)) == len(dfg.edges) + len(dfg.start) + len(dfg.end)
    for act in dfg.activities:
        assert f'label="{act}\\n{dfg.activities[act]:,}"' in source


def test_pm4py_triple_and_dfg_agree(models):
    assert render(models["dfg_triple"], format="dot") == render(DFG.from_pm4py(*models["dfg_triple"]), format="dot")


def test_dfg_derives_activity_counts(pm_log, models):
    counts = pm_log["concept:name"].value_counts().to_dict()
    assert models["dfg"].activities == counts


SVG = "{http://www.w3.org/2000/svg}"


def svg_node_texts(svg: str) -> dict[str, list[str]]:
    """Graphviz SVG: each node's name (its ``<title>``) -> the texts drawn inside it."""
    root = etree.fromstring(svg.encode("utf-8"))
    return {g.findtext(f"{SVG}title"): [t.text or "" for t in g.iter(f"{SVG}text")]
            for g in root.iter(f"{SVG}g") if g.get("class") == "node"}  # fmt: skip


def marked_net() -> tuple[Any, Any, Any, dict[str, Any]]:
    """p0 -a-> p1 -b-> p2 -c-> p3 with one token in p0, two in p2, and p3 as the final marking."""
    from pm4py.objects.petri_net.obj import Marking, PetriNet
    from pm4py.objects.petri_net.utils.petri_utils import add_arc_from_to

    net = PetriNet("marked")
    places = {n: PetriNet.Place(n) for n in ("p0", "p1", "p2", "p3")}
    net.places.update(places.values())
    for i, name in enumerate("abc"):
        t = PetriNet.Transition(name, name)
        net.transitions.add(t)
        add_arc_from_to(places[f"p{i}"], t, net)
        add_arc_from_to(t, places[f"p{i + 1}"], net)
    return net, Marking({places["p0"]: 1, places["p2"]: 2}), Marking({places["p3"]: 1}), places


def test_petri_net_draws_the_tokens_of_its_markings_in_exactly_the_marked_places():
    net, im, fm, places = marked_net()
    svg = render(AcceptingPetriNet(net, im, fm), format="svg")
    assert svg == render((net, im, fm), format="svg")
    texts = svg_node_texts(svg)
    # one token: a dot; two tokens: the number; the final marking: a square; unmarked places: nothing
    assert {name: texts[str(id(p))] for name, p in places.items()} == {
        "p0": ["\N{BLACK CIRCLE}"], "p1": [], "p2": ["2"], "p3": ["\N{BLACK SQUARE}"]}
    bare = svg_node_texts(render(net, format="svg"))  # no markings given: no place shows a token
    assert {name: bare[str(id(p))] for name, p in places.items()} == {"p0": [], "p1": [], "p2": [], "p3": []}


def test_discovered_petri_net_shows_one_token_in_its_source_place(models):
    net, im, fm = models["petri"]
    texts = svg_node_texts(render(AcceptingPetriNet(net, im, fm), format="svg"))
    marks = {p.name: texts[str(id(p))] for p in net.places if texts[str(id(p))]}
    assert marks == {"source": ["\N{BLACK CIRCLE}"], "sink": ["\N{BLACK SQUARE}"]}
    assert (list(im), list(fm)) == ([p for p in net.places if p.name == "source"],
                                    [p for p in net.places if p.name == "sink"])  # fmt: skip


# -- thresholds -----------------------------------------------------------------------
def _paths(d: DFG) -> set[tuple[str, str]]:
    return set(d.edges) | {("<start>", a) for a in d.start} | {(a, "<end>") for a in d.end}


def test_path_threshold_only_ever_adds_edges(models):
    dfg = models["dfg"]
    previous: set[tuple[str, str]] = set()
    sizes = []
    for p in [0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 0.9, 1.0]:
        paths = _paths(filter_dfg(dfg, path_threshold=p))
        assert previous <= paths, f"raising path_threshold to {p} dropped edges"
        previous = paths
        sizes.append(len(paths))
    assert sizes[0] < sizes[-1] == len(_paths(dfg))
    assert len(dot_edges(render(dfg, format="dot", path_threshold=0.1))) < len(dot_edges(render(dfg, format="dot")))


def test_activity_threshold_keeps_most_frequent(models):
    dfg = models["dfg"]
    ranked = sorted(dfg.activities, key=lambda a: (-dfg.activities[a], a))
    sizes = []
    for a in [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]:
        kept = filter_dfg(dfg, activity_threshold=a)
        assert set(kept.activities) == set(ranked[: max(1, math.ceil(a * len(ranked)))])
        assert all(x in kept.activities and y in kept.activities for x, y in kept.edges)
        sizes.append((len(kept.activities), len(kept.edges)))
    assert sizes == sorted(sizes) and sizes[0][0] == 1 and sizes[-1][0] == len(ranked)


def _reachable(d: DFG, roots: set[str], forward: bool) -> set[str]:
    seen, todo = set(roots), list(roots)
    while todo:
        x = todo.pop()
        for a, b in d.edges:
            src, dst = (a, b) if forward else (b, a)
            if src == x and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


@pytest.mark.parametrize("activity_threshold", [1.0, 0.7, 0.4])
def test_lowest_path_threshold_stays_connected(models, activity_threshold):
    dfg = models["dfg"]
    kept = filter_dfg(dfg, activity_threshold=activity_threshold)  # what the data allows
    lean = filter_dfg(dfg, activity_threshold=activity_threshold, path_threshold=0.0)
    assert lean.activities == kept.activities
    assert _reachable(lean, set(lean.start), True) == _reachable(kept, set(kept.start), True)
    assert _reachable(lean, set(lean.end), False) == _reachable(kept, set(kept.end), False)
    assert len(lean.edges) < len(kept.edges)


# -- labels ---------------------------------------------------------------------------
@pytest.mark.parametrize(("seconds", "text"), [
    (0.35, "350ms"), (5, "5s"), (60, "1m"), (61, "1m 1s"), (2700, "45m"), (3600, "1h"), (5400, "1h 30m"),
    (2 * 86400 + 3 * 3600 + 59, "2d 3h"), (7 * 86400, "7d"), (400 * 86400, "1y 35d"), (0, "0ms"),
])  # fmt: skip
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_performance_labels_are_human_durations():
    dfg = DFG(edges={("a", "b"): 4, ("b", "c"): 2, ("a", "c"): 1}, start={"a": 5}, end={"c": 3, "b": 2},
              performance={("a", "b"): 2 * 86400 + 3 * 3600, ("b", "c"): 2700.0})  # fmt: skip
    source = render(dfg, format="dot", metric="performance")
    assert 'label="2d 3h"' in source and 'label="45m"' in source
    assert 'label="n/a"' in source  # a -> c has no measured time
    freq = render(dfg, format="dot")
    assert "label=4 " in freq and 'label="2d 3h"' not in freq
    widths = [float(w) for w in re.findall(r'label="(?:2d 3h|45m)"[^\]]*penwidth=([\d.]+)', source)]
    assert len(widths) == 2 and widths[0] > widths[1]  # the slower edge is drawn thicker


def test_pm4py_performance_dfg_values_are_means(models):
    dfg = models["dfg"]
    assert dfg.performance and all(isinstance(v, float) for v in dfg.performance.values())
    source = render(dfg, format="dot", metric="performance")
    assert re.search(r'label="\d+[dhms]', source)


# -- notebooks ------------------------------------------------------------------------
def test_show_returns_a_self_displaying_diagram(models, tmp_path):
    diagram = show(models["dfg"], path_threshold=0.3)
    assert isinstance(diagram, Diagram)
    bundle = diagram._repr_mimebundle_()
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml") and "<svg" in bundle["image/svg+xml"]
    assert diagram._repr_svg_() == bundle["image/svg+xml"]
    assert "directly-follows" in repr(diagram)
    assert diagram.save(tmp_path / "d.png").read_bytes().startswith(MAGIC["png"])
    assert "<svg" in models["dfg"]._repr_mimebundle_()["image/svg+xml"]
    assert "<svg" in as_svg(models["tree"])


# -- save ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".svg", ".png", ".pdf", ".dot"])
def test_save_drawings_by_extension(models, tmp_path, ext):
    path = save(models["petri"], tmp_path / f"net{ext.upper()}")
    data = path.read_bytes()
    expected = {".svg": b"<?xml", ".png": MAGIC["png"], ".pdf": MAGIC["pdf"], ".dot": b"digraph"}[ext]
    assert data.lstrip().startswith(expected)


def test_save_models_as_bpmn_pnml_ptml(models, tmp_path):
    import pm4py

    from procestra.models.bpmn import read_bpmn

    net = save(models["petri"], tmp_path / "net.pnml")
    read_net, im, fm = pm4py.read_pnml(str(net))
    assert len(read_net.transitions) == len(models["petri"][0].transitions) and len(im) == 1 and len(fm) == 1
    tree = pm4py.read_ptml(str(save(models["tree"], tmp_path / "tree.ptml")))
    assert str(tree) == str(models["tree"])
    for kind in ("bpmn", "tree", "petri"):
        model = read_bpmn(save(models[kind], tmp_path / f"{kind}.bpmn"))
        labels = {n.get_name() for n in model.get_nodes() if type(n).__name__ == "Task"}
        assert labels == set(models["dfg"].activities)
    assert save(models["tree"], tmp_path / "from_tree.pnml").read_text().lstrip().startswith("<?xml")


def test_save_refuses_unknown_extension(models, tmp_path):
    with pytest.raises(InvalidArgumentError) as info:
        save(models["dfg"], tmp_path / "dfg.txt")
    assert info.value.parameter == "path"
    assert "'.txt'" in str(info.value) and ".svg" in str(info.value) and ".bpmn" in str(info.value)
    with pytest.raises(InvalidArgumentError, match="no extension|none"):
        save(models["dfg"], tmp_path / "dfg")


def test_save_refuses_model_that_format_cannot_hold(models, tmp_path):
    with pytest.raises(InvalidArgumentError, match="cannot save a DFG as .bpmn"):
        save(models["dfg"], tmp_path / "dfg.bpmn")
    with pytest.raises(InvalidArgumentError, match=".ptml holds a process tree"):
        save(models["bpmn"], tmp_path / "m.ptml")


# -- registry -----------------------------------------------------------------------
class Chain:
    def __init__(self, *steps: str) -> None:
        self.steps = steps


class ChainRenderer:
    kind = "chain"

    def to_dot(self, model: Chain, **options: Any) -> str:
        pairs = zip(model.steps, model.steps[1:])
        return "digraph { " + " ".join(f'"{a}" -> "{b}";' for a, b in pairs) + " }"


def test_users_register_their_own_model_types():
    register(Chain, ChainRenderer())
    assert "chain" in supported_kinds()
    assert render(Chain("a", "b", "c"), format="png").startswith(MAGIC["png"])
    assert '"a" -> "b"' in render(Chain("a", "b"), format="dot")


def test_register_by_dotted_name_and_check_protocol():
    class Ring(Chain):
        pass

    register(f"{Ring.__module__}.{Ring.__qualname__}", ChainRenderer())
    assert "<svg" in as_svg(Ring("x", "y"))
    with pytest.raises(InvalidArgumentError, match="to_dot"):
        register(Ring, object())  # type: ignore[arg-type]


# -- bad input -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["activity_threshold", "path_threshold"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_threshold_outside_unit_interval(models, name, value):
    with pytest.raises(InvalidArgumentError) as info:
        render(models["dfg"], format="dot", **{name: value})
    assert info.value.parameter == name and name in str(info.value)
    assert isinstance(info.value, UserError)


def test_unknown_model_type_lists_supported_kinds():
    with pytest.raises(InvalidArgumentError) as info:
        render({"not": "a model"})
    message = str(info.value)
    assert info.value.parameter == "model"
    for kind in ("DFG", "Petri net", "process tree", "BPMN", "heuristics net"):
        assert kind in message


def test_bad_format_metric_and_options(models):
    with pytest.raises(InvalidArgumentError, match="unknown format 'jpg'"):
        render(models["dfg"], format="jpg")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="metric"):
        render(models["dfg"], metric="cost")
    no_perf = DFG.from_pm4py(*models["dfg_triple"])
    with pytest.raises(InvalidArgumentError, match="performance values"):
        render(no_perf, metric="performance")
    with pytest.raises(InvalidArgumentError, match="unknown option.*colour.*accepted: rankdir"):
        render(models["tree"], colour="red")
    with pytest.raises(InvalidArgumentError, match="rankdir"):
        render(models["dfg"], format="dot", rankdir="sideways")
    assert "rankdir=LR" in render(models["bpmn"], format="dot", rankdir="LR")


def test_bad_dfg_values():
    with pytest.raises(InvalidArgumentError, match="non-negative counts"):
        DFG(edges={("a", "b"): -1}, start={}, end={})
    with pytest.raises(InvalidArgumentError, match=r"\(source, target\)"):
        DFG(edges={"ab": 1}, start={}, end={})
    import pm4py  # noqa: F401  (the performance DFG passed where counts belong)

    with pytest.raises(InvalidArgumentError, match="performance DFG"):
        render(({("a", "b"): {"mean": 3.0}}, {"a": 1}, {"b": 1}))


def test_missing_graphviz_says_how_to_install(models, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without `dot`
    with pytest.raises(ProcestraError, match=r"apt-get install graphviz") as info:
        render(models["dfg"], format="svg")
    assert not isinstance(info.value, UserError)  # the machine lacks a program: exit code 1, not 2
    assert render(models["dfg"], format="dot").startswith("digraph")  # DOT source needs no Graphviz


def test_empty_dfg_renders():
    out = render(DFG(edges={}, start={}, end={}), format="svg")
    assert "<svg" in out


def test_saved_dot_is_the_source(models, tmp_path: Path):
    path = save(models["dfg"], tmp_path / "g.dot", path_threshold=0.2)
    assert path.read_text() == render(models["dfg"], format="dot", path_threshold=0.2)


def test_dfg_diff_compares_shares_of_cases() -> None:
    from procestra.models.render import DFGDiff

    left = DFG(edges={("a", "b"): 50, ("b", "c"): 50}, start={"a": 50}, end={"c": 50})
    right = DFG(edges={("a", "b"): 100, ("b", "d"): 60, ("b", "c"): 40}, start={"a": 100}, end={"c": 40, "d": 60})
    diff = DFGDiff(left, right, 50, 100, ("as-is", "to-be"))
    rows = {(r["source"], r["target"]): r for r in diff.changes()}
    assert rows[("a", "b")]["change"] == 0  # 100% of cases on both sides, though counts doubled
    assert rows[("b", "c")]["change"] == pytest.approx(-0.6)
    assert rows[("b", "d")]["left"] == 0 and rows[("b", "d")]["change"] == pytest.approx(0.6)
    dot = render(diff, format="dot")
    assert "only to-be: 60" in dot and "dashed" in dot  # found on one side only
    assert "#c62828" in dot and "-60%" in dot  # b -> c fell
    svg = render(diff, format="svg")
    assert svg.lstrip().startswith("<?xml") and "as&#45;is:" in svg
    with pytest.raises(InvalidArgumentError, match="unknown option"):
        render(diff, metric="frequency")


def test_plots_are_svg() -> None:
    from procestra.models.render import histogram_svg

    svg = histogram_svg([60.0, 3600.0, 7200.0, 86400.0])
    assert svg.startswith("<svg") and "1h" in svg
    assert "no cases match" in histogram_svg([])
