"""Process discovery from the event store: DFG, inductive, heuristics and alpha miners.

Every miner starts from the log's *variants*, computed in DuckDB, never from the events
in pandas: ``list(activity ORDER BY ts, event_id)`` per case, counted per sequence, read
from the derived tables of ``stats.derive`` (``va_``/``cv_``) when they are current and
the filter keeps whole cases, else aggregated from the (filtered) events. Then:

- ``inductive`` (IM; IMf when ``noise_threshold > 0``): the variants, a ``Counter`` of
  activity tuples, go to pm4py's ``IMUVCL``/``IMFUVCL``; the tree is folded and sorted
  as ``pm4py.algo.discovery.inductive.algorithm.apply`` does.
- ``heuristics``: activity, start/end, directly-follows, window-2 and triple counts
  (numpy over the variants) go to pm4py's ``apply_heu_dfg``, as its DataFrame path does.
- ``alpha``: the DFG with start/end activities goes to pm4py's ``apply_dfg_sa_ea``
  (what ``pm4py.discover_petri_net_alpha`` does for a DataFrame).
- ``dfg``: the directly-follows counts, in pm4py's ``(dfg, start, end)`` format.

**Semantics** (the same as pm4py's on a DataFrame, so that models are identical):

- *Order within a case*: by timestamp, ties by ``event_id`` (the event's position in
  the source), which is pm4py's stable sort of the file order.
- *Order of variants*: by their first case id (in code point order), as pm4py's
  ``project_univariate`` yields them; the inductive miner can depend on it.
- *Lifecycle*: not filtered. ``pm4py.discover_process_tree_inductive(df)`` uses
  every row whatever its ``lifecycle:transition``, and so do we; filter the log
  (``Filter.event_attribute("lifecycle", ["complete"], level="event")``) to mine
  completions only.

**Speed.** pm4py's inductive miner spends most of its time in its activity-concurrent
fall-through, which for every candidate activity builds the log without it and computes
its DFG with ``pm4py.util.compression.util.discover_dfg_uvcl``, a Python loop. While a
discovery runs, :func:`accelerated` swaps in :func:`fast_dfg_uvcl`, a vectorised version
returning the same ``DFG`` (same counts, same key order), and a candidate check that
takes the DFG of the reduced log from the parent's arrays and builds the reduced log only
when a cut holds (pm4py's cuts decide from the DFG's keys alone). Both are tested
against the originals on random inputs, and the trees against pm4py's on every real log.
DFG-based miners (``dfg``, ``alpha``, ``heuristics``) order by completion time too; pm4py's
DataFrame DFG functions would sort by a ``start_timestamp`` column first when one exists.

>>> from procestra.mining.discover import discover
>>> result = discover(ws, "loans", "inductive", noise_threshold=0.2)
>>> result.tree, result.seconds
>>> result.to_bpmn()
"""

from __future__ import annotations

import contextlib
import importlib.util
import operator
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Unpack, runtime_checkable

import numpy as np

from procestra.errors import EmptyResultError, InvalidArgumentError, ProcestraError
from procestra.mining.params import HeuristicsParams, InductiveParams, MinerOptions, MinerParams, reject_unknown
from procestra.schema import table_names
from procestra.store import catalogue

if TYPE_CHECKING:
    import duckdb

    from procestra.mining.filters import Filter
    from procestra.mining.plan import FilterPlan
    from procestra.store.home import Home

__all__ = [
    "AlphaMiner",
    "DFGMiner",
    "DiscoveryResult",
    "HeuristicsMiner",
    "InductiveMiner",
    "Miner",
    "accelerated",
    "discover",
    "fast_dfg_uvcl",
    "get_miner",
    "inductive_tree",
    "log_variants",
    "miners",
    "register_miner",
]

#: A variant log: activity sequence -> number of cases (pm4py's ``UVCL``).
Variants = Counter[tuple[str, ...]]


