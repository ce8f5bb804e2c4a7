"""Help-center articles as knowledge items: a folder of Markdown/HTML files, one file, or a table.

Files may open with YAML front matter (``title``, ``intents``, ``id``; other keys are ignored). The title is
the front matter's, else the document's first heading (HTML: ``<title>``, else the first ``<h1>``), else the
file name. The id is the front matter's, else a slug of the path relative to the folder. Two articles with
the same id are an error, never a silent overwrite: an article is written by hand, so a clash is a mistake.

The texts are NOT PII-redacted here; the import workflow redacts them before anything is stored or indexed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deskpilot.data.columns import classify
from deskpilot.data.io import FORMATS_BY_SUFFIX, RawTable, read_table
from deskpilot.errors import (
    ContractViolationError,
    DataFileNotFoundError,
    DataFormatError,
    EmptyDatasetError,
    MissingColumnError,
    UnsupportedFormatError,
)
from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.retrieval.markup import Converted, drop_leading_heading, html_to_text, markdown_to_text

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
ARTICLE_SUFFIXES = MARKDOWN_SUFFIXES | HTML_SUFFIXES
TABLE_COLUMNS = ("title", "body")
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
_INTENT_SEPARATORS = re.compile(r"[;|]")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class FrontMatter:
    """The fields an article file may declare; ``extra`` keeps the rest (e.g. ``sample``) for callers."""

    title: str | None = None
    intents: tuple[str, ...] = ()
    id: str | None = None
    extra: dict[str, Any] | None = None


def split_front_matter(text: str, path: Path) -> tuple[FrontMatter, str]:
    """The front matter of a file's text (empty when it has none) and the rest of the text.

    Malformed front matter is a :class:`DataFormatError` naming the file, the line or field, and why.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not re.match(r"---[ \t]*\n", text):
        return FrontMatter(), text
    start = text.index("\n") + 1
    end = _FRONT_MATTER_END.search(text, start)
    if end is None:
        raise DataFormatError(
            f"{path}: the front matter opened with '---' on line 1 is never closed; end it with a '---' line",
            details={"file": str(path), "field": "front matter"},
        )
    try:
        data = yaml.safe_load(text[start : end.start()])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataFormatError(
            f"{path}: the front matter is not valid YAML{where}: {reason}",
            details={"file": str(path), "field": "front matter"},
        ) from exc
    body = text[end.end() :].removeprefix("\n")
    if data is None:
        return FrontMatter(), body
    if not isinstance(data, dict):
        raise DataFormatError(
            f"{path}: the front matter must be a mapping of fields (title, intents, id), "
            f"not a {type(data).__name__}",
            details={"file": str(path), "field": "front matter"},
        )
    return _front_matter_fields(data, path), body


def _front_matter_fields(data: dict[Any, Any], path: Path) -> FrontMatter:
    def bad(field: str, why: str) -> DataFormatError:
        return DataFormatError(
            f"{path}: front matter field {field!r} {why}", details={"file": str(path), "field": field}
        )

    title = data.get("title")
    if title is not None and (not isinstance(title, str) or not title.strip()):
        raise bad("title", f"must be a non-empty string, not {_describe(title)}")
    intents = data.get("intents", [])
    if intents is None:
        intents = []
    if not isinstance(intents, list) or not all(isinstance(i, str) and i.strip() for i in intents):
        raise bad("intents", f"must be a list of non-empty strings, not {_describe(intents)}")
    item_id = data.get("id")
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if item_id is not None and (not isinstance(item_id, str) or not item_id.strip()):
        raise bad("id", f"must be a non-empty string, not {_describe(item_id)}")
    extra = {str(k): v for k, v in data.items() if k not in {"title", "intents", "id"}}
    return FrontMatter(
        title=title.strip() if title is not None else None,
        intents=_unique(i.strip() for i in intents),
        id=item_id.strip() if item_id is not None else None,
        extra=extra,
    )


