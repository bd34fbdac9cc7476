"""An interactive process explorer for Jupyter, built on ipywidgets 8.

:class:`Explorer` shows a process map of one log (a frequency or performance DFG, or
a BPMN model found by the inductive miner with noise filtering) next to the filters
that choose its cases, a summary line, the top variants and a case-duration
histogram. Every number comes from the public API (:mod:`procestra.stats`,
:func:`procestra.discover.discover`); the widget only composes a :class:`Filter`
and draws. :attr:`Explorer.query` is the same statistic as code to paste.

>>> from procestra.widgets import Explorer
>>> ex = Explorer(ws, "loan")
>>> ex                      # displays itself
>>> ex.query                # 'stats.dfg(ws, "loan", Filter.variants(coverage=0.8))'

**Caching.** Results are cached per filter state, keyed by ``repr(filter)``: moving
the activity or path slider only re-applies the thresholds to the small cached edge
table in memory (:func:`procestra.render.filter_dfg` inside
:func:`procestra.render.render`) and runs no SQL. The performance DFG and IMf models
are computed on first use and cached with the rest.

**Filter order.** Parts combine left to right: time frame, case attributes, start
activities, end activities, then variant coverage, so the coverage slider keeps the
most frequent variants *of the cases the other filters chose*.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import stats
from .errors import ProcestraError
from .filters import Filter, save_filtered
from .render import DFG as RenderDFG
from .render import human_duration, render
from .store import quote_ident, table_names

if TYPE_CHECKING:
    from .workspace import Workspace

__all__ = ["Explorer"]

#: Map kinds of the metric toggle.
MAP_KINDS = ("frequency", "performance", "bpmn")
_MAX_ATTRIBUTE_VALUES = 50  # attributes with more distinct values (amounts, ids) are not offered
_MAX_TIME_STEPS = 200
_TOP_VARIANTS = 10
_BINS = 12
_MAX_CACHED = 64  # filter states kept in memory
_EMPTY = "<p style='color:#888'><i>no cases match</i></p>"


def _widgets() -> Any:
    try:
        import ipywidgets  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - depends on the installation
        raise ProcestraError("the explorer needs ipywidgets 8: pip install 'ipywidgets>=8,<9'") from None
    return ipywidgets


@dataclass
class _State:
    """What one filter state computed: the DFG results (and, lazily, the rest)."""

    dfg: stats.DFG
    variants: stats.Variants
    durations: stats.CaseDurations
    perf: stats.PerformanceDFG | None = None
    models: dict[float, Any] = field(default_factory=dict)  # IMf noise -> BPMN (or an error message)

    @property
    def cases(self) -> int:
        return self.dfg.cases

    @property
    def events(self) -> int:
        return sum(self.dfg.activities.column("count").to_pylist())


def _descendants(root: Any) -> list[Any]:
    """``root``'s widget tree, children before their parents."""
    out: list[Any] = []
    for child in getattr(root, "children", ()):
        out += _descendants(child)
    return [*out, root]


def _counts(table: Any) -> dict[str, int]:
    d = table.to_pydict()
    return dict(zip(d["activity"], d["count"]))