# -- the result -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DiscoveryResult:
    """A discovered model with how it was made. Displays itself in notebooks.

    Only the fields of the miner's model kind are set; :meth:`to_petri` and
    :meth:`to_bpmn` convert on demand.
    """

    miner: str
    params: dict[str, Any]
    log: str
    #: The filter in words (``Filter.describe()``), or None for the whole log.
    filter: str | None
    tree: Any = None
    net: Any = None
    initial_marking: Any = None
    final_marking: Any = None
    bpmn: Any = None
    heuristics_net: Any = None
    #: pm4py's ``(dfg, start_activities, end_activities)`` dictionaries.
    dfg: tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]] | None = None
    #: Wall time of the discovery, queries included.
    seconds: float = 0.0
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def model(self) -> Any:
        """The miner's own model: a tree, heuristics net, ``(net, im, fm)``, BPMN or DFG triple."""
        if self.tree is not None:
            return self.tree
        if self.heuristics_net is not None:
            return self.heuristics_net
        if self.net is not None:
            return (self.net, self.initial_marking, self.final_marking)
        if self.bpmn is not None:
            return self.bpmn
        return self.dfg

    def to_petri(self) -> tuple[Any, Any, Any]:
        """The model as a Petri net with initial and final marking (converted once, then cached)."""
        if self.net is not None:
            return self.net, self.initial_marking, self.final_marking
        if "petri" not in self._cache:
            import pm4py

            if self.tree is not None:
                self._cache["petri"] = pm4py.convert_to_petri_net(self.tree)
            elif self.heuristics_net is not None:
                self._cache["petri"] = pm4py.convert_to_petri_net(self.heuristics_net)
            elif self.bpmn is not None:
                self._cache["petri"] = pm4py.convert_to_petri_net(self.bpmn)
            elif self.dfg is not None:
                self._cache["petri"] = pm4py.convert_to_petri_net(*self.dfg)
            else:
                raise ProcestraError(f"the {self.miner} result holds no model to convert")
        petri: tuple[Any, Any, Any] = self._cache["petri"]
        return petri

    def to_bpmn(self) -> Any:
        """The model as a pm4py BPMN diagram (from the tree when there is one, else the Petri net)."""
        if self.bpmn is not None:
            return self.bpmn
        if "bpmn" not in self._cache:
            import pm4py

            source = (self.tree,) if self.tree is not None else self.to_petri()
            self._cache["bpmn"] = pm4py.convert_to_bpmn(*source)
        return self._cache["bpmn"]

    def save(self, path: str | Path, **options: Any) -> Path:
        """Write the model to ``path`` (format by extension) with :func:`procestra.render.save`."""
        from procestra.models.render import save

        return save(self.model, path, **options)

    def __repr__(self) -> str:
        kind = "PetriNet" if self.net is not None else "DFG" if self.dfg is not None else type(self.model).__name__
        where = f", filter={self.filter!r}" if self.filter else ""
        return f"<DiscoveryResult {self.miner} on {self.log!r}{where}: {kind}, {self.seconds:.2f}s>"

    def _repr_svg_(self) -> str | None:
        try:
            from procestra.models.render import as_svg

            return as_svg(self.model)
        except (ImportError, AttributeError, ProcestraError):
            return None  # no renderer yet, or no Graphviz: notebooks fall back to repr()

    def _repr_html_(self) -> str:
        import html

        svg = self._repr_svg_()
        head = f"<p><b>{html.escape(self.miner)}</b> on <code>{html.escape(self.log)}</code>"
        if self.filter:
            head += f" ({html.escape(self.filter)})"
        head += f", {self.seconds:.2f} s</p>"
        return head + (svg if svg is not None else f"<pre>{html.escape(str(self.model))}</pre>")


# -- miners and their registry ------------------------------------------------------------
@runtime_checkable
class Miner(Protocol):
    """A discovery algorithm: ``name`` in the registry, ``discover`` reading the store.

    A miner may also declare ``parameters``, the names of the options it takes;
    :func:`discover` then rejects any other option before calling it.
    """

    @property
    def name(self) -> str:
        """The name to register and call the miner by."""
        ...

    def discover(self, workspace: Home, log: str, *, filter: Filter | None = None,
                 **options: Unpack[MinerOptions]) -> DiscoveryResult:
        """Discover a model of ``log`` (optionally filtered); an option the miner does not take
        raises :class:`InvalidArgumentError`."""
        ...


_REGISTRY: dict[str, Miner] = {}
_REGISTRY_LOCK = threading.Lock()