def _describe(value: object) -> str:
    if isinstance(value, list):
        kinds = sorted({type(v).__name__ for v in value if not isinstance(v, str) or not v.strip()})
        return f"a list holding {', '.join(kinds) or 'empty strings'}" if kinds else "a list"
    return f"{value!r} ({type(value).__name__})" if not isinstance(value, str) else "an empty string"


def _unique(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def slugify(relative: str) -> str:
    """A stable id from a relative path or title: lowercase ASCII words joined by hyphens."""
    slug = _SLUG_JUNK.sub("-", relative.lower()).strip("-")
    return slug or "article-" + hashlib.sha256(relative.encode("utf-8")).hexdigest()[:12]


def read_articles(path: Path | str, *, tenant: str) -> list[KnowledgeItem]:
    """Articles from a folder (recursive, sorted, the root ``README.md`` and hidden paths skipped), from one
    Markdown/HTML file, or from a CSV/JSONL/Parquet table with ``title``, ``body``, optional ``intents``
    (``;`` or ``|`` separated) and ``id`` columns. Texts are not PII-redacted: the import workflow does it."""
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: no such file or folder", details={"file": str(path)})
    if path.is_dir():
        items = _read_folder(path, tenant)
    elif path.suffix.lower() in ARTICLE_SUFFIXES:
        items = [read_article_file(path, path.parent, tenant)]
    elif path.suffix.lower() in FORMATS_BY_SUFFIX:
        items = _read_table(read_table(path), tenant)
    else:
        known = ", ".join(sorted(ARTICLE_SUFFIXES | set(FORMATS_BY_SUFFIX)))
        raise UnsupportedFormatError(
            f"{path}: unknown article format {path.suffix or '(no extension)'!r}; "
            f"use a folder or one of {known}",
            details={"file": str(path), "suffix": path.suffix},
        )
    _reject_duplicate_ids(path, items)
    return items


def article_files(folder: Path) -> list[Path]:
    """The article files under ``folder`` in a stable order, without the root README and hidden paths."""
    found = []
    for file in folder.rglob("*"):
        relative = file.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not file.is_file():
            continue
        if file.suffix.lower() not in ARTICLE_SUFFIXES:
            continue
        if len(relative.parts) == 1 and file.stem.lower() == "readme":
            continue
        found.append(file)
    return sorted(found, key=lambda f: f.relative_to(folder).as_posix())


def _read_folder(folder: Path, tenant: str) -> list[KnowledgeItem]:
    files = article_files(folder)
    if not files:
        suffixes = ", ".join(sorted(ARTICLE_SUFFIXES))
        raise EmptyDatasetError(
            f"{folder}: no article files ({suffixes}) in this folder or below it",
            details={"file": str(folder)},
        )
    return [read_article_file(file, folder, tenant) for file in files]


def read_article_file(file: Path, root: Path, tenant: str) -> KnowledgeItem:
    """One Markdown or HTML article; ``root`` is the folder its id and ``source`` are relative to."""
    suffix = file.suffix.lower()
    if suffix not in ARTICLE_SUFFIXES:
        raise UnsupportedFormatError(
            f"{file}: not an article file; use one of {', '.join(sorted(ARTICLE_SUFFIXES))}",
            details={"file": str(file), "suffix": file.suffix},
        )
    try:
        raw = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{file}: not UTF-8 text (byte {exc.start}); save the article as UTF-8",
            details={"file": str(file)},
        ) from exc
    meta, source = split_front_matter(raw, file)
    converted = markdown_to_text(source) if suffix in MARKDOWN_SUFFIXES else html_to_text(source)
    relative = file.relative_to(root).as_posix()
    title = meta.title or converted.heading or _title_from_name(file)
    return _article(
        item_id=meta.id or slugify(relative.rsplit(".", 1)[0]),
        tenant=tenant,
        title=title,
        body=_body(converted, title),
        intents=meta.intents,
        source=relative,
        file=str(file),
    )


def _title_from_name(file: Path) -> str:
    words = re.sub(r"[-_\s]+", " ", file.stem).strip()
    return words[:1].upper() + words[1:] if words else file.name


