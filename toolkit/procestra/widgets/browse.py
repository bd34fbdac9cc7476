"""Two views of variants and selections: :class:`VariantBrowser` (the variants of a log, one at a
time, with their cases) and :class:`Comparison` (two selections side by side, as-is against
to-be or this month against last, with the difference of their DFGs drawn on one map)."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from procestra.errors import InvalidArgumentError
from procestra.mining import stats
from procestra.mining.filters import Filter
from procestra.models.render import DFG as RenderDFG
from procestra.models.render import DFGDiff, human_duration, render
from procestra.store import catalogue
from procestra.widgets.common import (
    EMPTY,
    Composite,
    descendants,
    load_widgets,
    variants_table,
)

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["Comparison", "Side", "VariantBrowser"]


class VariantBrowser(Composite):
    """The variants of ``log`` (optionally filtered), one at a time: its path, numbers and cases.

    Pick a variant in the list; the panel draws it as a chain, gives its case count,
    share and durations, and lists its longest cases. ``query`` is the filter of the
    chosen variant as code (``Filter.variant([...])``).
    """

    def __init__(self, workspace: Home, log: str, filter: Filter | None = None, *, top: int = 50) -> None:
        W = load_widgets()
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
        self.widgets: list[Any] = descendants(self.root)
        self.select.observe(lambda _: self._draw(), names="value")
        if rows:
            self.select.value = 0
        else:
            self.detail.value = EMPTY
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


class Comparison(Composite):
    """Two selections side by side, with the difference of their DFGs highlighted on one map.

    Each side is a log and an optional filter: as-is against to-be (``("loan", None)``
    against ``("runs:loan-tobe", None)``), or two periods of one log
    (:meth:`periods`). Edges and activities are compared as shares of each side's
    cases: green rose, red fell, dashed only on one side. The slider hides changes
    smaller than the chosen share.
    """

    def __init__(self, workspace: Home, left: Side, right: Side,
                 labels: tuple[str, str] = ("left", "right")) -> None:
        W = load_widgets()
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
                                + variants_table(v)))
        self.min_change = W.FloatSlider(value=0.02, min=0.0, max=0.5, step=0.01, description="Highlight ≥",
                                        readout_format=".0%", continuous_update=False,
                                        style={"description_width": "90px"})
        self.map_html = W.HTML()
        self.changes_html = W.HTML()
        self.root = W.VBox([W.HBox([h for h in heads], layout={"justify_content": "space-between"}),
                            self.min_change, self.map_html, self.changes_html])
        self.root.add_class("procestra-comparison")
        self.map_html.add_class("procestra-map")
        self.widgets: list[Any] = descendants(self.root)
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
