"""Readers that turn a source (file, DataFrame, database query) into a raw staging table.

Each reader fills the table ``raw`` of a staging DuckDB connection with the
source's rows in source order (so ``rowid`` is the 0-based row number) and
returns a :class:`SourceInfo` with the content hash used for idempotent loads.
Readers only read; mapping, timestamp parsing and checks happen in ``ingest``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import duckdb
import pyarrow as pa

from procestra.errors import InvalidArgumentError, SourceConnectionError, SourceFormatError
from procestra.progress import Progress
from procestra.schema import quote_ident, unique_names

__all__ = ["SourceInfo", "detect_kind", "read_source"]

_KINDS_BY_SUFFIX = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".xes": "xes", ".json": "json", ".jsonl": "json", ".ndjson": "json",
    ".sqlite": "sqlite", ".sqlite3": "sqlite", ".db": "sqlite",
}
_URL_KINDS = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres"}


@dataclass(frozen=True)
class SourceInfo:
    """What was read: the kind, a display name (passwords masked) and the content hash.

    File readers leave ``raw`` as a lazy view, so that staging reads the file once;
    their hooks then retype a column (``retype``), explain a read error precisely
    (``explain``) and check the row count (``check_rows``) when staging runs. ``rows``
    is -1 until counted.
    """

    kind: str
    name: str
    content_hash: str
    rows: int
    retype: Callable[[str], bool] | None = None
    explain: Callable[[Exception], Exception] | None = None
    check_rows: Callable[[int], None] | None = None
    cleanup: Callable[[], None] | None = None


def detect_kind(source: Any) -> str:
    """The reader for ``source``: csv, parquet, xes, json, sqlite, postgres or frame."""
    if _is_frame(source):
        return "frame"
    text = str(source)
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower() if "://" in text else ""
    if scheme:
        if scheme not in _URL_KINDS:
            raise InvalidArgumentError(
                f"unsupported database URL scheme {scheme!r} in {mask_url(text)}; "
                "use sqlite:///path.sqlite or postgresql://user@host:port/dbname",
                parameter="source",
            )
        return _URL_KINDS[scheme]
    name = text.lower()
    if name.endswith(".xes.gz"):
        return "xes"
    if name.endswith(".csv.gz"):
        return "csv"
    suffix = Path(name).suffix
    if suffix in _KINDS_BY_SUFFIX:
        return _KINDS_BY_SUFFIX[suffix]
    raise InvalidArgumentError(
        f"cannot tell the format of {text!r} from its name; supported: .csv .tsv .parquet "
        ".xes .xes.gz .json .jsonl, a SQLite file, or a sqlite:// / postgresql:// URL",
        parameter="source",
    )


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and the catalogue."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _is_frame(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod.startswith("pandas") or isinstance(obj, (pa.Table, pa.RecordBatch))


def file_hash(path: Path) -> str:
    """SHA-256 of the file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SourceFormatError("no such file", source=str(path))
    if path.is_dir():
        raise SourceFormatError("is a directory, not a file", source=str(path))
    if path.stat().st_size == 0:
        raise SourceFormatError("the file is empty", source=str(path))
    if not os.access(path, os.R_OK):
        raise SourceFormatError("the file is not readable (permission denied)", source=str(path))


