"""Interactive process exploration for Jupyter, built on ipywidgets 8.

Three widgets, made of the same parts:

- :class:`Explorer`: a process map of one log (a frequency or performance DFG, or a
  BPMN model found by the inductive miner with noise filtering) next to the filters
  that choose its cases, a summary line, and side panels (top variants, a
  case-duration histogram, a dotted chart, statistics of one activity), with exports.
- :class:`VariantBrowser`: the variants of a log, one at a time, with their cases.
- :class:`Comparison`: two selections side by side (as-is against to-be, this month
  against last) with the difference of their DFGs drawn on one map.

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
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.errors import InvalidArgumentError, ProcestraError
from procestra.mining import stats
from procestra.mining.filters import Filter, save_filtered
from procestra.models.render import DFG as RenderDFG
from procestra.models.render import DFGDiff, dotted_chart_svg, filter_dfg, histogram_svg, human_duration, render
from procestra.schema import quote_ident, table_names
from procestra.store import catalogue

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["Comparison", "Explorer", "Inbox", "RunHistory", "VariantBrowser"]

#: Map kinds of the metric toggle.
MAP_KINDS = ("frequency", "performance", "bpmn")
#: Export formats of the map.
MAP_FORMATS = ("svg", "png", "bpmn")
_MAX_ATTRIBUTE_VALUES = 50  # attributes with more distinct values (amounts, ids) are not offered
_MAX_TIME_STEPS = 200
_TOP_VARIANTS = 10
_MAX_CACHED = 64  # filter states kept in memory
_DOTTED_CASES = 300
_EMPTY = "<p style='color:#888'><i>no cases match</i></p>"
_BUSY = ("<span style='color:#1d3f72'><span class='procestra-spinner' style='display:inline-block;"
         "animation:spin 1s linear infinite'>&#9696;</span> computing&hellip;</span>"
         "<style>@keyframes spin{from{transform:rotate(0)}to{transform:rotate(360deg)}}</style>")
_TABS = ("variants", "durations", "dotted", "activity")


def _widgets() -> Any:
    try:
        import ipywidgets  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - depends on the installation
        raise ProcestraError("the explorer needs ipywidgets 8: pip install 'ipywidgets>=8,<9'") from None
    return ipywidgets


def _in_kernel() -> bool:
    """Whether we run inside a Jupyter kernel (where background work keeps the controls live)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _descendants(root: Any) -> list[Any]:
    """``root``'s widget tree, children before their parents."""
    out: list[Any] = []
    for child in getattr(root, "children", ()):
        out += _descendants(child)
    return [*out, root]


def _close_all(widgets: list[Any]) -> None:
    for w in widgets:
        for part in (getattr(w, "layout", None), getattr(w, "style", None)):
            if part is not None:
                part.close()
        w.close()


def _counts(table: Any) -> dict[str, int]:
    d = table.to_pydict()
    return dict(zip(d["activity"], d["count"]))


def _to_render(d: stats.DFG, perf: dict[Any, Any] | None = None) -> RenderDFG:
    return RenderDFG.from_pm4py(*d.to_pm4py(), activities=_counts(d.activities), performance=perf)


def _error_html(exc: BaseException | str) -> str:
    return f"<span style='color:#b00020'>error: {html.escape(str(exc))}</span>"


def _ok_html(message: str) -> str:
    return f"<span style='color:#2e7d32'>{html.escape(message)}</span>"


def _variants_table(variants: stats.Variants, *, numbered: bool = False) -> str:
    rows = "".join(
        f"<tr>{f'<td>#{i}</td>' if numbered else ''}<td style='text-align:right'>{r['count']:,}</td>"
        f"<td>{r['share']:.1%}</td><td>{html.escape(human_duration(r['mean_duration_s'] or 0.0))}</td>"
        f"<td>{html.escape(' → '.join(r['activities']))}</td></tr>"
        for i, r in enumerate(variants.to_pylist(), 1))
    head = "<th>#</th>" if numbered else ""
    return (f"<table class='procestra-variants' style='font-size:90%'><tr>{head}<th>cases</th><th>share</th>"
            f"<th>mean duration</th><th>activities</th></tr>{rows}</table>")


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