def register_miner(miner: Miner, *, replace: bool = False) -> None:
    """Make ``miner`` available by its ``name`` to :func:`discover` and :func:`get_miner`.

    >>> class Flower:
    ...     name = "flower"
    ...     def discover(self, workspace, log, *, filter=None, **options): ...
    >>> register_miner(Flower())
    """
    if not isinstance(miner, Miner) or not isinstance(getattr(miner, "name", None), str) or not miner.name:
        raise InvalidArgumentError("a miner needs a non-empty string `name` and a "
                                   "`discover(workspace, log, *, filter=None, **options)` method",
                                   parameter="miner")
    with _REGISTRY_LOCK:
        if not replace and _REGISTRY.get(miner.name, miner) is not miner:
            raise InvalidArgumentError(f"a miner named {miner.name!r} is already registered; "
                                       "pass replace=True to replace it", parameter="miner")
        _REGISTRY[miner.name] = miner


def get_miner(name: str) -> Miner:
    """The registered miner called ``name``."""
    with _REGISTRY_LOCK:
        found = _REGISTRY.get(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidArgumentError(f"unknown miner {name!r}; known miners: {', '.join(miners())}",
                                   parameter="miner")
    return found


def miners() -> list[str]:
    """The names of the registered miners, sorted."""
    with _REGISTRY_LOCK:
        return sorted(_REGISTRY)


def discover(
    workspace: Home,
    log: str,
    miner: str | Miner = "inductive",
    *,
    filter: Filter | None = None,
    **options: Unpack[MinerOptions],
) -> DiscoveryResult:
    """Discover a process model of ``log`` with ``miner`` (a registered name or a :class:`Miner`).

    ``options`` are the miner's (:class:`procestra.mining.params.MinerOptions`): ``noise_threshold`` for the
    inductive miner (IMf when above 0), ``dependency_threshold``, ``and_threshold`` ...
    for the heuristics miner; one the miner does not take raises
    :class:`InvalidArgumentError` naming it. ``filter`` is a :class:`procestra.mining.filters.Filter`.

    >>> discover(ws, "loans")                                  # IM, the whole log
    >>> discover(ws, "loans", "inductive", noise_threshold=0.2)
    >>> discover(ws, "loans", "heuristics", dependency_threshold=0.9)
    """
    m = get_miner(miner) if isinstance(miner, str) or not isinstance(miner, Miner) else miner
    accepted = getattr(m, "parameters", None)
    if accepted is not None:
        reject_unknown(m.name, options, tuple(accepted))
    return m.discover(workspace, log, filter=filter, **options)


def _describe(flt: Filter | None) -> str | None:
    return None if flt is None else flt.describe()


# -- inputs from the store --------------------------------------------------------------------
def _plan(con: duckdb.DuckDBPyConnection, log_id: int, flt: Filter | None) -> FilterPlan | None:
    """The compiled filter (``procestra.mining.plan.FilterPlan``), or None without the filters module."""
    if importlib.util.find_spec("procestra.mining.filters") is None:
        if flt is not None:
            raise InvalidArgumentError("filters need procestra.mining.filters, which this installation lacks; "
                                       "mine the whole log (filter=None)", parameter="filter")
        return None
    from procestra.mining.filters import plan_filter

    return plan_filter(con, log_id, flt)


def _no_cases(log: str, flt: Filter | None) -> EmptyResultError:
    if flt is None:
        return EmptyResultError(f"log {log!r} has no events to mine")
    return EmptyResultError(f"no cases match the filter ({_describe(flt)}) in log {log!r}; "
                            "loosen the filter", filter=_describe(flt))


# From the derived tables (``stats.derive``: ``va_`` one row per variant with its activity
# codes in case order, ``cv_`` one row per case), when they are current and the filter kept
# whole cases: no per-case sort at all.
_DERIVED_VARIANTS_SQL = """
SELECT v.codes, g.n, g.first_case, (SELECT list(activity ORDER BY code) FROM {ac}) AS names
FROM (SELECT variant_id, count(*) AS n, min(case_id) AS first_case FROM {cv} WHERE {kept} GROUP BY variant_id) g
JOIN {va} v USING (variant_id) ORDER BY g.first_case
"""

# From the events: activities become integer codes before the per-case lists are built
# and grouped (twice as fast as grouping lists of strings); ``names`` maps them back.
_VARIANTS_SQL = """
WITH e AS (SELECT case_id, activity, ts, event_id FROM {events}),
a AS (SELECT activity, (row_number() OVER (ORDER BY activity) - 1)::UINTEGER AS code
      FROM (SELECT DISTINCT activity FROM e)),
s AS (SELECT case_id, list(a.code ORDER BY e.ts NULLS LAST, e.event_id) AS v
      FROM e JOIN a USING (activity) GROUP BY case_id)
SELECT v, count(*) AS n, min(case_id) AS first_case, (SELECT list(activity ORDER BY code) FROM a) AS names
FROM s GROUP BY v ORDER BY first_case
"""


def _read_variants(con: duckdb.DuckDBPyConnection, log_id: int, flt: Filter | None) -> Variants:
    """The variants (of the filtered cases), ordered by first case id as pm4py orders them."""
    plan = _plan(con, log_id, flt)
    if plan is not None and plan.fast:
        sql = plan.sql(_DERIVED_VARIANTS_SQL.format(ac=plan.ac, cv=plan.cv, va=plan.va, kept=plan.case_in()))
        rows = con.execute(sql, plan.params).fetchall()
    else:
        events, params = (table_names(log_id)[0], {}) if plan is None else (
            f"({plan.sql(f'SELECT * FROM {plan.events_rel()}')})", plan.params)
        rows = con.execute(_VARIANTS_SQL.format(events=events), params).fetchall()
    if not rows:
        return Counter()
    lookup = rows[0][3].__getitem__  # codes are 0-based positions in ``names``
    return Counter({tuple(map(lookup, v)): int(n) for v, n, _, _ in rows})


def log_variants(workspace: Home, log: str, filter: Filter | None = None) -> Variants:
    """The variants of ``log`` as pm4py's inductive miner sees them: activity tuple -> cases.

    Ordered (as a dict) by each variant's first case id, which is pm4py's order.
    """
    with workspace.store.read() as con:
        return _read_variants(con, catalogue.log_id(con, log), filter)


@dataclass
class _Follows:
    """Counts for the DFG-based miners, each by descending count, then name."""

    activities: dict[str, int]
    dfg: dict[tuple[str, str], int]
    start: dict[str, int]
    end: dict[str, int]
    window2: dict[tuple[str, str], int]
    triples: dict[tuple[str, str, str], int]


def _by_count(counts: Mapping[Any, int]) -> dict[Any, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _follows(variants: Variants) -> _Follows:
    """Activity, start/end, directly-follows, window-2 and triple counts of a variant log,
    computed with numpy over the variants (thousands of rows), not over the events."""
    enc = _encode(variants)
    if enc is None:  # sums beyond 2**53 (never for a real log): count in Python
        grams: list[Counter[Any]] = [Counter() for _ in range(6)]
        for t, n in variants.items():
            for g, items in zip(grams, (t, t[:1], t[-1:], pairwise(t), zip(t, t[2:]), zip(t, t[1:], t[2:]))):
                for item in items:
                    g[item] += n
        return _Follows(*map(_by_count, (grams[0], grams[3], grams[1], grams[2], grams[4], grams[5])))
    names, k = enc.alphabet, max(len(enc.alphabet), 1)
    r, lengths, w = enc.ranks, enc.lengths, enc.weights
    ends, ew = np.cumsum(lengths), np.repeat(w, lengths)
    variant = np.repeat(np.arange(len(lengths)), lengths)
    first, last = (ends - lengths)[lengths > 0], ends[lengths > 0] - 1
    same1, same2 = variant[1:] == variant[:-1], variant[2:] == variant[:-2]  # within one variant

    def counted(codes: np.ndarray, weights: np.ndarray, width: int) -> dict[Any, int]:
        uniq, labels = np.unique(codes, return_inverse=True)
        sums = np.bincount(labels.ravel(), weights=weights, minlength=len(uniq)).astype(np.int64).tolist()
        keys = [names[c] if width == 1 else tuple(names[c // k ** (width - 1 - i) % k] for i in range(width))
                for c in uniq.tolist()]
        return _by_count(dict(zip(keys, sums)))

    return _Follows(
        activities=counted(r, ew, 1),
        dfg=counted((r[:-1] * k + r[1:])[same1], ew[:-1][same1], 2),
        start=counted(r[first], w[lengths > 0], 1),
        end=counted(r[last], w[lengths > 0], 1),
        window2=counted((r[:-2] * k + r[2:])[same2], ew[:-2][same2], 2),
        triples=counted(((r[:-2] * k + r[1:-1]) * k + r[2:])[same2], ew[:-2][same2], 3),
    )


def _read(workspace: Home, log: str, flt: Filter | None) -> tuple[Variants, float]:
    """The variants of ``log`` (filtered) from a short-lived connection, and the time the read
    started; no cases raise :class:`EmptyResultError`."""
    started = time.perf_counter()
    with workspace.store.read() as con:
        variants = _read_variants(con, catalogue.log_id(con, log), flt)
    if not variants:
        raise _no_cases(log, flt)
    return variants, started


# -- the vectorised DFG of a variant log ----------------------------------------------------
class _Codes(dict[Any, int]):
    """Activity -> small integer, assigned on first sight."""

    def __missing__(self, key: Any) -> int:
        code = self[key] = len(self)
        return code


@dataclass
class _Encoded:
    """A variant log as arrays: ``ranks`` (flat, each activity's index in the sorted
    ``alphabet``), the ``lengths`` and float ``weights`` (counts) of the variants."""

    alphabet: list[Any]
    ranks: np.ndarray
    lengths: np.ndarray
    weights: np.ndarray


_local = threading.local()
_ORIGINAL: dict[str, Any] = {}
_EXACT = 2 ** 53  # float64 sums below this are exact integers


def _original_dfg_uvcl() -> Any:
    if "dfg" not in _ORIGINAL:
        from pm4py.util.compression import util as comut

        if comut.discover_dfg_uvcl is not fast_dfg_uvcl:
            _ORIGINAL["dfg"] = comut.discover_dfg_uvcl
    return _ORIGINAL["dfg"]


def _encode(log: Mapping[Any, Any]) -> _Encoded | None:
    """``log`` as arrays, or None when float sums could differ from the original's
    (counts not all ``int``, activities not all ``str`` or all ``int``, sums >= 2**53)."""
    keys, counts = list(log), list(log.values())
    if set(map(type, counts)) != {int}:
        return None
    codes = getattr(_local, "codes", None)
    if codes is None:
        codes = _Codes()
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    total = int(lengths.sum())
    if max(map(abs, counts)) * max(total, 1) >= _EXACT:
        return None
    flat = np.fromiter(map(codes.__getitem__, chain.from_iterable(keys)), dtype=np.int64, count=total)
    inverse = list(codes)
    present = np.flatnonzero(np.bincount(flat, minlength=len(codes)))
    acts = [inverse[c] for c in present.tolist()]
    kinds = set(map(type, acts))
    if kinds and kinds != {str} and kinds != {int}:
        return None
    order = sorted(range(len(acts)), key=acts.__getitem__)
    rank = np.zeros(len(codes), dtype=np.int64)
    rank[present[order]] = np.arange(len(acts), dtype=np.int64)
    return _Encoded([acts[i] for i in order], rank[flat], lengths, np.asarray(counts, dtype=np.float64))


def _dfg_from(enc: _Encoded) -> Any:
    """The ``DFG`` of an encoded log, keys in the original's order: pairs by first
    appearance, start and end activities by the alphabet."""
    import pandas as pd
    from pm4py.objects.dfg.obj import DFG

    dfg = DFG()
    r, lengths, weights, alphabet = enc.ranks, enc.lengths, enc.weights, enc.alphabet
    total, k = len(r), len(alphabet)
    if total == 0:
        return dfg
    ends = np.cumsum(lengths)
    nonempty = lengths > 0
    if total > 1:  # directly-follows pairs: every position but the last of its trace
        last = np.zeros(total, dtype=bool)
        last[ends[nonempty] - 1] = True
        keep = ~last[:-1]
        pairs = (r[:-1] * k + r[1:])[keep]
        labels, uniq = pd.factorize(pairs, sort=False)  # uniq in order of first appearance
        sums = np.bincount(labels, weights=np.repeat(weights, lengths)[:-1][keep], minlength=len(uniq))
        dfg.graph.update(dict(zip([(alphabet[c // k], alphabet[c % k]) for c in uniq.tolist()],
                                  sums.astype(np.int64).tolist())))
    w = weights[nonempty]
    for target, at in ((dfg.start_activities, (ends - lengths)[nonempty]), (dfg.end_activities, ends[nonempty] - 1)):
        act = r[at]  # counted even when the weights sum to 0, as the original does
        sums = np.bincount(act, weights=w, minlength=k).astype(np.int64)
        target.update({alphabet[i]: int(sums[i]) for i in np.flatnonzero(np.bincount(act, minlength=k)).tolist()})
    return dfg


def _remember(log: Mapping[Any, Any], enc: _Encoded) -> None:
    _local.last = (list(log), list(log.values()), enc)


def _recall(log: Mapping[Any, Any]) -> _Encoded | None:
    """The encoding of ``log`` if it is the last one encoded in this thread and unchanged:
    the same tuple objects in the same order with the same counts."""
    last = getattr(_local, "last", None)
    if last is None or len(last[0]) != len(log) or not all(map(operator.is_, log, last[0])) \
            or list(log.values()) != last[1]:
        return None
    enc: _Encoded = last[2]
    return enc


def fast_dfg_uvcl(log: Mapping[Any, Any]) -> Any:
    """``pm4py.util.compression.util.discover_dfg_uvcl``, vectorised; returns an equal ``DFG``.

    Same counts and the same key order: pairs in order of first appearance
    (variants in dict order, then position), start and end activities in sorted
    order. Activities become integer codes (cached per thread inside
    :func:`accelerated`); pairs become ``a * k + b`` codes summed with
    ``np.bincount``. Inputs the fast path cannot reproduce exactly (counts that are
    not ``int``, activities that are neither all ``str`` nor all ``int``, sums beyond
    2**53) go to the original function.
    """
    enc = _encode(log)
    if enc is None:
        return _original_dfg_uvcl()(log)
    if getattr(_local, "codes", None) is not None:  # inside accelerated(): keep for the candidates
        _remember(log, enc)
    return _dfg_from(enc)


def _no_cut_holds(log_dfg: Any, parameters: Any) -> bool:
    """Whether none of the IM cuts holds on a DFG. The UVCL cuts' ``holds`` read only the
    DFG's keys (their order included), never its counts nor the log; a test checks it."""
    from pm4py.algo.discovery.inductive.cuts.factory import CutFactory
    from pm4py.algo.discovery.inductive.dtypes.im_ds import IMDataStructureUVCL
    from pm4py.algo.discovery.inductive.variants.instances import IMInstance

    probe = IMDataStructureUVCL(Counter(), log_dfg)
    return all(cut.holds(probe, parameters) is None for cut in CutFactory.get_cuts(probe, IMInstance.IM, parameters))


def _project_candidate(cls: Any, c: Any, log: Any, queue: Any = None, ev: Any = None,
                       parameters: Any = None) -> Any:
    """``ActivityConcurrentUVCL._process_candidate``, faster, with the same result.

    pm4py builds the log without ``c`` (``l_alt``) and looks for a cut in it. Here the
    DFG of ``l_alt`` comes from the parent's arrays; most candidates have no cut, which
    the DFG's keys decide, so ``l_alt`` is built only for a candidate with one (filtering
    with ``c.__ne__``, for ``str`` exactly ``e != c``). The fast path runs for a ``str``
    candidate while :func:`inductive_tree` mines a log whose activities are all ``str``
    (a thread-local flag); otherwise the original runs.
    """
    if type(c) is not str or not getattr(_local, "str_only", False):
        return _ORIGINAL["candidate"].__get__(None, cls)(c, log, queue, ev, parameters)
    from pm4py.algo.discovery.inductive.dtypes.im_ds import IMDataStructureUVCL

    enc = _recall(log)
    if enc is None:
        enc = _encode(log)
        if enc is not None:
            _remember(log, enc)
    cut = dfg = None
    if enc is not None and c in enc.alphabet:
        keep = enc.ranks != enc.alphabet.index(c)
        variant = np.repeat(np.arange(len(enc.lengths)), enc.lengths)
        kept = np.bincount(variant[keep], minlength=len(enc.lengths))
        # the parent's variants minus c: the keys (and key order) of l_alt's DFG; counts may differ
        shape = _dfg_from(_Encoded(enc.alphabet, enc.ranks[keep], kept, enc.weights))
        if (ev is None or not ev.is_set()) and _no_cut_holds(shape, parameters):
            if queue is not None:
                queue.put((c, None))
            return None
    ne = c.__ne__
    keys = [tuple(filter(ne, t)) if c in t else t for t in log]
    # dict() from pairs: a key keeps its first position and takes its last value, which is
    # pm4py's `l_alt[key] = log[t]` loop; `firsts`: the variant that first produced each key
    l_alt: Counter[Any] = Counter(dict(zip(keys, log.values())))
    if enc is not None and c in enc.alphabet:
        # l_alt's exact DFG: the variants that first produced each key, with l_alt's counts
        firsts = sorted(dict(zip(reversed(keys), range(len(keys) - 1, -1, -1))).values())
        chosen = np.zeros(len(enc.lengths), dtype=bool)
        chosen[firsts] = True
        dfg = _dfg_from(_Encoded(enc.alphabet, enc.ranks[keep & chosen[variant]], kept[firsts],
                                 np.asarray(list(l_alt.values()), dtype=np.float64)))
    cut = cls._find_cut(IMDataStructureUVCL(l_alt, dfg), ev, parameters=parameters)
    if queue is not None:
        queue.put((c, cut))
    return cut


_PATCH_LOCK = threading.Lock()
_PATCH: dict[str, Any] = {"depth": 0, "originals": (), "modules": []}


def _install() -> None:
    # Import every pm4py module that uses the function first, so that none imports it
    # while it is replaced (a `from ... import` then would keep ours after restore).
    import pm4py.algo.discovery.inductive.algorithm
    import pm4py.algo.discovery.inductive.dtypes.im_ds  # noqa: F401
    from pm4py.algo.discovery.inductive.fall_through.activity_concurrent import (
        ActivityConcurrentUVCL,
    )
    from pm4py.util.compression import util as comut

    original = comut.discover_dfg_uvcl
    modules = []
    if original is not fast_dfg_uvcl:
        _ORIGINAL.setdefault("dfg", original)
        for mod in sys.modules.copy().values():
            namespace = getattr(mod, "__dict__", None)
            if isinstance(namespace, dict) and namespace.get("discover_dfg_uvcl") is original:
                namespace["discover_dfg_uvcl"] = fast_dfg_uvcl
                modules.append(mod)
    candidate = ActivityConcurrentUVCL.__dict__["_process_candidate"]
    _ORIGINAL.setdefault("candidate", candidate)
    ActivityConcurrentUVCL._process_candidate = classmethod(_project_candidate)
    _PATCH.update(originals=(original, candidate), modules=modules, owner=ActivityConcurrentUVCL)


def _restore() -> None:
    original, candidate = _PATCH["originals"]
    for mod in _PATCH["modules"]:
        if mod.__dict__.get("discover_dfg_uvcl") is fast_dfg_uvcl:
            mod.__dict__["discover_dfg_uvcl"] = original
    _PATCH["owner"]._process_candidate = candidate
    _PATCH.update(originals=(), modules=[], owner=None)


@contextlib.contextmanager
def accelerated() -> Iterator[None]:
    """Within the block pm4py's inductive miner runs with our exact, faster helpers.

    ``discover_dfg_uvcl`` becomes :func:`fast_dfg_uvcl` in every module that holds it,
    and the activity-concurrent fall-through tries its candidates as
    :func:`_project_candidate` does.
    Re-entrant and thread-safe: the first block to enter installs them, the last to
    leave restores the originals. Other threads calling pm4py meanwhile get the fast
    versions too, which return the same results.
    """
    with _PATCH_LOCK:
        if _PATCH["depth"] == 0:
            _install()
        _PATCH["depth"] += 1
    own_codes = getattr(_local, "codes", None) is None
    if own_codes:
        _local.codes = _Codes()
    try:
        yield
    finally:
        if own_codes:
            _local.codes = _local.last = None
        with _PATCH_LOCK:
            _PATCH["depth"] -= 1
            if _PATCH["depth"] == 0:
                _restore()


# -- built-in miners ---------------------------------------------------------------------------
def inductive_tree(variants: Variants, *, noise_threshold: float = 0.0, disable_fallthroughs: bool = False) -> Any:
    """pm4py's IM (IMf when ``noise_threshold > 0``) on a variant ``Counter``, folded and sorted
    exactly as ``pm4py.algo.discovery.inductive.algorithm.apply`` does."""
    from pm4py.algo.discovery.inductive.dtypes.im_ds import IMDataStructureUVCL
    from pm4py.algo.discovery.inductive.variants.im import IMUVCL
    from pm4py.algo.discovery.inductive.variants.imf import IMFUVCL
    from pm4py.objects.process_tree.utils.generic import fold, tree_sort

    parameters = {"noise_threshold": noise_threshold, "multiprocessing": False,
                  "disable_fallthroughs": disable_fallthroughs}
    algorithm = IMFUVCL if noise_threshold > 0 else IMUVCL
    outer = getattr(_local, "str_only", None)
    _local.str_only = all(type(a) is str for a in set(chain.from_iterable(variants)))
    try:
        with accelerated():
            tree = algorithm(parameters).apply(IMDataStructureUVCL(variants), parameters)
    finally:
        _local.str_only = outer
    tree = fold(tree)
    tree_sort(tree)
    return tree


@dataclass(frozen=True)
class InductiveMiner:
    """pm4py's inductive miner (IMf when ``noise_threshold > 0``) on the variants from SQL."""

    name: str = "inductive"
    parameters: tuple[str, ...] = InductiveParams.names()

    def discover(self, workspace: Home, log: str, *, filter: Filter | None = None,
                 **options: Unpack[MinerOptions]) -> DiscoveryResult:
        p = InductiveParams.parse(self.name, options)
        variants, started = _read(workspace, log, filter)
        tree = inductive_tree(variants, noise_threshold=p.noise_threshold, disable_fallthroughs=p.disable_fallthroughs)
        return DiscoveryResult(self.name, p.to_dict(), log, _describe(filter), tree=tree,
                               seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class DFGMiner:
    """Directly-follows counts with start and end activities, in pm4py's format."""

    name: str = "dfg"
    parameters: tuple[str, ...] = MinerParams.names()

    def discover(self, workspace: Home, log: str, *, filter: Filter | None = None,
                 **options: Unpack[MinerOptions]) -> DiscoveryResult:
        p = MinerParams.parse(self.name, options)
        variants, started = _read(workspace, log, filter)
        f = _follows(variants)
        return DiscoveryResult(self.name, p.to_dict(), log, _describe(filter), dfg=(f.dfg, f.start, f.end),
                               seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class HeuristicsMiner:
    """pm4py's heuristics miner (classic) on DFG, window-2 and triple counts from SQL."""

    name: str = "heuristics"
    parameters: tuple[str, ...] = HeuristicsParams.names()

    def discover(self, workspace: Home, log: str, *, filter: Filter | None = None,
                 **options: Unpack[MinerOptions]) -> DiscoveryResult:
        p = HeuristicsParams.parse(self.name, options)
        variants, started = _read(workspace, log, filter)
        f = _follows(variants)
        from pm4py.algo.discovery.heuristics.variants import classic

        hp = classic.Parameters
        heu = classic.apply_heu_dfg(
            f.dfg, activities=list(f.activities), activities_occurrences=f.activities,
            start_activities=f.start, end_activities=f.end, dfg_window_2=f.window2, freq_triples=f.triples,
            parameters={hp.DEPENDENCY_THRESH: p.dependency_threshold, hp.AND_MEASURE_THRESH: p.and_threshold,
                        hp.LOOP_LENGTH_TWO_THRESH: p.loop_two_threshold, hp.MIN_ACT_COUNT: p.min_act_count,
                        hp.MIN_DFG_OCCURRENCES: p.min_dfg_occurrences})
        return DiscoveryResult(self.name, p.to_dict(), log, _describe(filter), heuristics_net=heu,
                               seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class AlphaMiner:
    """pm4py's classic alpha miner on the DFG and start/end activities from SQL."""

    name: str = "alpha"
    parameters: tuple[str, ...] = MinerParams.names()

    def discover(self, workspace: Home, log: str, *, filter: Filter | None = None,
                 **options: Unpack[MinerOptions]) -> DiscoveryResult:
        p = MinerParams.parse(self.name, options)
        variants, started = _read(workspace, log, filter)
        f = _follows(variants)
        from pm4py.algo.discovery.alpha.variants import classic

        net, im, fm = classic.apply_dfg_sa_ea(f.dfg, f.start, f.end)
        return DiscoveryResult(self.name, p.to_dict(), log, _describe(filter), net=net, initial_marking=im,
                               final_marking=fm, seconds=time.perf_counter() - started)


for _miner in (DFGMiner(), InductiveMiner(), HeuristicsMiner(), AlphaMiner()):
    register_miner(_miner)
