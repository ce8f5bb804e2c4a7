"""What a batch job reads, checked before any scoring: the input's parts, their columns, and where the output
may go.

Both engines inspect every part on the driver first, so a missing text column or a malformed part is one
:class:`DataError` naming the file rather than a failure inside a worker. The inspection also fixes the
output's columns once per job (``id`` is kept when any part has it) and, for the Ray engine, counts each
part's rows exactly, so that a job whose written parts hold fewer rows than its input is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from deskpilot.data.io import FORMATS_BY_SUFFIX, Format, detect_format, iter_batches, open_parquet
from deskpilot.errors import DataFileNotFoundError, DataFormatError, MissingColumnError, UsageError

_SCAN_BLOCK = 1 << 20


@dataclass(frozen=True)
class InputLayout:
    """The parts of one job as the driver saw them: one format, whether any part has the id column, the
    CSV/TSV header (names as pandas reads them: BOM and spaces stripped) and, when counted, the rows."""

    parts: tuple[Path, ...]
    format: Format
    has_id: bool
    header: tuple[str, ...] | None
    rows: int | None
    has_label: bool = False
    skip_rows: int = 1  # CSV/TSV: lines before the first data row (blank lines above the header, the header)


def input_parts(path: Path) -> list[Path]:
    """The files to score: ``path`` itself, or the data files of a folder (sorted by name, one format, hidden
    and ``_``-prefixed files skipped); a clear error for a folder with none or with mixed formats."""
    if path.is_file():
        detect_format(path)
        return [path]
    if not path.is_dir():
        raise DataFileNotFoundError(f"{path}: no such file or folder", details={"file": str(path)})
    parts = sorted(
        child
        for child in path.iterdir()
        if child.is_file()
        and not child.name.startswith((".", "_"))
        and child.suffix.lower() in FORMATS_BY_SUFFIX
    )
    if not parts:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise DataFileNotFoundError(
            f"{path}: the folder holds no data files ({known})", details={"file": str(path)}
        )
    formats = {detect_format(part) for part in parts}
    if len(formats) > 1:
        raise UsageError(
            f"{path}: the folder mixes formats ({', '.join(sorted(formats))}); score one format at a time",
            details={"file": str(path), "formats": sorted(formats)},
        )
    return parts


def inspect_parts(
    parts: Sequence[Path],
    *,
    text_column: str,
    id_column: str | None,
    label_column: str | None = None,
    count: bool = False,
    one_header: bool = False,
) -> InputLayout:
    """Check every part has ``text_column`` (for JSONL: some record has it, as the data contract asks) and
    note whether any has ``id_column`` or ``label_column``; ``count`` reads each part to count its rows
    exactly (and so finds a malformed part now), ``one_header`` refuses CSV/TSV parts whose headers differ."""
    fmt = detect_format(parts[0])
    wanted = [text_column] + [c for c in (id_column, label_column) if c is not None]
    has_id = has_label = False
    first_header: tuple[str, ...] | None = None
    first_skip = 1
    rows = 0
    for part in parts:
        if fmt == "jsonl":
            next(iter_batches(part, 1), None)  # refuses an empty, binary or unparsable file, naming it
            columns: tuple[str, ...] = tuple(jsonl_keys(part, wanted))
        elif fmt == "parquet":
            columns = tuple(_parquet_file(part).schema_arrow.names)
        else:
            columns = _csv_header(part)
            skip = header_skip_rows(part)
            if first_header is None:
                first_header, first_skip = columns, skip
            elif one_header and skip != first_skip:
                raise DataFormatError(
                    f"{part}: its header is on line {skip}, that of {parts[0].name} on line {first_skip}; "
                    "the Ray engine reads the parts as one table: remove the blank lines above the headers",
                    details={"file": str(part), "header_line": skip, "expected": first_skip},
                )
            elif one_header and columns != first_header:
                raise DataFormatError(
                    f"{part}: its header ({', '.join(columns)}) differs from that of {parts[0].name} "
                    f"({', '.join(first_header)}); the Ray engine reads the parts as one table, so they need "
                    "one header",
                    details={"file": str(part), "header": list(columns), "expected": list(first_header)},
                )
        if text_column not in columns:
            shown = f"has {', '.join(map(repr, columns))}" if fmt != "jsonl" else "has no record with it"
            raise MissingColumnError(
                f"{part}: no column {text_column!r}; the file {shown}",
                details={"file": str(part), "missing": [text_column]},
            )
        has_id = has_id or (id_column is not None and id_column in columns)
        has_label = has_label or (label_column is not None and label_column in columns)
        if count:
            rows += count_part(part, fmt, first_header)
    return InputLayout(
        tuple(parts), fmt, has_id, first_header, rows if count else None, has_label, first_skip
    )


def count_part(part: Path, fmt: Format, header: Sequence[str] | None) -> int:
    """The exact number of rows a reader gets from ``part``: Parquet from its metadata, JSONL as its non-blank
    lines (each parsed: one object per line, a bad line refused naming the file and the line), CSV/TSV parsed
    as the Ray engine parses them (quoted newlines included)."""
    if fmt == "parquet":
        return int(_parquet_file(part).metadata.num_rows)
    if fmt == "jsonl":
        return _count_jsonl(part)
    rows = 0
    try:
        with pacsv.open_csv(
            str(part),
            read_options=csv_read_options(header or _csv_header(part), header_skip_rows(part)),
            parse_options=csv_parse_options(fmt),
            convert_options=csv_convert_options(header or _csv_header(part)),
        ) as reader:
            for batch in reader:
                rows += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DataFormatError(
            f"{part}: cannot parse as {fmt.upper()}: {arrow_reason(exc)}",
            details={"file": str(part), "parser": str(exc).strip()},
        ) from exc
    return rows


def csv_read_options(header: Sequence[str], skip_rows: int = 1) -> pacsv.ReadOptions:
    """The header row (and any blank lines above it, see :func:`header_skip_rows`) skipped and replaced by
    the names pandas reads (what the local engine sees)."""
    return pacsv.ReadOptions(column_names=list(header), skip_rows=skip_rows)


def header_skip_rows(part: Path) -> int:
    """The lines Arrow must skip to reach the first data row: pandas skips blank lines above the header and
    reads the header from the first non-blank line, while Arrow's ``skip_rows`` counts every line."""
    skip = 0
    for line in _lines(part):
        skip += 1
        if line.lstrip(b"\xef\xbb\xbf").strip():
            return skip
    return max(skip, 1)


