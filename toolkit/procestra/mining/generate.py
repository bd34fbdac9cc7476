"""Seeded synthetic event logs: the data behind Procestra's tests, benchmarks and demo.

:func:`generate_log` simulates every case of a small stochastic process model
(see :data:`PROCESSES`) at once with numpy: each step samples the next activity
of all still-running cases together, so 10M events take seconds, not hours.
The same seed and arguments always give the same table, byte for byte.

Realism, briefly: cases arrive as a Poisson process that follows office hours
and weekdays; manual work starts only in business hours; waits and durations
are lognormal per activity; people come from per-activity pools in which a few
do most of the work; rework loops fade out; ``noise`` adds skipped, swapped and
repeated activities, so the log has many variants around one clear main path.

:func:`write_log` writes such a table as CSV, Parquet, JSON lines or XES.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from procestra.errors import InvalidArgumentError
from procestra.store.home import output_path

__all__ = ["MAX_EVENTS", "PM4PY_COLUMNS", "PROCESSES", "Activity", "ProcessDefinition", "Transition",
           "generate_log", "write_log"]  # fmt: skip

MAX_EVENTS = 100_000_000
SECOND = 1_000_000  # all times are int64 microseconds since the epoch
MINUTE, HOUR, DAY = 60 * SECOND, 3600 * SECOND, 86400 * SECOND
_BIN = 15 * MINUTE  # resolution of the UTC-offset table (covers half- and quarter-hour zones)
_OPEN, _CLOSE = 8 * HOUR, 18 * HOUR  # business hours, local time, Monday to Friday
_DAYS_TO_WORKDAY = np.array([1, 1, 1, 1, 3, 2, 1])  # from Mon..Sun to the next weekday
_MAX_REPEATS = 3  # noise repeats per case
_CHUNK = 1 << 22  # rows per Arrow chunk (keeps string offsets far from 2 GiB)
_META_KEY = b"procestra.generate"

#: Generated column -> pm4py's name for it (``write_log`` uses it for XES).
PM4PY_COLUMNS: dict[str, str] = {
    "case_id": "case:concept:name", "activity": "concept:name", "timestamp": "time:timestamp",
    "resource": "org:resource", "lifecycle": "lifecycle:transition", "amount": "case:amount", "channel": "case:channel",
}  # fmt: skip

# Relative arrival intensity per local hour, weekdays and weekend days.
_WEEKDAY = [0.03] * 7 + [0.3] + [1.0] * 4 + [0.7] + [1.0] * 4 + [0.6] + [0.25] * 4 + [0.08] * 2
_WEEKEND = [0.03] * 9 + [0.15] * 12 + [0.03] * 3
_ARRIVALS = np.array([_WEEKDAY] * 5 + [_WEEKEND] * 2)


@dataclass(frozen=True)
class Activity:
    """Timing, cost and staffing of one activity. Times are lognormal medians in minutes."""

    pool: str  # resource pool that performs it
    wait: float = 60.0  # queueing time between becoming ready and starting
    duration: float = 15.0  # processing time
    wait_sigma: float = 1.0
    duration_sigma: float = 0.6
    cost: float = 0.0  # fixed cost per instance
    rate: float = 0.0  # cost per hour of processing
    manual: bool = True  # manual work starts only in business hours


@dataclass(frozen=True)
class Transition:
    """One possible next step. ``target`` None ends the case."""

    target: str | None
    weight: float = 1.0
    amount: tuple[float, float] = (0.0, math.inf)  # eligible when lo <= case amount < hi
    delay: float = 0.0  # median extra wait in minutes (e.g. the customer replying)
    decay: float = 1.0  # weight times decay**(earlier visits of target): rework fades out
    max_visits: int = 250  # the transition closes once the target was visited this often


@dataclass(frozen=True, eq=False)
class ProcessDefinition:
    """A probabilistic automaton over activities, plus case attributes and staffing.

    ``flow`` maps node -> transitions; its first node starts every case. A node is
    an activity name, optionally with a ``#suffix`` to use an activity twice. Each
    ``parallel`` pair (first, second) runs concurrently: second starts when first
    became ready, and the next node waits for both (the log shows them in the order
    they complete). ``main_path`` documents the expected most frequent variant.
    """

    name: str
    case_prefix: str
    activities: Mapping[str, Activity]
    flow: Mapping[str, tuple[Transition, ...]]
    pools: Mapping[str, tuple[int, float]]  # pool -> (people, Zipf skew of their workload)
    parallel: tuple[tuple[str, str], ...] = ()
    main_path: tuple[str, ...] = ()
    amount: tuple[float, float] = (1000.0, 1.0)  # lognormal median and sigma
    channels: tuple[tuple[str, float], ...] = (("online", 0.6), ("branch", 0.25), ("broker", 0.15))


_A, _T, _DAY = Activity, Transition, 1440  # (times in minutes)

LOAN = ProcessDefinition(
    "loan", "L", amount=(8000.0, 0.9), channels=(("online", 0.55), ("branch", 0.3), ("broker", 0.15)),
    pools={"system": (1, 0.0), "clerk": (14, 1.1), "analyst": (8, 0.9), "underwriter": (6, 1.0), "manager": (3, 0.7)},
    activities={
        "Submit application": _A("system", 0, 2, manual=False, cost=0.5),
        "Check completeness": _A("clerk", 90, 12, cost=2, rate=35),
        "Request documents": _A("clerk", 30, 8, cost=3, rate=35),
        "Credit check": _A("analyst", 60, 20, cost=5, rate=45),
        "Fraud check": _A("analyst", 60, 20, cost=3, rate=45),
        "Document check": _A("clerk", 120, 25, cost=2, rate=35),
        "Assess risk": _A("analyst", 120, 30, cost=5, rate=45),
        "Automatic approval": _A("system", 2, 1, manual=False, cost=0.2),
        "Underwriter review": _A("underwriter", 480, 45, cost=10, rate=70),
        "Escalate to manager": _A("manager", 720, 30, cost=15, rate=110),
        "Approve application": _A("underwriter", 30, 10, cost=2, rate=70),
        "Reject application": _A("underwriter", 30, 10, cost=2, rate=70),
        "Cancel application": _A("clerk", 60, 5, cost=1, rate=35),
        "Notify customer": _A("system", 10, 1, manual=False, cost=0.3),
        "Close case": _A("clerk", 600, 5, cost=1, rate=35),
    },
    flow={
        "Submit application": (_T("Check completeness"),),
        "Check completeness": (_T("Credit check", 0.76), _T("Request documents", 0.2, decay=0.5, max_visits=3),
                               _T("Cancel application", 0.04)),
        "Request documents": (_T("Check completeness", 0.92, delay=2 * _DAY),
                              _T("Cancel application", 0.08, delay=14 * _DAY)),
        "Credit check": (_T("Fraud check", 0.95), _T("Reject application", 0.05)),
        "Fraud check": (_T("Document check"),),
        "Document check": (_T("Assess risk"),),
        "Assess risk": (_T("Automatic approval", 0.93, amount=(0.0, 10_000.0)),
                        _T("Underwriter review", 0.93, amount=(10_000.0, math.inf)), _T("Reject application", 0.07)),
        "Automatic approval": (_T("Notify customer"),),
        "Underwriter review": (_T("Approve application", 0.72), _T("Reject application", 0.18),
                               _T("Escalate to manager", 0.10)),
        "Escalate to manager": (_T("Approve application", 0.6), _T("Reject application", 0.4)),
        "Approve application": (_T("Notify customer"),),
        "Reject application": (_T("Notify customer"),),
        "Cancel application": (_T("Close case"),),
        "Notify customer": (_T("Close case"),),
        "Close case": (_T(None),),
    },
    parallel=(("Fraud check", "Document check"),),
    main_path=("Submit application", "Check completeness", "Credit check", "Fraud check", "Document check",
               "Assess risk", "Automatic approval", "Notify customer", "Close case"),
)  # fmt: skip

ORDER = ProcessDefinition(
    "order", "O", amount=(250.0, 1.0), channels=(("online", 0.7), ("branch", 0.2), ("broker", 0.1)),
    pools={"system": (1, 0.0), "sales": (5, 0.9), "warehouse": (16, 1.2), "logistics": (6, 0.8), "finance": (5, 1.0)},
    activities={
        "Place order": _A("system", 0, 1, manual=False, cost=0.2),
        "Check stock": _A("system", 5, 1, manual=False, cost=0.1),
        "Backorder items": _A("sales", 60, 10, cost=2, rate=40),
        "Pick items": _A("warehouse", 180, 20, cost=1, rate=28),
        "Pack items": _A("warehouse", 60, 12, cost=1.5, rate=28),
        "Ship order": _A("logistics", 120, 30, cost=8, rate=30),
        "Send invoice": _A("finance", 480, 5, cost=0.5, rate=40),
        "Send payment reminder": _A("finance", 30, 5, cost=1, rate=40),
        "Receive payment": _A("system", 0, 1, manual=False, cost=0.3),
        "Cancel order": _A("sales", 30, 5, cost=1, rate=40),
        "Close order": _A("system", _DAY, 1, manual=False, cost=0.1),
    },
    flow={
        "Place order": (_T("Check stock", 0.97), _T("Cancel order", 0.03)),
        "Check stock": (_T("Pick items", 0.87), _T("Backorder items", 0.11, decay=0.5, max_visits=3),
                        _T("Cancel order", 0.02)),
        "Backorder items": (_T("Check stock", 0.9, delay=3 * _DAY), _T("Cancel order", 0.1, delay=_DAY)),
        "Pick items": (_T("Pack items"),),
        "Pack items": (_T("Ship order"),),
        "Ship order": (_T("Send invoice"),),
        "Send invoice": (_T("Receive payment", 0.8, delay=10 * _DAY),
                         _T("Send payment reminder", 0.2, delay=30 * _DAY)),
        "Send payment reminder": (_T("Receive payment", 0.75, delay=7 * _DAY),
                                  _T("Send payment reminder", 0.25, delay=14 * _DAY, decay=0.6, max_visits=3)),
        "Receive payment": (_T("Close order"),),
        "Cancel order": (_T("Close order"),),
        "Close order": (_T(None),),
    },
    parallel=(("Ship order", "Send invoice"),),
    main_path=("Place order", "Check stock", "Pick items", "Pack items", "Ship order", "Send invoice",
               "Receive payment", "Close order"),
)  # fmt: skip

#: Known processes by name; add a :class:`ProcessDefinition` here to make it available.
PROCESSES: dict[str, ProcessDefinition] = {LOAN.name: LOAN, ORDER.name: ORDER}


# The transitions out of one node as arrays; target -1 ends the case, delay is in microseconds.
class _Moves(NamedTuple):
    target: np.ndarray
    weight: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    delay: np.ndarray
    decay: np.ndarray
    max_visits: np.ndarray
    guarded: bool
    looped: bool


@dataclass(frozen=True, eq=False)
class _Model:
    """A process definition compiled to arrays indexed by node, activity and pool."""

    proc: ProcessDefinition
    activities: list[str]
    resources: list[str]
    moves: list[_Moves]  # per node
    node: dict[str, np.ndarray]  # per node: act, role (1/2: first/second of a parallel pair), protected
    #                              (never skipped), wait, wait_sigma, dur, dur_sigma (us), manual
    act: dict[str, np.ndarray]  # per activity: pool, cost, rate
    pool_cdf: list[np.ndarray]  # workload share of each person, cumulative
    pool_first: np.ndarray  # index of each pool's first person in resources


@functools.lru_cache(maxsize=32)
def _compile(proc: ProcessDefinition) -> _Model:
    nodes = list(proc.flow)
    index = {name: i for i, name in enumerate(nodes)}
    labels = [name.split("#")[0] for name in nodes]
    acts = list(dict.fromkeys(labels))
    moves = []
    for name in nodes:
        ts = proc.flow[name]
        if not ts or any(t.target is not None and t.target not in index for t in ts):
            raise ValueError(f"{proc.name}: node {name!r} has no transitions or an unknown target")
        col = [np.array(c, np.float64) for c in zip(*[(t.weight, *t.amount, t.delay * MINUTE, t.decay, t.max_visits)
                                                      for t in ts])]  # fmt: skip
        weight, lo, hi, delay, decay, max_visits = col
        moves.append(_Moves(np.array([-1 if t.target is None else index[t.target] for t in ts]), weight, lo, hi,
                            delay, decay, max_visits, guarded=any(t.amount != (0.0, math.inf) for t in ts),
                            looped=any(t.decay != 1.0 or t.max_visits < 250 for t in ts)))  # fmt: skip
    role = np.zeros(len(nodes), np.int8)
    for first, second in proc.parallel:
        if [t.target for t in proc.flow[first]] != [second]:
            raise ValueError(f"{proc.name}: parallel node {first!r} must lead only to {second!r}")
        role[index[first]], role[index[second]] = 1, 2
    spec = [proc.activities[label] for label in labels]
    node: dict[str, np.ndarray] = {"act": np.array([acts.index(label) for label in labels], np.int16), "role": role,
            "protected": np.array([i == 0 or any(t.target is None for t in proc.flow[n]) for i, n in enumerate(nodes)]),
            "wait": np.array([s.wait * MINUTE for s in spec]), "wait_sigma": np.array([s.wait_sigma for s in spec]),
            "dur": np.array([s.duration * MINUTE for s in spec]), "manual": np.array([s.manual for s in spec]),
            "dur_sigma": np.array([s.duration_sigma for s in spec])}  # fmt: skip
    pools, resources, pool_first = list(proc.pools), list[str](), list[int]()
    cdfs: list[np.ndarray] = []
    for pool in pools:
        size, skew = proc.pools[pool]
        pool_first.append(len(resources))
        resources += [pool] if size == 1 else [f"{pool}_{i:02d}" for i in range(1, size + 1)]
        w = 1.0 / np.arange(1, size + 1) ** skew  # Zipf: the first people do most of the work
        cdfs.append(np.cumsum(w) / w.sum())
    specs = [proc.activities[a] for a in acts]
    act = {"pool": np.array([pools.index(s.pool) for s in specs], np.int16),
           "cost": np.array([s.cost for s in specs]), "rate": np.array([s.rate for s in specs])}  # fmt: skip
    return _Model(proc, acts, resources, moves, node, act, cdfs, np.array(pool_first))


@dataclass(frozen=True, eq=False)
class _Clock:
    """UTC offsets of one time zone in 15-minute bins, for vectorised local time."""

    t0: int
    offsets: np.ndarray

    def _bin(self, t: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip((t - self.t0) // _BIN, 0, self.offsets.size - 1))

    def local(self, t: np.ndarray) -> np.ndarray:
        return np.asarray(t + self.offsets[self._bin(t)])

    def utc(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(local - self.offsets[self._bin(local - self.offsets[self._bin(local)])])


@functools.lru_cache(maxsize=16)
def _clock(tz: str, t0: int, span: int) -> _Clock:
    import pandas as pd

    t0 -= t0 % _BIN
    utc = pd.date_range(pd.Timestamp(t0, unit="us", tz="UTC"), periods=span // _BIN + 2, freq="15min")
    local = utc.tz_convert(tz).tz_localize(None).as_unit("us").asi8
    return _Clock(t0, local - utc.tz_localize(None).as_unit("us").asi8)


def _lognormal(median: np.ndarray, sigma: np.ndarray | float, z: np.ndarray) -> np.ndarray:
    """Lognormal microseconds, capped at 20x the median so tails stay plausible."""
    return (median * np.exp(np.clip(sigma * z, -5.0, 3.0))).astype(np.int64)


def _business_hours(t: np.ndarray, clock: _Clock, rng: np.random.Generator) -> np.ndarray:
    """Move times outside Mon-Fri 08:00-18:00 (local) to the next opening, plus a little."""
    loc = clock.local(t)
    day = loc // DAY
    tod, dow = loc - day * DAY, (day + 3) % 7  # 1970-01-01 was a Thursday
    weekday = dow < 5
    early = weekday & (tod < _OPEN)
    target = np.where(early, day, day + _DAYS_TO_WORKDAY[dow]) * DAY + _OPEN
    target += (rng.exponential(size=t.size) * 20 * MINUTE).astype(np.int64)
    return np.where(weekday & (tod >= _OPEN) & (tod < _CLOSE), t, t + (target - loc))


def _arrivals(n: int, start_local: int, rng: np.random.Generator) -> np.ndarray:
    """Local arrival times: a Poisson process whose rate follows the hour of the week."""
    days = min(365.0, max(14.0, n / 40))  # the window grows with the log, up to a year
    hours = int(days * 24 * (1 + 8 / math.sqrt(n))) + 24 * 14
    t = start_local + np.arange(hours, dtype=np.int64) * HOUR
    day = t // DAY
    lam = np.concatenate([[0.0], np.cumsum(_ARRIVALS[(day + 3) % 7, (t - day * DAY) // HOUR])])
    s = np.cumsum(rng.exponential(size=n)) * (lam[int(days * 24)] / n)
    return np.asarray(start_local + (np.interp(s, lam, np.arange(hours + 1)) * HOUR).astype(np.int64))


def _choose(model: _Model, node: np.ndarray, case: np.ndarray, amount: np.ndarray,
            visits: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Sample the next node (and its extra delay) for every running case, grouped by node."""
    nxt = np.full(node.size, -1, np.int16)
    delay = np.zeros(node.size)
    for v, mv in enumerate(model.moves):
        sel = np.flatnonzero(node == v)
        if sel.size == 0:
            continue
        if mv.target.size == 1:
            nxt[sel], delay[sel] = mv.target[0], mv.delay[0]
            continue
        w = np.tile(mv.weight, (sel.size, 1))
        if mv.guarded:
            a = amount[case[sel]][:, None]
            w *= (a >= mv.lo) & (a < mv.hi)
        if mv.looped:
            seen = visits[case[sel][:, None], np.maximum(mv.target, 0)]
            w *= mv.decay**seen
            w[seen >= mv.max_visits] = 0.0
        c = np.cumsum(w, axis=1)
        pick = np.minimum((u[sel, None] * c[:, -1:] >= c).sum(axis=1), mv.target.size - 1)
        nxt[sel], delay[sel] = mv.target[pick], mv.delay[pick]
    return nxt, delay


