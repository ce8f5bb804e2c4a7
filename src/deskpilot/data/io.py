"""Read and write tabular datasets (CSV, TSV, JSONL, Parquet) chosen by file extension.

Readers keep every cell as the value the file holds (CSV cells stay strings, ``NA`` stays ``"NA"``) and
remember where each record came from, so that the contract can name a file, a line and a column for every
problem. Malformed files raise :class:`DataFormatError` with the reason, never a parser traceback.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from deskpilot.data.columns import ARROW_STRING
from deskpilot.errors import DataFileNotFoundError, DataFormatError, UnsupportedFormatError

Format = Literal["csv", "tsv", "jsonl", "parquet"]
FORMATS_BY_SUFFIX: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SNIFF_BYTES = 64 * 1024
_PARQUET_MAGIC = b"PAR1"
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
# Every cell as the text the file holds: no NA inference ("NA" stays "NA"), no type guessing.
_CELLS_AS_TEXT: dict[str, Any] = {
    "dtype": str,
    "keep_default_na": False,
    "na_filter": False,
    "encoding": "utf-8",
}


@dataclass(frozen=True)
class RowProblem:
    """A record the reader could not turn into a row (e.g. a JSONL line that is not JSON)."""

    location: int
    rule: str
    message: str


@dataclass(frozen=True)
class RawTable:
    """A dataset as read from disk, with the 1-based location of every row in the source file.

    ``location_kind`` is ``"line"`` for text formats (where a person would look in an editor) and ``"row"``
    for Parquet. ``may_have_bad_bytes`` is true when the file held bytes that are not UTF-8; such cells carry
    surrogate escapes that :func:`has_bad_bytes` finds.
    """

    path: Path
    format: Format
    frame: pd.DataFrame
    locations: np.ndarray
    location_kind: Literal["line", "row"]
    may_have_bad_bytes: bool = False
    row_problems: tuple[RowProblem, ...] = field(default=())

    @property
    def n_rows(self) -> int:
        return len(self.frame)


def detect_format(path: Path) -> Format:
    """The format implied by the file's extension; an unknown extension is a usage error."""
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise UnsupportedFormatError(
            f"{path}: unknown data format {path.suffix or '(no extension)'!r}; use one of {known}",
            details={"file": str(path), "suffix": path.suffix},
        )
    return fmt


def read_table(path: Path | str) -> RawTable:
    """Read a whole dataset file into a :class:`RawTable`."""
    path = Path(path)
    _check_readable(path)
    fmt = detect_format(path)
    if fmt == "parquet":
        return _read_parquet(path)
    head = _read_head(path)
    _reject_binary(path, head)
    if fmt == "jsonl":
        return _read_jsonl(path)
    return _read_delimited(path, fmt)


def has_bad_bytes(values: pd.Series) -> pd.Series:
    """Cells that held bytes which are not valid UTF-8 (read with surrogate escapes)."""
    return values.map(lambda v: isinstance(v, str) and _ESCAPED_BYTE.search(v) is not None).astype(bool)


def count_rows(path: Path | str) -> int:
    """Cheap row count for progress bars: Parquet metadata, or newlines for text formats (an estimate when
    texts contain quoted newlines)."""
    path = Path(path)
    _check_readable(path)
    if detect_format(path) == "parquet":
        return int(open_parquet(path).metadata.num_rows)
    with path.open("rb") as fh:
        lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
    return max(0, lines - (0 if detect_format(path) == "jsonl" else 1))


def iter_batches(path: Path | str, batch_rows: int) -> Iterator[pd.DataFrame]:
    """Stream a dataset in frames of at most ``batch_rows`` rows, for files larger than memory.

    Cells are read as the file holds them (CSV as strings); a malformed file raises DataFormatError naming it.
    """
    path = Path(path)
    _check_readable(path)
    fmt = detect_format(path)
    if fmt == "parquet":
        for batch in open_parquet(path).iter_batches(batch_size=batch_rows):
            yield _to_pandas(pa.Table.from_batches([batch]))
        return
    _reject_binary(path, _read_head(path))
    with _parse_errors(path, fmt):
        if fmt == "jsonl":
            yield from pd.read_json(path, lines=True, chunksize=batch_rows, dtype=False, encoding="utf-8")
            return
        sep = "\t" if fmt == "tsv" else ","
        with pd.read_csv(
            path, sep=sep, encoding_errors="replace", chunksize=batch_rows, **_CELLS_AS_TEXT
        ) as reader:
            for chunk in reader:
                chunk.columns = [str(c).lstrip("\ufeff").strip() for c in chunk.columns]
                yield chunk


