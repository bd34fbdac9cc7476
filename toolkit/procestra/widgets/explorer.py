"""Interactive process exploration for Jupyter, built on ipywidgets 8.

:class:`Explorer`: a process map of one log (a frequency or performance DFG, or a
BPMN model found by the inductive miner with noise filtering) next to the filters
that choose its cases, a summary line, and side panels (top variants, a
case-duration histogram, a dotted chart, statistics of one activity), with exports.
The variant browser and the comparison are in ``widgets.browse``.

Every number comes from the public API (:mod:`procestra.stats`, :func:`procestra.discover.discover`);
the widgets only compose a :class:`Filter` and draw. ``query`` shows the same
statistic as code to paste.

>>> ex = Explorer(ws, "loan")      # or ws.explore("loan")
>>> ex                              # displays itself
>>> ex.query                        # 'stats.dfg(ws, "loan", Filter.variants(coverage=0.8))'

**Caching.** Results are cached per filter state, keyed by ``repr(filter)``: moving the
activity or path slider only re-applies the thresholds to the small cached edge table
in memory (:func:`procestra.render.filter_dfg`) and runs no SQL. Performance DFGs, IMf
models and side panels are computed on first use and cached with the rest.

**Never blocking.** In a Jupyter kernel, work that runs SQL or discovery goes to one
background thread; a busy line shows while it runs, and the controls stay live. A
newer change supersedes older pending work (only the latest state is drawn). Outside a
kernel (scripts, tests) work runs inline; :meth:`Explorer.wait` waits for pending work.

**Filter order.** Parts combine left to right: time frame, case attributes, event
attributes, start activities, end activities, duration, then variant coverage, so the
coverage slider keeps the most frequent variants *of the cases the other filters chose*.
"""

from __future__ import annotations

import html
import json
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.errors import InvalidArgumentError, ProcestraError
from procestra.mining import stats
from procestra.mining.filters import Filter, save_filtered
from procestra.models.render import DFG as RenderDFG
from procestra.models.render import dotted_chart_svg, filter_dfg, histogram_svg, human_duration, render
from procestra.schema import quote_ident, table_names
from procestra.store import catalogue
from procestra.widgets.common import (
    EMPTY,
    Composite,
    close_all,
    descendants,
    error_html,
    load_widgets,
    ok_html,
    variants_table,
)

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["Explorer", "MAP_FORMATS", "MAP_KINDS"]

#: Map kinds of the metric toggle.
MAP_KINDS = ("frequency", "performance", "bpmn")
#: Export formats of the map.
MAP_FORMATS = ("svg", "png", "bpmn")
_MAX_ATTRIBUTE_VALUES = 50  # attributes with more distinct values (amounts, ids) are not offered
_MAX_TIME_STEPS = 200
_TOP_VARIANTS = 10
_MAX_CACHED = 64  # filter states kept in memory
_DOTTED_CASES = 300
_BUSY = ("<span style='color:#1d3f72'><span class='procestra-spinner' style='display:inline-block;"
         "animation:spin 1s linear infinite'>&#9696;</span> computing&hellip;</span>"
         "<style>@keyframes spin{from{transform:rotate(0)}to{transform:rotate(360deg)}}</style>")
_TABS = ("variants", "durations", "dotted", "activity")