def csv_parse_options(fmt: Format) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)


def csv_convert_options(header: Sequence[str]) -> pacsv.ConvertOptions:
    """Every cell as text, an empty cell as an empty string: as the local engine reads CSV."""
    return pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def arrow_reason(exc: BaseException) -> str:
    """Arrow's message, one line, with its common cases in words."""
    text = " ".join(str(exc).split())
    if "invalid UTF8" in text or "invalid UTF-8" in text:
        return "bytes that are not UTF-8 (save the file as UTF-8)"
    return text


def jsonl_keys(part: Path, keys: Sequence[str]) -> list[str]:
    """Which of ``keys`` some record of a JSONL file has; reads only until all are found (a byte search
    picks the candidate lines, which are then parsed)."""
    left = {key: json.dumps(key).encode() for key in keys}
    found: list[str] = []
    for line in _lines(part):
        for key, quoted in list(left.items()):
            if quoted in line and _has_key(line, key):
                found.append(key)
                del left[key]
        if not left:
            break
    return found


def check_output_location(input_path: Path, output_path: Path) -> Path:
    """The output, resolved; refused where replacing it would touch the input or the current folder."""
    target = output_path.expanduser().resolve()
    source = input_path.expanduser().resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise UsageError(
            f"--output {output_path}: that is the current folder or one above it; give a new file or folder "
            "for the scores",
            details={"file": str(output_path)},
        )
    if target == source or target in source.parents:
        raise UsageError(
            f"--output {output_path}: writing there would replace the input {input_path}",
            details={"file": str(output_path), "input": str(input_path)},
        )
    if source.is_dir() and source in target.parents:
        raise UsageError(
            f"--output {output_path}: it is inside the input folder {input_path}, where the next run would "
            "read it as input; write the scores elsewhere",
            details={"file": str(output_path), "input": str(input_path)},
        )
    return target


def iter_jsonl_frames(part: Path, batch_rows: int) -> Iterator[pd.DataFrame]:
    """A JSONL part in frames of at most ``batch_rows`` records, every column as Python objects: an integer
    id stays an int (pandas' reader turns integers beside a null into floats, so an id past 2**53 would lose
    digits); a bad line is refused naming the file and the line."""
    records: list[dict[str, Any]] = []
    with part.open("rb") as handle:
        for record in _jsonl_records(part, handle):
            records.append(record)
            if len(records) == batch_rows:
                yield pd.DataFrame(records, dtype=object)
                records = []
    if records:
        yield pd.DataFrame(records, dtype=object)


def _count_jsonl(part: Path) -> int:
    with part.open("rb") as handle:  # not _lines: a refusal must not leave the file open
        return sum(1 for _ in _jsonl_records(part, handle))


def _jsonl_records(part: Path, lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            raise DataFormatError(
                f"{part}: line {number}: bytes that are not UTF-8 (save the file as UTF-8)",
                details={"file": str(part), "line": number},
            ) from exc
        except ValueError as exc:
            raise DataFormatError(
                f"{part}: line {number}: not valid JSON ({exc})",
                details={"file": str(part), "line": number},
            ) from exc
        if not isinstance(record, dict):
            raise DataFormatError(
                f"{part}: line {number}: a JSON {type(record).__name__}, not an object (one record per line)",
                details={"file": str(part), "line": number},
            )
        yield record


def _has_key(line: bytes, key: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and key in record


def _lines(part: Path) -> Iterator[bytes]:
    with part.open("rb") as handle:
        yield from handle


def _csv_header(part: Path) -> tuple[str, ...]:
    head = next(iter_batches(part, 1))  # checks the file is text, not empty, parses; a header-only file too
    return tuple(str(name) for name in head.columns)


def _parquet_file(part: Path) -> pq.ParquetFile:
    if part.stat().st_size == 0:
        raise DataFormatError(f"{part}: the file is empty (0 bytes)", details={"file": str(part)})
    return open_parquet(part)
