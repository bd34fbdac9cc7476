"""The notebook explorer (procestra.widgets) on a real DuckDB workspace, without a browser."""

from __future__ import annotations

from pathlib import Path

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


def test_performance_and_bpmn_maps(explorer: Explorer) -> None:
    explorer.metric.value = "performance"
    assert "<svg" in explorer.map_html.value
    assert explorer.query == 'stats.performance_dfg(ws, "loan")'
    explorer.coverage_slider.value = 0.5
    explorer.metric.value = "bpmn"
    assert "<svg" in explorer.map_html.value
    assert "noise_threshold=0.2" in explorer.query


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


def test_export_png_bpmn_and_csv(explorer: Explorer, tmp_path: Path) -> None:
    explorer.map_format.value = "png"
    assert explorer.svg_path.value.endswith(".png")
    path = explorer.export_map(tmp_path / "map.png")
    assert path and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(path) in explorer.status.value
    explorer.map_format.value = "bpmn"
    assert explorer.metric.value == "bpmn"  # a BPMN export is of the IMf model
    path = explorer.export_map(tmp_path / "map.bpmn")
    assert path is not None
    from procestra.models.bpmn import read_bpmn

    assert read_bpmn(path) is not None  # our own reader accepts it
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