def _simulate(model: _Model, arrivals: np.ndarray, amount: np.ndarray, noise: float,
              clock: _Clock, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:  # fmt: skip
    """Run all cases step by step; return instances per case and per-step emitted chunks.

    Each chunk is (case, node, start, end, position within case). Noise here: a
    repeated activity (done again right away) or a skipped one (not logged, takes no time).
    """
    n, p = arrivals.size, noise / 3
    # one element per running case; typed as plain arrays, as they are narrowed together below
    case: np.ndarray = np.arange(n, dtype=np.int32)
    node: np.ndarray = np.zeros(n, np.int16)
    cursor, blk_ready, blk_end = arrivals.copy(), arrivals.copy(), arrivals.copy()
    reps: np.ndarray = np.zeros(n, np.int8)
    nxt: np.ndarray
    delay: np.ndarray
    rep: np.ndarray
    skip: np.ndarray
    visits = np.zeros((n, len(model.moves)), np.uint8)
    counts: np.ndarray = np.zeros(n, np.int32)
    chunks: list[tuple[np.ndarray, ...]] = []
    for step in range(10_000):
        if case.size == 0:
            break
        z = rng.standard_normal((3, case.size))
        if step == 0:
            nxt, delay = node.copy(), np.zeros(case.size)
            rep = skip = np.zeros(case.size, bool)
        else:
            u, r = rng.random(case.size), rng.random(case.size)
            nxt, delay = _choose(model, node, case, amount, visits, u)
            go = nxt >= 0
            rep = go & (r < p) & (reps < _MAX_REPEATS)
            skip = go & ~rep & (r >= p) & (r < 2 * p) & ~model.node["protected"][np.maximum(nxt, 0)]
            nxt = np.where(rep, node, nxt)
            delay[rep] = 0.0
            if not go.all():
                case, node, cursor, blk_ready, blk_end, reps, nxt, delay, rep, skip = (
                    a[go] for a in (case, node, cursor, blk_ready, blk_end, reps, nxt, delay, rep, skip)
                )
                z = z[:, go]
                if case.size == 0:
                    break
        reps += rep
        role = np.where(rep, 0, model.node["role"][nxt])
        ready = np.where(role == 2, blk_ready, cursor + _lognormal(delay, 0.5, z[0]))
        start = ready + _lognormal(model.node["wait"][nxt], model.node["wait_sigma"][nxt], z[1])
        manual = model.node["manual"][nxt]
        if manual.any():
            start[manual] = _business_hours(start[manual], clock, rng)
        end = start + _lognormal(model.node["dur"][nxt], model.node["dur_sigma"][nxt], z[2])
        start[skip] = end[skip] = ready[skip]
        first = role == 1
        blk_ready = np.where(first, ready, blk_ready)
        blk_end = np.where(first, end, np.maximum(blk_end, end))
        cursor = np.where(role == 2, blk_end, end)
        visits[case, nxt] = np.minimum(visits[case, nxt], 254) + 1
        node = nxt
        emit = ~skip
        ci = case[emit]
        chunks.append((ci, nxt[emit], start[emit], end[emit], counts[ci]))
        counts[ci] += 1
    return counts, chunks


def _cases(model: _Model, n: int, seed: int, noise: float, start_local: int, clock: _Clock
           ) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]], np.ndarray, np.ndarray, np.random.Generator]:
    """Case attributes and simulated instances for ``n`` cases; one stream per purpose."""
    rng_case, rng_sim, rng_post = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    arrivals = clock.utc(_arrivals(n, start_local, rng_case))
    median, sigma = model.proc.amount
    amount = np.round(median * np.exp(sigma * rng_case.standard_normal(n)), 2)
    probs = np.array([w for _, w in model.proc.channels])
    channel = rng_case.choice(probs.size, size=n, p=probs / probs.sum()).astype(np.int8)
    counts, chunks = _simulate(model, arrivals, amount, noise, clock, rng_sim)
    return counts, chunks, amount, channel, rng_post


