"""The notebook explorer (procestra.widgets) on a real DuckDB workspace, without a browser."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from procestra import Filter, Workspace
from procestra.errors import LogNotFoundError
from procestra.mining import stats
from procestra.widgets import Comparison, Explorer, VariantBrowser


def _explorer_class() -> type[Explorer]:
    return Explorer


@pytest.fixture(scope="module")
def table():
    """A generated loan log (about 5,000 events) whose channel is a case attribute."""
    from procestra.mining.generate import generate_log

    t = generate_log(5_000, seed=1)
    return t.rename_columns(["case:channel" if c == "channel" else c for c in t.column_names])


@pytest.fixture
def explorer(ws: Workspace, table):
    ws.ingest(table, log="loan")
    ex = _explorer_class()(ws, "loan")
    yield ex
    ex.close()


def edges(ex: Explorer) -> int:
    return ex.map_html.value.count('class="edge"')


# -- what the map draws, and what it should draw (from the generator's table, with pandas) ----
SVG = "{http://www.w3.org/2000/svg}"


def drawn_map(widget_html: str) -> tuple[dict[str, list[str]], list[tuple[str, str, list[str]]]]:
    """The Graphviz SVG in the map widget: node name -> its texts, and ``(source, target, texts)`` per edge."""
    root = ET.fromstring(widget_html[widget_html.index("<svg"):widget_html.rindex("</svg>") + len("</svg>")])
    nodes: dict[str, list[str]] = {}
    lines: list[tuple[str, str, list[str]]] = []
    for g in root.iter(f"{SVG}g"):
        title, texts = g.findtext(f"{SVG}title") or "", [t.text or "" for t in g.iter(f"{SVG}text")]
        if g.get("class") == "node":
            nodes[title] = texts
        elif g.get("class") == "edge":
            source, _, target = title.partition("->")
            lines.append((source, target, texts))
    return nodes, lines


def drawn_dfg(widget_html: str) -> tuple[list[list[str]], dict[tuple[str, str], list[str]]]:
    """A drawn DFG as ``[activity, count]`` node labels (sorted) and ``(source, target) -> edge label``
    by activity name (``start``/``end`` for the case start and end nodes)."""
    nodes, lines = drawn_map(widget_html)
    names = {node: texts[0] for node, texts in nodes.items() if texts}
    drawn = {(names.get(a, a), names.get(b, b)): texts for a, b, texts in lines}
    assert len(drawn) == len(lines)  # one line per pair of activities
    return sorted(nodes[n] for n in names), drawn


def pm4py_frame(table: Any) -> Any:
    """The generator's table as a pandas frame with pm4py's column names."""
    return table.to_pandas().rename(columns={
        "case_id": "case:concept:name", "activity": "concept:name", "timestamp": "time:timestamp"})  # fmt: skip


@dataclass(frozen=True)
class LogDFG:
    """Directly-follows counts and mean seconds of a log, counted with pandas."""

    activities: Counter[str]
    edges: Counter[tuple[str, str]]
    start: Counter[str]
    end: Counter[str]
    mean_s: dict[tuple[str, str], float]

    @classmethod
    def of(cls, table: Any) -> LogDFG:
        df = table.to_pandas().sort_values(["case_id", "timestamp"], kind="stable")
        by_case = df.groupby("case_id", sort=False)
        df["next"], df["next_ts"] = by_case["activity"].shift(-1), by_case["timestamp"].shift(-1)
        pairs = df[df["next"].notna()]
        seconds = (pairs["next_ts"] - pairs["timestamp"]).dt.total_seconds()
        means = seconds.groupby([pairs["activity"], pairs["next"]]).mean()
        return cls(Counter(df["activity"]), Counter(zip(pairs["activity"], pairs["next"])),
                   Counter(by_case["activity"].first()), Counter(by_case["activity"].last()),
                   {k: float(v) for k, v in means.items()})  # fmt: skip

    def expected_map(self, kept: set[str], label: Any) -> tuple[list[list[str]], dict[tuple[str, str], list[str]]]:
        """What a map keeping ``kept`` (every path among them) draws; ``label(edge, count)`` labels an edge."""
        nodes = sorted([a, f"{self.activities[a]:,}"] for a in kept)
        lines = {e: label(e, n) for e, n in self.edges.items() if e[0] in kept and e[1] in kept}
        lines |= {("start", a): label(None, n) for a, n in self.start.items() if a in kept}
        lines |= {(a, "end"): label(None, n) for a, n in self.end.items() if a in kept}
        return nodes, lines


def bpmn_shape(model: Any) -> Counter[tuple[tuple[str, str], tuple[str, str]]]:
    """A pm4py BPMN's flows as ``(kind, task name)`` pairs: the model up to element ids."""
    from pm4py.objects.bpmn.obj import BPMN

    kinds = ((BPMN.Task, "task"), (BPMN.StartEvent, "start"), (BPMN.EndEvent, "end"),
             (BPMN.ExclusiveGateway, "xor"), (BPMN.ParallelGateway, "and"), (BPMN.InclusiveGateway, "or"))

    def node(n: Any) -> tuple[str, str]:
        kind = next((k for cls, k in kinds if isinstance(n, cls)), type(n).__name__)
        return kind, n.get_name() if kind == "task" else ""

    return Counter((node(f.get_source()), node(f.get_target())) for f in model.get_flows())


