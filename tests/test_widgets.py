"""The notebook explorer (procestra.widgets) on a real DuckDB workspace, without a browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from procestra import Filter, Workspace, stats
from procestra.errors import LogNotFoundError
from procestra.widgets import Explorer


def _explorer_class() -> type[Explorer]:
    return Explorer


@pytest.fixture(scope="module")
def table():
    """A generated loan log (about 5,000 events) whose channel is a case attribute."""
    from procestra.generate import generate_log

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
    assert explorer.durations_html.value.count("<tr>") == 12
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
    exec(f"result = {explorer.query}", scope)  # noqa: S102 - the point of the test
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
