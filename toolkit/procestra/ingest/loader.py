"""Load event logs into the store: map columns, normalise timestamps to UTC, check, commit.

A load runs in two phases so that the store's writer lock is held only briefly:

1. *Staging* (no lock): the source is read into a private in-memory DuckDB (bounded,
   spilling to the workspace's ``tmp/``), columns are mapped to roles, timestamps parsed and
   converted to UTC, bad rows found and the quality report made. Any error here
   leaves the store untouched by construction.
2. *Commit* (writer lock): one transaction streams the staged tables across (Arrow) and creates,
   replaces or appends the log's tables and catalogue rows. A failure rolls back.

Idempotency: a load is identified by the source's content hash and the options
that shape the result (mapping, format, timezone, ...). Loading the same pair into
the same log again is a no-op that says so. ``mode="append"`` adds only events
whose key ``(case_id, activity, ts, lifecycle, resource)`` is not yet in the log.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from procestra.errors import DataError, InvalidArgumentError, TimestampError, UserError
from procestra.ingest.quality import QualityIssue, QualityReport, check_quality
from procestra.ingest.sources import CONVERT_ERROR_RE, SourceInfo, detect_kind, file_hash, mask_url, read_source
from procestra.progress import Progress, progress_display
from procestra.schema import LogSchema, detect_schema, quote_ident, table_names, unique_names
from procestra.store import catalogue
from procestra.store.catalogue import validate_log_name
from procestra.store.testpoints import pause_point

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["LoadResult", "ingest", "validate_log_name"]

Mode = Literal["create", "replace", "append"]

_ISO_TZ_RE = r"\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?|\s?[A-Za-z]+/[A-Za-z_]+(/[A-Za-z_]+)?|\s?UTC|\s?GMT)\s*$"
_CANDIDATE_FORMATS = (
    "%d-%m-%Y %H:%M:%S", "%d-%m-%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p",
    "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
    "%Y%m%d%H%M%S", "%Y%m%d %H:%M:%S", "%d %b %Y %H:%M:%S", "%d %B %Y %H:%M:%S",
    "%b %d, %Y %H:%M:%S", "%a, %d %b %Y %H:%M:%S %z",
    "%d-%m-%Y", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d",
)
_EPOCH_FORMATS = {"epoch": 1.0, "epoch_s": 1.0, "epoch_ms": 1e-3, "epoch_us": 1e-6}
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL")
_RESERVED_CASE_COLUMNS = {"case_id", "n_events", "first_ts", "last_ts"}


@dataclass(frozen=True)
class LoadResult:
    """The outcome of one load: what happened, how much, and the quality report."""

    log: str
    status: str  # "loaded", "replaced", "appended" or "unchanged"
    events_added: int
    events: int
    cases: int
    quality: QualityReport
    source: str
    seconds: float
    message: str

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log, "status": self.status, "events_added": self.events_added,
            "events": self.events, "cases": self.cases, "source": self.source,
            "seconds": round(self.seconds, 3), "message": self.message,
            "quality": self.quality.to_dict(),
        }

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(self.message)}</p>" + self.quality._repr_html_()


def _check_timezone(tz: str) -> str:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise TimestampError(
            f"unknown timezone {tz!r}; use an IANA name such as Europe/Amsterdam or UTC"
        ) from None
    return tz


def _options_hash(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ingest(
    workspace: Home,
    source: Any,
    *,
    log: str,
    schema: LogSchema | None = None,
    mode: Mode = "create",
    timestamp_format: str | None = None,
    timezone: str = "UTC",
    delimiter: str | None = None,
    encoding: str | None = None,
    sql: str | None = None,
    on_bad_rows: Literal["fail", "drop"] = "fail",
    progress: Progress | bool = True,
) -> LoadResult:
    """Load ``source`` (a path, a database URL with ``sql``, or a DataFrame) as log ``log``.

    ``schema`` maps column roles (auto-detected where not given); naive timestamps are
    read in ``timezone`` and stored in UTC. Values that are present but unparseable
    fail the load unless ``on_bad_rows="drop"``; rows lacking a case, activity or
    timestamp are always dropped and reported. The store changes only if the whole
    load succeeds. ``progress`` is a callback ``(stage, done, total)``, or True for a
    display that appears when the load lasts more than a second.

    >>> ws = Workspace.init("ws")
    >>> ingest(ws, "orders.csv", log="orders", timezone="Europe/Amsterdam").quality
    """
    if callable(progress):
        return _ingest(workspace, source, log, schema, mode, timestamp_format, timezone, delimiter,
                       encoding, sql, on_bad_rows, progress)
    with progress_display(bool(progress)) as report:
        return _ingest(workspace, source, log, schema, mode, timestamp_format, timezone, delimiter,
                       encoding, sql, on_bad_rows, report)


def _ingest(
    workspace: Home, source: Any, log: str, schema: LogSchema | None, mode: Mode,
    timestamp_format: str | None, timezone: str, delimiter: str | None, encoding: str | None,
    sql: str | None, on_bad_rows: str, report: Progress,
) -> LoadResult:
    started = time.perf_counter()
    validate_log_name(log)
    if mode not in ("create", "replace", "append"):
        raise InvalidArgumentError(f"mode must be create, replace or append, not {mode!r}", parameter="mode")
    if on_bad_rows not in ("fail", "drop"):
        raise InvalidArgumentError(f"on_bad_rows must be 'fail' or 'drop', not {on_bad_rows!r}",
                                   parameter="on_bad_rows")
    _check_timezone(timezone)
    if timestamp_format is not None and not timestamp_format.strip():
        raise InvalidArgumentError("the timestamp format is empty", parameter="timestamp_format")
    if delimiter is not None and len(delimiter) != 1:
        raise InvalidArgumentError(f"the delimiter must be one character, not {delimiter!r}",
                                   parameter="delimiter")
    schema = schema or LogSchema()
    kind = detect_kind(source)
    shown = mask_url(str(source)) if kind in ("sqlite", "postgres") else (
        str(source) if kind != "frame" else "DataFrame")
    options = {
        "schema": schema.to_json(), "timestamp_format": timestamp_format, "timezone": timezone,
        "delimiter": delimiter, "encoding": encoding, "sql": sql, "on_bad_rows": on_bad_rows,
    }
    opt_hash = _options_hash(options)
    store = workspace.store

    # Cheap idempotency check before any work, for files.
    known_hash: str | None = None
    if kind not in ("frame", "sqlite", "postgres") or (kind == "sqlite" and Path(str(source)).is_file()):
        path = Path(str(source))
        if path.is_file() and path.stat().st_size > 0:
            report("hashing", 0, None)
            known_hash = file_hash(path)
            if _already_loaded(workspace, log, mode, known_hash, opt_hash):
                return _unchanged(workspace, log, shown, started)

    # Stage in memory (bounded, spilling to tmp/), outside the store's lock.
    info: SourceInfo | None = None
    spill = workspace.tmp_dir / f"spill-{uuid.uuid4().hex}"
    con = duckdb.connect(":memory:")
    counting: concurrent.futures.Future[int] | None = None
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET temp_directory = {_lit(str(spill))}")
        con.execute("SET memory_limit = ?", [os.environ.get("PROCESTRA_STAGING_MEMORY", "1GB")])
        info = read_source(
            con, source, kind=kind, sql=sql, delimiter=delimiter, encoding=encoding,
            string_columns=lambda names: _text_roles(names, schema), progress=report,
            tmp_dir=workspace.tmp_dir, content_hash=known_hash,
        )
        report("mapping and checking", 0, None)
        # The variants are counted on a second cursor from the moment the events are staged, while
        # the checks run and the commit copies the tables (DuckDB runs both without the GIL), so
        # the count costs next to nothing. An append is recounted over the whole log at commit,
        # so counting its batch here (the outbox flush appends every few seconds) would be wasted.
        def count_from_here() -> None:
            nonlocal counting
            if mode != "append":
                counting = _counter.submit(_count_staged_variants, con.cursor())

        quality, mapping = _stage(con, info, schema, timestamp_format, timezone, on_bad_rows, count_from_here)
        if kind in ("frame", "sqlite", "postgres") and _already_loaded(
            workspace, log, mode, info.content_hash, opt_hash
        ):
            return _unchanged(workspace, log, info.name, started)
        report("writing to the store", 0, None)
        status, added = _commit(workspace, con, log, mode, info, mapping, options, opt_hash, quality,
                                counting)
    finally:
        if counting is not None:
            concurrent.futures.wait([counting])
        con.close()
        if info is not None and info.cleanup is not None:
            info.cleanup()
        shutil.rmtree(spill, ignore_errors=True)
    if status == "unchanged":
        return _unchanged(workspace, log, info.name, started)
    # What mining precomputes (variants, per-case order: stats.derive) is built on first use,
    # so that a load costs only the load; readers never use derived data of older contents.
    with store.read() as rcon:
        row = catalogue.log_row(rcon, log)
    seconds = time.perf_counter() - started
    verb = {"loaded": "loaded", "replaced": "replaced", "appended": "appended"}[status]
    message = (
        f"{verb} {added:,} events into log {log!r} from {info.name} in {seconds:.2f}s "
        f"(log now has {row['events']:,} events, {row['cases']:,} cases)"
    )
    return LoadResult(log, status, added, int(row["events"]), int(row["cases"]), quality,
                      info.name, seconds, message)


def _text_roles(names: list[str], schema: LogSchema) -> list[str]:
    """Columns a text reader should keep as text: ids and timestamps (we parse those)."""
    try:
        full = detect_schema(names, schema)
    except DataError:
        return []  # _stage reports the mapping problem with the full picture
    return [c for c in (full.case, full.timestamp, full.start_timestamp) if c]


def _lit(text: str) -> str:
    """An SQL string literal for a path we generated ourselves (never user data)."""
    return "'" + text.replace("'", "''") + "'"


def _already_loaded(workspace: Home, log: str, mode: Mode, content_hash: str, opt_hash: str) -> bool:
    store = workspace.store
    if not store.path.exists():
        return False
    with store.read() as con:
        counts = catalogue.load_counts(con, log, content_hash, opt_hash)
    if counts is None:
        return False
    current_hash, n_loads, n_same = counts
    if mode == "append":
        return bool(n_same)
    # create/replace: unchanged only when the log is exactly that one load.
    return bool(n_same) and n_loads == 1 and current_hash == content_hash


def _unchanged(workspace: Home, log: str, shown: str, started: float) -> LoadResult:
    store = workspace.store
    with store.read() as con:
        row = catalogue.log_row(con, log)
    quality = QualityReport.from_dict(json.loads(row["quality"])) if row["quality"] else QualityReport()
    seconds = time.perf_counter() - started
    return LoadResult(
        log, "unchanged", 0, int(row["events"]), int(row["cases"]), quality, shown, seconds,
        f"log {log!r} already holds this content from {shown} with the same options; nothing to do "
        "(use --replace to load it again)",
    )


# -- staging -----------------------------------------------------------------------
def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position", [table]
    ).fetchall()


def _ts_expr(
    con: duckdb.DuckDBPyConnection, column: str, typ: str, fmt: str | None, role: str, source: str,
    tz: str,
) -> tuple[str, str | None]:
    """SQL that parses ``column`` to TIMESTAMPTZ (using ``$tz``), and the parser chosen."""
    q = quote_ident(column)
    base = typ.split("(")[0].upper()
    if fmt in _EPOCH_FORMATS:
        if base not in _NUMERIC and base != "VARCHAR":
            raise TimestampError(f"cannot read {base} values as Unix times", source=source, column=column)
        return f"to_timestamp(TRY_CAST({q} AS DOUBLE) * {_EPOCH_FORMATS[fmt]})", fmt
    if base == "TIMESTAMP WITH TIME ZONE":
        return q, None
    if base.startswith("TIMESTAMP") or base == "DATE":
        return f"timezone($tz, CAST({q} AS TIMESTAMP))", None
    if base in _NUMERIC:
        raise TimestampError(
            f"holds numbers ({typ}), not timestamps; pass --timestamp-format epoch or epoch_ms "
            "if they are Unix times", source=source, column=column,
        )
    if base != "VARCHAR":
        raise TimestampError(
            f"has type {typ}, which is not a timestamp; map the {role.replace('_', ' ')} to a "
            "column of dates or date strings", source=source, column=column,
        )
    if fmt:
        aware = "%z" in fmt or "%Z" in fmt
        try:
            con.execute("SELECT try_strptime('2000-01-01', ?)", [fmt])
        except duckdb.Error as exc:
            raise InvalidArgumentError(
                f"invalid timestamp format {fmt!r}: {str(exc).splitlines()[0]}",
                parameter="timestamp_format",
            ) from None
        parsed = f"try_strptime(trim({q}), {_fmt_param(fmt)})"
        return (parsed if aware else f"timezone($tz, {parsed})"), fmt
    if tz == "UTC":
        # A TIMESTAMPTZ cast reads offsets and takes naive values as UTC: one cast does both.
        iso = f"TRY_CAST({q} AS TIMESTAMPTZ)"  # the cast itself skips surrounding spaces
    else:
        iso = (
            f"CASE WHEN regexp_matches({q}, '{_ISO_TZ_RE}') THEN TRY_CAST({q} AS TIMESTAMPTZ) "
            f"ELSE timezone($tz, TRY_CAST({q} AS TIMESTAMP)) END"
        )
    # Choose the parser that reads most of a sample: ISO 8601 or one known format.
    sample = f"(SELECT {q} AS v FROM raw WHERE nullif(trim({q}), '') IS NOT NULL LIMIT 20000)"
    n_iso, n = con.execute(
        f"SELECT count(*) FILTER (WHERE TRY_CAST(trim(v) AS TIMESTAMP) IS NOT NULL), count(*) FROM {sample}"
    ).fetchall()[0]
    if n == 0 or n_iso == n:
        return iso, "ISO 8601"
    best, best_n = "ISO 8601", n_iso
    for cand in _CANDIDATE_FORMATS:
        k = con.execute(
            f"SELECT count(*) FILTER (WHERE try_strptime(trim(v), ?) IS NOT NULL) FROM {sample}", [cand]
        ).fetchall()[0][0]
        if k > best_n:
            best, best_n = cand, k
    if best == "ISO 8601":
        return iso, best
    aware = "%z" in best
    parsed = f"try_strptime(trim({q}), {_fmt_param(best)})"
    return (parsed if aware else f"timezone($tz, {parsed})"), best


_FORMAT_PARAMS: dict[str, str] = {}


def _fmt_param(fmt: str) -> str:
    """A named parameter for a strptime format (bound later, never formatted into SQL)."""
    name = _FORMAT_PARAMS.setdefault(fmt, f"fmt{len(_FORMAT_PARAMS)}")
    return "$" + name


def _stage(
    con: duckdb.DuckDBPyConnection, info: SourceInfo, given: LogSchema, fmt: str | None,
    tz: str, on_bad_rows: str, staged: Callable[[], None] = lambda: None,
) -> tuple[QualityReport, LogSchema]:
    """Build ``stg`` (events), ``ea`` (attributes) and ``ca`` (cases) from ``raw``.

    ``staged`` is called once ``stg`` holds its final rows, before the slower checks.
    """
    src = info.name
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "raw" not in tables or info.rows == 0:
        what = "the query returned no rows" if info.kind in ("sqlite", "postgres") else (
            "no events: the source has a header but no data rows" if "raw" in tables else "no events in the source")
        raise DataError(what, source=src)
    cols = _columns(con, "raw")
    names = [c for c, _ in cols]
    types = dict(cols)
    schema = detect_schema(names, given, source=src)
    auto_case = tuple(c for c in names if c.startswith("case:") and c != schema.case
                      and c not in schema.case_attributes and c not in schema.roles().values())
    schema = replace(schema, case_attributes=tuple(schema.case_attributes) + auto_case)

    for role in ("case", "activity", "lifecycle", "resource"):
        col = getattr(schema, role)
        if col and types[col].startswith(("STRUCT", "MAP")) or (col and types[col].endswith("[]")):
            raise DataError(f"has type {types[col]}; the {role} must be a plain value",
                            source=src, column=col)

    assert schema.timestamp is not None  # detect_schema maps every required role or raises
    ts_sql, ts_parser = _ts_expr(con, schema.timestamp, types[schema.timestamp], fmt, "timestamp", src, tz)
    if schema.start_timestamp:
        st_sql, _ = _ts_expr(con, schema.start_timestamp, types[schema.start_timestamp], fmt,
                             "start_timestamp", src, tz)
    else:
        st_sql = "CAST(NULL AS TIMESTAMPTZ)"

    def text(col: str | None) -> str:
        if not col:
            return "CAST(NULL AS VARCHAR)"
        q = quote_ident(col)
        return f"nullif({q}, '')" if types[col] == "VARCHAR" else f"nullif(CAST({q} AS VARCHAR), '')"

    params: dict[str, Any] = {"tz": tz} if "$tz" in ts_sql + st_sql else {}
    params.update({name: f for f, name in _FORMAT_PARAMS.items() if f"${name}" in ts_sql + st_sql})

    # Attributes: everything that is not a role, typed as read, carried along under prefixed names.
    role_cols = set(schema.roles().values())
    case_cols = list(dict.fromkeys(schema.case_attributes))
    event_cols = [c for c in names if c not in role_cols and c not in case_cols]
    carried = "".join(f", {quote_ident(c)} AS {quote_ident('ea:' + c)}" for c in event_cols)
    carried += "".join(f", {quote_ident(c)} AS {quote_ident('ca:' + c)}" for c in case_cols)
    pass_on = "".join(f", {quote_ident('ea:' + c)}" for c in event_cols)
    pass_on += "".join(f", {quote_ident('ca:' + c)}" for c in case_cols)
    # The raw timestamp text is kept only for rows whose timestamp did not parse ('' = missing).
    # One pass over the source: parse, map and carry attributes into stg0. Its rowid is the
    # source position (insertion order is kept), which becomes event_id.
    stage_sql = f"""CREATE OR REPLACE TABLE stg0 AS SELECT __dup, case_id, activity,
            ts, start_ts, lifecycle, resource,
            CASE WHEN ts IS NULL THEN coalesce(__tsx, '') END AS __ts_bad,
            CASE WHEN start_ts IS NULL THEN __stx END AS __st_bad{pass_on}
        FROM (SELECT hash(raw) AS __dup, {text(schema.case)} AS case_id,
                     {text(schema.activity)} AS activity, {ts_sql} AS ts, {st_sql} AS start_ts,
                     {text(schema.lifecycle)} AS lifecycle, {text(schema.resource)} AS resource,
                     {text(schema.timestamp)} AS __tsx, {text(schema.start_timestamp)} AS __stx{carried}
              FROM raw)"""
    for _ in range(len(names) + 1):
        try:
            con.execute(stage_sql, params)
            break
        except duckdb.ConversionException as exc:
            m = CONVERT_ERROR_RE.search(str(exc))
            if m and info.retype is not None and info.retype(m.group("col").replace('""', '"')):
                continue
            raise (info.explain(exc) if info.explain else exc) from None
        except duckdb.Error as exc:
            if info.explain is None:
                raise
            raise info.explain(exc) from None
    rows = int(con.execute("SELECT count(*) FROM stg0").fetchall()[0][0])
    if info.check_rows is not None:
        info.check_rows(rows)
    if rows == 0:
        raise DataError("no events: the source has a header but no data rows", source=src)
    info = replace(info, rows=rows)
    con.execute("DROP VIEW IF EXISTS raw" if "raw" not in _base_tables(con) else "DROP TABLE raw")
    issues: list[QualityIssue] = []
    bad_ts = con.execute(
        "SELECT rowid + 1, __ts_bad FROM stg0 WHERE __ts_bad <> '' ORDER BY rowid LIMIT 10"
    ).fetchall()
    bad_st = con.execute(
        "SELECT rowid + 1, __st_bad FROM stg0 WHERE __st_bad IS NOT NULL ORDER BY rowid LIMIT 10"
    ).fetchall()
    if (bad_ts or bad_st) and on_bad_rows == "fail":
        column = schema.timestamp if bad_ts else schema.start_timestamp
        row, value = (bad_ts or bad_st)[0]
        raise TimestampError(_explain_bad_timestamp(con, value, ts_parser, fmt), source=src, row=int(row),
                             column=column)
    checks = (
        ("missing_case", "rows without a case id", "case_id IS NULL"),
        ("missing_activity", "rows without an activity", "case_id IS NOT NULL AND activity IS NULL"),
        ("missing_timestamp", "rows without a timestamp",
         "case_id IS NOT NULL AND activity IS NOT NULL AND __ts_bad = ''"),
        ("unparseable_timestamp", "rows with an unparseable timestamp",
         "case_id IS NOT NULL AND activity IS NOT NULL AND (__ts_bad <> '' OR __st_bad IS NOT NULL)"),
    )
    counts = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE {where})" for _, _, where in checks) + " FROM stg0"
    ).fetchall()[0]
    for (kind, message, where), n in zip(checks, counts):
        if n:
            sample = con.execute(
                f"SELECT rowid + 1, coalesce(nullif(__ts_bad, ''), __st_bad, '') FROM stg0 WHERE {where} "
                "ORDER BY rowid LIMIT 10"
            ).fetchall()
            examples = tuple(v for _, v in sample) if kind == "unparseable_timestamp" else ()
            issues.append(QualityIssue(kind, int(n), message, tuple(int(r) for r, _ in sample), examples,
                                       "dropped"))
    keep = "case_id IS NOT NULL AND activity IS NOT NULL AND ts IS NOT NULL AND __st_bad IS NULL"
    if any(counts):
        con.execute(f"DELETE FROM stg0 WHERE NOT ({keep})")
    con.execute("CREATE VIEW stg AS SELECT rowid AS event_id, rowid + 1 AS __row, case_id, activity, ts, "
                "start_ts, lifecycle, resource, __dup FROM stg0")
    staged()
    ev_names = unique_names(event_cols, reserved={"event_id"})
    select = "".join(f", {quote_ident('ea:' + c)} AS {quote_ident(n)}" for c, n in zip(event_cols, ev_names))
    con.execute(f"CREATE TABLE ea AS SELECT rowid AS event_id{select} FROM stg0")
    ca_names = unique_names([c[5:] if c.startswith("case:") else c for c in case_cols], reserved=_RESERVED_CASE_COLUMNS)
    agg = "".join(
        f", arg_min({quote_ident('ca:' + c)}, rowid) FILTER (WHERE {quote_ident('ca:' + c)} IS NOT NULL) "
        f"AS {quote_ident(n)}"
        for c, n in zip(case_cols, ca_names)
    )
    con.execute(
        f"CREATE TABLE ca AS SELECT case_id, count(*) AS n_events, min(ts) AS first_ts, "
        f"max(ts) AS last_ts{agg} FROM stg0 GROUP BY case_id ORDER BY min(rowid)"
    )
    events, cases, activities = con.execute(
        "SELECT count(*), (SELECT count(*) FROM ca), count(DISTINCT activity) FROM stg"
    ).fetchall()[0]
    if events == 0:
        reasons = "; ".join(f"{i.count:,} {i.message}" for i in issues)
        raise DataError(f"no events left to load: {reasons}", source=src)
    issues.extend(check_quality(con))
    report = QualityReport(rows_read=info.rows, events=int(events), cases=int(cases),
                           activities=int(activities), issues=issues)
    if ts_parser and ts_parser not in ("ISO 8601",) and not fmt:
        report.notes.append(f"timestamps read with the detected format {ts_parser!r}")
        if ts_parser.startswith(("%d/%m", "%m/%d", "%d-%m", "%d.%m")):
            report.notes.append("day/month order was guessed; pass --timestamp-format to be sure")
    return report, schema


def _base_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'").fetchall()}


def _explain_bad_timestamp(con: duckdb.DuckDBPyConnection, value: str, parser: str | None,
                           fmt: str | None) -> str:
    value = str(value)
    if re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
        return (f"{value!r} is a number, not a timestamp; pass --timestamp-format epoch or epoch_ms "
                "if the column holds Unix times")
    zone = re.search(r"\s([A-Za-z]+/[A-Za-z_]+(?:/[A-Za-z_]+)?)\s*$", value)
    if zone:
        try:
            zoneinfo.ZoneInfo(zone.group(1))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"unknown timezone {zone.group(1)!r} in timestamp {value!r}; use an IANA zone name or an offset"
    other = None
    if con.execute("SELECT TRY_CAST(trim(?) AS TIMESTAMP) IS NOT NULL", [value]).fetchall()[0][0]:
        other = "ISO 8601"
    else:
        for cand in _CANDIDATE_FORMATS:
            if con.execute("SELECT try_strptime(trim(?), ?) IS NOT NULL", [value, cand]).fetchall()[0][0]:
                other = cand
                break
    used = f"format {fmt!r}" if fmt else (f"the format {parser!r} used by the other rows" if parser else "a timestamp")
    if other and other != parser:
        return (f"mixed timestamp formats: {value!r} is {other}, not {used}; make the column "
                "consistent, or pass --on-bad-rows drop to skip such rows")
    return (f"cannot parse timestamp {value!r} with {used}; pass --timestamp-format "
            "(strftime codes, e.g. '%d-%m-%Y %H:%M') or --on-bad-rows drop")


# -- commit ------------------------------------------------------------------------
#: One thread that counts a staged load's variants while the load is copied into the store.
_counter = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="procestra-variants")


def _count_staged_variants(cursor: duckdb.DuckDBPyConnection) -> int:
    """The variants of staging table ``stg``, on a cursor of its own (closed afterwards)."""
    try:
        return catalogue.count_variants(cursor, "stg")
    finally:
        cursor.close()


def _commit(
    workspace: Home, staged: duckdb.DuckDBPyConnection, log: str, mode: Mode, info: SourceInfo,
    schema: LogSchema,
    options: dict[str, Any], opt_hash: str, quality: QualityReport,
    staged_variants: concurrent.futures.Future[int] | None,
) -> tuple[str, int]:
    store = workspace.store
    with store.write() as con:
        try:
            con.execute("BEGIN TRANSACTION")
            row = catalogue.find(con, log)
            if row is not None:
                _, n_loads, n_same = catalogue.load_counts(con, log, info.content_hash, opt_hash) or ("", 0, 0)
                if (mode == "append" and n_same) or (mode != "append" and n_same and n_loads == 1):
                    con.execute("ROLLBACK")
                    return "unchanged", 0
                if mode == "create":
                    raise UserError(
                        f"log {log!r} already exists with other content; pass --replace to replace it "
                        "or --append to add the new events"
                    )
            if row is None or mode == "replace":
                log_id, version, status = _create_tables(con, row, log)
                # Stream the staged tables across as Arrow batches: one pass, bounded memory.
                for target, query in zip(table_names(log_id), (
                    "SELECT event_id, case_id, activity, ts, start_ts, lifecycle, resource FROM stg",
                    "SELECT * FROM ea", "SELECT * FROM ca",
                )):
                    con.register("_staged", staged.cursor().sql(query).to_arrow_reader(1 << 17))
                    con.execute(f"CREATE TABLE {target} AS SELECT * FROM _staged")
                    con.unregister("_staged")
                added = quality.events
                content_hash = info.content_hash
                variants: int | None = staged_variants.result() if staged_variants is not None else None
            else:
                log_id, version = int(row[0]), int(row[1]) + 1
                for name in ("stg", "ea", "ca"):
                    con.register("_staged", staged.cursor().sql(f"SELECT * FROM {name}").to_arrow_reader(1 << 17))
                    con.execute(f"CREATE TEMP TABLE s_{name} AS SELECT * FROM _staged")
                    con.unregister("_staged")
                added = _append(con, log_id)
                status = "appended"
                variants = None  # counted over the whole log by the catalogue
                content_hash = hashlib.sha256((str(row[2]) + info.content_hash).encode()).hexdigest()
            catalogue.write_entry(con, catalogue.LogEntry(
                log_id=log_id, name=log, version=version, source=info.name, source_kind=info.kind,
                content_hash=content_hash, mapping=schema.to_json(), options=options,
                quality=quality.to_dict(), variants=variants))
            catalogue.record_load(con, catalogue.LoadRecord(
                log_id=log_id, version=version, mode=status, source=info.name,
                content_hash=info.content_hash, options_hash=opt_hash, rows_read=quality.rows_read,
                events_added=int(added)))
            pause_point("ingest.before-commit")
            con.execute("COMMIT")
            pause_point("ingest.after-commit")
            return status, int(added)
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise


def _create_tables(con: duckdb.DuckDBPyConnection, row: Any, log: str) -> tuple[int, int, str]:
    if row is None:
        return catalogue.next_log_id(con), 1, "loaded"
    log_id = int(row[0])
    for t in table_names(log_id):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return log_id, int(row[1]) + 1, "replaced"


def _append(con: duckdb.DuckDBPyConnection, log_id: int) -> int:
    """Insert staged events whose key is new; widen attribute tables; rebuild the case table."""
    ev, ea, ca = table_names(log_id)
    con.execute(
        f"""CREATE TEMP TABLE _new AS
        SELECT s.*, (SELECT coalesce(max(event_id), -1) + 1 FROM {ev}) + row_number() OVER (ORDER BY s.event_id) - 1
               AS new_id
        FROM s_stg s
        WHERE NOT EXISTS (
            SELECT 1 FROM {ev} e WHERE e.case_id = s.case_id AND e.activity = s.activity AND e.ts = s.ts
              AND e.lifecycle IS NOT DISTINCT FROM s.lifecycle AND e.resource IS NOT DISTINCT FROM s.resource)"""
    )
    added = con.execute("SELECT count(*) FROM _new").fetchall()[0][0]
    con.execute(f"INSERT INTO {ev} SELECT new_id, case_id, activity, ts, start_ts, lifecycle, resource "
                "FROM _new ORDER BY new_id")
    _widen(con, ea, "s_ea")
    con.execute(f"INSERT INTO {ea} BY NAME SELECT a.* EXCLUDE (event_id), n.new_id AS event_id "
                "FROM s_ea a JOIN _new n USING (event_id)")
    _widen(con, ca, "s_ca")
    con.execute(
        f"""CREATE TEMP TABLE _cases AS
        SELECT * FROM {ca}
        UNION ALL BY NAME SELECT * FROM s_ca WHERE case_id NOT IN (SELECT case_id FROM {ca})"""
    )
    con.execute(f"DELETE FROM {ca}")
    con.execute(
        f"""INSERT INTO {ca} BY NAME
        SELECT c.* EXCLUDE (n_events, first_ts, last_ts), e.n_events, e.first_ts, e.last_ts
        FROM _cases c JOIN (SELECT case_id, count(*) AS n_events, min(ts) AS first_ts, max(ts) AS last_ts
                            FROM {ev} GROUP BY case_id) e USING (case_id)"""
    )
    con.execute("DROP TABLE _cases")
    con.execute("DROP TABLE _new")
    return int(added)


def _widen(con: duckdb.DuckDBPyConnection, target: str, incoming: str) -> None:
    have = {c.lower(): (c, t) for c, t in con.execute(
        f"SELECT column_name, column_type FROM (DESCRIBE {target})").fetchall()}
    for col, typ in con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {incoming})").fetchall():
        if col.lower() not in have:
            con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(col)} {typ}")
        elif have[col.lower()][1] != typ:
            raise DataError(
                f"attribute {col!r} is {have[col.lower()][1]} in the log but {typ} in the new data; "
                "load it with --replace, or make the types agree"
            )
