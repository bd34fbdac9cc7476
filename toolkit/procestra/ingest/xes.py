"""Streaming XES reader and writer (``.xes`` and ``.xes.gz``, gzip detected by its magic bytes).

:func:`iter_xes_batches` yields :class:`pyarrow.Table` batches of events in file
order, with memory bounded by the batch. Columns are named as in
``pm4py.read_xes``: event attributes by key (``concept:name``, ...), trace
attributes with a ``case:`` prefix, repeated on each event of the trace; plus
int64 ``__row`` (event index in the file) and ``__trace`` (trace index, counting
traces without events). Events outside traces, log-level attributes, globals,
classifiers and extensions are skipped (see :func:`read_xes_log_attributes`), as
are event keys starting with ``__``. A batch ends at the first trace end after
``batch_size`` events.

Types: ``date`` -> ``timestamp[us, tz=UTC]`` (offsets converted; no offset means
UTC), ``int`` -> int64, ``float`` -> float64, ``boolean`` -> bool, ``string``/``id``
-> string. A key with several XES types in one batch becomes a string column
(the raw text) for that batch. Missing attributes are null; a key repeated in
one element keeps its last value, as in pm4py.

Nested attributes are flattened (pm4py keeps a ``{"value", "children"}`` dict
instead): the parent keeps its value under its key, each child becomes
``parent.child``, recursively (``a.b.c``). Items of a ``<list>`` (inside
``<values>`` or directly) become ``key.0``, ``key.1``, ... with their own types,
whatever their keys; a ``<list>`` or ``<container>`` has no value of its own.

Regular XES (as OpenXES, ProM and pm4py write it) takes a fast path: libxml2
checks well-formedness without Python callbacks while numpy and Arrow cut keys
and values out of the raw bytes of whole traces. Anything else (comments among
traces, nested attributes, other attribute layouts, non-UTF-8 encodings, a
DOCTYPE, malformed XML) goes through a general expat parser, which also words
every error; if that happens midway it resumes after the events already
yielded. There a trace of ``batch_size`` events or more is split across batches,
and trace attributes after its first events (the XES schema forbids that) reach
only the later parts.

:func:`write_xes` streams Arrow tables, ordered by case, into an XES document.
"""

from __future__ import annotations

import gzip as _gzip
import io
import itertools
import os
import pyexpat
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from procestra.errors import DataError, InvalidArgumentError, SourceError, SourceFormatError, TimestampError

__all__ = ["ROW_COLUMN", "TRACE_COLUMN", "iter_xes_batches", "read_xes_log_attributes", "write_xes"]

ROW_COLUMN = "__row"
TRACE_COLUMN = "__trace"
CASE_PREFIX = "case:"

_CHUNK = 1 << 20  # bytes read at a time
_REGION = 4 << 20  # fast path: bytes of whole traces scanned at a time
_MAX_PENDING = 64 << 20  # fast path: a trace longer than this goes to the general parser
_TS_UTC = pa.timestamp("us", tz="UTC")

#: Input limits (a file beyond them is refused naming the event, before memory grows with it):
#: attributes nested deeper than this, and one element (a key, a value) bigger than this many bytes.
MAX_DEPTH = int(os.environ.get("PROCESTRA_XES_MAX_DEPTH") or 64)
MAX_ATTRIBUTE_BYTES = int(os.environ.get("PROCESTRA_XES_MAX_ATTRIBUTE_BYTES") or 16 << 20)

# XES type codes; list and container carry no value.
_STR, _DATE, _INT, _FLOAT, _BOOL, _LIST, _CONTAINER = range(7)
_TYPES = {"string": _STR, "id": _STR, "date": _DATE, "int": _INT, "float": _FLOAT, "boolean": _BOOL,
          "list": _LIST, "container": _CONTAINER}
_TYPE_NAMES = {_STR: "string", _DATE: "date", _INT: "int", _FLOAT: "float", _BOOL: "boolean"}


class _Fallback(Exception):
    """The fast path met something it does not handle; use the general parser."""


class _Stop(Exception):
    """Ends the header scan at the first trace."""


