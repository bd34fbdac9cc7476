"""One renderer for every kind of process model, to SVG, PNG, PDF or DOT.

:func:`render` turns a model into an image (or its Graphviz source), :func:`save`
picks the format from a file's extension, :func:`show` wraps the SVG so that a
notebook displays it. Which renderer draws a model is looked up by the model's
type in a registry (:func:`register`), so users can plug in drawings of their own
model types.

Directly-follows graphs (:class:`DFG`) are drawn by us, with Disco-style
``activity_threshold`` / ``path_threshold`` filters that run on the small edge
table in memory (well under 50 ms for 50 activities), so an interactive explorer
can redraw on every slider move. pm4py's models (Petri nets, process trees, BPMN,
heuristics nets) are drawn by pm4py's own visualisers; we only take their
Graphviz source and lay it out with the same ``dot`` call.

>>> from procestra.models.render import DFG, render, save
>>> dfg = DFG(edges={("a", "b"): 10, ("b", "c"): 7}, start={"a": 10}, end={"c": 7, "b": 3})
>>> svg = render(dfg, format="svg", path_threshold=0.5)
>>> save(dfg, "dfg.png")
"""

from __future__ import annotations

import functools
import heapq
import math
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from procestra.errors import InvalidArgumentError, ProcestraError
from procestra.store.home import output_path

__all__ = [
    "DFG", "FORMATS", "AcceptingPetriNet", "DFGDiff", "Diagram", "Renderer", "as_svg", "dotted_chart_svg",
    "filter_dfg", "histogram_svg", "human_duration", "register", "render", "run_dot", "save", "show",
    "supported_kinds",
]  # fmt: skip

Format = Literal["svg", "png", "pdf", "dot"]
#: Image formats of :func:`render`; ``dot`` is the Graphviz source before layout.
FORMATS: tuple[str, ...] = ("svg", "png", "pdf", "dot")
#: File extensions :func:`save` understands, and what each writes.
SAVE_FORMATS: dict[str, str] = {
    ".svg": "SVG image", ".png": "PNG image", ".pdf": "PDF document", ".dot": "Graphviz source",
    ".bpmn": "BPMN 2.0 XML with diagram", ".pnml": "Petri net (PNML)", ".ptml": "process tree (PTML)",
}  # fmt: skip
_RANKDIRS = ("TB", "LR", "BT", "RL")
_DOT_TIMEOUT = 120  # seconds; a huge spaghetti model can take long, never forever