def read_source(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    *,
    kind: str | None = None,
    sql: str | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    string_columns: Callable[[list[str]], Iterable[str]] = lambda names: (),
    progress: Progress | None = None,
    tmp_dir: Path | None = None,
    content_hash: str | None = None,
) -> SourceInfo:
    """Fill table ``raw`` in ``con`` from ``source`` and describe what was read.

    ``string_columns(header)`` names the columns to read as text whatever their look
    (the timestamp and id roles), so that ``ingest`` parses them itself and can name
    the bad row. ``content_hash`` saves hashing a file the caller has hashed already.
    """
    kind = kind or detect_kind(source)
    progress = progress or (lambda stage, done, total: None)
    if kind == "frame":
        return _read_frame(con, source)
    if kind in ("sqlite", "postgres"):
        if not sql:
            raise InvalidArgumentError(
                "a database source needs a query: pass --sql 'SELECT ...'", parameter="sql"
            )
        return _read_sql(con, str(source), kind, sql, progress)
    if sql:
        raise InvalidArgumentError(
            f"--sql only applies to database sources, not to a {kind} file", parameter="sql"
        )
    path = Path(source)
    _check_file(path)
    progress("hashing", 0, None)
    content_hash = content_hash or file_hash(path)
    if kind == "csv":
        return _read_csv(con, path, content_hash, delimiter, encoding, string_columns, progress, tmp_dir)
    if kind == "parquet":
        return _read_parquet(con, path, content_hash)
    if kind == "json":
        return _read_json(con, path, content_hash)
    if kind == "xes":
        return _read_xes(con, path, content_hash, progress)
    raise InvalidArgumentError(f"unknown source kind {kind!r}", parameter="kind")


# -- CSV ---------------------------------------------------------------------------
def _open_bytes(path: Path) -> io.BufferedIOBase:
    """The bytes of a CSV, gunzipped when it is compressed (``.gz``, or the gzip magic)."""
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if f.read(2) == b"\x1f\x8b" or path.name.lower().endswith(".gz"):
        f.close()
        return gzip.GzipFile(path, "rb")
    f.seek(0)
    return f


_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _detect_encoding(path: Path) -> str:
    with _open_bytes(path) as f:
        head = f.read(1 << 20)
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # a character cut by the 1 MiB window
            return "utf-8"
    # Mostly UTF-8 with a few bytes that are not (a row pasted from a Latin-1 export): UTF-8, so
    # the bad row is an error naming it; read as Latin-1, every other non-ASCII character would be garbled.
    valid = len(_UTF8_MULTIBYTE.findall(head))
    if valid and valid >= _invalid_utf8(head):
        return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(head).best()
    multibyte = ("utf_16", "utf_32", "shift_jis", "cp932", "gb", "big5", "euc", "cp949", "johab")
    if best is not None and best.encoding.startswith(multibyte):
        return best.encoding
    # Short samples fool detectors; Western business exports are Windows-1252 or Latin-1.
    try:
        head.decode("cp1252")
    except UnicodeDecodeError:
        return best.encoding if best is not None else "latin-1"
    return "latin-1" if not any(0x80 <= b <= 0x9F for b in head) else "cp1252"


def _invalid_utf8(data: bytes) -> int:
    """How many byte sequences of ``data`` are not valid UTF-8."""
    return data.decode("utf-8", errors="replace").count("\ufffd")


def _bad_bytes_error(path: Path, encoding: str) -> SourceFormatError:
    """The error for a file whose bytes are not all valid ``encoding``: the first bad line and byte."""
    bad = _first_bad_line(path, encoding)
    line, byte = bad if bad is not None else (0, b"")
    where = f"byte 0x{byte[0]:02x} on line {line}" if byte else "a byte sequence at the end of the file"
    return SourceFormatError(
        f"is not valid {encoding} text: {where} (the other lines are {encoding}); fix that row, or pass "
        "--encoding (for example latin-1 or cp1252) to read the whole file in another encoding",
        source=str(path), row=line - 1 if line else None,
    )


