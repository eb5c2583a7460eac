"""Reading CSV strictly: one rule for every CSV file cnai reads (records to ingest, labelled training data).

Python's csv module, left lenient, reads an unbalanced quote as the start of one long field that swallows
every following line up to the next quote (or the end of the file) and returns it as one merged record,
without a word; and it raises a bare `csv.Error` (a traceback at the command line) for a field over its size
limit. Here every such file is a `DataError` naming the file and the line where the problem starts.

Below both `ingest` and `data` (it imports only `errors`), so the training factory, which reads CSV through
`cnai.data.dataset`, does not pull in the ingestion modules (and their edits do not change a model's
code_version).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Any, TextIO

from cnai.errors import DataError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a byte that is not UTF-8
_SUSPECT = re.compile("[\r\n\udc80-\udcff]")


def undecodable(value: str) -> str | None:
    """`byte 0xNN` for the first byte of `value` that was not UTF-8 (read with surrogateescape), else None."""
    found = _UNDECODABLE.search(value)
    return f"byte 0x{ord(found.group()) - 0xDC00:02x}" if found else None


def _csv_problem(exc: csv.Error) -> str:
    message = str(exc)
    if "field larger than field limit" in message:
        return (
            f"a field is longer than {csv.field_size_limit()} characters, the csv module's limit"
            " (an unbalanced quote, or not a CSV file?)"
        )
    if "unexpected end of data" in message:
        return "a quote opened here is never closed"
    if "expected after" in message:
        return 'text follows a closing quote (write a quote inside a quoted field as "")'
    return f"not valid CSV ({message})"


def checked_csv(
    reader: csv.DictReader[str], path: str, *, multiline: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line where the record starts, row) for each record of a DictReader made with `strict=True` over a
    file opened with `newline=""` (and `errors="surrogateescape"`).

    Raises DataError naming the file and the line where the problem starts: an unclosed quote, a field over
    the csv module's limit, text after a closing quote, bytes that are not UTF-8, and, unless `multiline`, a
    quoted field holding a line break: the usual sign of an unbalanced quote, which the csv module would
    read as one record merging every line up to the next quote.
    """
    last = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(path, _csv_problem(exc), last + 1) from None
        end = reader.line_num
        values: list[Any] = []
        for value in row.values():  # header order, then the extra fields of a long row
            values.extend(value if isinstance(value, list) else [value])
        if not _SUSPECT.search("".join(v for v in values if isinstance(v, str))):  # the common case, one scan
            last = end
            yield end, row
            continue
        breaks = [len(_LINE_BREAK.findall(v)) if isinstance(v, str) else 0 for v in values]
        start = end - sum(breaks)
        for i, value in enumerate(values):
            found = _UNDECODABLE.search(value) if isinstance(value, str) else None
            if found is not None:
                line = start + sum(breaks[:i]) + len(_LINE_BREAK.findall(value[: found.start()]))
                raise DataError(path, f"bytes are not valid UTF-8 ({undecodable(value)}); save it as UTF-8", line)
        if not multiline and any(breaks):
            opened = start + sum(breaks[: next(i for i, n in enumerate(breaks) if n)])
            raise DataError(
                path,
                f"a quote opened here runs over {max(breaks) + 1} lines (an unbalanced quote?); if the file"
                " really holds texts with line breaks, allow multi-line fields (cnai ingest --multiline)",
                opened,
            )
        last = end
        yield start, row


def csv_reader(handle: TextIO, path: str) -> csv.DictReader[str]:
    """A strict DictReader whose header was read (DataError for an empty file or a broken header)."""
    reader = csv.DictReader(handle, strict=True)
    try:
        names = reader.fieldnames
    except csv.Error as exc:
        raise DataError(path, _csv_problem(exc), 1) from None
    if not names:
        raise DataError(path, "file is empty (no header row)")
    bad = next((b for b in map(undecodable, names) if b), None)
    if bad is not None:
        raise DataError(path, f"bytes are not valid UTF-8 ({bad}); save the file as UTF-8", 1)
    return reader