def drawn_bpmn_matches(widget_html: str, model: Any) -> None:
    """The drawn BPMN map shows ``model``: each task once by name, its gateways, one line per flow."""
    from pm4py.objects.bpmn.obj import BPMN

    nodes, lines = drawn_map(widget_html)
    texts = Counter(t for ts in nodes.values() for t in ts)
    nodes_of = Counter(type(n) for n in model.get_nodes())
    tasks = [n.get_name() for n in model.get_nodes() if isinstance(n, BPMN.Task)]
    assert len(nodes) == len(model.get_nodes()) and len(lines) == len(model.get_flows())
    assert texts == Counter(tasks) + Counter({"X": nodes_of[BPMN.ExclusiveGateway],
                                              "+": nodes_of[BPMN.ParallelGateway]})


def test_construct_shows_map_summary_and_panels(explorer: Explorer) -> None:
    assert "<svg" in explorer.map_html.value
    assert edges(explorer) > 0
    info = explorer.workspace.info("loan")
    assert explorer.summary.value.replace("<b>", "").replace("</b>", "").startswith(
        f"{info.cases:,} of {info.cases:,} cases, {info.events:,} of {info.events:,} events")
    assert "Submit application" in explorer.variants_html.value
    assert explorer.durations_html.value == ""  # side panels are drawn when shown
    explorer.tabs.selected_index = 1
    assert "<svg" in explorer.durations_html.value and "median" in explorer.durations_html.value
    # case attribute values come from the data
    assert ("channel", "online") in [v for _, v in explorer.attribute_select.options]
    assert explorer.query == 'stats.dfg(ws, "loan")'
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_path_slider_redraws_from_cache(explorer: Explorer) -> None:
    before, computed, draws = edges(explorer), explorer.computations, explorer.map_draws
    summary = explorer.summary.value
    explorer.path_slider.value = 0.3
    assert 0 < edges(explorer) < before
    explorer.activity_slider.value = 0.5
    assert explorer.computations == computed  # no SQL: thresholds run on the cached edges
    assert explorer.map_draws == draws + 2
    assert explorer.summary.value == summary


def test_coverage_filter_changes_summary_and_query(explorer: Explorer) -> None:
    before = explorer.summary.value
    explorer.coverage_slider.value = 0.5
    assert explorer.summary.value != before
    assert explorer.query == 'stats.dfg(ws, "loan", Filter.variants(coverage=0.5))'
    n = stats.dfg(explorer.workspace, "loan", Filter.variants(coverage=0.5)).cases
    assert explorer.summary.value.startswith(f"<b>{n:,}</b> of")
    explorer.coverage_slider.value = 1.0  # back to a cached state
    assert explorer.summary.value == before
    assert explorer.computations == 2