def _first_bad_line(path: Path, encoding: str) -> tuple[int, bytes] | None:
    """The first line (1-based) whose bytes are not valid ``encoding``, and the bad byte; None if all are."""
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    with _open_bytes(path) as f:
        for lineno, line in enumerate(f, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as exc:
                return lineno, exc.object[exc.start:exc.start + 1]
    return None


_MAX_HEADER = 16 << 20  # characters of a CSV's header line


def _csv_dialect(path: Path, encoding: str, delimiter: str | None) -> tuple[str, list[str]]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding=encoding, errors="replace", newline="") as f:
        first = f.readline(_MAX_HEADER + 1)  # the whole header line, however wide (a 64 KiB sample cut it)
        if len(first) > _MAX_HEADER:
            raise SourceFormatError(f"the header line is longer than {_MAX_HEADER:,} characters; is this a CSV file?",
                                    source=str(path), row=0)
        sample = first + f.read(64 << 10)
    if not sample.strip():
        raise SourceFormatError("the file is empty", source=str(path))
    if delimiter is None:
        first = sample.splitlines()[0]
        counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
        delimiter = max(counts, key=lambda d: counts[d]) if max(counts.values()) > 0 else ","
    header = next(csv.reader(io.StringIO(sample), delimiter=delimiter))
    if not any(h.strip() for h in header):
        raise SourceFormatError("the first line is not a header of column names", source=str(path), row=1)
    names = unique_names([h.strip() or f"column{i}" for i, h in enumerate(header)])
    return delimiter, names


def _diagnose_csv(path: Path, encoding: str, delimiter: str, ncols: int) -> SourceFormatError | None:
    """Find the first bad line with Python's csv module, for a precise message."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=encoding, newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for lineno, row in enumerate(reader, start=1):
                if lineno > 1 and row and len(row) != ncols:
                    return SourceFormatError(
                        f"has {len(row)} fields but the header has {ncols} "
                        f"(line {reader.line_num}); fix the row or quote fields that contain {delimiter!r}",
                        source=str(path), row=lineno - 1,
                    )
    except UnicodeDecodeError:
        return _bad_bytes_error(path, encoding)
    return None


CONVERT_ERROR_RE = re.compile(r'converting column "(?P<col>(?:[^"]|"")+)"')
_LINE_RE = re.compile(r"Line: (\d+)")


def _read_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    content_hash: str,
    delimiter: str | None,
    encoding: str | None,
    string_columns: Callable[[list[str]], Iterable[str]],
    progress: Progress,
    tmp_dir: Path | None,
) -> SourceInfo:
    enc = encoding or _detect_encoding(path)
    try:
        "x".encode(enc)
    except LookupError:
        raise InvalidArgumentError(f"unknown encoding {enc!r}", parameter="encoding") from None
    delim, names = _csv_dialect(path, enc, delimiter)
    duck_enc = {"utf_8": "utf-8", "utf-8": "utf-8", "utf8": "utf-8", "ascii": "utf-8"}.get(
        enc.lower().replace("-sig", "").replace("_sig", ""))
    target = path
    tmp: Path | None = None
    if duck_enc is None:
        # DuckDB's relational reader takes UTF-8 only; transcode anything else once.
        tmp = Path(tempfile.mkstemp(suffix=".csv", dir=tmp_dir)[1])
        try:
            opener = gzip.open if path.name.lower().endswith(".gz") else open
            with opener(path, "rt", encoding=enc, newline="") as src, \
                    open(tmp, "w", encoding="utf-8", newline="") as dst:
                for block in iter(lambda: src.read(1 << 20), ""):
                    dst.write(block)
        except UnicodeDecodeError:
            tmp.unlink(missing_ok=True)
            raise _bad_bytes_error(path, enc) from None
        target, duck_enc = tmp, "utf-8"
    as_text = set(string_columns(names))
    types = {c: "VARCHAR" for c in names if c in as_text}
    progress("reading CSV", 0, None)

    def make_view() -> None:
        rel = con.read_csv(
            str(target), header=True, sep=delim, names=names, dtype=types or None,
            encoding=duck_enc, quotechar='"', escapechar='"',
        )
        rel.create_view("raw", replace=True)

    def retype(column: str) -> bool:
        """A later value does not fit the sniffed type: read that column as text."""
        if types.get(column) == "VARCHAR" or column not in names:
            return False
        types[column] = "VARCHAR"
        make_view()
        return True

    def explain(exc: Exception) -> Exception:
        precise = _diagnose_csv(path, enc, delim, len(names))
        if precise is not None:
            return precise
        msg = str(exc).split("\n")
        line = _LINE_RE.search(str(exc))
        return SourceFormatError(
            f"cannot read as CSV: {msg[0]}" + (f" {msg[2]}" if len(msg) > 2 and line else ""),
            source=str(path), row=int(line.group(1)) - 1 if line else None,
        )

    def check_rows(rows: int) -> None:
        # DuckDB's sniffer can give up on a small file and return no rows (it fails loudly on
        # large ones): count the records of small files, and never accept zero rows unchecked.
        small = target.stat().st_size < (16 << 20)
        if path.name.lower().endswith(".gz") or not (rows == 0 or small) or rows == _count_records(target):
            return
        precise = _diagnose_csv(path, enc, delim, len(names))
        if precise is not None:
            raise precise
        expected = _count_records(target, exact=True, delimiter=delim)
        if rows != expected:
            raise SourceFormatError(
                f"could read only {rows:,} of {expected:,} rows as CSV; check the quoting and "
                "delimiter (or pass --delimiter)", source=str(path),
            )

    def cleanup() -> None:
        if tmp is not None:
            tmp.unlink(missing_ok=True)

    try:
        make_view()
    except duckdb.Error as exc:
        cleanup()
        raise explain(exc) from None
    return SourceInfo("csv", str(path), content_hash, -1, retype, explain, check_rows, cleanup)


def _count_records(path: Path, *, exact: bool = False, delimiter: str = ",") -> int:
    """Data rows in a (UTF-8) CSV: by newlines (fast), or with Python's csv parser (``exact``)."""
    if exact:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            return sum(1 for row in csv.reader(f, delimiter=delimiter) if row) - 1
    lines = 0
    last = b"\n"
    blank = 0
    with open(path, "rb") as f:
        prev = b"\n"
        for block in iter(lambda: f.read(4 << 20), b""):
            lines += block.count(b"\n")
            blank += block.count(b"\n\n") + (1 if prev == b"\n" and block[:1] == b"\n" else 0)
            prev = block[-1:]
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return lines - blank - 1