def _body(converted: Converted, title: str) -> str:
    return drop_leading_heading(converted, title).strip()


def _article(
    *, item_id: str, tenant: str, title: str, body: str, intents: tuple[str, ...], source: str, file: str
) -> KnowledgeItem:
    if not body:
        raise EmptyDatasetError(
            f"{file}: the article has no body text (only a title or front matter)",
            details={"file": file, "field": "body"},
        )
    return KnowledgeItem(
        id=item_id, tenant=tenant, kind="article", text=body, title=title, intents=intents, source=source
    )


def _read_table(table: RawTable, tenant: str) -> list[KnowledgeItem]:
    found = list(table.frame.columns)
    missing = [c for c in TABLE_COLUMNS if c not in found]
    if missing:
        raise MissingColumnError(
            f"{table.path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; "
            f"an article table needs 'title' and 'body' (optional 'intents', 'id'); the file has "
            f"{', '.join(map(repr, found)) or 'no columns'}",
            details={"file": str(table.path), "missing": missing, "found": found},
        )
    if table.row_problems:
        problem = table.row_problems[0]
        raise _row_error(table, problem.location, None, problem.message)
    if table.n_rows == 0:
        raise EmptyDatasetError(
            f"{table.path}: the file has a header but no articles", details={"file": str(table.path)}
        )
    columns = {name: _cells(table, name) for name in ("title", "body", "intents", "id") if name in found}
    items = []
    for position in range(table.n_rows):
        location = int(table.locations[position])
        title = columns["title"][position]
        if not title:
            raise _row_error(table, location, "title", "the title is empty")
        item_id = columns["id"][position] if "id" in columns else None
        intents = columns["intents"][position] if "intents" in columns else None
        converted = markdown_to_text(columns["body"][position] or "")
        body = _body(converted, title)
        if not body:
            raise _row_error(table, location, "body", "the article body is empty")
        items.append(
            _article(
                item_id=item_id or slugify(title),
                tenant=tenant,
                title=title,
                body=body,
                intents=_unique(i.strip() for i in _INTENT_SEPARATORS.split(intents or "") if i.strip()),
                source=f"{table.path.name}:{location}",
                file=str(table.path),
            )
        )
    return items


def _cells(table: RawTable, column: str) -> list[str | None]:
    """A column's cells as trimmed strings (``None`` when missing or empty); a list of strings (JSONL
    ``intents``) joins with ``;``; any other type is an error naming the row."""
    values = table.frame[column]
    kinds = classify(values)
    out: list[str | None] = []
    for position, value in enumerate(values.tolist()):
        if kinds.missing[position]:
            out.append(None)
        elif isinstance(value, str):
            out.append(value.strip() or None)
        elif column == "intents" and _is_string_list(value):
            out.append(";".join(list(value)) or None)
        elif column == "id" and isinstance(value, int) and not isinstance(value, bool):
            out.append(str(value))
        else:
            location = int(table.locations[position])
            expected = "a string or a list of strings" if column == "intents" else "a string"
            raise _row_error(table, location, column, f"a {type(value).__name__}, expected {expected}")
    return out


def _is_string_list(value: object) -> bool:
    """A JSON array of strings, as a list or as the NumPy array Arrow reads it into."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _row_error(table: RawTable, location: int, column: str | None, reason: str) -> ContractViolationError:
    where = f"{table.location_kind} {location}" + (f", column {column!r}" if column else "")
    return ContractViolationError(
        f"{table.path}: {where}: {reason}",
        details={"file": str(table.path), table.location_kind: location, "column": column, "reason": reason},
    )


def _reject_duplicate_ids(path: Path, items: list[KnowledgeItem]) -> None:
    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            raise DataFormatError(
                f"{path}: two articles have the id {item.id!r} ({seen[item.id]} and {item.source}); "
                "give one of them another 'id' in its front matter or rename it",
                details={"file": str(path), "field": "id", "id": item.id},
            )
        seen[item.id] = item.source