class Explorer:
    """A process explorer of ``log`` in ``workspace``: map, filters, summary, side panels and exports.

    Raises :class:`procestra.errors.LogNotFoundError` for an unknown log. The widgets are
    attributes (``path_slider``, ``coverage_slider``, ...), so code can drive it too.
    ``background`` (default: only inside a Jupyter kernel) runs SQL and discovery in a
    background thread. :meth:`close` releases every widget, the thread and the cache.
    """

    def __init__(self, workspace: Home, log: str, *, background: bool | None = None) -> None:
        W = _widgets()
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
        self.widgets: list[Any] = _descendants(self.root)

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
            ).fetchone()
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
                has_resource = con.execute(f"SELECT count(resource) > 0 FROM {ev}").fetchone()[0]
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
            self.status.value = _error_html(exc)
            return
        self.query_html.value = self._query_html()

        def job() -> None:
            try:
                state = self._state(f)
            except ProcestraError as exc:
                self.status.value = _error_html(exc)
                self._svg, self.map_html.value = "", _EMPTY
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
                self._svg, self.map_html.value = "", _EMPTY
                return
            svg = self._map_svg(state, f)
            if self._closed or repr(f) != repr(self.filter):
                return
            self._svg = svg
            self.map_html.value = (f"<div class='procestra-map-box' style='overflow:auto;max-height:720px'>"
                                   f"<style>.procestra-map-box svg{{max-width:100%;height:auto}}</style>{svg}</div>")
            self.map_drawn_at = time.perf_counter()
        except ProcestraError as exc:
            self._svg, self.map_html.value = "", _error_html(exc)

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
                state.panels[key] = self._panel(tab, state, f) if state.cases else _EMPTY
            out = state.panels[key]
        except ProcestraError as exc:
            out = _error_html(exc)
        if repr(f) == repr(self.filter):
            target.value = out

    def _panel(self, tab: str, state: _State, f: Filter) -> str:
        if tab == "variants":
            return _variants_table(state.variants)
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
        self.status.value = _ok_html(message)

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = _error_html(exc)

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
            return self._failed(target, exc)
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
            return self._failed(target, exc)
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

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.root._repr_mimebundle_(include=include, exclude=exclude)

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
        _close_all(self.widgets)
        self._cache.clear()
        self._svg = ""

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<Explorer {self.log!r}: {self.query}>"


class _Composite:
    """A widget made of parts: shows its ``root``, and ``close()`` closes every part."""

    root: Any
    widgets: list[Any]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.root._repr_mimebundle_(include=include, exclude=exclude)

    def close(self) -> None:
        """Close every widget."""
        _close_all(self.widgets)


class VariantBrowser(_Composite):
    """The variants of ``log`` (optionally filtered), one at a time: its path, numbers and cases.

    Pick a variant in the list; the panel draws it as a chain, gives its case count,
    share and durations, and lists its longest cases. ``query`` is the filter of the
    chosen variant as code (``Filter.variant([...])``).
    """

    def __init__(self, workspace: Home, log: str, filter: Filter | None = None, *, top: int = 50) -> None:
        W = _widgets()
        self.workspace, self.log, self.base = workspace, log, filter or Filter()
        catalogue.info(workspace.store, log)  # LogNotFoundError
        self.variants = stats.variants(workspace, log, filter, limit=top)
        rows = self.variants.to_pylist()
        self.select = W.Select(options=[(f"#{i} · {r['share']:.1%} · {r['count']:,} cases · "
                                         f"{len(r['activities'])} steps", i - 1) for i, r in enumerate(rows, 1)],
                               rows=min(15, max(2, len(rows))), layout={"width": "32%"})
        self.detail = W.HTML()
        self.diagram = W.HTML()
        self.cases_html = W.HTML()
        self.root = W.HBox([self.select, W.VBox([self.detail, self.diagram, self.cases_html],
                                                layout={"width": "66%"})])
        self.root.add_class("procestra-variant-browser")
        self.widgets: list[Any] = _descendants(self.root)
        self.select.observe(lambda _: self._draw(), names="value")
        if rows:
            self.select.value = 0
        else:
            self.detail.value = _EMPTY
        self._draw()

    @property
    def sequence(self) -> list[str] | None:
        """The chosen variant's activities."""
        if self.select.value is None or not len(self.variants):
            return None
        return list(self.variants.to_pylist()[self.select.value]["activities"])

    @property
    def filter(self) -> Filter | None:
        seq = self.sequence
        return None if seq is None else (self.base & Filter.variant(seq) if self.base else Filter.variant(seq))

    @property
    def query(self) -> str:
        f = self.filter
        return "" if f is None else f"stats.case_durations(ws, {json.dumps(self.log)}, {f!r})"

    def _draw(self) -> None:
        f = self.filter
        if f is None:
            return
        row = self.variants.to_pylist()[self.select.value]
        seq = row["activities"]
        durations = stats.case_durations(self.workspace, self.log, f)
        steps: dict[tuple[str, str], int] = {}
        for pair in zip(seq, seq[1:]):
            steps[pair] = steps.get(pair, 0) + row["count"]
        chain = RenderDFG(edges=steps,
                          start={seq[0]: row["count"]}, end={seq[-1]: row["count"]},
                          activities={a: row["count"] * seq.count(a) for a in seq})
        self.diagram.value = str(render(chain, format="svg", rankdir="LR"))
        self.detail.value = (f"<b>{row['count']:,}</b> cases ({row['share']:.1%}), {len(seq)} steps, mean "
                             f"{html.escape(human_duration(durations.mean or 0))}, median "
                             f"{html.escape(human_duration(durations.median or 0))}<br>"
                             f"<code style='font-size:85%'>{html.escape(self.query)}</code>")
        longest = sorted(durations.to_pylist(), key=lambda r: -r["duration_s"])[:10]
        rows = "".join(f"<tr><td>{html.escape(str(r['case_id']))}</td><td>{r['start']:%Y-%m-%d %H:%M}</td>"
                       f"<td>{html.escape(human_duration(r['duration_s']))}</td></tr>" for r in longest)
        self.cases_html.value = ("<b>Longest cases</b><table style='font-size:90%'><tr><th>case</th>"
                                 f"<th>start</th><th>duration</th></tr>{rows}</table>")