# -- Parquet and JSON ----------------------------------------------------------------
def _read_parquet(con: duckdb.DuckDBPyConnection, path: Path, content_hash: str) -> SourceInfo:
    def explain(exc: Exception) -> Exception:
        return SourceFormatError(f"not a readable Parquet file: {str(exc).splitlines()[0]}", source=str(path))

    try:
        con.read_parquet(str(path)).create_view("raw", replace=True)
    except duckdb.Error as exc:
        raise explain(exc) from None
    return SourceInfo("parquet", str(path), content_hash, -1, explain=explain)


def _read_json(con: duckdb.DuckDBPyConnection, path: Path, content_hash: str) -> SourceInfo:
    try:
        con.read_json(str(path), format="auto").create("raw")
    except duckdb.Error as exc:
        text = str(exc)
        line = _LINE_RE.search(text) or re.search(r"line (\d+)", text)
        raise SourceFormatError(
            f"not valid JSON lines: {text.splitlines()[0]}", source=str(path),
            row=int(line.group(1)) if line else None,
        ) from None
    _flatten_structs(con)
    rows = con.execute("SELECT count(*) FROM raw").fetchall()[0][0]
    return SourceInfo("json", str(path), content_hash, int(rows))


def _flatten_structs(con: duckdb.DuckDBPyConnection) -> None:
    """Replace STRUCT columns of ``raw`` by ``parent.child`` columns, recursively."""
    for _ in range(8):
        cols = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'raw' ORDER BY ordinal_position"
        ).fetchall()
        if not any(t.startswith("STRUCT") for _, t in cols):
            return
        select = []
        for name, typ in cols:
            if typ.startswith("STRUCT"):
                for fld in _struct_fields(con, name):
                    select.append(
                        f"struct_extract({quote_ident(name)}, {_sql_str(fld)}) AS {quote_ident(name + '.' + fld)}"
                    )
            else:
                select.append(quote_ident(name))
        con.execute(f"CREATE TABLE raw_flat AS SELECT {', '.join(select)} FROM raw ORDER BY rowid")
        con.execute("DROP TABLE raw")
        con.execute("ALTER TABLE raw_flat RENAME TO raw")