class _Raw(NamedTuple):
    """Attribute values of whole traces before typing, one entry per value in document order."""

    keys: pa.Array  # flattened attribute key
    values: pa.Array  # raw text
    types: np.ndarray  # XES type code
    where: np.ndarray  # event index (from 0), or -(segment + 1) for a trace attribute
    ev_seg: np.ndarray  # trace segment of each event (nondecreasing)
    seg_trace: np.ndarray  # trace index of each segment
    row0: int = 0  # index in the file of the first event

    def split(self, k: int) -> tuple[_Raw, _Raw]:
        """The segments before ``k`` and the rest (both relative to their own start)."""
        w, ev = self.where, int(np.searchsorted(self.ev_seg, k))
        cut = int(np.searchsorted(np.where(w >= 0, self.ev_seg[np.maximum(w, 0)], -w - 1), k))
        tail = w[cut:]
        return (_Raw(self.keys[:cut], self.values[:cut], self.types[:cut], w[:cut], self.ev_seg[:ev],
                     self.seg_trace[:k], self.row0),
                _Raw(self.keys[cut:], self.values[cut:], self.types[cut:], np.where(tail >= 0, tail - ev, tail + k),
                     self.ev_seg[ev:] - k, self.seg_trace[k:], self.row0 + ev))


def _chunks(source: str) -> Iterator[bytes]:
    """Yield the bytes of ``source``, gunzipped when it starts with the gzip magic; damage -> SourceFormatError."""
    try:
        raw = open(source, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SourceError(f"cannot open the file: {exc.strerror or exc}", source=source) from exc
    stream: io.BufferedIOBase = _gzip.GzipFile(fileobj=raw, mode="rb") if raw.read(2) == b"\x1f\x8b" else raw
    raw.seek(0)
    try:
        while chunk := stream.read(_CHUNK):
            yield chunk
    except EOFError:
        raise SourceFormatError("truncated gzip stream: the file ends early; re-download or re-export it",
                                source=source) from None
    except (_gzip.BadGzipFile, zlib.error) as exc:
        raise SourceFormatError(f"corrupt gzip stream ({exc}); re-download or re-export it", source=source) from None
    finally:
        stream.close()
        raw.close()


# --------------------------------------------------------------------------- general parser


class _Reader:
    """Any well-formed XES through expat, one element at a time; also the source of error messages."""

    def __init__(self, source: str, batch_size: int, *, header: bool = False) -> None:
        self.source, self.batch_size, self.header = source, batch_size, header
        self.max_depth, self.max_bytes = MAX_DEPTH, MAX_ATTRIBUTE_BYTES  # read now: tests and callers may set them
        self.log_attrs: dict[str, tuple[int, str]] = {}
        self.first_trace: int | None = None  # header scan: byte offset of the first <trace>

    def batches(self) -> Iterator[_Raw]:
        """Parse the file, yielding a :class:`_Raw` whenever a batch fills up."""
        source, batch_size, header, log_attrs = self.source, self.batch_size, self.header, self.log_attrs
        parser = pyexpat.ParserCreate()
        parser.buffer_text = False
        root, log, trace, event, ignore = object(), object(), object(), object(), object()
        stack: list[Any] = [root]
        scope = log
        pending: list[_Raw] = []
        collected: list[tuple[str, str, int, int]] = []  # (key, value, type, event index or -(segment + 1))
        seg_counts: list[int] = []
        seg_traces: list[int] = []
        row0 = local = seg_start = 0
        trace_no = -1
        tattrs: dict[str, tuple[int, str]] = {}

        def error(message: str) -> SourceFormatError:
            return SourceFormatError(message, source=source, row=parser.CurrentLineNumber)

        max_depth, max_bytes = self.max_depth, self.max_bytes
        depths = [0]  # per open element: how deep it sits in attributes (or unknown elements); 0 for the structure
        mark = 0  # input byte where the last element started or ended

        def where() -> str:
            if scope is event:
                return f"in event {row0 + local + 1:,}"
            return f"in trace {trace_no + 1:,}" if scope is trace else "in the log's header"

        def too_big(what: str, size: int) -> SourceFormatError:
            return error(f"{what} of {size:,} bytes {where()} is over the limit of {max_bytes:,} bytes "
                         "(PROCESTRA_XES_MAX_ATTRIBUTE_BYTES); the file is refused")

        def flush() -> None:
            nonlocal collected, seg_counts, seg_traces, row0, local, seg_start
            keys, values, types, where = zip(*collected, strict=True) if collected else ((), (), (), ())
            counts = np.asarray(seg_counts, dtype=np.int64)
            pending.append(_Raw(pa.array(keys, pa.string()), pa.array(values, pa.string()),
                                np.asarray(types, dtype=np.int8), np.asarray(where, dtype=np.int64),
                                np.repeat(np.arange(len(counts)), counts), np.asarray(seg_traces, np.int64), row0))
            collected, seg_counts, seg_traces = [], [], []
            row0 += local
            local = seg_start = 0

        def close_segment() -> None:
            nonlocal seg_start
            if local > seg_start:
                seg_counts.append(local - seg_start)
                seg_traces.append(trace_no)
                collected.extend((key, v, t, -len(seg_counts)) for key, (t, v) in tattrs.items())
            seg_start = local

        def start(name: str, attrs: dict[str, str]) -> None:
            nonlocal scope, trace_no, tattrs, seg_start, mark
            lname, top = name.rpartition(":")[2], stack[-1]
            mark = parser.CurrentByteIndex
            structure = top is root or (lname in ("trace", "event") and (top is log or top is trace))
            depth = 0 if structure else depths[-1] + 1
            if depth > max_depth:
                raise error(f"attributes nested deeper than {max_depth} levels {where()}; the file is refused "
                            "(PROCESTRA_XES_MAX_DEPTH sets the limit)")
            depths.append(depth)
            if top is ignore:
                stack.append(ignore)
            elif top is root:
                if lname != "log":
                    raise error(f"not an XES file: the root element is <{name}>, expected <log>")
                stack.append(log)
            elif lname == "trace" and top is log:
                if header:
                    self.first_trace = parser.CurrentByteIndex
                    raise _Stop
                trace_no, tattrs, seg_start, scope = trace_no + 1, {}, local, trace
                stack.append(trace)
            elif lname == "event" and top is trace:
                scope = event
                stack.append(event)
            elif lname in ("trace", "event") and (top is trace or top is event):
                raise error(f"<{lname}> inside another <{'event' if top is event else 'trace'}>")
            elif type(top) is list and lname == "values":
                stack.append(top)
            else:
                t, k = _TYPES.get(lname), attrs.get("key")
                if t is None or (top is log and not header) or (k is None and type(top) is not list):
                    stack.append(ignore)
                    return
                if type(top) is list:  # list items are numbered
                    key = f"{top[0]}.{top[1]}"
                    top[1] += 1
                else:
                    assert k is not None  # checked above: only a list item goes without a key
                    key = f"{top}.{k}" if isinstance(top, str) else k
                if len(key) > max_bytes:
                    raise too_big(f"the attribute key {key[:60]!r}...", len(key))
                v = attrs.get("value")
                if v is not None and len(v) > max_bytes:
                    raise too_big(f"the value of attribute {key[:60]!r}", len(v))
                if v is not None and t < _LIST:
                    if scope is event:
                        collected.append((key, v, t, local))
                    elif scope is trace:
                        tattrs[key] = (t, v)
                    else:
                        log_attrs[key] = (t, v)
                stack.append([key, 0] if t == _LIST else key)

        def end(name: str) -> None:
            nonlocal local, scope, mark
            top = stack.pop()
            depths.pop()
            mark = parser.CurrentByteIndex
            if top is event:
                local += 1
                scope = trace
                if local - seg_start >= batch_size:  # one trace fills the batch: split it
                    close_segment()
                    flush()
            elif top is trace:
                close_segment()
                scope = log
                if local >= batch_size:
                    flush()

        parser.StartElementHandler, parser.EndElementHandler = start, end
        empty, at_end, fed = True, False, 0
        try:
            for chunk in _chunks(source):
                empty = empty and not chunk.strip()
                parser.Parse(chunk, False)
                fed += len(chunk)
                if fed - max(mark, 0) > max_bytes + 2 * _CHUNK:  # one tag (expat holds it whole) past the limit
                    raise too_big("an element", fed - max(mark, 0))
                yield from pending
                pending.clear()
            if empty:
                raise SourceFormatError("not an XES file: the file is empty", source=source)
            at_end = True
            parser.Parse(b"", True)
        except pyexpat.ExpatError as exc:
            hint = " (the file ends before the XML is complete; re-download or re-export it)" if at_end else ""
            raise SourceFormatError(f"not an XES file: XML parse error at line {exc.lineno}: "
                                    f"{pyexpat.ErrorString(exc.code)}{hint}", source=source, row=exc.lineno) from None
        except _Stop:
            return
        if local:
            flush()
        yield from pending


# --------------------------------------------------------------------------- fast path

_LITERALS = [b'<string key="', b'<date key="', b'<int key="', b'<id key="', b'<float key="', b'<boolean key="',
             b"<event>", b"</event>", b"<trace>", b"</trace>"]
_LIT_TYPE = np.array([_STR, _DATE, _INT, _STR, _FLOAT, _BOOL], dtype=np.int8)
_LIT_LEN = np.array([len(lit) for lit in _LITERALS], dtype=np.int64)
_LUT = np.full(1 << 16, -1, dtype=np.int8)  # first two bytes after "<" -> literal index
for _i, _lit in enumerate(_LITERALS):
    _LUT[_lit[1] << 8 | _lit[2]] = _i
_QUOTE_SHIFT = np.array([1, 0, 1, 0])  # key and value start after their opening quotes
_VALUE_EQ = np.frombuffer(b' value="', dtype=np.uint8)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)""")


class _Sink:
    """An lxml parser target without callbacks: libxml2 only checks well-formedness."""

    def close(self) -> None:
        return None


def _ordered(opens: np.ndarray, closes: np.ndarray) -> bool:
    """Whether open/close positions pair up without nesting."""
    return len(opens) == len(closes) and bool((opens < closes).all() and (opens[1:] > closes[:-1]).all())


def _scan(region: bytes, trace0: int) -> _Raw:
    """Cut the attributes out of a run of whole, regular traces; raise :class:`_Fallback` otherwise."""
    a = np.frombuffer(region, dtype=np.uint8)
    lt = np.flatnonzero(a == 60)
    kind = _LUT[a[lt + 1].astype(np.int32) << 8 | a.take(lt + 2, mode="clip")]
    if (kind < 0).any():  # comments, CDATA, processing instructions, other elements
        raise _Fallback
    for i, lit in enumerate(_LITERALS):  # every tag is exactly one of the literals
        at = lt[kind == i]
        got = a.take(at[:, None] + np.arange(len(lit)), mode="clip")
        if len(at) and not (got == np.frombuffer(lit, dtype=np.uint8)).all():
            raise _Fallback
    is_attr = kind < 6
    pos, lit_of = lt[is_attr], kind[is_attr]
    q = np.flatnonzero(a == 34)
    if len(q) != 4 * len(pos):  # each attribute has exactly key="..." value="..." and no other quote exists
        raise _Fallback
    quads = q.reshape(-1, 4)
    end = quads[:, 3]
    ok = (quads[:, 0] == pos + _LIT_LEN[lit_of] - 1) & (quads[:, 2] == quads[:, 1] + 8)
    ok &= (a.take(quads[:, 1:2] + np.arange(1, 9), mode="clip") == _VALUE_EQ).all(axis=1)
    after = a.take(end[:, None] + np.arange(1, 4), mode="clip")
    slash = np.where(after[:, 0] == 32, 1, 0)  # "/>" or " />"
    ok &= (after[np.arange(len(after)), slash] == 47) & (after[np.arange(len(after)), slash + 1] == 62)
    evo, evc, tro, trc = (lt[kind == k] for k in (6, 7, 8, 9))
    if not ok.all() or not _ordered(evo, evc) or not _ordered(tro, trc):
        raise _Fallback
    ev_tr = np.searchsorted(tro, evo) - 1
    if len(evo) and ((ev_tr < 0).any() or (evc > trc[ev_tr]).any()):  # an event outside a trace
        raise _Fallback
    ae, at = np.searchsorted(evo, pos) - 1, np.searchsorted(tro, pos) - 1
    in_ev = (ae >= 0) & (pos < evc.take(ae, mode="clip")) if len(evo) else np.zeros(len(pos), dtype=bool)
    if len(pos) and ((at < 0) | (pos > trc.take(at, mode="clip"))).any():  # a log attribute among traces
        raise _Fallback
    # A zero-copy view of the region cut at the quotes: items 4i and 4i+2 are the key and value of attribute i.
    offsets = np.append((quads + _QUOTE_SHIFT).ravel(), len(region)).astype(np.int32)
    cut = pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(region))
    keys, values = cut.take(np.arange(0, 4 * len(quads), 4)), cut.take(np.arange(2, 4 * len(quads), 4))
    text = np.concatenate([_text_bytes(keys), _text_bytes(values)])
    if ((text == 9) | (text == 10) | (text == 13)).any():  # whitespace that XML would normalise
        raise _Fallback
    if (text == 38).any():
        if any(pc.any(pc.match_substring(arr, "&#")).as_py() for arr in (keys, values)):
            raise _Fallback  # character references
        keys, values = _unescape(keys), _unescape(values)
    return _Raw(keys, values, _LIT_TYPE[lit_of], np.where(in_ev, ae, -(at + 1)), ev_tr,
                np.arange(trace0, trace0 + len(tro), dtype=np.int64))


def _text_bytes(arr: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of all values of a string array."""
    data = arr.buffers()[2]
    if data is None or not len(arr):
        return np.zeros(0, dtype=np.uint8)
    off = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    return np.frombuffer(data, dtype=np.uint8)[off[0] : off[-1]]