Side = tuple[str, Filter | None]


class Comparison(_Composite):
    """Two selections side by side, with the difference of their DFGs highlighted on one map.

    Each side is a log and an optional filter: as-is against to-be (``("loan", None)``
    against ``("runs:loan-tobe", None)``), or two periods of one log
    (:meth:`periods`). Edges and activities are compared as shares of each side's
    cases: green rose, red fell, dashed only on one side. The slider hides changes
    smaller than the chosen share.
    """

    def __init__(self, workspace: Home, left: Side, right: Side,
                 labels: tuple[str, str] = ("left", "right")) -> None:
        W = _widgets()
        self.workspace = workspace
        self.sides = (self._side(left, "left"), self._side(right, "right"))
        self.labels = (str(labels[0]), str(labels[1]))
        dfgs = [stats.dfg(workspace, log, f) for log, f in self.sides]
        self.diff = DFGDiff.from_stats(dfgs[0], dfgs[1], self.labels)
        variants = [stats.variants(workspace, log, f, limit=5) for log, f in self.sides]
        heads = []
        for label, d, v in zip(self.labels, dfgs, variants):
            heads.append(W.HTML(f"<h4 style='margin:4px 0'>{html.escape(label)}</h4><b>{d.cases:,}</b> cases, "
                                f"<b>{sum(d.activities.column('count').to_pylist()):,}</b> events"
                                + _variants_table(v)))
        self.min_change = W.FloatSlider(value=0.02, min=0.0, max=0.5, step=0.01, description="Highlight ≥",
                                        readout_format=".0%", continuous_update=False,
                                        style={"description_width": "90px"})
        self.map_html = W.HTML()
        self.changes_html = W.HTML()
        self.root = W.VBox([W.HBox([h for h in heads], layout={"justify_content": "space-between"}),
                            self.min_change, self.map_html, self.changes_html])
        self.root.add_class("procestra-comparison")
        self.map_html.add_class("procestra-map")
        self.widgets: list[Any] = _descendants(self.root)
        self.min_change.observe(lambda _: self._draw(), names="value")
        self._draw()

    @staticmethod
    def _side(side: Any, name: str) -> tuple[str, Filter | None]:
        if isinstance(side, str):
            return side, None
        if not (isinstance(side, tuple) and len(side) == 2 and isinstance(side[0], str)
                and (side[1] is None or isinstance(side[1], Filter))):
            raise InvalidArgumentError(f"{name} must be a log name or a (log name, Filter or None) pair, "
                                       f"not {side!r}", parameter=name)
        return side[0], side[1] or None

    @classmethod
    def periods(cls, workspace: Home, log: str, first: tuple[Any, Any], second: tuple[Any, Any],
                labels: tuple[str, str] | None = None) -> Comparison:
        """The cases started in ``first`` against those started in ``second`` (each a (start, end) pair)."""
        f1 = Filter.timeframe(*first, mode="started")
        f2 = Filter.timeframe(*second, mode="started")
        return cls(workspace, (log, f1), (log, f2), labels or (f"{first[0]} – {first[1]}",
                                                                f"{second[0]} – {second[1]}"))

    @property
    def query(self) -> str:
        (l1, f1), (l2, f2) = self.sides
        def one(log: str, f: Filter | None) -> str:
            return f"stats.dfg(ws, {json.dumps(log)}{', ' + repr(f) if f else ''})"
        return f"DFGDiff.from_stats({one(l1, f1)}, {one(l2, f2)}, {self.labels!r})"

    def _draw(self) -> None:
        self.map_html.value = str(render(self.diff, format="svg", min_change=float(self.min_change.value)))
        rows = "".join(
            f"<tr><td>{html.escape(r['source'])} → {html.escape(r['target'])}</td><td>{r['left']:,}</td>"
            f"<td>{r['right']:,}</td><td style='color:{'#2e7d32' if r['change'] > 0 else '#c62828'}'>"
            f"{r['change']:+.1%}</td></tr>"
            for r in self.diff.changes()[:10] if abs(r["change"]) >= self.min_change.value)
        la, ra = (html.escape(x) for x in self.labels)
        self.changes_html.value = ("<b>Largest changes (share of cases)</b><table style='font-size:90%'>"
                                   f"<tr><th>path</th><th>{la}</th><th>{ra}</th><th>change</th></tr>{rows}</table>")