def test_query_evaluates_to_the_same_dfg(explorer: Explorer) -> None:
    explorer.coverage_slider.value = 0.8
    explorer.attribute_select.value = (("channel", "online"), ("channel", "broker"))
    explorer.end_select.value = explorer.end_select.options[:1]
    scope = {"ws": explorer.workspace, "stats": stats, "Filter": Filter}
    exec(f"result = {explorer.query}", scope)
    shown = explorer._state(explorer.filter).dfg
    assert scope["result"].to_pm4py() == shown.to_pm4py()
    assert scope["result"].cases == shown.cases > 0


def test_filter_keeping_nothing_shows_no_cases_match(explorer: Explorer) -> None:
    explorer.time_slider.index = (3, 3)  # cases contained in one instant: none
    assert "no cases match" in explorer.summary.value
    assert "no cases match" in explorer.map_html.value
    assert "<svg" not in explorer.map_html.value
    explorer.metric.value = "bpmn"
    assert "no cases match" in explorer.map_html.value
    assert explorer.export_svg() is None and "error" in explorer.status.value
    assert explorer.export_csv() is None and "keeps no events" in explorer.status.value
    for i in range(4):  # every side panel says so too
        explorer.tabs.selected_index = i
    assert "no cases match" in explorer.dotted_html.value + explorer.activity_html.value


def test_the_frequency_map_draws_the_activities_the_slider_keeps_with_the_logs_counts(explorer: Explorer,
                                                                                       table) -> None:
    log = LogDFG.of(table)
    ranked = sorted(log.activities, key=lambda a: (-log.activities[a], a))  # most frequent first
    for share in (1.0, 0.5):
        explorer.activity_slider.value = share
        kept = set(ranked[: math.ceil(share * len(ranked))])
        assert drawn_dfg(explorer.map_html.value) == log.expected_map(kept, lambda e, n: [f"{n:,}"])
    assert len(kept) == 8 and "Submit application" in kept and "Escalate to manager" not in kept


def test_performance_and_bpmn_maps(explorer: Explorer, table) -> None:
    import pm4py

    from procestra.models.render import human_duration

    log = LogDFG.of(table)
    explorer.metric.value = "performance"
    assert explorer.query == 'stats.performance_dfg(ws, "loan")'
    # every activity with its count; each path labelled with the mean time between its two events
    assert drawn_dfg(explorer.map_html.value) == log.expected_map(
        set(log.activities), lambda e, n: [human_duration(log.mean_s[e])] if e else [])
    explorer.metric.value = "bpmn"  # the inductive miner (IMf, noise 0.2), as pm4py finds it on the same log
    frame = pm4py_frame(table)
    drawn_bpmn_matches(explorer.map_html.value, pm4py.discover_bpmn_inductive(frame, noise_threshold=0.2))
    explorer.coverage_slider.value = 0.5
    assert "noise_threshold=0.2" in explorer.query and "Filter.variants(coverage=0.5)" in explorer.query
    # the most frequent variants covering half of the cases, counted with pandas
    variants = frame.sort_values(["case:concept:name", "time:timestamp"], kind="stable").groupby(
        "case:concept:name")["concept:name"].agg(tuple)
    counts = variants.value_counts()
    top = counts.index[: int((counts.cumsum() < 0.5 * len(variants)).sum()) + 1]
    kept = frame[frame["case:concept:name"].isin(variants.index[variants.isin(top)])]
    assert kept["case:concept:name"].nunique() == stats.dfg(explorer.workspace, "loan",
                                                            Filter.variants(coverage=0.5)).cases
    drawn_bpmn_matches(explorer.map_html.value, pm4py.discover_bpmn_inductive(kept, noise_threshold=0.2))