def read_parquet_frame(path: Path) -> pd.DataFrame:
    """Read a Parquet file DeskPilot wrote itself, by path.

    ``pandas.read_parquet`` hands pyarrow a Python file object; Arrow's thread pools can then outlive the
    interpreter's teardown and abort the process at exit (apache/arrow#34314, #50482). By path they do not.
    """
    frame: pd.DataFrame = pq.read_table(str(path)).to_pandas()
    return frame


def write_table_atomic(frame: pd.DataFrame, path: Path | str) -> None:
    """Write ``frame`` in the format of ``path``'s extension, replacing the file only when fully written."""
    path = Path(path)
    fmt = detect_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        elif fmt == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_csv(tmp, sep="\t" if fmt == "tsv" else ",", index=False)
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: no such file", details={"file": str(path)})
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: not a regular file", details={"file": str(path)})
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty (0 bytes)", details={"file": str(path)})


def _read_head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(_SNIFF_BYTES)


def _reject_binary(path: Path, head: bytes) -> None:
    if head.startswith(_PARQUET_MAGIC):
        raise DataFormatError(
            f"{path}: this is a Parquet file, not text; give it a .parquet extension",
            details={"file": str(path)},
        )
    nul = head.find(b"\x00")
    if nul >= 0:
        hint = " (UTF-16 text? save it as UTF-8)" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataFormatError(
            f"{path}: binary data (a NUL byte at offset {nul}); expected UTF-8 text{hint}",
            details={"file": str(path), "offset": nul},
        )


def _read_delimited(path: Path, fmt: Format) -> RawTable:
    sep = "\t" if fmt == "tsv" else ","
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        clean_utf8 = True
    except UnicodeDecodeError:
        clean_utf8 = False
    frame = _parse_with_arrow(raw, sep) if clean_utf8 else None
    if frame is None:
        frame = _parse_with_pandas(path, raw, sep, fmt)
    frame.columns = [str(c).lstrip("\ufeff").strip() for c in frame.columns]
    _reject_duplicate_columns(path, list(frame.columns))
    locations = _record_lines(raw, len(frame))
    return RawTable(path, fmt, frame, locations, "line", may_have_bad_bytes=not clean_utf8)


def _parse_with_arrow(raw: bytes, sep: str) -> pd.DataFrame | None:
    """Multi-threaded parse of clean UTF-8 into Arrow-backed string columns; ``None`` defers to pandas.

    Arrow's errors carry no line numbers, so on any parse problem the pandas parser re-reads the file to
    name the line.
    """
    raw = raw.removeprefix(codecs.BOM_UTF8)
    names = _header_names(raw, sep)
    if names is None:
        return None
    try:
        table = pacsv.read_csv(
            io.BytesIO(raw),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=b'"' in raw),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    frame: pd.DataFrame = table.to_pandas(types_mapper=_pandas_dtype)
    return frame


def _header_names(raw: bytes, sep: str) -> list[str] | None:
    end = raw.find(b"\n")
    first = raw[: end if end >= 0 else len(raw)].decode("utf-8").rstrip("\r")
    names = first.split(sep)
    if '"' in first or len(set(names)) != len(names):
        return None
    return names


def _parse_with_pandas(path: Path, raw: bytes, sep: str, fmt: Format) -> pd.DataFrame:
    with _parse_errors(path, fmt):
        frame: pd.DataFrame = pd.read_csv(
            io.BytesIO(raw), sep=sep, encoding_errors="surrogateescape", **_CELLS_AS_TEXT
        )
    return frame


@contextlib.contextmanager
def _parse_errors(path: Path, fmt: Format) -> Iterator[None]:
    """Parser exceptions become one DataFormatError that names the file and, where known, the line."""
    try:
        yield
    except pd.errors.EmptyDataError as exc:
        raise DataFormatError(f"{path}: no header and no rows", details={"file": str(path)}) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFormatError(
            f"{path}: cannot parse as {fmt.upper()}: {_parser_reason(exc)}; check the delimiter and quoting",
            details={"file": str(path), "parser": str(exc).strip()},
        ) from exc