class Inbox(_Composite):
    """The human tasks of a workspace: pick one, fill in its form, complete it.

    Lists open tasks (overdue ones first, in red), optionally only ``group``'s or those
    ``user`` may take; the form is drawn from the task's fields (type, required, allowed
    values), and a submission goes through :func:`procestra.engine.complete_task`, whose
    form check reports every wrong field in the status line.
    """

    def __init__(self, workspace: Home, *, user: str | None = None, group: str | None = None) -> None:
        W = _widgets()
        self.workspace, self.user, self.group = workspace, user, group
        self.select = W.Select(options=[], rows=10, layout={"width": "38%"})
        self.detail = W.HTML()
        self.form_box = W.VBox()
        self.claim_button = W.Button(description="Claim", icon="hand-paper-o")
        self.submit_button = W.Button(description="Complete", icon="check", button_style="success")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.status = W.HTML()
        self.fields: dict[str, Any] = {}
        self.items: dict[str, Any] = {}
        self.root = W.VBox([W.HBox([self.select, W.VBox([self.detail, self.form_box,
                                                         W.HBox([self.claim_button, self.submit_button])],
                                                        layout={"width": "60%"})]),
                            W.HBox([self.refresh_button, self.status])])
        self.root.add_class("procestra-inbox")
        self.select.observe(lambda _: self._show(), names="value")
        self.claim_button.on_click(lambda _: self.claim())
        self.submit_button.on_click(lambda _: self.submit())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widgets: list[Any] = _descendants(self.root)
        self.refresh()

    def refresh(self) -> None:
        """Reload the open tasks."""
        from procestra.engine.runtime import list_tasks

        tasks = list_tasks(self.workspace, group=self.group, user=self.user)
        tasks.sort(key=lambda t: (not t.overdue, t.due or t.created, t.created))
        self.items = {t.task: t for t in tasks}
        current = self.select.value
        self.select.options = [(f"{'⚠ ' if t.overdue else ''}{t.name} · {t.case}"
                                f"{' · ' + t.candidate_group if t.candidate_group else ''}", t.task) for t in tasks]
        self.select.value = current if current in self.items else (tasks[0].task if tasks else None)
        if not tasks:
            self.detail.value, self.form_box.children = "<i>no open tasks</i>", ()
        self._show()

    @property
    def task(self) -> Any:
        return self.items.get(self.select.value)

    def _show(self) -> None:
        W = _widgets()
        t = self.task
        if t is None:
            return
        due = ""
        if t.due is not None:
            colour = "#b00020" if t.overdue else "#555"
            due = f" &middot; <span style='color:{colour}'>due {t.due:%Y-%m-%d %H:%M} UTC" \
                  f"{' (overdue)' if t.overdue else ''}</span>"
        data = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in sorted(t.case_data.items()))
        self.detail.value = (f"<b>{html.escape(t.name)}</b> in case <code>{html.escape(t.case)}</code> "
                             f"({html.escape(t.model)}){due}<br>"
                             f"{'claimed by ' + html.escape(t.assignee) if t.assignee else 'not claimed'}"
                             f"<table style='font-size:90%'>{data}</table>")
        self.fields = {}
        for f in t.form:
            label = (f.get("label") or f["name"]) + (" *" if f.get("required") else "")
            common = {"description": label, "style": {"description_width": "160px"}}
            kind, default = f.get("type", "string"), f.get("default")
            if kind == "enum" or f.get("allowed"):
                w = W.Dropdown(options=[("—", None)] + [(str(a), a) for a in f.get("allowed", [])], value=default,
                               **common)
            elif kind == "boolean":
                w = W.Checkbox(value=bool(default), **common)
            elif kind in ("integer", "number"):  # text, so that "not filled in" stays visible and required
                w = W.Text(value="" if default is None else str(default), placeholder=kind, **common)
            elif kind == "date":
                w = W.DatePicker(**common)
            elif kind == "text":
                w = W.Textarea(value=default or "", **common)
            else:
                w = W.Text(value=default or "", **common)
            self.fields[f["name"]] = w
        self.form_box.children = tuple(self.fields.values())
        self.widgets = _descendants(self.root)

    def values(self) -> dict[str, Any]:
        """The form as filled in (empty fields left out, dates as ISO text)."""
        out: dict[str, Any] = {}
        for name, w in self.fields.items():
            v = w.value
            if v is None or v == "":
                continue
            kind = next((f.get("type") for f in self.task.form if f["name"] == name), None) if self.task else None
            if kind in ("integer", "number") and isinstance(v, str):
                try:
                    v = int(v) if kind == "integer" and v.strip().lstrip("+-").isdigit() else float(v)
                except ValueError:
                    pass  # the form check names the field and the expected type
            out[name] = v.isoformat() if hasattr(v, "isoformat") else v
        return out

    def claim(self) -> Any:
        """Claim the selected task for ``user``."""
        from procestra.engine.runtime import claim_task

        if self.task is None or not self.user:
            self.status.value = _error_html("pick a task, and give the inbox a user (Inbox(ws, user=...)) to claim")
            return None
        try:
            item = claim_task(self.workspace, self.task.task, self.user)
        except ProcestraError as exc:
            self.status.value = _error_html(exc)
            return None
        self.status.value = _ok_html(f"claimed {item.task} for {self.user}")
        self.refresh()
        return item

    def submit(self) -> Any:
        """Complete the selected task with the form's values; a worker moves the case on."""
        from procestra.engine.runtime import complete_task

        t = self.task
        if t is None:
            self.status.value = _error_html("no task selected")
            return None
        try:
            item = complete_task(self.workspace, t.task, self.values(), user=self.user, case=t.case)
        except ProcestraError as exc:
            self.status.value = _error_html(exc)
            return None
        self.status.value = _ok_html(f"completed {item.name} of case {item.case}")
        self.refresh()
        return item