def _unescape(arr: pa.Array) -> pa.Array:
    """Resolve the five predefined XML entities."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        arr = pc.replace_substring(arr, entity, char)
    return arr


def _join(parts: list[_Raw], row0: int) -> _Raw:
    """Concatenate scanned runs of traces into one batch starting at event ``row0``."""
    where, ev_seg, ev_off, seg_off = [], [], 0, 0
    for part in parts:
        where.append(np.where(part.where >= 0, part.where + ev_off, part.where - seg_off))
        ev_seg.append(part.ev_seg + seg_off)
        ev_off, seg_off = ev_off + len(part.ev_seg), seg_off + len(part.seg_trace)
    return _Raw(pa.concat_arrays([p.keys for p in parts]), pa.concat_arrays([p.values for p in parts]),
                np.concatenate([p.types for p in parts]), np.concatenate(where), np.concatenate(ev_seg),
                np.concatenate([p.seg_trace for p in parts]), row0)


def _fast_batches(source: str, batch_size: int) -> Iterator[pa.Table]:
    """Yield batches through the fast path; raise :class:`_Fallback` when it cannot continue."""
    scan = _Reader(source, 1, header=True)
    for _ in scan.batches():
        pass
    if scan.first_trace is None:
        raise _Fallback
    validator = etree.XMLParser(target=_Sink(), huge_tree=True, resolve_entities=False, no_network=True)
    data, parts, events, row0, trace0, checked = b"", [], 0, 0, 0, False
    try:
        for chunk in itertools.chain(_chunks(source), [b""]):
            if chunk:
                validator.feed(chunk)
                data += chunk
            else:
                validator.close()
            if not checked:
                if len(data) < scan.first_trace + 7 and chunk:
                    continue
                prolog, data, checked = data[: scan.first_trace], data[scan.first_trace:], True
                declared = _ENCODING.search(prolog[:400])
                if (b"<!DOCTYPE" in prolog or prolog[:2] in (b"\xff\xfe", b"\xfe\xff")
                        or not data.startswith(b"<trace>")
                        or (declared and declared.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"))):
                    raise _Fallback
            if chunk and len(data) < _REGION:
                continue
            cut = data.rfind(b"</trace>") + 8
            if cut >= 8:
                parts.append(_scan(data[:cut], trace0))
                longest = max(pc.max(pc.binary_length(parts[-1].values)).as_py() or 0,
                              pc.max(pc.binary_length(parts[-1].keys)).as_py() or 0)
                if longest > MAX_ATTRIBUTE_BYTES:  # the general parser words the error, naming the event
                    raise _Fallback
                data, events, trace0 = data[cut:], events + len(parts[-1].ev_seg), trace0 + len(parts[-1].seg_trace)
            elif len(data) > _MAX_PENDING:
                raise _Fallback
            if not chunk and data.strip() != b"</log>":  # anything but the end of the log: let expat judge
                raise _Fallback
            while parts and (events >= batch_size or not chunk):
                rest, last, over = None, parts[-1], events - batch_size
                if 0 < over < len(last.ev_seg):  # end the batch at the first trace end after batch_size events
                    k = int(last.ev_seg[len(last.ev_seg) - over - 1]) + 1
                    if k < len(last.seg_trace):
                        parts[-1], rest = last.split(k)
                raw = _join(parts, row0)
                row0 += len(raw.ev_seg)
                parts = [rest] if rest is not None else []
                events = len(rest.ev_seg) if rest is not None else 0
                if len(raw.ev_seg):
                    yield _build(raw, source)
    except etree.XMLSyntaxError:
        raise _Fallback from None


# --------------------------------------------------------------------------- typing


def _parse_date(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip())
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low not in ("true", "false", "1", "0"):
        raise ValueError(text)
    return low in ("true", "1")


_PARSERS: dict[int, Callable[[str], Any]] = {
    _STR: str, _DATE: _parse_date, _INT: int, _FLOAT: float, _BOOL: _parse_bool}
_ARROW = {_STR: pa.string(), _DATE: _TS_UTC, _INT: pa.int64(), _FLOAT: pa.float64(), _BOOL: pa.bool_()}


def _typed(t: int, text: pa.Array, row_of: Callable[[int], int | None], source: str, column: str) -> pa.Array:
    """Raw strings -> the Arrow type of XES type ``t``; vectorised, per value only for odd input."""
    try:
        if t == _STR:
            return text
        if t == _DATE:
            try:
                return text.cast(pa.timestamp("ns", tz="UTC")).cast(_TS_UTC, safe=False)
            except pa.ArrowInvalid:  # no offset: the value is UTC
                return text.cast(pa.timestamp("ns")).cast(_TS_UTC, safe=False)
        if t == _BOOL:
            low = pc.utf8_lower(pc.utf8_trim_whitespace(text))
            truth = pc.is_in(low, pa.array(["true", "1"]))
            if pc.all(pc.or_(truth, pc.is_in(low, pa.array(["false", "0"])))).as_py():
                return truth
            raise pa.ArrowInvalid("not a boolean")
        return text.cast(_ARROW[t])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parse, out = _PARSERS[t], []
    for i, value in enumerate(text.to_pylist()):
        try:
            out.append(parse(value))
        except (ValueError, OverflowError):
            kind = TimestampError if t == _DATE else DataError
            raise kind(f"invalid {_TYPE_NAMES[t]} value {value!r}", source=source, row=row_of(i),
                       column=column) from None
    try:
        return pa.array(out, _ARROW[t])
    except (pa.ArrowInvalid, OverflowError) as exc:
        raise DataError(f"{_TYPE_NAMES[t]} value out of range ({exc})", source=source, column=column) from None


def _build(raw: _Raw, source: str) -> pa.Table:
    """Pivot one batch of raw attribute values into typed columns, one row per event."""
    n, nseg, w = len(raw.ev_seg), len(raw.seg_trace), raw.where
    is_ev = w >= 0
    seg = np.where(is_ev, 0, -w - 1)
    keep = is_ev | (np.bincount(raw.ev_seg, minlength=nseg) > 0)[seg]  # traces without events add no column
    enc = pc.dictionary_encode(raw.keys)
    names = enc.dictionary.to_pylist()
    group = np.where(is_ev, 0, len(names)) + enc.indices.to_numpy(zero_copy_only=False)
    sel = np.flatnonzero(keep)
    order = sel[np.argsort(group[sel], kind="stable")]
    grouped = group[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if len(order) else order
    bounds = zip(starts.tolist(), [*starts[1:].tolist(), len(order)], strict=True)
    seg_first = np.searchsorted(raw.ev_seg, np.arange(nseg))
    built: list[tuple[tuple[int, int, int], str, pa.Array]] = []
    for lo, hi in bounds:
        idx = order[lo:hi]
        event, key = grouped[lo] < len(names), names[grouped[lo] % len(names)]
        if event and key.startswith("__"):
            continue
        pos = w[idx] if event else seg[idx]
        last = np.r_[pos[1:] != pos[:-1], True]
        if not last.all():  # a key repeated within one element: the last value wins
            idx, pos = idx[last], pos[last]
        rows = pos if event else seg_first[pos]
        found = np.unique(raw.types[idx])
        column = key if event else CASE_PREFIX + key

        def row_of(i: int, rows: np.ndarray = rows) -> int:
            return raw.row0 + int(rows[i])

        arr = _typed(int(found[0]) if len(found) == 1 else _STR, raw.values.take(idx), row_of, source, column)
        size = n if event else nseg
        if len(pos) != size:
            spread = np.full(size, -1, dtype=np.int64)
            spread[pos] = np.arange(len(pos))
            arr = arr.take(pa.array(spread, mask=spread < 0))
        # pm4py's column order: first appearance, a row's event attributes before its trace's
        first = (int(rows[0]), 0 if event else 1, int(order[lo]))
        built.append((first, column, arr if event else arr.take(raw.ev_seg)))
    columns: dict[str, pa.Array] = {}
    for (_, scope, _), name, arr in sorted(built, key=lambda b: b[0]):
        if name in columns:  # an event attribute named "case:...": the trace value wins, as in pm4py
            trace_arr, event_arr = (arr, columns[name]) if scope else (columns[name], arr)
            if trace_arr.type != event_arr.type:
                trace_arr, event_arr = trace_arr.cast(pa.string()), event_arr.cast(pa.string())
            arr = pc.coalesce(trace_arr, event_arr)
        columns[name] = arr
    columns[ROW_COLUMN] = pa.array(np.arange(raw.row0, raw.row0 + n, dtype=np.int64))
    columns[TRACE_COLUMN] = pa.array(raw.seg_trace[raw.ev_seg])
    return pa.table(columns)


# --------------------------------------------------------------------------- reader API


def iter_xes_batches(path: str | os.PathLike[str], *, batch_size: int = 100_000) -> Iterator[pa.Table]:
    """Yield the events of an XES file as Arrow tables of about ``batch_size`` rows, in file order.

    Raises :class:`SourceFormatError` for a file that is not XES or a broken
    gzip stream, :class:`TimestampError` for an unparseable date and
    :class:`DataError` for another unparseable value. A log without events
    yields nothing.
    """
    if batch_size < 1:
        raise InvalidArgumentError("batch_size must be at least 1", parameter="batch_size")
    source, done = os.fspath(path), 0
    try:
        for table in _fast_batches(source, batch_size):
            done += table.num_rows
            yield table
        return
    except _Fallback:
        pass
    for raw in _Reader(source, batch_size).batches():
        if raw.row0 + len(raw.ev_seg) > done:  # skip what the fast path already yielded
            table = _build(raw, source)
            yield table.slice(done - raw.row0) if raw.row0 < done else table


def read_xes_log_attributes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the log-level attributes (those before the first trace), typed and flattened like events."""
    source = os.fspath(path)
    reader = _Reader(source, 1, header=True)
    for _ in reader.batches():
        pass
    return {key: _typed(t, pa.array([value]), lambda i: None, source, key)[0].as_py()
            for key, (t, value) in reader.log_attrs.items()}