def _struct_fields(con: duckdb.DuckDBPyConnection, column: str) -> list[str]:
    typ = con.sql(f"SELECT {quote_ident(column)} FROM raw LIMIT 0").to_arrow_table().schema.field(0).type
    return [typ.field(i).name for i in range(typ.num_fields)]


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- Arrow batches (XES, DataFrames, databases) ------------------------------------------
def append_batches(con: duckdb.DuckDBPyConnection, batches: Iterable[pa.Table]) -> int:
    """Append tables with varying columns to ``raw``, widening types as needed."""
    rows = 0
    types: dict[str, str] = {}
    for batch in batches:
        batch = batch.drop_columns([c for c in batch.column_names if c.startswith("__")])
        if batch.num_rows == 0:
            continue
        con.register("_batch", batch)
        try:
            btypes = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE _batch)").fetchall())
            if not types:
                con.execute("CREATE TABLE raw AS SELECT * FROM _batch")
                types = dict(btypes)
            else:
                select = []
                for col, typ in btypes.items():
                    q = quote_ident(col)
                    if col not in types:
                        con.execute(f"ALTER TABLE raw ADD COLUMN {q} {typ}")
                        types[col] = typ
                    elif types[col] != typ and types[col] != "VARCHAR":
                        con.execute(f"ALTER TABLE raw ALTER {q} TYPE VARCHAR")
                        types[col] = "VARCHAR"
                    select.append(f"CAST({q} AS {types[col]}) AS {q}" if types[col] != typ else q)
                con.execute(f"INSERT INTO raw BY NAME SELECT {', '.join(select)} FROM _batch")
        finally:
            con.unregister("_batch")
        rows += batch.num_rows
    return rows


def _read_xes(con: duckdb.DuckDBPyConnection, path: Path, content_hash: str, progress: Progress) -> SourceInfo:
    from procestra.ingest.xes import iter_xes_batches


    def batches() -> Iterator[pa.Table]:
        done = 0
        for batch in iter_xes_batches(path):
            done += batch.num_rows
            progress("reading XES events", done, None)
            yield batch

    progress("reading XES events", 0, None)
    rows = append_batches(con, batches())
    return SourceInfo("xes", str(path), content_hash, rows)


def _read_frame(con: duckdb.DuckDBPyConnection, frame: Any) -> SourceInfo:
    table = frame if isinstance(frame, pa.Table) else (
        pa.Table.from_batches([frame]) if isinstance(frame, pa.RecordBatch)
        else pa.Table.from_pandas(frame, preserve_index=False)
    )
    h = hashlib.sha256()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    h.update(sink.getvalue().to_pybytes())
    rows = append_batches(con, [table])
    return SourceInfo("frame", f"DataFrame[{len(table.column_names)} columns]", h.hexdigest(), rows)


def _read_sql(
    con: duckdb.DuckDBPyConnection, url: str, kind: str, query: str, progress: Progress
) -> SourceInfo:
    shown = mask_url(url)
    h = hashlib.sha256(query.encode())
    done = 0

    def hashed(batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
        nonlocal done
        for t in batches:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, t.schema) as writer:
                writer.write_table(t)
            h.update(sink.getvalue().to_pybytes())
            done += t.num_rows
            progress("reading query results", done, None)
            yield t

    batches = _sqlite_batches(url, query) if kind == "sqlite" else _postgres_batches(url, query)
    rows = append_batches(con, hashed(batches))
    return SourceInfo(kind, shown, h.hexdigest(), rows)


