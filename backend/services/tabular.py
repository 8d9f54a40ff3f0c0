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


def _xlsx_rows(handle: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(handle, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InvalidInput(f"The XLSX file cannot be read: {exc}.") from exc
    try:
        yield from book.worksheets[0].iter_rows(values_only=True)
    finally:
        book.close()