# --------------------------------------------------------------------------- writer

_HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0" xmlns="http://www.xes-standard.org/">
\t<extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
\t<extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
\t<extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
\t<extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
\t<classifier name="Activity" keys="concept:name"/>
"""
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("\t", "&#9;"), ("\n", "&#10;"),
            ("\r", "&#13;"))
_NOT_XML = "[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"  # characters XML 1.0 cannot carry at all


def _escape(text: pa.Array) -> pa.Array:
    """Escape strings for a double-quoted XML attribute, dropping characters XML cannot carry."""
    if pc.any(pc.match_substring_regex(text, '[&<>"\t\n\r]|' + _NOT_XML)).as_py():
        text = pc.replace_substring_regex(text, _NOT_XML, "")
        for char, entity in _ESCAPES:
            text = pc.replace_substring(text, char, entity)
    return text


def _xml_attr(key: str, col: pa.Array) -> pa.Array:
    """One ``<type key=... value=.../>`` element per row, typed by the Arrow type (null where the value is)."""
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        col = col.cast(pa.timestamp("ms")) if pa.types.is_date(t) else col  # naive values are UTC
        ms = col.cast(pa.timestamp(col.type.unit, tz="UTC")).cast(pa.timestamp("ms", tz="UTC"), safe=False)
        tag, text = "date", pc.binary_join_element_wise(pc.strftime(ms, format="%Y-%m-%dT%H:%M:%S"), "+00:00", "")
    elif pa.types.is_integer(t) or pa.types.is_boolean(t):
        tag, text = "int" if pa.types.is_integer(t) else "boolean", col.cast(pa.string())
    elif pa.types.is_floating(t):  # xs:double spells NaN and INF
        text = pc.replace_substring_regex(col.cast(pa.float64()).cast(pa.string()), "^nan$", "NaN")
        tag, text = "float", pc.replace_substring_regex(text, "inf$", "INF")
    else:
        tag = "string"
        try:
            text = _escape(col.cast(pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # lists, structs, ...: their Python text
            text = _escape(pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string()))
    key_text = _escape(pa.array([key])).to_pylist()[0]
    return pc.binary_join_element_wise(f'<{tag} key="{key_text}" value="', text, '"/>', "")


def _joined(frags: list[pa.Array], sep: str, n: int) -> pa.Array:
    """Concatenate per-row fragments, each preceded by ``sep``; nulls are left out."""
    if not frags:
        return pa.array([""] * n, pa.string())
    return pc.binary_join_element_wise(*[pc.binary_join_element_wise(sep, f, "").fill_null("") for f in frags], "")


def _render(batch: pa.RecordBatch, case_column: str, new_first: bool, trace_open: bool) -> str:
    """The XML of one batch: events, with trace tags where the case changes."""
    names = [c for c in batch.schema.names if not c.startswith("__")]
    codes = pc.dictionary_encode(batch.column(case_column)).indices.fill_null(-1).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[new_first, codes[1:] != codes[:-1]])
    heads = batch.take(pa.array(starts))
    trace_cols = [c for c in names if c.startswith(CASE_PREFIX)]
    if not case_column.startswith(CASE_PREFIX) and "case:concept:name" not in trace_cols:
        trace_cols.insert(0, case_column)
    frags = [_xml_attr("concept:name" if c == case_column else c[len(CASE_PREFIX):], heads.column(c))
             for c in trace_cols]
    closing = pa.array(["\t</trace>\n" if trace_open or i else "" for i in range(len(starts))], pa.string())
    head = pc.binary_join_element_wise(closing, "\t<trace>", _joined(frags, "\n\t\t", len(starts)), "\n", "")
    spread = np.full(batch.num_rows, -1, dtype=np.int64)
    spread[starts] = np.arange(len(starts))
    events = [_xml_attr(c, batch.column(c)) for c in names if not c.startswith(CASE_PREFIX)]
    rows = pc.binary_join_element_wise(head.take(pa.array(spread, mask=spread < 0)).fill_null(""), "\t\t<event>",
                                       _joined(events, "\n\t\t\t", batch.num_rows), "\n\t\t</event>\n", "")
    return "".join(rows.to_pylist())


def write_xes(batches: Iterable[pa.Table] | pa.Table, path: str | os.PathLike[str], *,
              case_column: str = "case:concept:name", gzip: bool | None = None) -> int:
    """Write events, ordered by case, as an XES document; return the number of events written.

    Consecutive rows with the same ``case_column`` value form one ``<trace>``.
    ``case:`` columns become trace attributes taken from the trace's first row
    (a ``case_column`` without the prefix also names the trace), the others
    event attributes, typed by Arrow type: timestamp/date -> ``date`` (UTC,
    milliseconds), integer -> ``int``, floating -> ``float``, bool ->
    ``boolean``, anything else -> ``string``. Nulls and ``__`` columns are left
    out. Gzip when ``gzip`` is true or, if None, when the path ends in ``.gz``.
    The file appears under its name only once complete.
    """
    target = os.fspath(path)
    compress = target.lower().endswith(".gz") if gzip is None else gzip
    tables = [batches] if isinstance(batches, (pa.Table, pa.RecordBatch)) else batches
    tmp = f"{target}.tmp-{os.getpid()}"
    written, last_case = 0, None
    try:
        with open(tmp, "wb") as raw, (_gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if compress else raw) as out:
            out.write(_HEADER.encode())
            for table in tables:
                if case_column not in table.schema.names:
                    raise InvalidArgumentError(f"case_column {case_column!r} is not a column of the events "
                                               f"(columns: {', '.join(table.schema.names)})", parameter="case_column")
                for batch in (b for b in pa.table(table).to_batches(max_chunksize=65_536) if b.num_rows):
                    case = batch.column(case_column)
                    new_first = not written or case[0].as_py() != last_case
                    out.write(_render(batch, case_column, new_first, written > 0).encode())
                    written, last_case = written + batch.num_rows, case[batch.num_rows - 1].as_py()
            out.write(("\t</trace>\n</log>\n" if written else "</log>\n").encode())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return written