def _in_kernel() -> bool:
    """Whether we run inside a Jupyter kernel (where background work keeps the controls live)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _counts(table: Any) -> dict[str, int]:
    d = table.to_pydict()
    return dict(zip(d["activity"], d["count"]))


def _to_render(d: stats.DFG, perf: dict[Any, Any] | None = None) -> RenderDFG:
    return RenderDFG.from_pm4py(*d.to_pm4py(), activities=_counts(d.activities), performance=perf)


def _write(path: Path, data: str | bytes) -> None:
    """Write ``data`` next to ``path`` and rename it into place (no half-written files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class _Worker:
    """Runs jobs in one background thread (or inline), dropping jobs a newer one superseded."""

    def __init__(self, background: bool, busy: Callable[[bool], None]) -> None:
        self.background = background
        self._busy = busy
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="procestra-explorer") if background else None
        self._lock = threading.Lock()
        self._pending: list[Future[Any]] = []
        self._latest: dict[str, int] = {}

    def submit(self, lane: str, job: Callable[[], None]) -> None:
        """Run ``job``; a later job in the same ``lane`` makes this one skip if it has not started."""
        with self._lock:
            ticket = self._latest.get(lane, 0) + 1
            self._latest[lane] = ticket
        if self._pool is None:
            job()
            return

        def run() -> None:
            if self._latest.get(lane) != ticket:
                return  # superseded before it started
            job()

        self._busy(True)
        fut = self._pool.submit(run)
        with self._lock:
            self._pending.append(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: Future[Any]) -> None:
        with self._lock:
            if fut in self._pending:
                self._pending.remove(fut)
            idle = not self._pending
        if idle:
            self._busy(False)

    def wait(self, timeout: float | None = None) -> None:
        with self._lock:
            pending = list(self._pending)
        for fut in pending:
            fut.result(timeout=timeout)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class _State:
    """What one filter state computed: its DFG now, the rest (variants, durations, models) on first use."""

    def __init__(self, workspace: Home, log: str, f: Filter) -> None:
        self._ws, self._log, self._f = workspace, log, f or None
        self.dfg: stats.DFG = stats.dfg(workspace, log, self._f)
        self._variants: stats.Variants | None = None
        self._durations: stats.CaseDurations | None = None
        self.perf: stats.PerformanceDFG | None = None
        self.models: dict[float, Any] = {}  # IMf noise -> BPMN
        self.panels: dict[str, str] = {}  # side panel -> HTML
        self.svgs: dict[Any, str] = {}  # what the map shows -> its SVG
        self.rendered: dict[str, RenderDFG] = {}  # metric -> the DFG as the renderer takes it
        self.activities: stats.ActivityStats | None = None
        self.times: stats.ActivityTimes | None = None

    @property
    def variants(self) -> stats.Variants:
        if self._variants is None:
            self._variants = stats.variants(self._ws, self._log, self._f, limit=_TOP_VARIANTS)
        return self._variants

    @property
    def durations(self) -> stats.CaseDurations:
        if self._durations is None:
            self._durations = stats.case_durations(self._ws, self._log, self._f)
        return self._durations

    @property
    def cases(self) -> int:
        return self.dfg.cases

    @property
    def events(self) -> int:
        return sum(self.dfg.activities.column("count").to_pylist())