# -- Graphviz ----------------------------------------------------------------------
def run_dot(source: str, format: str) -> bytes:
    """Lay out DOT ``source`` with Graphviz's ``dot`` and return the ``-T<format>`` output."""
    exe = shutil.which("dot")
    if exe is None:
        raise ProcestraError(
            "Graphviz's `dot` program is not installed, and Procestra needs it to draw diagrams: "
            "install it with `apt-get install graphviz` (Debian/Ubuntu) or `brew install graphviz` (macOS)"
        )
    try:
        proc = subprocess.run([exe, f"-T{format}"], input=source.encode("utf-8"), capture_output=True,
                              timeout=_DOT_TIMEOUT, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise ProcestraError(f"Graphviz took longer than {_DOT_TIMEOUT} s to lay out the diagram; "
                             "filter the model (fewer activities or paths) and try again") from exc  # fmt: skip
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise ProcestraError(f"Graphviz `dot -T{format}` failed (exit code {proc.returncode}): {detail}")
    return proc.stdout


# -- the directly-follows graph --------------------------------------------------
Edge = tuple[str, str]


def _counts(raw: Mapping[Any, Any], what: str) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidArgumentError(f"DFG {what} must map to non-negative counts; {key!r} has {value!r}",
                                       parameter=what)  # fmt: skip
        out[key] = int(value)
    return out


@dataclass(frozen=True)
class DFG:
    """A directly-follows graph: what :func:`render` draws for ``metric="frequency"|"performance"``.

    ``edges`` maps ``(a, b)`` to how often ``b`` directly followed ``a``; ``start``/``end``
    count the cases that started/ended with each activity; ``activities`` counts each
    activity's events (derived from the edges when left empty); ``performance`` maps
    edges to their mean duration in seconds (optional). Treat the mappings as read-only.

    >>> DFG(edges={("a", "b"): 3}, start={"a": 3}, end={"b": 3}).activities
    {'a': 3, 'b': 3}
    """

    edges: Mapping[Edge, int]
    start: Mapping[str, int]
    end: Mapping[str, int]
    activities: Mapping[str, int] = field(default_factory=dict)
    performance: Mapping[Edge, float] | None = None

    def __post_init__(self) -> None:
        edges = _counts(self.edges, "edges")
        for key in edges:
            if not (isinstance(key, tuple) and len(key) == 2):
                raise InvalidArgumentError(f"DFG edges must be keyed by (source, target) pairs, got {key!r}",
                                           parameter="edges")  # fmt: skip
        start, end = _counts(self.start, "start"), _counts(self.end, "end")
        activities = _counts(self.activities, "activities")
        if not activities:  # every occurrence is either a case start or follows another event
            incoming: dict[str, int] = dict(start)
            outgoing: dict[str, int] = dict(end)
            for (a, b), n in edges.items():
                incoming[b] = incoming.get(b, 0) + n
                outgoing[a] = outgoing.get(a, 0) + n
            activities = {a: max(incoming.get(a, 0), outgoing.get(a, 0)) for a in {*incoming, *outgoing}}
        performance = None
        if self.performance is not None:
            performance = {}
            for key, value in self.performance.items():
                mean = value.get("mean") if isinstance(value, Mapping) else value  # pm4py: {"mean": ...}
                if mean is not None:
                    performance[key] = float(mean)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "activities", activities)
        object.__setattr__(self, "performance", performance)

    @classmethod
    def from_pm4py(cls, dfg: Mapping[Edge, Any], start: Mapping[str, int], end: Mapping[str, int],
                   *, activities: Mapping[str, int] | None = None,
                   performance: Mapping[Edge, Any] | None = None) -> DFG:  # fmt: skip
        """From ``pm4py.discover_dfg``'s triple, with ``discover_performance_dfg``'s edges as ``performance``."""
        if any(isinstance(v, Mapping) for v in dfg.values()):
            raise InvalidArgumentError(
                "this looks like pm4py's performance DFG; pass the frequency DFG and give the performance one "
                "as DFG.from_pm4py(dfg, start, end, performance=perf_dfg)", parameter="dfg")  # fmt: skip
        return cls(edges=dict(dfg), start=dict(start), end=dict(end), activities=dict(activities or {}),
                   performance=None if performance is None else dict(performance))  # fmt: skip

    def to_pm4py(self) -> tuple[dict[Edge, int], dict[str, int], dict[str, int]]:
        """The ``(dfg, start, end)`` triple pm4py's DFG functions take."""
        return dict(self.edges), dict(self.start), dict(self.end)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return show(self)._repr_mimebundle_(include, exclude)


_START, _END = "\x00start", "\x00end"  # sentinels: cannot collide with activity names