#: Rows per batch read from a database cursor.
_BATCH_ROWS = 50_000
#: PostgreSQL's type OID of ``numeric``.
_PG_NUMERIC = 1700


def _rows_to_table(columns: list[str], rows: list[tuple[Any, ...]],
                   types: dict[int, pa.DataType] | None = None) -> pa.Table:
    """One batch of rows as Arrow: column ``i`` of type ``types[i]`` when given, else as Arrow
    infers it from the values; a column that fits neither becomes text."""
    arrays = []
    for i in range(len(columns)):
        values = [r[i] for r in rows]
        typ = (types or {}).get(i)
        try:
            if typ == pa.float64():
                values = [None if v is None else float(v) for v in values]
            arrays.append(pa.array(values, typ))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=columns)


def _pg_types(description: Sequence[Any]) -> dict[int, pa.DataType]:
    """Arrow types of a PostgreSQL query's ``numeric`` columns, from their declared type.

    Inferred from the values, a ``numeric`` column would get the precision of each batch's
    largest value, so two batches could disagree and the column end up as text. Instead
    ``numeric(p, s)`` is ``DECIMAL(p, s)`` (p up to 38) and a ``numeric`` without a
    precision is ``DOUBLE``, as DuckDB's own PostgreSQL reader has it.
    """
    out: dict[int, pa.DataType] = {}
    for i, col in enumerate(description):
        if col.type_code == _PG_NUMERIC:
            p, s = col.precision, col.scale
            out[i] = pa.decimal128(p, s or 0) if p is not None and 0 < p <= 38 else pa.float64()
    return out


def _sqlite_batches(url: str, query: str) -> Iterator[pa.Table]:
    if "://" in url:
        parts = urlsplit(url)
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///"):]
            path = "/" + path if not path.startswith("/") and url.startswith("sqlite:////") else path
    else:
        path = url
    if not Path(path).exists():
        raise SourceConnectionError("no such SQLite database file", source=path)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SourceConnectionError(f"cannot open SQLite database: {exc}", source=path) from None
    try:
        try:
            cur = db.execute(query)
        except sqlite3.Error as exc:
            raise SourceConnectionError(f"the query failed: {exc}", source=path) from None
        if cur.description is None:
            raise SourceConnectionError("the query returns no rows (is it a SELECT?)", source=path)
        names = unique_names([d[0] for d in cur.description])
        while True:
            try:
                chunk = cur.fetchmany(_BATCH_ROWS)
            except sqlite3.Error as exc:
                raise SourceConnectionError(f"the query failed: {exc}", source=path) from None
            if not chunk:
                break
            yield _rows_to_table(names, chunk)
    finally:
        db.close()


def _postgres_batches(url: str, query: str) -> Iterator[pa.Table]:
    import psycopg

    shown = mask_url(url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://").replace("postgres://", "postgresql://")
    try:
        conn = psycopg.connect(dsn, connect_timeout=10)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SourceConnectionError(f"cannot connect: {reason}", source=shown) from None
    try:
        with conn.transaction():
            try:
                cur = conn.cursor(name="procestra_ingest")
                cur.execute(query)
                chunk = cur.fetchmany(_BATCH_ROWS)
            except psycopg.Error as exc:
                raise SourceConnectionError(
                    f"the query failed: {str(exc).strip().splitlines()[0]}", source=shown
                ) from None
            if cur.description is None:
                raise SourceConnectionError("the query returns no rows (is it a SELECT?)", source=shown)
            names = unique_names([d.name for d in cur.description])
            types = _pg_types(cur.description)
            while chunk:
                yield _rows_to_table(names, chunk, types)
                try:
                    chunk = cur.fetchmany(_BATCH_ROWS)
                except psycopg.Error as exc:
                    raise SourceConnectionError(
                        f"the query failed: {str(exc).strip().splitlines()[0]}", source=shown
                    ) from None
    finally:
        conn.close()