def test_export_svg_and_save_filtered_log(explorer: Explorer, tmp_path: Path) -> None:
    default = Path(explorer.svg_path.value)
    assert default == Path(explorer.workspace.path) / "exports" / "loan-map.svg"
    assert explorer.export_svg() == default
    assert default.read_text().startswith("<?xml") and str(default) in explorer.status.value
    explorer.coverage_slider.value = 0.5
    explorer.log_name.value = "loan-main"
    explorer.log_button.click()
    assert "loan-main" in explorer.status.value and "error" not in explorer.status.value
    n = stats.dfg(explorer.workspace, "loan", Filter.variants(coverage=0.5)).cases
    assert explorer.workspace.info("loan-main").cases == n


def test_unwritable_export_path_shows_error(explorer: Explorer, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    explorer.svg_path.value = str(blocker / "map.svg")
    explorer.svg_button.click()
    assert "error" in explorer.status.value and "map.svg" in explorer.status.value
    assert not (blocker / "map.svg").exists()
    explorer.log_name.value = "loan"  # exists already: an error message, not an exception
    explorer.log_button.click()
    assert "already exists" in explorer.status.value


def test_unknown_log_raises(ws: Workspace, table) -> None:
    ws.ingest(table, log="loan")
    with pytest.raises(LogNotFoundError, match="no log named 'nope'.*loan"):
        _explorer_class()(ws, "nope")


def test_close_closes_every_widget(explorer: Explorer) -> None:
    owned = list(explorer.widgets)
    assert explorer.root in owned and explorer.path_slider in owned
    explorer.close()
    assert explorer.closed
    assert all(w.comm is None for w in owned)
    explorer.close()  # idempotent


def test_side_panels_dotted_chart_and_activity(explorer: Explorer) -> None:
    explorer.tabs.selected_index = 2
    assert "<svg" in explorer.dotted_html.value
    explorer.tabs.selected_index = 3
    explorer.activity_dropdown.value = "Credit check"
    text = explorer.activity_html.value
    assert "events" in text and "most often after" in text
    n = next(r for r in stats.activity_stats(explorer.workspace, "loan").to_pylist()
             if r["activity"] == "Credit check")["events"]
    assert f"{n:,}" in text
    computed = explorer.computations
    explorer.tabs.selected_index = 2  # cached per filter state: no new state computed
    assert explorer.computations == computed


def test_duration_and_event_attribute_filters(explorer: Explorer) -> None:
    lo, hi = explorer.duration_slider.index
    explorer.duration_slider.index = (lo, hi // 2)
    assert "Filter.duration(" in explorer.query
    scope = {"ws": explorer.workspace, "stats": stats, "Filter": Filter}
    exec(f"result = {explorer.query}", scope)
    assert f"<b>{scope['result'].cases:,}</b> of" in explorer.summary.value
    if explorer.event_select.options:
        explorer.event_select.value = (explorer.event_select.options[0][1],)
        assert "Filter.event_attribute(" in explorer.query
    explorer.reset()
    assert explorer.query == 'stats.dfg(ws, "loan")'


def test_export_png_bpmn_and_csv(explorer: Explorer, table, tmp_path: Path) -> None:
    explorer.map_format.value = "png"
    assert explorer.svg_path.value.endswith(".png")
    path = explorer.export_map(tmp_path / "map.png")
    assert path and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(path) in explorer.status.value
    explorer.map_format.value = "bpmn"
    assert explorer.metric.value == "bpmn"  # a BPMN export is of the IMf model
    path = explorer.export_map(tmp_path / "map.bpmn")
    assert path is not None
    import pm4py

    # pm4py reads the file back as the model pm4py's IMf finds on the generator's table: the same tasks,
    # gateways, events and flows (up to ids), so the same language
    exported = pm4py.read_bpmn(str(path))
    reference = pm4py.discover_bpmn_inductive(pm4py_frame(table), noise_threshold=0.2)
    assert bpmn_shape(exported) == bpmn_shape(reference)
    tasks = sorted(n.get_name() for n in exported.get_nodes() if isinstance(n, pm4py.BPMN.Task))
    assert tasks == sorted(set(table.column("activity").to_pylist()))  # each of the log's 15 activities once
    assert len(exported.get_flows()) == len(reference.get_flows())
    explorer.coverage_slider.value = 0.5
    csv = explorer.export_csv(tmp_path / "kept.csv")
    assert csv and str(csv) in explorer.status.value
    import pandas as pd

    df = pd.read_csv(csv)
    assert df["case:concept:name"].nunique() == stats.dfg(explorer.workspace, "loan",
                                                          Filter.variants(coverage=0.5)).cases


def test_background_mode_keeps_controls_live(ws: Workspace, table) -> None:
    ws.ingest(table, log="loan")
    ex = Explorer(ws, "loan", background=True).wait(60)
    try:
        assert "<svg" in ex.map_html.value
        ex.coverage_slider.value = 0.3
        ex.coverage_slider.value = 0.6  # supersedes the first change
        ex.wait(60)
        n = stats.dfg(ws, "loan", Filter.variants(coverage=0.6)).cases
        assert ex.summary.value.startswith(f"<b>{n:,}</b> of") and ex.busy.value == ""
        ex.metric.value = "bpmn"
        ex.wait(120)
        assert "<svg" in ex.map_html.value
    finally:
        ex.close()


# Another process holding the event store read-write, as an ingest does: the explorer's SQL waits for it.
_HOLD_STORE = ("import duckdb, sys\ncon = duckdb.connect(sys.argv[1])\nprint('holding', flush=True)\n"
               "sys.stdin.readline()\ncon.close()")


def _explorer_thread_waits_for_the_store() -> bool:
    """Whether an explorer's background thread is inside the store's connect (retrying on the lock)."""
    import threading

    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if names.get(ident, "").startswith("procestra-explorer"):
            f: Any = frame
            while f is not None:
                if f.f_code.co_name == "_connect":
                    return True
                f = f.f_back
    return False


def test_controls_stay_live_while_work_waits_and_the_latest_change_is_drawn(tmp_path: Path, table,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESTRA_LOCK_TIMEOUT", "30")
    ws = Workspace.init(tmp_path / "ws")
    ws.ingest(table, log="loan")
    ex = Explorer(ws, "loan", background=True).wait(60)
    computed = ex.computations
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_STORE, str(ws.path / "events.duckdb")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        ex.coverage_slider.value = 0.5  # needs SQL: the background thread starts it and waits for the store
        assert "computing" in ex.busy.value
        for _ in range(600):  # until the redraw is under way (at most 30 s)
            if _explorer_thread_waits_for_the_store():
                break
            time.sleep(0.05)
        assert _explorer_thread_waits_for_the_store()
        # while it waits, every control takes changes at once and nothing is disabled
        ex.coverage_slider.value = 0.4  # queued behind the first, then superseded before it starts
        ex.coverage_slider.value = 0.3
        ex.path_slider.value = 0.5
        assert ex.query == 'stats.dfg(ws, "loan", Filter.variants(coverage=0.3))'
        assert "coverage=0.3" in ex.query_html.value and "computing" in ex.busy.value
        controls = (ex.metric, ex.activity_slider, ex.path_slider, ex.time_slider, ex.coverage_slider,
                    ex.duration_slider, ex.attribute_select, ex.event_select, ex.start_select, ex.end_select,
                    ex.reset_button, ex.map_format, ex.svg_button, ex.csv_button, ex.log_button)
        assert [w for w in controls if w.disabled] == []
        assert ex.computations == computed  # the store is still held: nothing has been computed yet
    finally:
        if holder.stdin is not None:
            holder.stdin.write("\n")
            holder.stdin.close()
        holder.wait(60)
    ex.wait(60)
    try:
        n = stats.dfg(ws, "loan", Filter.variants(coverage=0.3)).cases
        assert ex.summary.value.startswith(f"<b>{n:,}</b> of") and ex.busy.value == ""
        assert ex.computations == computed + 2  # 0.5 (already started) and 0.3; 0.4 never ran
        inline = Explorer(ws, "loan", background=False)  # the same controls, drawn without a thread
        inline.coverage_slider.value, inline.path_slider.value = 0.3, 0.5
        assert ex.map_html.value == inline.map_html.value
        inline.close()
    finally:
        ex.close()


def test_ws_explore(ws: Workspace, table) -> None:
    ws.ingest(table, log="loan")
    ex = ws.explore("loan")
    assert isinstance(ex, Explorer) and "<svg" in ex.map_html.value
    ex.close()


def test_variant_browser(ws: Workspace, table) -> None:
    ws.ingest(table, log="loan")
    vb = VariantBrowser(ws, "loan")
    first = stats.variants(ws, "loan", limit=2).to_pylist()
    assert vb.sequence == first[0]["activities"] and "<svg" in vb.diagram.value
    assert f"<b>{first[0]['count']:,}</b> cases" in vb.detail.value
    vb.select.value = 1
    assert vb.sequence == first[1]["activities"]
    assert stats.dfg(ws, "loan", vb.filter).cases == first[1]["count"]
    assert "Filter.variant([" in vb.query
    vb.close()


def test_comparison_highlights_the_dfg_difference(ws: Workspace, table) -> None:
    ws.ingest(table, log="loan")
    info = ws.info("loan")
    mid = info.start + (info.end - info.start) / 2
    cmp = Comparison.periods(ws, "loan", (info.start, mid), (mid, info.end), labels=("first half", "second half"))
    svg = cmp.map_html.value
    assert "<svg" in svg and "first half:" in svg and "second half:" in svg  # tooltips name both sides
    assert "Largest changes" in cmp.changes_html.value
    small, large = Filter.case_size(max=9), Filter.case_size(min=10)
    cmp2 = Comparison(ws, ("loan", small), ("loan", large), labels=("short", "long"))
    top = cmp2.diff.changes()[0]
    assert abs(top["change"]) > 0.1
    assert "#2e7d32" in cmp2.map_html.value and "#c62828" in cmp2.map_html.value  # rose and fell
    assert "DFGDiff.from_stats(" in cmp2.query
    with pytest.raises(Exception, match="right must be a log name"):
        Comparison(ws, "loan", ("loan", "nope"))
    cmp.close()
    cmp2.close()


def test_inbox_renders_the_form_and_completes(tmp_path: Path) -> None:
    from conftest import small_model
    from procestra import engine
    from procestra.widgets import Inbox

    ws = Workspace.init(tmp_path / "ws")
    small_model().save(ws)
    case = engine.start_case(ws, "review", {"applicant": "A", "amount": 5000})
    engine.Worker(ws).run(until_idle=True)
    inbox = Inbox(ws, user="ann")
    assert len(inbox.select.options) == 1 and "Review" in inbox.select.options[0][0]
    assert set(inbox.fields) == {"decision", "note"} and case in inbox.detail.value
    assert "amount" in inbox.detail.value  # the case data, for the person deciding
    assert inbox.submit() is None and "decision" in inbox.status.value and "error" in inbox.status.value
    assert inbox.claim() is not None and "claimed" in inbox.status.value
    inbox.fields["decision"].value = "reject"
    inbox.fields["note"].value = "too risky"
    item = inbox.submit()
    assert item is not None and item.data == {"decision": "reject", "note": "too risky"}
    assert inbox.select.options == () and "no open tasks" in inbox.detail.value
    engine.Worker(ws).run(until_idle=True)
    assert engine.get_case(ws, case).status == "completed"
    assert engine.get_case(ws, case).data["decision"] == "reject"
    inbox.close()
