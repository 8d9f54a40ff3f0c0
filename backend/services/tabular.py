"""Tables from files: CSV in UTF-8 or GB18030/GBK (what Chinese government systems export;
detected, or given) and XLSX, read as a stream of row tuples in bounded memory."""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from backend.services.errors import InvalidInput


def read_table(
    source: Path | IO[bytes], filename: str, encoding: str | None
) -> tuple[Iterator[tuple[Any, ...]], str | None]:
    """The rows of a CSV or XLSX file (header row first) and the encoding used (None: XLSX)."""
    handle: IO[bytes] = source.open("rb") if isinstance(source, Path) else source
    head = handle.read(4)
    handle.seek(0)
    if head == b"PK\x03\x04" or filename.lower().endswith(".xlsx"):
        return _xlsx_rows(handle), None
    chosen = encoding or _detect_encoding(handle)
    try:
        codecs.lookup(chosen)
    except LookupError:
        raise InvalidInput(f"Unknown encoding {chosen!r}.") from None
    stream = io.TextIOWrapper(handle, encoding=chosen, errors="strict", newline="")
    reader = csv.reader(stream)

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            for row in reader:
                yield tuple(row)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidInput(
                f"The file cannot be read as {chosen} CSV near line {reader.line_num}: {exc}."
            ) from exc

    return rows(), chosen


def _detect_encoding(handle: IO[bytes]) -> str:
    """UTF-8 (with or without BOM) when the first 1 MB decodes as UTF-8, else GB18030 (a
    superset of GBK and GB2312, what Chinese registration systems export)."""
    sample = handle.read(1 << 20)
    handle.seek(0)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not merely a character cut at the sample's end
            return "gb18030"
    return "utf-8"


# A worksheet's XML compresses 10-50:1; far more than this is a decompression bomb.
MAX_XLSX_RATIO = 200
MAX_XLSX_MEMBER = 2 << 30  # 2 GiB uncompressed: more than Excel's 1,048,576 rows need
NOT_A_WORKBOOK = "The file is not a valid workbook"


def _xlsx_rows(handle: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    """The first sheet's rows. Workbooks are untrusted input: XML is parsed by defusedxml
    (openpyxl uses it when installed: no DTDs, entities or external references, so no XML
    bombs or XXE), members that inflate past a ratio or size are refused before parsing,
    and any parse error, also one met while streaming rows, is a 422, not a traceback."""
    import defusedxml
    from openpyxl import DEFUSEDXML, load_workbook

    if not DEFUSEDXML:  # pragma: no cover - a dependency of the project
        raise RuntimeError("defusedxml must be installed to read XLSX files safely")
    _check_members(handle)
    try:
        book = load_workbook(handle, read_only=True, data_only=True)
        try:
            yield from book.worksheets[0].iter_rows(values_only=True)
        finally:
            book.close()
    except InvalidInput:
        raise
    except defusedxml.DefusedXmlException:
        raise InvalidInput(
            f"{NOT_A_WORKBOOK}: it declares XML entities or a DTD, which are refused."
        ) from None
    except Exception as exc:  # malformed zip/XML/cell data of any kind: the file is bad
        raise InvalidInput(f"{NOT_A_WORKBOOK}: {type(exc).__name__}.") from None


def _check_members(handle: IO[bytes]) -> None:
    try:
        with zipfile.ZipFile(handle) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise InvalidInput(f"{NOT_A_WORKBOOK} (not an XLSX zip archive).") from None
    finally:
        handle.seek(0)
    for m in members:
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size > MAX_XLSX_MEMBER or (m.file_size > 1 << 20 and ratio > MAX_XLSX_RATIO):
            raise InvalidInput(
                f"{NOT_A_WORKBOOK}: {m.filename} would inflate to {m.file_size:,} bytes."
            )


def copy_value(value: Any) -> str:
    """One field in PostgreSQL's COPY text format (NULL as \\N; tabs and newlines flattened)."""
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")


def copy_rows(
    session: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """COPY `rows` into `table` (`columns` in order) on the session's connection."""
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(copy_value(x) for x in row) + "\n")
    buf.seek(0)
    cursor = session.connection().connection.dbapi_connection.cursor()
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buf)


class ChunkedCopy:
    """Rows COPY'd to a staging table in chunks of `chunk`, calling `progress(rows_read)`
    after each, so a file of any size streams through in bounded memory."""

    def __init__(
        self,
        session: Any,
        table: str,
        columns: tuple[str, ...],
        progress: Any = None,
        chunk: int = 20_000,
    ) -> None:
        self.session, self.table, self.columns = session, table, columns
        self.progress, self.chunk = progress, chunk
        self.rows: list[tuple[Any, ...]] = []

    def add(self, row: tuple[Any, ...], rows_read: int) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.chunk:
            self.flush(rows_read)

    def flush(self, rows_read: int) -> None:
        if self.rows:
            copy_rows(self.session, self.table, self.columns, self.rows)
            self.rows = []
        if self.progress:
            self.progress(rows_read)