class Explorer:
    """A process explorer of ``log`` in ``workspace``: map, filters, summary, variants, durations.

    Raises :class:`procestra.errors.LogNotFoundError` for an unknown log. The widgets are
    attributes (``path_slider``, ``coverage_slider``, ...), so code can drive it too.
    :meth:`close` releases every widget and the cache.
    """

    def __init__(self, workspace: Workspace, log: str) -> None:
        W = _widgets()
        self.workspace = workspace
        self.log = log
        self.info = workspace.info(log)  # LogNotFoundError with the known logs
        self._cache: dict[str, _State] = {}
        self._svg = ""
        #: How many filter states were computed with SQL (tests and curious users).
        self.computations = 0
        #: How many times the map was drawn.
        self.map_draws = 0
        self._closed = False
        whole = stats.dfg(workspace, log)
        self.total_cases, self.total_events = whole.cases, sum(whole.activities.column("count").to_pylist())
        slider = {"continuous_update": False, "readout_format": ".0%", "style": {"description_width": "90px"}}

        # map panel
        self.metric = W.ToggleButtons(options=[("Frequency", "frequency"), ("Performance", "performance"),
                                               ("BPMN (IMf)", "bpmn")], value="frequency")
        self.activity_slider = W.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05,
                                             description="Activities", **slider)
        self.path_slider = W.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, description="Paths", **slider)
        self.noise_slider = W.FloatSlider(value=0.2, min=0.0, max=1.0, step=0.05, description="IMf noise",
                                          **{**slider, "readout_format": ".2f"})
        self.map_html = W.HTML()

        # filter panel
        self.time_slider = W.SelectionRangeSlider(options=self._time_options(), description="Time frame",
                                                  continuous_update=False, layout={"width": "98%"},
                                                  style={"description_width": "90px"})
        self.time_slider.index = (0, len(self.time_slider.options) - 1)
        self.coverage_slider = W.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05,
                                             description="Variants", **slider)
        self.attribute_select = W.SelectMultiple(options=self._attribute_options(), description="Case attr.",
                                                 rows=5, style={"description_width": "90px"})
        self.start_select = W.SelectMultiple(options=sorted(_counts(whole.start_activities)),
                                             description="Starts with", rows=5, style={"description_width": "90px"})
        self.end_select = W.SelectMultiple(options=sorted(_counts(whole.end_activities)),
                                           description="Ends with", rows=5, style={"description_width": "90px"})
        self.summary = W.HTML()
        self.variants_html = W.HTML()
        self.durations_html = W.HTML()

        # export
        self.svg_path = W.Text(value=str(Path(workspace.path) / "exports" / f"{log}-map.svg"),
                               description="SVG path", layout={"width": "98%"})
        self.svg_button = W.Button(description="Export map (SVG)", icon="download")
        self.log_name = W.Text(value=f"{log}-filtered", description="New log")
        self.log_button = W.Button(description="Save filtered log", icon="save")
        self.status = W.HTML()

        filters = W.VBox([W.HTML("<b>Filters</b>"), self.time_slider, self.coverage_slider, self.attribute_select,
                          self.start_select, self.end_select], layout={"width": "34%"})
        mapbox = W.VBox([self.metric, W.HBox([self.activity_slider, self.path_slider, self.noise_slider]),
                         self.map_html], layout={"width": "66%"})
        side = W.HBox([W.VBox([W.HTML("<b>Top variants</b>"), self.variants_html], layout={"width": "60%"}),
                       W.VBox([W.HTML("<b>Case durations</b>"), self.durations_html], layout={"width": "40%"})])
        export = W.VBox([W.HBox([self.svg_path, self.svg_button]), W.HBox([self.log_name, self.log_button]),
                         self.status])
        self.root = W.VBox([self.summary, W.HBox([mapbox, filters]), side, export])
        # stable CSS hooks for people styling the explorer and for the browser test
        for w, name in ((self.root, "explorer"), (self.map_html, "map"), (self.summary, "summary"),
                        (self.metric, "metric"), (self.activity_slider, "activity-slider"),
                        (self.path_slider, "path-slider"), (self.noise_slider, "noise-slider"),
                        (self.time_slider, "time-slider"), (self.coverage_slider, "coverage-slider"),
                        (self.attribute_select, "attribute-select"), (self.start_select, "start-select"),
                        (self.end_select, "end-select"), (self.svg_path, "svg-path"),
                        (self.svg_button, "export-svg"), (self.log_button, "save-log"), (self.status, "status")):
            w.add_class(f"procestra-{name}")
        #: Every widget the explorer owns, the root last.
        self.widgets: list[Any] = _descendants(self.root)

        for w in (self.metric, self.activity_slider, self.path_slider, self.noise_slider):
            w.observe(self._on_map_change, names="value")
        for w in (self.time_slider, self.coverage_slider, self.attribute_select, self.start_select,
                  self.end_select):
            w.observe(self._on_filter_change, names="value")
        self.svg_button.on_click(lambda _: self.export_svg())
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

    def _attribute_options(self) -> list[tuple[str, tuple[str, Any]]]:
        """``name = value`` for every case attribute with few enough distinct values (SQL in the store)."""
        out: list[tuple[str, tuple[str, Any]]] = []
        with self.workspace.store.read() as con:
            ca = table_names(self.workspace.store.log_id(con, self.log))[2]
            for name, typ in sorted(self.info.case_attributes.items()):
                if typ.upper().startswith(("STRUCT", "MAP", "UNION")) or typ.endswith("]"):
                    continue
                rows = con.execute(f"SELECT DISTINCT {quote_ident(name)} FROM {ca} ORDER BY 1 NULLS LAST "
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
        chosen: dict[str, list[Any]] = {}
        for name, value in self.attribute_select.value:
            chosen.setdefault(name, []).append(value)
        for name, values in chosen.items():
            f &= Filter.case_attribute(name, values)
        if self.start_select.value:
            f &= Filter.start_activities(list(self.start_select.value))
        if self.end_select.value:
            f &= Filter.end_activities(list(self.end_select.value))
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
            flt = f or None
            self._cache[key] = _State(dfg=stats.dfg(self.workspace, self.log, flt),
                                      variants=stats.variants(self.workspace, self.log, flt, limit=_TOP_VARIANTS),
                                      durations=stats.case_durations(self.workspace, self.log, flt))
            self.computations += 1
            while len(self._cache) > _MAX_CACHED:  # oldest first
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    # -- drawing -------------------------------------------------------------------------------
    def _on_map_change(self, change: dict[str, Any]) -> None:
        self._draw_map()

    def _on_filter_change(self, change: dict[str, Any]) -> None:
        self._refresh()

    def _refresh(self) -> None:
        """Recompute (or fetch from the cache) the filter state and redraw everything."""
        try:
            state = self._state(self.filter)
        except ProcestraError as exc:
            self._error(exc)
            self.map_html.value, self._svg = "", ""
            return
        c, e = state.cases, state.events
        self.summary.value = (f"<b>{c:,}</b> of {self.total_cases:,} cases, <b>{e:,}</b> of "
                              f"{self.total_events:,} events" + ("" if c else " &mdash; <b>no cases match</b>"))
        self.variants_html.value = self._variants_table(state) if c else _EMPTY
        self.durations_html.value = self._histogram(state) if c else _EMPTY
        self._draw_map()

    def _draw_map(self) -> None:
        """Redraw the map from the cached state of the current filter (no SQL for DFG thresholds)."""
        if self._closed:
            return
        self.map_draws += 1
        try:
            state = self._state(self.filter)
            if not state.cases:
                self._svg, self.map_html.value = "", _EMPTY
                return
            self._svg = self._map_svg(state)
            self.map_html.value = f"<div style='overflow:auto;max-height:640px'>{self._svg}</div>"
        except ProcestraError as exc:
            self._svg, self.map_html.value = "", f"<p style='color:#b00020'>{html.escape(str(exc))}</p>"

    def _map_svg(self, state: _State) -> str:
        kind = self.metric.value
        if kind == "bpmn":
            noise = round(float(self.noise_slider.value), 4)
            if noise not in state.models:
                from .discover import discover

                state.models[noise] = discover(self.workspace, self.log, "inductive", filter=self.filter or None,
                                               noise_threshold=noise).to_bpmn()
            return str(render(state.models[noise], format="svg"))
        d = state.dfg
        perf = None
        if kind == "performance":
            if state.perf is None:
                state.perf = stats.performance_dfg(self.workspace, self.log, self.filter or None)
            perf = state.perf.to_pm4py("mean")[0]
        model = RenderDFG.from_pm4py(*d.to_pm4py(), activities=_counts(d.activities), performance=perf)
        return str(render(model, format="svg", metric=kind, activity_threshold=float(self.activity_slider.value),
                          path_threshold=float(self.path_slider.value)))

    def _variants_table(self, state: _State) -> str:
        rows = "".join(
            f"<tr><td style='text-align:right'>{r['count']:,}</td><td>{r['share']:.1%}</td>"
            f"<td>{html.escape(human_duration(r['mean_duration_s'] or 0.0))}</td>"
            f"<td>{html.escape(' → '.join(r['activities']))}</td></tr>"
            for r in state.variants.to_pylist())
        return ("<table style='font-size:90%'><tr><th>cases</th><th>share</th><th>mean duration</th>"
                f"<th>activities</th></tr>{rows}</table>")

    def _histogram(self, state: _State) -> str:
        """Case durations as a plain HTML bar list (equal-width bins)."""
        secs = state.durations.table.column("duration_s").to_pylist()
        lo, hi = min(secs), max(secs)
        width = (hi - lo) / _BINS or 1.0
        counts = [0] * _BINS
        for s in secs:
            counts[min(_BINS - 1, int((s - lo) / width))] += 1
        top = max(counts)
        rows = "".join(
            f"<tr><td style='text-align:right;white-space:nowrap'>{html.escape(human_duration(lo + i * width))}</td>"
            f"<td><div style='background:#2b5797;height:10px;width:{160 * n / top:.0f}px'></div></td>"
            f"<td style='text-align:right'>{n:,}</td></tr>" for i, n in enumerate(counts))
        return f"<table style='font-size:85%'>{rows}</table>"

    # -- export -------------------------------------------------------------------------------
    def _ok(self, message: str) -> None:
        self.status.value = f"<span style='color:#2e7d32'>{html.escape(message)}</span>"

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = f"<span style='color:#b00020'>error: {html.escape(str(exc))}</span>"

    def export_svg(self, path: str | Path | None = None) -> Path | None:
        """Write the current map to ``path`` (default: the SVG path box); reports in the status line."""
        target = Path(path if path is not None else self.svg_path.value).expanduser()
        if not self._svg:
            self._error("there is no map to export (no cases match the filter)")
            return None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self._svg, encoding="utf-8")
        except OSError as exc:
            self._error(f"cannot write {target}: {exc.strerror or exc}")
            return None
        self._ok(f"map written to {target}")
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
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.root._repr_mimebundle_(include=include, exclude=exclude)

    def close(self) -> None:
        """Close every widget and drop the cache; the explorer is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        for w in (self.metric, self.activity_slider, self.path_slider, self.noise_slider):
            w.unobserve(self._on_map_change, names="value")
        for w in (self.time_slider, self.coverage_slider, self.attribute_select, self.start_select,
                  self.end_select):
            w.unobserve(self._on_filter_change, names="value")
        for w in self.widgets:
            for part in (getattr(w, "layout", None), getattr(w, "style", None)):
                if part is not None:
                    part.close()
            w.close()
        self._cache.clear()
        self._svg = ""

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<Explorer {self.log!r}: {self.query}>"