# -- scheduled notebook jobs -----------------------------------------------------------------
_ALL_RUNS = "(all)"


def _href(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return os.path.relpath(path, os.getcwd())  # Jupyter serves files relative to where it runs
    except ValueError:
        return path


def _badge(status: str) -> str:
    from procestra.schedule.runs import STATUS_COLOURS

    colour = STATUS_COLOURS.get(status, "#000")
    return (f'<span class="procestra-status procestra-status-{status}" style="background:{colour};color:#fff;'
            f'border-radius:4px;padding:1px 6px">{status}</span>')


class RunHistory(_Composite):
    """Past and pending runs with status colours and links to their outputs; ``refresh()`` re-reads them."""

    def __init__(self, workspace: Home, job: str | None = None, *, status: str | None = None,
                 limit: int = 200) -> None:
        from procestra.schedule.jobs import list_jobs
        from procestra.schedule.runs import STATUSES, list_runs

        w = _widgets()
        self.workspace = workspace
        self.limit = limit
        jobs = [j.name for j in list_jobs(workspace)]
        runs_jobs = sorted({r.job for r in list_runs(workspace, limit=limit)} - set(jobs))
        self.job_picker = w.Dropdown(options=[_ALL_RUNS, *jobs, *runs_jobs], value=job if job else _ALL_RUNS,
                                     description="job")
        if job and job not in self.job_picker.options:
            self.job_picker.options = [*self.job_picker.options, job]
            self.job_picker.value = job
        self.status_picker = w.Dropdown(options=[_ALL_RUNS, *STATUSES], value=status or _ALL_RUNS, description="status")
        self.refresh_button = w.Button(description="refresh", icon="refresh")
        self.summary = w.HTML()
        self.table = w.HTML()
        self.run_picker = w.Dropdown(options=[], description="run")
        self.details = w.HTML()
        self.runs: list[Any] = []
        self.widgets = [self.job_picker, self.status_picker, self.refresh_button, self.summary, self.table,
                        self.run_picker, self.details]
        self.root = w.VBox([w.HBox([self.job_picker, self.status_picker, self.refresh_button]), self.summary,
                            self.table, self.run_picker, self.details])
        self.root.add_class("procestra-run-history")
        self.job_picker.observe(self._on_change, names="value")
        self.status_picker.observe(self._on_change, names="value")
        self.run_picker.observe(self._on_pick, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.refresh()

    # -- state -------------------------------------------------------------------------
    @property
    def job(self) -> str | None:
        return None if self.job_picker.value == _ALL_RUNS else self.job_picker.value

    @property
    def status(self) -> str | None:
        return None if self.status_picker.value == _ALL_RUNS else self.status_picker.value

    def refresh(self) -> RunHistory:
        """Read the history again and redraw."""
        from procestra.schedule.runs import STATUSES, list_runs

        self.runs = list_runs(self.workspace, job=self.job, status=self.status, limit=self.limit)
        counts = Counter(r.status for r in self.runs)
        self.summary.value = (f"<div>{len(self.runs)} runs: "
                              + " ".join(f"{_badge(s)} {counts[s]}" for s in STATUSES if counts[s]) + "</div>")
        self.table.value = self._table()
        self.run_picker.options = [r.run_id for r in self.runs]
        self._on_pick(None)
        return self

    def _table(self) -> str:
        if not self.runs:
            return "<p>no runs yet</p>"
        rows = []
        for r in self.runs:
            links = " ".join(
                f'<a href="{html.escape(h)}" target="_blank" title="{html.escape(p or "")}">{label}</a>'
                for label, p in (("ipynb", r.output), ("html", r.html)) if (h := _href(p)))
            err = html.escape(str(r.error)) if r.error else html.escape(r.reason or "")
            secs = f"{r.seconds:.1f} s" if r.seconds is not None else ""
            when = r.scheduled_for.strftime("%Y-%m-%d %H:%M:%S UTC")
            rows.append(f"<tr><td>{_badge(r.status)}</td><td>{html.escape(r.job)}</td><td>{when}</td>"
                        f"<td>{r.attempt}</td><td>{secs}</td><td>{links}</td>"
                        f"<td style='color:#842029'>{err}</td></tr>")
        head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>"
                       for h in ("status", "job", "scheduled for", "attempt", "took", "output", "error"))
        return (f"<table class='procestra-runs' style='border-collapse:collapse'><tr>{head}</tr>"
                f"{''.join(rows)}</table>")

    def _on_change(self, _: Any) -> None:
        self.refresh()

    def _on_pick(self, _: Any) -> None:
        run = next((r for r in self.runs if r.run_id == self.run_picker.value), None)
        if run is None:
            self.details.value = ""
            return
        d = run.to_dict()
        shown = {k: v for k, v in d.items() if k not in ("run", "output", "html") and v not in (None, {}, [])}
        self.details.value = "<pre style='white-space:pre-wrap'>" + html.escape(
            json.dumps(shown, indent=2, default=str)) + "</pre>"

    def close(self) -> None:
        """Close every widget; the object is unusable afterwards."""
        self.job_picker.unobserve(self._on_change, names="value")
        self.status_picker.unobserve(self._on_change, names="value")
        self.run_picker.unobserve(self._on_pick, names="value")
        _close_all(_descendants(self.root))

    def __repr__(self) -> str:
        return f"<RunHistory {self.job or 'all jobs'}: {len(self.runs)} runs>"