def _check_share(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(f"{name} must be a number between 0 and 1 (a share kept), got {value!r}",
                                   parameter=name)  # fmt: skip
    return float(value)


def _widest_tree(nodes: set[str], adj: dict[str, list[tuple[int, str]]], root: str) -> set[Edge]:
    """Edges of the maximum-bottleneck paths from ``root`` to every node it reaches (Dijkstra-like)."""
    best = {root: math.inf}
    parent: dict[str, str] = {}
    heap = [(-math.inf, root)]
    done: set[str] = set()
    while heap:
        width, node = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        for n, nxt in adj.get(node, ()):
            w = min(-width, n)
            if nxt in nodes and nxt not in done and w > best.get(nxt, -1):
                best[nxt], parent[nxt] = w, node
                heapq.heappush(heap, (-w, nxt))
    return {(p, c) for c, p in parent.items()}


def filter_dfg(dfg: DFG, *, activity_threshold: float = 1.0, path_threshold: float = 1.0) -> DFG:
    """Keep the most frequent activities and paths, Disco-style.

    ``activity_threshold`` is the share of activities kept, most frequent first (at least
    one). ``path_threshold`` is the share of paths (edges, with case starts and ends)
    kept among those activities, most frequent first; at any value, the widest paths
    from the start to every activity and from every activity to the end are kept too,
    so the graph stays connected where the data allows. Raising ``path_threshold``
    only ever adds edges. Hidden activities are not bridged over: filter the log
    itself to re-derive directly-follows through them.
    """
    a_share = _check_share(activity_threshold, "activity_threshold")
    p_share = _check_share(path_threshold, "path_threshold")
    if a_share >= 1.0 and p_share >= 1.0:
        return dfg
    ranked = sorted(dfg.activities, key=lambda a: (-dfg.activities[a], a))
    kept = set(ranked[: max(1, math.ceil(a_share * len(ranked)))] if ranked else [])
    paths: dict[Edge, int] = {e: n for e, n in dfg.edges.items() if e[0] in kept and e[1] in kept}
    paths.update({(_START, a): n for a, n in dfg.start.items() if a in kept and n > 0})
    paths.update({(a, _END): n for a, n in dfg.end.items() if a in kept and n > 0})
    order = sorted(paths, key=lambda e: (-paths[e], e))
    chosen = set(order[: math.ceil(p_share * len(order))])
    if p_share < 1.0:
        nodes = kept | {_START, _END}
        fwd: dict[str, list[tuple[int, str]]] = {}
        back: dict[str, list[tuple[int, str]]] = {}
        for (a, b), n in paths.items():
            fwd.setdefault(a, []).append((n, b))
            back.setdefault(b, []).append((n, a))
        chosen |= _widest_tree(nodes, fwd, _START)
        chosen |= {(b, a) for a, b in _widest_tree(nodes, back, _END)}
    edges = {e: n for e, n in dfg.edges.items() if e in chosen}
    perf = None if dfg.performance is None else {e: v for e, v in dfg.performance.items() if e in edges}
    return DFG(edges=edges, start={a: n for a, n in dfg.start.items() if (_START, a) in chosen},
               end={a: n for a, n in dfg.end.items() if (a, _END) in chosen},
               activities={a: n for a, n in dfg.activities.items() if a in kept}, performance=perf)  # fmt: skip


def human_duration(seconds: float) -> str:
    """A duration as people write it: ``"2d 3h"``, ``"45m"``, ``"12s"``, ``"350ms"``."""
    if math.isnan(seconds):
        return "n/a"
    if seconds < 0:
        return "-" + human_duration(-seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    units = (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    total = round(seconds)
    for i, (name, size) in enumerate(units):
        if total >= size:
            major, rest = divmod(total, size)
            if i + 1 < len(units):
                sub_name, sub_size = units[i + 1]
                minor = rest // sub_size
                if minor:
                    return f"{major}{name} {minor}{sub_name}"
            return f"{major}{name}"
    return "0s"


def _blend(low: str, high: str, t: float) -> str:
    return _blend_q(low, high, round(t * 64))


@functools.lru_cache(maxsize=1024)
def _blend_q(low: str, high: str, step: int) -> str:
    t = step / 64
    lo = [int(low[i : i + 2], 16) for i in (1, 3, 5)]
    hi = [int(high[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(lo, hi))


def _scale(value: float, top: float, low: float = 0.0) -> float:
    """Where ``value`` lies between ``low`` and ``top``, 0..1 on a log scale (one huge edge must not
    wash out the rest)."""
    lo, hi = math.log1p(max(low, 0.0)), math.log1p(max(top, 0.0))
    return (math.log1p(max(value, 0.0)) - lo) / (hi - lo) if hi > lo else 1.0


def _esc(text: str) -> str:
    return str(text).replace("\\", "\\\\")


_PALETTE = {  # metric -> (low, high) edge colours
    "frequency": ("#a6a6a6", "#1d3f72"),
    "performance": ("#a6a6a6", "#b3261e"),
}


def _dfg_to_dot(dfg: DFG, *, metric: str = "frequency", activity_threshold: float = 1.0,
                path_threshold: float = 1.0, rankdir: str = "TB") -> str:  # fmt: skip
    import graphviz

    if metric not in _PALETTE:
        raise InvalidArgumentError(f"metric must be 'frequency' or 'performance', got {metric!r}",
                                   parameter="metric")  # fmt: skip
    if metric == "performance" and not dfg.performance:
        raise InvalidArgumentError("metric='performance' needs a DFG with performance values (mean seconds "
                                   "per edge); this one has none", parameter="metric")  # fmt: skip
    _check_rankdir(rankdir)
    shown = filter_dfg(dfg, activity_threshold=activity_threshold, path_threshold=path_threshold)
    g = graphviz.Digraph("dfg", graph_attr={"rankdir": rankdir, "bgcolor": "white", "nodesep": "0.35",
                                            "ranksep": "0.45", "fontname": "Helvetica"},
                         node_attr={"fontname": "Helvetica", "fontsize": "11"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "10", "arrowsize": "0.7"})  # fmt: skip
    ids = {a: f"a{i}" for i, a in enumerate(sorted(shown.activities, key=lambda a: (-shown.activities[a], a)))}
    top_act, low_act = max(shown.activities.values(), default=0), min(shown.activities.values(), default=0)
    for act, node_id in ids.items():
        count = shown.activities[act]
        t = _scale(count, top_act, low_act)
        g.node(node_id, label=f"{_esc(act)}\\n{count:,}", shape="box", style="rounded,filled",
               fillcolor=_blend("#f1f5fb", "#2b5797", t), fontcolor="white" if t > 0.65 else "black",
               color="#2b5797", tooltip=_esc(act))  # fmt: skip
    if shown.start:
        g.node("start", label="", shape="circle", style="filled", fillcolor="#4caf50", color="#2e7d32",
               width="0.3", fixedsize="true", tooltip="start")  # fmt: skip
    if shown.end:
        g.node("end", label="", shape="doublecircle", style="filled", fillcolor="#e57373", color="#b71c1c",
               width="0.25", fixedsize="true", tooltip="end")  # fmt: skip
    low, high = _PALETTE[metric]
    perf = shown.performance or {}
    if metric == "performance":
        values: dict[Edge, float] = {e: perf[e] for e in shown.edges if e in perf}
    else:
        values = {e: float(n) for e, n in shown.edges.items()}
    top, bottom = max(values.values(), default=0.0), min(values.values(), default=0.0)
    for (a, b), count in sorted(shown.edges.items(), key=lambda kv: (ids[kv[0][0]], ids[kv[0][1]])):
        value = values.get((a, b))
        if value is None:  # performance metric, but no time measured on this edge
            g.edge(ids[a], ids[b], label="n/a", color="#cccccc", style="dashed", tooltip=f"{count:,} times")
            continue
        t = _scale(value, top, bottom)
        label = f"{count:,}" if metric == "frequency" else human_duration(value)
        tip = f"{count:,} times" + (f", mean {human_duration(perf[(a, b)])}" if (a, b) in perf else "")
        g.edge(ids[a], ids[b], label=label, color=_blend(low, high, t), fontcolor=_blend("#555555", high, t),
               penwidth=f"{1 + 5 * t:.2f}", tooltip=tip)  # fmt: skip
    top_se = max([*shown.start.values(), *shown.end.values()], default=0)
    for act, n in sorted(shown.start.items(), key=lambda kv: ids[kv[0]]):
        g.edge("start", ids[act], label=f"{n:,}" if metric == "frequency" else "", style="dashed",
               color="#7cb87e", penwidth=f"{1 + 3 * _scale(n, top_se):.2f}")  # fmt: skip
    for act, n in sorted(shown.end.items(), key=lambda kv: ids[kv[0]]):
        g.edge(ids[act], "end", label=f"{n:,}" if metric == "frequency" else "", style="dashed",
               color="#e0918f", penwidth=f"{1 + 3 * _scale(n, top_se):.2f}")  # fmt: skip
    return str(g.source)


# -- two DFGs compared --------------------------------------------------------------------
@dataclass(frozen=True)
class DFGDiff:
    """Two directly-follows graphs side by side (as-is against to-be, this month against last).

    Counts are compared as shares of each side's cases, so sides of different sizes
    compare fairly. :func:`render` draws the union: edges and activities found on one
    side only are dashed, and the others are coloured by how their share changed from
    ``left`` to ``right`` (green up, red down).
    """

    left: DFG
    right: DFG
    left_cases: int
    right_cases: int
    labels: tuple[str, str] = ("left", "right")

    @classmethod
    def from_stats(cls, left: Any, right: Any, labels: tuple[str, str] = ("left", "right")) -> DFGDiff:
        """From two :class:`procestra.stats.DFG` results (they carry their case counts)."""
        def conv(d: Any) -> DFG:
            acts = d.activities.to_pydict()
            return DFG.from_pm4py(*d.to_pm4py(), activities=dict(zip(acts["activity"], acts["count"])))
        return cls(conv(left), conv(right), int(left.cases), int(right.cases), tuple(labels))  # type: ignore[arg-type]

    def _share(self, side: int, n: int) -> float:
        cases = self.left_cases if side == 0 else self.right_cases
        return n / cases if cases else 0.0

    def changes(self) -> list[dict[str, Any]]:
        """One row per edge of either side: counts, shares of cases and the change, largest change first."""
        rows = []
        for e in set(self.left.edges) | set(self.right.edges):
            a, b = self.left.edges.get(e, 0), self.right.edges.get(e, 0)
            sa, sb = self._share(0, a), self._share(1, b)
            rows.append({"source": e[0], "target": e[1], "left": a, "right": b, "left_share": sa,
                         "right_share": sb, "change": sb - sa})
        return sorted(rows, key=lambda r: (-abs(r["change"]), r["source"], r["target"]))


_UP, _DOWN, _SAME = "#2e7d32", "#c62828", "#7a7a7a"


def _diff_to_dot(diff: DFGDiff, *, rankdir: str = "TB", min_change: float = 0.02) -> str:
    import graphviz

    _check_rankdir(rankdir)
    L, R = diff.left, diff.right
    la, ra = diff.labels
    g = graphviz.Digraph("dfgdiff", graph_attr={"rankdir": rankdir, "bgcolor": "white", "nodesep": "0.35",
                                                "ranksep": "0.45", "fontname": "Helvetica"},
                         node_attr={"fontname": "Helvetica", "fontsize": "11"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "10", "arrowsize": "0.7"})  # fmt: skip
    acts = sorted(set(L.activities) | set(R.activities),
                  key=lambda a: (-(L.activities.get(a, 0) + R.activities.get(a, 0)), a))
    ids = {a: f"a{i}" for i, a in enumerate(acts)}

    def colour(sa: float, sb: float, only: bool) -> tuple[str, str]:
        if only:
            return (_DOWN if sb == 0 else _UP), "dashed"
        d = sb - sa
        return (_UP if d >= min_change else _DOWN if d <= -min_change else _SAME), "solid"

    for act in acts:
        a, b = L.activities.get(act, 0), R.activities.get(act, 0)
        col, style = colour(diff._share(0, a), diff._share(1, b), not (a and b))
        g.node(ids[act], label=f"{_esc(act)}\n{a:,} → {b:,}", shape="box", style=f"rounded,filled,{style}",
               fillcolor="#f7f7f7", color=col, penwidth="2", tooltip=f"{_esc(act)}: {la} {a:,}, {ra} {b:,}")
    g.node("start", label="", shape="circle", style="filled", fillcolor="#4caf50", color="#2e7d32",
           width="0.3", fixedsize="true")  # fmt: skip
    g.node("end", label="", shape="doublecircle", style="filled", fillcolor="#e57373", color="#b71c1c",
           width="0.25", fixedsize="true")  # fmt: skip
    pairs: dict[tuple[str, str], tuple[int, int]] = {}
    for e in set(L.edges) | set(R.edges):
        pairs[(ids[e[0]], ids[e[1]])] = (L.edges.get(e, 0), R.edges.get(e, 0))
    for act in set(L.start) | set(R.start):
        pairs[("start", ids[act])] = (L.start.get(act, 0), R.start.get(act, 0))
    for act in set(L.end) | set(R.end):
        pairs[(ids[act], "end")] = (L.end.get(act, 0), R.end.get(act, 0))
    top = max((max(diff._share(0, a), diff._share(1, b)) for a, b in pairs.values()), default=0.0)
    for (u, v), (a, b) in sorted(pairs.items()):
        sa, sb = diff._share(0, a), diff._share(1, b)
        col, style = colour(sa, sb, not (a and b))
        change = sb - sa
        label = f"{a:,} → {b:,}\n{change:+.0%}" if a and b else (f"only {la}: {a:,}" if a else f"only {ra}: {b:,}")
        g.edge(u, v, label=label, color=col, fontcolor=col, style=style,
               penwidth=f"{1 + 4 * _scale(max(sa, sb), top):.2f}",
               tooltip=f"{la}: {a:,} ({sa:.1%} of cases), {ra}: {b:,} ({sb:.1%} of cases)")  # fmt: skip
    return str(g.source)


# -- plots ------------------------------------------------------------------------------
def _plot_svg(fig: Any) -> str:
    import io

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=96)


def dotted_chart_svg(chart: Any, *, width: float = 7.5, height: float = 4.0, legend: int = 12) -> str:
    """A dotted chart of :func:`procestra.stats.dotted_chart`: time across, one row per case, colour by activity."""
    t = chart.table.to_pydict()
    fig, ax = _figure(width, height)
    if not t["row"]:
        ax.text(0.5, 0.5, "no cases match", ha="center", va="center", color="#888888", transform=ax.transAxes)
        ax.set_axis_off()
        return _plot_svg(fig)
    counts: dict[str, int] = {}
    for a in t["activity"]:
        counts[a] = counts.get(a, 0) + 1
    order = sorted(counts, key=lambda a: (-counts[a], a))
    cmap = __import__("matplotlib").colormaps["tab20"]
    colours = {a: cmap(i % 20) for i, a in enumerate(order)}
    for a in order:
        xs = [ts for ts, act in zip(t["ts"], t["activity"]) if act == a]
        ys = [r for r, act in zip(t["row"], t["activity"]) if act == a]
        ax.scatter(xs, ys, s=6, color=colours[a], label=a if order.index(a) < legend else None, linewidths=0)
    ax.invert_yaxis()
    ax.set_ylabel(f"cases ({chart.shown:,} of {chart.cases:,}, by start)")
    ax.tick_params(labelsize=8)
    fig.autofmt_xdate()
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, markerscale=2)
    return _plot_svg(fig)


def histogram_svg(seconds: list[float], *, bins: int = 20, width: float = 4.5, height: float = 2.6,
                  xlabel: str = "case duration") -> str:
    """A histogram of durations in seconds, with human-readable tick labels."""
    fig, ax = _figure(width, height)
    if not seconds:
        ax.text(0.5, 0.5, "no cases match", ha="center", va="center", color="#888888", transform=ax.transAxes)
        ax.set_axis_off()
        return _plot_svg(fig)
    ax.hist(seconds, bins=bins, color="#2b5797")
    ticks = ax.get_xticks()
    ax.set_xticks(ticks)
    ax.set_xticklabels([human_duration(max(0.0, x)) for x in ticks], fontsize=8)
    ax.set_xlim(min(seconds), max(seconds) or 1)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("cases", fontsize=8)
    ax.tick_params(labelsize=8)
    return _plot_svg(fig)


# -- the registry -------------------------------------------------------------------
@runtime_checkable
class Renderer(Protocol):
    """Draws one kind of model as Graphviz DOT source. ``kind`` names it in messages."""

    @property
    def kind(self) -> str:
        """What the renderer draws, e.g. "Petri net"."""
        ...

    def to_dot(self, model: Any, **options: Any) -> str:
        """The model as DOT source; unknown ``options`` raise :class:`InvalidArgumentError`."""
        ...


@dataclass(frozen=True)
class AcceptingPetriNet:
    """A Petri net with its initial and final marking, as pm4py's miners return it."""

    net: Any
    initial_marking: Any
    final_marking: Any


@dataclass(frozen=True)
class _FunctionRenderer:
    kind: str
    draw: Callable[..., str]
    options: tuple[str, ...]

    def to_dot(self, model: Any, **options: Any) -> str:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            accepted = ", ".join(self.options) or "none"
            raise InvalidArgumentError(f"unknown option(s) {', '.join(unknown)} for a {self.kind} "
                                       f"(accepted: {accepted})", parameter=unknown[0])  # fmt: skip
        return self.draw(model, **options)


_REGISTRY: dict[type | str, Renderer] = {}


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(model_type: type | str, renderer: Renderer) -> None:
    """Make :func:`render` draw instances of ``model_type`` (or its subclasses) with ``renderer``.

    ``model_type`` may be a dotted class name, so that registering a renderer does not
    import the library the class lives in.
    """
    if not isinstance(renderer, Renderer):
        raise InvalidArgumentError("renderer must have a `kind` and a `to_dot(model, **options)` method",
                                   parameter="renderer")  # fmt: skip
    _REGISTRY[model_type] = renderer


def supported_kinds() -> list[str]:
    """The kinds of model :func:`render` can draw."""
    return sorted({r.kind for r in _REGISTRY.values()})


def _normalise(model: Any) -> Any:
    """Tuples as pm4py returns them -> our value types."""
    if isinstance(model, tuple) and len(model) == 3:
        first = model[0]
        if _type_name(type(first)) == "pm4py.objects.petri_net.obj.PetriNet":
            return AcceptingPetriNet(*model)
        if all(isinstance(m, Mapping) for m in model):
            return DFG.from_pm4py(*model)
    return model


def _renderer_for(model: Any) -> Renderer:
    for cls in type(model).__mro__:
        found = _REGISTRY.get(cls) or _REGISTRY.get(_type_name(cls))
        if found is not None:
            return found
    raise InvalidArgumentError(
        f"cannot draw a {type(model).__name__}: supported kinds are {', '.join(supported_kinds())} "
        "(or register a renderer with procestra.render.register)", parameter="model")  # fmt: skip


def _check_rankdir(rankdir: str) -> None:
    if rankdir not in _RANKDIRS:
        raise InvalidArgumentError(f"rankdir must be one of {', '.join(_RANKDIRS)}, got {rankdir!r}",
                                   parameter="rankdir")  # fmt: skip


def _with_rankdir(source: str, rankdir: str | None) -> str:
    """Override the direction of a pm4py-made graph by appending a graph attribute."""
    if rankdir is None:
        return source
    _check_rankdir(rankdir)
    head, _, tail = source.rpartition("}")
    return f"{head}\tgraph [rankdir={rankdir}]\n}}{tail}"


def _petri(model: Any, rankdir: str | None = None) -> str:
    from pm4py.visualization.petri_net import visualizer

    if isinstance(model, AcceptingPetriNet):
        net, im, fm = model.net, model.initial_marking, model.final_marking
    else:
        net, im, fm = model, None, None
    return _with_rankdir(visualizer.apply(net, im, fm).source, rankdir)


def _tree(model: Any, rankdir: str | None = None) -> str:
    from pm4py.visualization.process_tree import visualizer

    return _with_rankdir(visualizer.apply(model).source, rankdir)


def _bpmn(model: Any, rankdir: str | None = None) -> str:
    from pm4py.visualization.bpmn import visualizer

    return _with_rankdir(visualizer.apply(model).source, rankdir)


def _heuristics(model: Any, rankdir: str | None = None) -> str:
    from pm4py.visualization.heuristics_net import visualizer

    return _with_rankdir(visualizer.apply(model).source, rankdir)


register(DFG, _FunctionRenderer("directly-follows graph (DFG)", _dfg_to_dot,
                                ("metric", "activity_threshold", "path_threshold", "rankdir")))  # fmt: skip
register(DFGDiff, _FunctionRenderer("DFG comparison", _diff_to_dot, ("rankdir", "min_change")))
register(AcceptingPetriNet, _FunctionRenderer("Petri net", _petri, ("rankdir",)))
register("pm4py.objects.petri_net.obj.PetriNet", _FunctionRenderer("Petri net", _petri, ("rankdir",)))
register("pm4py.objects.process_tree.obj.ProcessTree", _FunctionRenderer("process tree", _tree, ("rankdir",)))
register("pm4py.objects.bpmn.obj.BPMN", _FunctionRenderer("BPMN model", _bpmn, ("rankdir",)))
register("pm4py.objects.heuristics_net.obj.HeuristicsNet",
         _FunctionRenderer("heuristics net", _heuristics, ("rankdir",)))  # fmt: skip


# -- public entry points -------------------------------------------------------------
def render(model: Any, *, format: Format = "svg", **options: Any) -> bytes | str:
    """Draw ``model``: SVG text, PNG/PDF bytes, or the DOT source (``format="dot"``).

    ``model`` is a :class:`DFG` (or pm4py's ``(dfg, start, end)``), a Petri net (or
    ``(net, im, fm)``), a process tree, a BPMN model or a heuristics net; ``options``
    depend on the kind (for a DFG: ``metric``, ``activity_threshold``, ``path_threshold``,
    ``rankdir``; for the others: ``rankdir``).

    >>> render(dfg, format="svg", metric="performance", path_threshold=0.3)  # doctest: +SKIP
    """
    if format not in FORMATS:
        raise InvalidArgumentError(f"unknown format {format!r}; supported: {', '.join(FORMATS)}",
                                   parameter="format")  # fmt: skip
    model = _normalise(model)
    source = _renderer_for(model).to_dot(model, **options)
    if format == "dot":
        return source
    out = run_dot(source, format)
    return out.decode("utf-8") if format == "svg" else out


def as_svg(model: Any, **options: Any) -> str:
    """``model`` drawn as SVG text (what notebooks display)."""
    svg = render(model, format="svg", **options)
    assert isinstance(svg, str)
    return svg


def save(model: Any, path: str | Path, **options: Any) -> Path:
    """Write ``model`` to ``path`` in the format its extension names (see :data:`SAVE_FORMATS`).

    ``.svg .png .pdf .dot`` are drawings; ``.bpmn`` writes BPMN 2.0 XML with a diagram
    (from a BPMN model or a process tree), ``.pnml`` a Petri net (from a Petri net with
    markings, a process tree or a BPMN model), ``.ptml`` a process tree.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SAVE_FORMATS:
        raise InvalidArgumentError(
            f"cannot save to {path.name!r}: unknown extension {ext or '(none)'!r}; supported: "
            + ", ".join(SAVE_FORMATS), parameter="path")  # fmt: skip
    output_path(path, parameter="path")
    model = _normalise(model)
    if ext in (".bpmn", ".pnml", ".ptml"):
        from procestra.models import bpmn

        if options:
            raise InvalidArgumentError(f"{ext} files take no drawing options (got {', '.join(sorted(options))})",
                                       parameter=min(options))  # fmt: skip
        return bpmn.save_model(model, path)
    data = render(model, format=ext[1:], **options)  # type: ignore[arg-type]
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


@dataclass(frozen=True)
class Diagram:
    """A drawn model that displays itself as SVG in notebooks; :func:`show` returns one."""

    model: Any
    svg: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"image/svg+xml": self.svg, "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"<Diagram of a {_renderer_for(self.model).kind}>"

    def save(self, path: str | Path) -> Path:
        """Write the same drawing to ``path`` (format by extension)."""
        return save(self.model, path, **dict(self.options))


def show(model: Any, **options: Any) -> Diagram:
    """Draw ``model`` for a notebook: the returned :class:`Diagram` displays as SVG."""
    model = _normalise(model)
    return Diagram(model=model, svg=as_svg(model, **options), options=dict(options))