class Explorer(Composite):
    """A process explorer of ``log`` in ``workspace``: map, filters, summary, side panels and exports.

    Raises :class:`procestra.errors.LogNotFoundError` for an unknown log. The widgets are
    attributes (``path_slider``, ``coverage_slider``, ...), so code can drive it too.
    ``background`` (default: only inside a Jupyter kernel) runs SQL and discovery in a
    background thread. :meth:`close` releases every widget, the thread and the cache.
    """

    def __init__(self, workspace: Home, log: str, *, background: bool | None = None) -> None:
        W = load_widgets()
        self.workspace = workspace
        self.log = log
        self.info = catalogue.info(workspace.store, log)  # LogNotFoundError with the known logs
        self._cache: dict[str, _State] = {}
        self._svg = ""
        self._closed = False
        #: How many filter states were computed with SQL (tests and curious users).
        self.computations = 0
        #: How many times the map was drawn, and when last (``time.perf_counter()``).
        self.map_draws = 0
        self.map_drawn_at = 0.0
        whole = stats.dfg(workspace, log)
        self.total_cases, self.total_events = whole.cases, sum(whole.activities.column("count").to_pylist())
        label = {"description_width": "90px"}
        slider = {"continuous_update": False, "readout_format": ".0%", "style": label}

        # map panel
        self.metric = W.ToggleButtons(options=[("Frequency", "frequency"), ("Performance", "performance"),
                                               ("BPMN (IMf)", "bpmn")], value="frequency")
        self.activity_slider = W.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05,
                                             description="Activities", **slider)
        self.path_slider = W.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, description="Paths", **slider)
        self.noise_slider = W.FloatSlider(value=0.2, min=0.0, max=1.0, step=0.05, description="IMf noise",
                                          disabled=True, **{**slider, "readout_format": ".2f"})
        self.map_html = W.HTML()
        self.busy = W.HTML()

        # filter panel
        self.time_slider = W.SelectionRangeSlider(options=self._time_options(), description="Time frame",
                                                  continuous_update=False, layout={"width": "98%"}, style=label)
        self.time_slider.index = (0, len(self.time_slider.options) - 1)
        self.coverage_slider = W.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05,
                                             description="Variants", **slider)
        self.attribute_select = W.SelectMultiple(options=self._attribute_options("case"), description="Case attr.",
                                                 rows=5, style=label)
        self.event_select = W.SelectMultiple(options=self._attribute_options("event"), description="Event attr.",
                                             rows=5, style=label)
        self.start_select = W.SelectMultiple(options=sorted(_counts(whole.start_activities)),
                                             description="Starts with", rows=4, style=label)
        self.end_select = W.SelectMultiple(options=sorted(_counts(whole.end_activities)),
                                           description="Ends with", rows=4, style=label)
        self.duration_slider = W.SelectionRangeSlider(options=self._duration_options(), description="Duration",
                                                      continuous_update=False, layout={"width": "98%"},
                                                      style=label)
        self.duration_slider.index = (0, len(self.duration_slider.options) - 1)
        self.reset_button = W.Button(description="Reset filters", icon="undo")
        self.summary = W.HTML()
        self.query_html = W.HTML()

        # side panels
        self.variants_html = W.HTML()
        self.durations_html = W.HTML()
        self.dotted_html = W.HTML()
        self.activity_dropdown = W.Dropdown(options=sorted(_counts(whole.activities)), description="Activity")
        self.activity_html = W.HTML()
        self.tabs = W.Tab(children=[self.variants_html, self.durations_html, self.dotted_html,
                                    W.VBox([self.activity_dropdown, self.activity_html])],
                          titles=("Top variants", "Case durations", "Dotted chart", "Activity"))

        # exports
        exports = Path(workspace.path) / "exports"
        self.map_format = W.Dropdown(options=[("SVG", "svg"), ("PNG", "png"), ("BPMN", "bpmn")], value="svg",
                                     description="Map as", layout={"width": "170px"})
        self.svg_path = W.Text(value=str(exports / f"{log}-map.svg"), description="Map path",
                               layout={"width": "60%"})
        self.svg_button = W.Button(description="Export map", icon="download")
        self.csv_path = W.Text(value=str(exports / f"{log}-filtered.csv"), description="CSV path",
                               layout={"width": "60%"})
        self.csv_button = W.Button(description="Export CSV", icon="table")
        self.log_name = W.Text(value=f"{log}-filtered", description="New log")
        self.log_button = W.Button(description="Save filtered log", icon="save")
        self.status = W.HTML()

        filters = W.VBox([W.HTML("<b>Filters</b>"), self.time_slider, self.coverage_slider, self.duration_slider,
                          self.attribute_select, self.event_select, self.start_select, self.end_select,
                          self.reset_button], layout={"width": "34%"})
        mapbox = W.VBox([W.HBox([self.metric, self.busy]),
                         W.HBox([self.activity_slider, self.path_slider, self.noise_slider]), self.map_html],
                        layout={"width": "66%"})
        export = W.VBox([W.HBox([self.map_format, self.svg_path, self.svg_button]),
                         W.HBox([self.csv_path, self.csv_button]), W.HBox([self.log_name, self.log_button]),
                         self.status])
        self.root = W.VBox([self.summary, W.HBox([mapbox, filters]), self.tabs, self.query_html, export])
        # stable CSS hooks for people styling the explorer and for the browser test
        for w, name in ((self.root, "explorer"), (self.map_html, "map"), (self.summary, "summary"),
                        (self.busy, "busy"), (self.metric, "metric"), (self.activity_slider, "activity-slider"),
                        (self.path_slider, "path-slider"), (self.noise_slider, "noise-slider"),
                        (self.time_slider, "time-slider"), (self.coverage_slider, "coverage-slider"),
                        (self.duration_slider, "duration-slider"), (self.attribute_select, "attribute-select"),
                        (self.event_select, "event-select"), (self.start_select, "start-select"),
                        (self.end_select, "end-select"), (self.reset_button, "reset"), (self.tabs, "tabs"),
                        (self.variants_html, "variants"), (self.durations_html, "durations"),
                        (self.dotted_html, "dotted"), (self.activity_dropdown, "activity-dropdown"),
                        (self.activity_html, "activity"), (self.map_format, "map-format"),
                        (self.svg_path, "svg-path"), (self.svg_button, "export-svg"), (self.csv_path, "csv-path"),
                        (self.csv_button, "export-csv"), (self.log_name, "log-name"),
                        (self.log_button, "save-log"), (self.status, "status"), (self.query_html, "query")):
            w.add_class(f"procestra-{name}")
        #: Every widget the explorer owns, the root last.
        self.widgets: list[Any] = descendants(self.root)

        self._worker = _Worker(_in_kernel() if background is None else bool(background), self._set_busy)
        self._map_controls = (self.metric, self.activity_slider, self.path_slider, self.noise_slider)
        self._filter_controls = (self.time_slider, self.coverage_slider, self.duration_slider,
                                 self.attribute_select, self.event_select, self.start_select, self.end_select)
        for w in self._map_controls:
            w.observe(self._on_map_change, names="value")
        for w in self._filter_controls:
            w.observe(self._on_filter_change, names="value")
        self.tabs.observe(self._on_tab_change, names="selected_index")
        self.activity_dropdown.observe(self._on_tab_change, names="value")
        self.map_format.observe(self._on_format_change, names="value")
        self.reset_button.on_click(lambda _: self.reset())
        self.svg_button.on_click(lambda _: self.export_map())
        self.csv_button.on_click(lambda _: self.export_csv())
        self.log_button.on_click(lambda _: self.save_log())
        self._refresh()

    # -- choices filled from the data ---------------------------------------------------------
    def _time_options(self) -> list[tuple[str, datetime]]:
        """Day (or coarser) steps from the first day of the log to the day after its last event."""
        start, end = self.info.start, self.info.end
        if start is None or end is None:
            now = datetime.now().astimezone()
            return [(now.date().isoformat(), now)]
        first = start.replace(hour=0, minute=0, second=0, microsecond=0)
        days = max(1, math.ceil((end - first) / timedelta(days=1)))
        step = timedelta(days=max(1, math.ceil(days / _MAX_TIME_STEPS)))
        out, t = [], first
        while True:
            out.append((t.date().isoformat(), t))
            if t >= end:
                return out
            t += step

    def _duration_options(self) -> list[tuple[str, float]]:
        """Case-duration steps at the 0, 5, ..., 100th percentile of the whole log (seconds)."""
        with self.workspace.store.read() as con:
            ca = table_names(catalogue.log_id(con, self.log))[2]
            qs = [i / 20 for i in range(21)]
            (values,) = con.execute(
                f"SELECT quantile_disc(epoch_us(last_ts) - epoch_us(first_ts), $q) FROM {ca}", {"q": qs}
            ).fetchall()[0]
        steps = sorted({round((v or 0) / 1e6, 3) for v in (values or [0])})
        if len(steps) == 1:
            steps.append(steps[0] + 1.0)
        steps[-1] += 0.001  # inclusive of the longest case after rounding
        return [(human_duration(s), s) for s in steps]

    def _attribute_options(self, level: str) -> list[tuple[str, tuple[str, Any]]]:
        """``name = value`` for every case (event) attribute with few enough distinct values (SQL in the store)."""
        out: list[tuple[str, tuple[str, Any]]] = []
        with self.workspace.store.read() as con:
            ev, ea, ca = table_names(catalogue.log_id(con, self.log))
            if level == "case":
                columns = [(n, t, ca) for n, t in sorted(self.info.case_attributes.items())]
            else:
                has_resource = con.execute(f"SELECT count(resource) > 0 FROM {ev}").fetchall()[0][0]
                columns = ([("resource", "VARCHAR", ev)] if has_resource else []) + \
                    [(n, t, ea) for n, t in sorted(self.info.event_attributes.items())]
            for name, typ, table in columns:
                if typ.upper().startswith(("STRUCT", "MAP", "UNION")) or typ.endswith("]"):
                    continue
                rows = con.execute(f"SELECT DISTINCT {quote_ident(name)} FROM {table} ORDER BY 1 NULLS LAST "
                                   f"LIMIT {_MAX_ATTRIBUTE_VALUES + 1}").fetchall()
                if len(rows) <= _MAX_ATTRIBUTE_VALUES:
                    out += [(f"{name} = {'(missing)' if v is None else v}", (name, v)) for (v,) in rows]
        return out

    # -- the filter ---------------------------------------------------------------------------
    @property
    def filter(self) -> Filter:
        """The filter the panel's widgets describe (``Filter()`` when they keep everything)."""
        f = Filter()
        opts = self.time_slider.options
        lo, hi = self.time_slider.index
        if (lo, hi) != (0, len(opts) - 1):
            f &= Filter.timeframe(opts[lo][1], opts[hi][1], mode="contained")
        for select, make in ((self.attribute_select, Filter.case_attribute),
                             (self.event_select, Filter.event_attribute)):
            chosen: dict[str, list[Any]] = {}
            for name, value in select.value:
                chosen.setdefault(name, []).append(value)
            for name, values in chosen.items():
                f &= make(name, values)
        if self.start_select.value:
            f &= Filter.start_activities(list(self.start_select.value))
        if self.end_select.value:
            f &= Filter.end_activities(list(self.end_select.value))
        dopts = self.duration_slider.options
        dlo, dhi = self.duration_slider.index
        if (dlo, dhi) != (0, len(dopts) - 1):
            f &= Filter.duration(min=dopts[dlo][1] if dlo else None,
                                 max=dopts[dhi][1] if dhi < len(dopts) - 1 else None)
        if self.coverage_slider.value < 1.0:
            f &= Filter.variants(coverage=round(float(self.coverage_slider.value), 4))
        return f

    @property
    def query(self) -> str:
        """The statistic behind the current map as code (``ws``, ``stats``, ``Filter``, ``discover`` in scope)."""
        f = self.filter
        log = json.dumps(self.log)
        if self.metric.value == "bpmn":
            where = f", filter={f!r}" if f else ""
            return f'discover(ws, {log}, "inductive"{where}, noise_threshold={self.noise_slider.value:g})'
        fn = "dfg" if self.metric.value == "frequency" else "performance_dfg"
        return f"stats.{fn}(ws, {log}{', ' + repr(f) if f else ''})"

    def _state(self, f: Filter) -> _State:
        key = repr(f)
        if key not in self._cache:
            self._cache[key] = _State(self.workspace, self.log, f)
            self.computations += 1
            while len(self._cache) > _MAX_CACHED:  # oldest first
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def reset(self) -> None:
        """Put every filter back to keeping everything."""
        for w in self._filter_controls:
            w.unobserve(self._on_filter_change, names="value")
        try:
            self.time_slider.index = (0, len(self.time_slider.options) - 1)
            self.duration_slider.index = (0, len(self.duration_slider.options) - 1)
            self.coverage_slider.value = 1.0
            for s in (self.attribute_select, self.event_select, self.start_select, self.end_select):
                s.value = ()
        finally:
            for w in self._filter_controls:
                w.observe(self._on_filter_change, names="value")
        self._refresh()

    # -- events ---------------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        if not self._closed:
            self.busy.value = _BUSY if busy else ""

    def _on_map_change(self, change: dict[str, Any]) -> None:
        self.noise_slider.disabled = self.metric.value != "bpmn"
        if self.map_format.value == "bpmn" and self.metric.value != "bpmn":
            self.map_format.value = "svg"
        f = self.filter
        state = self._cache.get(repr(f))
        cheap = state is not None and (self.metric.value == "frequency"
                                       or (self.metric.value == "performance" and state.perf is not None)
                                       or round(float(self.noise_slider.value), 4) in state.models)
        if cheap:  # thresholds on the cached edge table: draw now, no SQL
            self._draw_map(f)
        else:
            self._worker.submit("map", lambda: self._draw_map(f))
        self.query_html.value = self._query_html()

    def _on_filter_change(self, change: dict[str, Any]) -> None:
        self._refresh()

    def _on_tab_change(self, change: dict[str, Any]) -> None:
        f = self.filter
        self._worker.submit("panel", lambda: self._draw_panel(f))

    def _on_format_change(self, change: dict[str, Any]) -> None:
        path = Path(self.svg_path.value)
        if path.suffix.lower().lstrip(".") in MAP_FORMATS:
            self.svg_path.value = str(path.with_suffix("." + self.map_format.value))
        if self.map_format.value == "bpmn" and self.metric.value != "bpmn":
            self.metric.value = "bpmn"

    def _refresh(self) -> None:
        """Recompute (or fetch from the cache) the filter state and redraw what depends on it."""
        try:
            f = self.filter
        except ProcestraError as exc:
            self.status.value = error_html(exc)
            return
        self.query_html.value = self._query_html()

        def job() -> None:
            try:
                state = self._state(f)
            except ProcestraError as exc:
                self.status.value = error_html(exc)
                self._svg, self.map_html.value = "", EMPTY
                return
            if self._closed or repr(f) != repr(self.filter):
                return  # the controls moved on; their own job draws
            c, e = state.cases, state.events
            self.summary.value = (f"<b>{c:,}</b> of {self.total_cases:,} cases, <b>{e:,}</b> of "
                                  f"{self.total_events:,} events" + ("" if c else " &mdash; <b>no cases match</b>"))
            self._draw_map(f)
            self._draw_panel(f)

        self._worker.submit("state", job)

    def _query_html(self) -> str:
        return f"<code style='font-size:85%;color:#555'>{html.escape(self.query)}</code>"

    # -- drawing -------------------------------------------------------------------------------
    def _draw_map(self, f: Filter | None = None) -> None:
        """Redraw the map from the cached state of the filter (no SQL for DFG thresholds)."""
        if self._closed:
            return
        f = self.filter if f is None else f
        self.map_draws += 1
        try:
            state = self._state(f)
            if not state.cases:
                self._svg, self.map_html.value = "", EMPTY
                return
            svg = self._map_svg(state, f)
            if self._closed or repr(f) != repr(self.filter):
                return
            self._svg = svg
            self.map_html.value = (f"<div class='procestra-map-box' style='overflow:auto;max-height:720px'>"
                                   f"<style>.procestra-map-box svg{{max-width:100%;height:auto}}</style>{svg}</div>")
            self.map_drawn_at = time.perf_counter()
        except ProcestraError as exc:
            self._svg, self.map_html.value = "", error_html(exc)

    def _model(self, state: _State, f: Filter) -> Any:
        """The IMf BPMN model of the state at the current noise threshold (discovered once)."""
        noise = round(float(self.noise_slider.value), 4)
        if noise not in state.models:
            from procestra.mining.discover import discover

            state.models[noise] = discover(self.workspace, self.log, "inductive", filter=f or None,
                                           noise_threshold=noise).to_bpmn()
        return state.models[noise]

    def _render_dfg(self, state: _State, f: Filter) -> RenderDFG:
        metric = self.metric.value
        if metric not in state.rendered:
            perf = None
            if metric == "performance":
                if state.perf is None:
                    state.perf = stats.performance_dfg(self.workspace, self.log, f or None)
                perf = state.perf.to_pm4py("mean")[0]
            state.rendered[metric] = _to_render(state.dfg, perf)
        return state.rendered[metric]

    def _map_svg(self, state: _State, f: Filter) -> str:
        if self.metric.value == "bpmn":
            key: Any = ("bpmn", round(float(self.noise_slider.value), 4))
            if key not in state.svgs:
                state.svgs[key] = str(render(self._model(state, f), format="svg"))
            return state.svgs[key]
        # thresholds on the small edge table in memory; equal pictures are drawn once
        shown = filter_dfg(self._render_dfg(state, f), activity_threshold=float(self.activity_slider.value),
                           path_threshold=float(self.path_slider.value))
        key = (self.metric.value, tuple(sorted(shown.edges)), tuple(sorted(shown.start)),
               tuple(sorted(shown.end)), tuple(sorted(shown.activities)))
        if key not in state.svgs:
            state.svgs[key] = str(render(shown, format="svg", metric=self.metric.value))
        return state.svgs[key]

    def _draw_panel(self, f: Filter) -> None:
        """Draw the side panel that is visible (the others are drawn when shown)."""
        if self._closed:
            return
        tab = _TABS[self.tabs.selected_index or 0]
        target = {"variants": self.variants_html, "durations": self.durations_html,
                  "dotted": self.dotted_html, "activity": self.activity_html}[tab]
        try:
            state = self._state(f)
            key = f"activity:{self.activity_dropdown.value}" if tab == "activity" else tab
            if key not in state.panels:
                state.panels[key] = self._panel(tab, state, f) if state.cases else EMPTY
            out = state.panels[key]
        except ProcestraError as exc:
            out = error_html(exc)
        if repr(f) == repr(self.filter):
            target.value = out

    def _panel(self, tab: str, state: _State, f: Filter) -> str:
        if tab == "variants":
            return variants_table(state.variants)
        if tab == "durations":
            d = state.durations
            secs = d.table.column("duration_s").to_pylist()
            return (f"<div>mean {html.escape(human_duration(d.mean or 0))}, median "
                    f"{html.escape(human_duration(d.median or 0))}</div>" + histogram_svg(secs))
        if tab == "dotted":
            return dotted_chart_svg(stats.dotted_chart(self.workspace, self.log, f or None,
                                                       max_cases=_DOTTED_CASES))
        return self._activity_panel(state, f)

    def _activity_panel(self, state: _State, f: Filter) -> str:
        act = self.activity_dropdown.value
        if state.activities is None:
            state.activities = stats.activity_stats(self.workspace, self.log, f or None)
            state.times = stats.activity_times(self.workspace, self.log, f or None)
        row = next((r for r in state.activities.to_pylist() if r["activity"] == act), None)
        if row is None:
            return f"<i>{html.escape(str(act))} does not occur in the filtered cases</i>"
        times = next((r for r in state.times.to_pylist() if r["activity"] == act), {}) if state.times else {}
        edges = state.dfg.edges.to_pylist()
        before = sorted(((e["count"], e["source"]) for e in edges if e["target"] == act), reverse=True)[:5]
        after = sorted(((e["count"], e["target"]) for e in edges if e["source"] == act), reverse=True)[:5]

        def dur(v: Any) -> str:
            return "n/a" if v is None else human_duration(v)

        facts = [("events", f"{row['events']:,}"), ("cases", f"{row['cases']:,} ({row['cases'] / state.cases:.1%})"),
                 ("mean service time", dur(times.get("mean_service_s"))),
                 ("median service time", dur(times.get("median_service_s"))),
                 ("mean waiting time", dur(times.get("mean_waiting_s"))),
                 ("median waiting time", dur(times.get("median_waiting_s"))),
                 ("most often after", ", ".join(f"{a} ({n:,})" for n, a in before) or "—"),
                 ("most often before", ", ".join(f"{a} ({n:,})" for n, a in after) or "—")]
        rows = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
        return f"<table style='font-size:90%'>{rows}</table>"

    # -- export -------------------------------------------------------------------------------
    def _ok(self, message: str) -> None:
        self.status.value = ok_html(message)

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = error_html(exc)

    def export_map(self, path: str | Path | None = None, format: str | None = None) -> Path | None:
        """Write the current map as SVG, PNG or BPMN (IMf model) to ``path``; reports in the status line."""
        fmt = format or self.map_format.value
        target = Path(path if path is not None else self.svg_path.value).expanduser()
        try:
            if fmt not in MAP_FORMATS:
                raise InvalidArgumentError(f"format must be one of {', '.join(MAP_FORMATS)}, not {fmt!r}",
                                           parameter="format")
            f = self.filter
            state = self._state(f)
            if not state.cases:
                raise InvalidArgumentError("there is no map to export (no cases match the filter)")
            if fmt == "svg":
                data: str | bytes = self._svg or self._map_svg(state, f)
            elif fmt == "png":
                model = self._model(state, f) if self.metric.value == "bpmn" else self._render_dfg(state, f)
                opts = {} if self.metric.value == "bpmn" else {
                    "metric": self.metric.value, "activity_threshold": float(self.activity_slider.value),
                    "path_threshold": float(self.path_slider.value)}
                data = render(model, format="png", **opts)
            else:
                from procestra.models.bpmn import to_bpmn_xml

                data = to_bpmn_xml(self._model(state, f))
            _write(target, data)
        except (ProcestraError, OSError) as exc:
            self._failed(target, exc)
            return None
        self._ok(f"map written to {target}")
        return target

    def _failed(self, target: Path, exc: BaseException) -> None:
        """Report a failed export in the status line (a message, never an exception)."""
        if isinstance(exc, OSError):
            self._error(f"cannot write {target}: {exc.strerror or exc}")
        else:
            self._error(exc)

    def export_svg(self, path: str | Path | None = None) -> Path | None:
        """Write the current map as SVG to ``path`` (default: the path box)."""
        return self.export_map(path, "svg")

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the filtered log as CSV (pm4py's columns) to ``path`` (default: the CSV path box)."""
        from procestra.mining.export import export

        target = Path(path if path is not None else self.csv_path.value).expanduser()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            export(self.workspace, self.log, target, self.filter or None)
        except (ProcestraError, OSError) as exc:
            self._failed(target, exc)
            return None
        self._ok(f"filtered log written to {target}")
        return target

    def save_log(self, name: str | None = None) -> str | None:
        """Save the filtered log as a new log ``name`` (default: the name box) with ``save_filtered``."""
        name = name if name is not None else self.log_name.value.strip()
        try:
            info = save_filtered(self.workspace, self.log, self.filter, name)
        except ProcestraError as exc:
            self._error(exc)
            return None
        self._ok(f"saved log {name!r} ({info.cases:,} cases, {info.events:,} events) in "
                 f"{Path(self.workspace.path) / 'events.duckdb'}")
        return name

    # -- display and lifetime -----------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> Explorer:
        """Wait until background work has been drawn (scripts and tests)."""
        self._worker.wait(timeout)
        return self

    def close(self) -> None:
        """Close every widget, stop the background thread and drop the cache; unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        self._worker.shutdown()
        for w in self._map_controls:
            w.unobserve(self._on_map_change, names="value")
        for w in self._filter_controls:
            w.unobserve(self._on_filter_change, names="value")
        close_all(self.widgets)
        self._cache.clear()
        self._svg = ""

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<Explorer {self.log!r}: {self.query}>"