@functools.lru_cache(maxsize=64)
def _instances_per_case(model: _Model, noise: float) -> float:
    """Mean activity instances per case, from a fixed-seed pilot run."""
    start = 1_704_067_200 * SECOND  # 2024-01-01
    counts = _cases(model, 2000, 12345, noise, start, _clock("UTC", start - 2 * DAY, 4 * 366 * DAY))[0]
    return float(counts.mean())


def generate_log(
    events: int,
    *,
    seed: int = 0,
    process: str = "loan",
    start: str | datetime = "2024-01-01",
    timezone: str = "Europe/Amsterdam",
    lifecycle: bool = False,
    noise: float = 0.05,
) -> pa.Table:
    """A synthetic event log of about ``events`` rows, the same for the same arguments.

    The log holds only complete cases, so it has at most ``events`` rows and falls
    short by less than one case (under 1% from 10k events up); a single case is
    always produced, even if it is longer than ``events``. ``start`` (naive means
    local to ``timezone``) is when arrivals begin; business hours are local too.
    With ``lifecycle`` each activity instance is a start row and a complete row,
    and ``cost`` is on the complete row only. ``noise`` is the rough share of
    instances that are skipped, swapped with a neighbour or repeated.
    """
    _check_args(events, seed, process, timezone, lifecycle, noise)
    model = _compile(PROCESSES[process])
    start_local = _start_local(start, timezone)
    clock = _clock(timezone, start_local - 2 * DAY, 4 * 366 * DAY)
    budget = max(1, events // 2 if lifecycle else events)  # activity instances
    n = int(budget / _instances_per_case(model, float(noise)) * 1.03) + 10
    while True:
        counts, chunks, amount, channel, rng = _cases(model, n, seed, float(noise), start_local, clock)
        if counts.sum() >= budget:
            break
        n = int(n * 1.25) + 10  # rare: the pilot mean was too optimistic
    cum = np.cumsum(counts, dtype=np.int64)
    k = max(1, int(np.searchsorted(cum, budget, side="right")))  # whole cases only
    total, offsets = int(cum[k - 1]), cum - counts
    node = np.empty(total, np.int16)
    start_t, end_t = np.empty(total, np.int64), np.empty(total, np.int64)
    for ci, nd, st, en, pos in chunks:  # scatter step-major chunks into case-major order
        keep = ci < k
        at = offsets[ci[keep]] + pos[keep]
        node[at], start_t[at], end_t[at] = nd[keep], st[keep], en[keep]
    del chunks
    case = np.repeat(np.arange(k, dtype=np.int32), counts[:k])
    start_t -= start_t % 1000  # millisecond precision, as most source systems log
    end_t -= end_t % 1000
    order = _order_in_case(case, end_t)  # concurrent instances: order of completion
    if order is not None:
        node, start_t, end_t = node[order], start_t[order], end_t[order]
    if noise > 0:  # swap neighbours (never the first or the last of a case)
        edge = np.zeros(total + 1, bool)
        edge[offsets[:k]] = edge[cum[:k] - 1] = True
        swap = (rng.random(total) < noise / 3) & ~edge[:-1] & ~edge[1:]
        swap[1:] &= ~swap[:-1]
        at = np.flatnonzero(swap)
        node[at], node[at + 1] = node[at + 1], node[at]
    act = model.node["act"][node]
    pool, u = model.act["pool"][act], rng.random(total)
    resource = np.empty(total, np.int16)
    for i, cdf in enumerate(model.pool_cdf):
        sel = np.flatnonzero(pool == i)
        resource[sel] = model.pool_first[i] + np.minimum(np.searchsorted(cdf, u[sel], side="right"), cdf.size - 1)
    cost = np.round(model.act["cost"][act] + model.act["rate"][act] * ((end_t - start_t) / HOUR), 2)
    cols = {"case": case, "act": act, "time": end_t, "start": start_t, "res": resource, "cost": cost}
    if lifecycle:
        cols = {key: np.repeat(val, 2) for key, val in cols.items()}
        cols["time"][0::2] = start_t
        cols["lc"] = np.tile(np.array([0, 1], np.int8), total)
        order = _order_in_case(cols["case"], cols["time"])
        if order is not None:
            cols = {key: val[order] for key, val in cols.items()}
    meta = {"process": process, "seed": int(seed), "events": int(events), "start": str(start),
            "timezone": timezone, "lifecycle": bool(lifecycle), "noise": float(noise)}  # fmt: skip
    return _to_table(model, k, cols, amount, channel, meta)


def _order_in_case(case: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """A stable permutation sorting rows by time within each case, or None if sorted."""
    if not np.any((case[1:] == case[:-1]) & (t[1:] < t[:-1])):
        return None
    starts = np.flatnonzero(np.concatenate([[True], case[1:] != case[:-1]]))
    rel = (t - np.repeat(np.minimum.reduceat(t, starts), np.diff(starts, append=t.size))) // 1000
    shift = max(1, int(case[-1]).bit_length())
    if t.size and rel.max() < 1 << (62 - shift) and not np.any(t % 1000):  # pack (case, ms) in one int64
        return np.argsort((case.astype(np.int64) << (62 - shift)) | rel, kind="stable")  # timsort: runs
    return np.lexsort((t, case))


def _to_table(model: _Model, k: int, cols: dict[str, np.ndarray], amount: np.ndarray,
              channel: np.ndarray, meta: dict[str, Any]) -> pa.Table:  # fmt: skip
    proc = model.proc
    width = max(6, len(str(k)))
    digits = pc.utf8_lpad(pa.array(np.arange(1, k + 1)).cast(pa.string()), width, "0")
    ids = pc.binary_join_element_wise(proc.case_prefix, digits, "")
    acts, res = pa.array(model.activities), pa.array(model.resources)
    chans, lcs = pa.array([c for c, _ in proc.channels]), pa.array(["start", "complete"])
    ts = pa.timestamp("us", tz="UTC")
    parts = []
    for lo in range(0, cols["case"].size, _CHUNK):
        c = {key: val[lo : lo + _CHUNK] for key, val in cols.items()}
        part = {
            "case_id": ids.take(c["case"]),
            "activity": acts.take(c["act"]),
            "timestamp": pa.array(c["time"], ts),
            "start_timestamp": pa.array(c["start"], ts),
            "resource": res.take(c["res"]),
        }
        if "lc" in c:
            part["lifecycle"] = lcs.take(c["lc"])
        part["amount"] = pa.array(amount[c["case"]])
        part["channel"] = chans.take(channel[c["case"]])
        part["cost"] = pa.array(c["cost"], mask=c["lc"] == 0 if "lc" in c else None)
        parts.append(pa.table(part))
    table = pa.concat_tables(parts)
    return table.replace_schema_metadata({_META_KEY: json.dumps(meta, sort_keys=True).encode()})


def _check_args(events: object, seed: object, process: object, timezone: object,
                lifecycle: object, noise: object) -> None:  # fmt: skip
    def integer(x: object) -> TypeGuard[numbers.Integral]:
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)

    if not integer(events) or not 1 <= int(events) <= MAX_EVENTS:
        raise InvalidArgumentError(f"events must be an integer from 1 to {MAX_EVENTS:,}, not {events!r}",
                                   parameter="events")  # fmt: skip
    if not integer(seed) or int(seed) < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, not {seed!r}", parameter="seed")
    if not isinstance(process, str) or process not in PROCESSES:
        raise InvalidArgumentError(f"unknown process {process!r}; known processes: {', '.join(sorted(PROCESSES))}",
                                   parameter="process")  # fmt: skip
    try:
        if not isinstance(timezone, str):
            raise TypeError(timezone)
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise InvalidArgumentError(f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Amsterdam'",
                                   parameter="timezone") from None  # fmt: skip
    if not isinstance(lifecycle, (bool, np.bool_)):
        raise InvalidArgumentError(f"lifecycle must be True or False, not {lifecycle!r}", parameter="lifecycle")
    if not isinstance(noise, numbers.Real) or isinstance(noise, bool) or not 0 <= float(noise) < 1:
        raise InvalidArgumentError(f"noise must be a number in [0, 1), not {noise!r}", parameter="noise")


def _start_local(start: object, timezone: str) -> int:
    """``start`` as naive local microseconds since the epoch."""
    try:
        if isinstance(start, str):
            start = datetime.fromisoformat(start)
        elif isinstance(start, date) and not isinstance(start, datetime):
            start = datetime.combine(start, datetime.min.time())
        if not isinstance(start, datetime):
            raise TypeError
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"start must be an ISO date or datetime, not {start!r}", parameter="start") from None
    if start.tzinfo is not None:
        start = start.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
    if not 1900 <= start.year <= 2200:
        raise InvalidArgumentError(f"start must lie between 1900 and 2200, not {start}", parameter="start")
    return (start - datetime(1970, 1, 1)) // timedelta(microseconds=1)


_FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".xes": "xes", ".xes.gz": "xes"}


def write_log(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` in the format its extension names; return the path.

    ``.csv`` and ``.jsonl``/``.json`` (JSON lines) carry ISO 8601 timestamps with
    the UTC offset of the log's time zone (UTC for tables not made here);
    ``.parquet`` keeps types; ``.xes``/``.xes.gz`` go through ``procestra.xes``.
    """
    if not isinstance(table, pa.Table):
        raise InvalidArgumentError(f"table must be a pyarrow.Table, not {type(table).__name__}", parameter="table")
    path = Path(path)
    name = path.name.lower()
    fmt = next((f for ext, f in _FORMATS.items() if name.endswith(ext)), None)
    if fmt is None:
        raise InvalidArgumentError(f"cannot tell the format of {str(path)!r}; use one of "
                                   f"{', '.join(_FORMATS)}", parameter="path")  # fmt: skip
    output_path(path, parameter="path")
    try:
        if fmt == "csv":
            pacsv.write_csv(_iso_times(table), path)
        elif fmt == "parquet":
            pq.write_table(table, path)
        elif fmt == "jsonl":
            _write_jsonl(_iso_times(table), path)
        else:
            try:
                from procestra.ingest.xes import write_xes
            except ImportError as exc:
                raise ImportError(f"writing {path.name} needs procestra.xes.write_xes, which is not available") from exc
            write_xes(table.rename_columns([PM4PY_COLUMNS.get(c, c) for c in table.column_names]), path)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot write {str(path)!r}: {exc}", parameter="path") from exc
    return path


def _write_jsonl(table: pa.Table, path: Path) -> None:
    import duckdb  # pyarrow has no JSON writer; DuckDB streams one quickly, in row order

    con = duckdb.connect()
    try:
        con.register("log_rows", table)
        con.execute(f"COPY log_rows TO '{str(path).replace(chr(39), chr(39) * 2)}' (FORMAT JSON)")
    finally:
        con.close()


def _iso_times(table: pa.Table) -> pa.Table:
    """Replace timestamp columns by ISO 8601 strings with the offset of the log's zone."""
    meta = (table.schema.metadata or {}).get(_META_KEY)
    tz = json.loads(meta).get("timezone") if meta else None
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            col = table.column(i)
            text = pa.chunked_array([_iso(chunk, tz or f.type.tz) for chunk in col.chunks], pa.string())
            table = table.set_column(i, f.name, text)
    return table


def _iso(arr: pa.Array, tz: str | None) -> pa.Array:
    us = arr.cast(pa.timestamp("us", tz=arr.type.tz))
    t = pc.fill_null(us.view(pa.int64()), 0).to_numpy()
    if arr.type.tz is None:  # naive: print as is
        local, suffix = t, None
    else:
        lo, hi = (int(t.min()), int(t.max())) if t.size else (0, 0)
        clock = _clock(tz, lo - DAY, hi - lo + 2 * DAY)
        uniq, codes = np.unique(clock.offsets, return_inverse=True)
        at = clock._bin(t)
        offs, code = clock.offsets[at], codes[at]
        names = [f"{'-' if o < 0 else '+'}{abs(o) // HOUR:02d}:{abs(o) % HOUR // MINUTE:02d}" for o in uniq.tolist()]
        local, suffix = t + offs, pa.array(names).take(pa.array(code.astype(np.int32)))
    naive = pa.array(local, pa.timestamp("us"))
    if not np.any(local % 1000):
        naive = naive.cast(pa.timestamp("ms"))
    text = pc.replace_substring(naive.cast(pa.string()), " ", "T", max_replacements=1)
    if suffix is not None:
        text = pc.binary_join_element_wise(text, suffix, "")
    return pc.if_else(arr.is_valid(), text, pa.scalar(None, pa.string()))