def _parser_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1]
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, saw = match.groups()
        return f"line {line} has {saw} fields where the header has {expected}"
    return text.removeprefix("Error tokenizing data. C error: ")


def _reject_duplicate_columns(path: Path, columns: list[str]) -> None:
    seen: set[str] = set()
    for name in columns:
        base = re.sub(r"\.\d+$", "", name)
        if name != base and base in seen:
            raise DataFormatError(
                f"{path}: the header repeats column {base!r}", details={"file": str(path), "column": base}
            )
        seen.add(name)


def _record_lines(raw: bytes, n_records: int) -> np.ndarray:
    """The 1-based line on which each data record starts (the header is line 1).

    A newline ends a record only outside quotes, i.e. where the count of quote characters before it is even
    (an escaped quote adds two, so parity holds); blank lines are not records. Vectorized: a million rows
    take a fraction of a second.
    """
    simple = np.arange(2, n_records + 2, dtype=np.int64)
    data = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))
    lines_in_file = newlines.size + (0 if raw.endswith(b"\n") else 1)
    if lines_in_file == n_records + 1:
        return simple
    quotes = np.flatnonzero(data == ord('"'))
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    starts = np.concatenate(([0], ends + 1))
    starts = starts[starts < data.size]
    first_byte = data[starts]
    starts = starts[(first_byte != ord("\n")) & (first_byte != ord("\r"))]
    if starts.size != n_records + 1:
        return simple
    lines: np.ndarray = np.searchsorted(newlines, starts[1:], side="left").astype(np.int64) + 1
    return lines


def _read_jsonl(path: Path) -> RawTable:
    raw = path.read_bytes()
    return _jsonl_with_arrow(path, raw) or _jsonl_line_by_line(path, raw)


def _jsonl_with_arrow(path: Path, raw: bytes) -> RawTable | None:
    """Fast path for well-formed files: no blank lines, clean UTF-8, one type per column."""
    if not raw.strip() or b"\n\n" in raw or raw.startswith(b"\n"):
        return None
    try:
        raw.decode("utf-8")
        table = pajson.read_json(io.BytesIO(raw))
    except (UnicodeDecodeError, pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
    if table.num_rows != lines:
        return None
    frame = _to_pandas(table)
    return RawTable(path, "jsonl", frame, np.arange(1, lines + 1, dtype=np.int64), "line")


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Strings stay Arrow-backed (fast kernels); every other column becomes Python objects, nulls as NA."""
    frame: pd.DataFrame = table.to_pandas(types_mapper=_pandas_dtype)
    frame = frame.astype({c: object for c in frame.columns if not isinstance(frame[c].dtype, pd.StringDtype)})
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _pandas_dtype(dtype: pa.DataType) -> Any:
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return ARROW_STRING
    if pa.types.is_integer(dtype):
        return pd.Int64Dtype()
    return None


def _jsonl_line_by_line(path: Path, raw: bytes) -> RawTable:
    records: list[dict[str, Any]] = []
    locations: list[int] = []
    problems: list[RowProblem] = []
    for line_no, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(RowProblem(line_no, "encoding_error", f"bytes that are not UTF-8 ({exc.reason})"))
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(RowProblem(line_no, "invalid_json", f"not valid JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict):
            problems.append(
                RowProblem(line_no, "invalid_json", f"a JSON {type(value).__name__}, expected an object")
            )
            continue
        records.append(value)
        locations.append(line_no)
    if not records and problems:
        first = problems[0]
        raise DataFormatError(
            f"{path}: no line is a JSON object (line {first.location}: {first.message}); is this JSONL?",
            details={"file": str(path), "line": first.location},
        )
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame = frame.astype(object)
    return RawTable(
        path,
        "jsonl",
        frame,
        np.asarray(locations, dtype=np.int64),
        "line",
        row_problems=tuple(problems),
    )


def open_parquet(path: Path) -> pq.ParquetFile:
    """The Parquet file at ``path``, or a DataFormatError naming it."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(
            f"{path}: not a readable Parquet file ({exc})", details={"file": str(path)}
        ) from exc


def _read_parquet(path: Path) -> RawTable:
    try:
        table = open_parquet(path).read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(f"{path}: corrupt Parquet data ({exc})", details={"file": str(path)}) from exc
    frame = _to_pandas(table)
    locations = np.arange(1, len(frame) + 1, dtype=np.int64)
    return RawTable(path, "parquet", frame, locations, "row")
