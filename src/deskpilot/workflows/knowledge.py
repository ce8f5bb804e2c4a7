"""``kb import`` and ``kb build``: knowledge sources into the store, the store into a versioned index.

The store's ``kb_items`` are the index's only source. An import redacts every text, upserts the items, and
then, when the current index version was built from exactly the rows the store held before (its
``sources_digest`` says so), adds only the new and changed items to it; otherwise it rebuilds from the store.
Either way the result is published as a new version that the service picks up on its next poll.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from deskpilot.config import Settings
from deskpilot.data.pii import PiiRedactor
from deskpilot.errors import EmptyDatasetError
from deskpilot.retrieval.catalog import IndexCatalog, IndexVersion
from deskpilot.retrieval.encoding import PackagedEncoder
from deskpilot.retrieval.index import RetrievalIndex
from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.retrieval.sources import SourceKind, detect_kind, load_tickets, read_articles, ticket_digest
from deskpilot.store.knowledge import ImportCounts, KnowledgeStore
from deskpilot.workflows.audit import keyed_digest
from deskpilot.workflows.build import writable_store_url

logger = logging.getLogger(__name__)
DEFAULT_TENANT = "default"
BuildMode = Literal["incremental", "full", "unchanged"]


@dataclass(frozen=True)
class KbImportRequest:
    path: Path
    tenant: str = DEFAULT_TENANT
    kind: SourceKind | None = None  # None: decided from the path (a folder or title/body table: articles)
    text_column: str = "text"
    label_column: str = "label"
    reply_column: str | None = None
    id_column: str | None = None
    build: bool = True


@dataclass(frozen=True)
class BuildResult:
    mode: BuildMode
    version: IndexVersion | None
    encoded: int  # items embedded by this build
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "version": None if self.version is None else self.version.version,
            "encoded": self.encoded,
            "seconds": round(self.seconds, 3),
            "items_per_s": round(self.encoded / self.seconds, 1)
            if self.seconds > 0 and self.encoded
            else None,
        }


@dataclass(frozen=True)
class KbImportResult:
    path: Path
    tenant: str
    kind: SourceKind
    rows: int
    items: int
    counts: ImportCounts
    redactions: dict[str, int]
    build: BuildResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "tenant": self.tenant,
            "kind": self.kind,
            "rows": self.rows,
            "items": self.items,
            **self.counts.to_dict(),
            "redactions": self.redactions,
            "index": None if self.build is None else self.build.to_dict(),
        }


def knowledge_store(settings: Settings) -> KnowledgeStore:
    """The store's copilot tables (a local SQLite store is created and migrated first)."""
    from deskpilot.store.knowledge_sql import SqlKnowledgeStore

    return SqlKnowledgeStore(writable_store_url(settings))


def import_knowledge(
    settings: Settings,
    request: KbImportRequest,
    *,
    store: KnowledgeStore | None = None,
    progress: Callable[[str], None] | None = None,
) -> KbImportResult:
    say = progress or (lambda _: None)
    kind = request.kind or detect_kind(request.path)
    if kind == "tickets":
        loaded = load_tickets(
            request.path,
            tenant=request.tenant,
            text_column=request.text_column,
            label_column=request.label_column,
            reply_column=request.reply_column,
            id_column=request.id_column,
        )
        raw, rows = loaded.items, loaded.rows
    else:
        raw = read_articles(request.path, tenant=request.tenant)
        rows = len(raw)
    if not raw:
        raise EmptyDatasetError(
            f"{request.path}: no knowledge items to import", details={"file": str(request.path)}
        )
    items, redactions = redact_items(raw, lambda raw_id: knowledge_id(settings, raw_id))
    items = _last_per_id(items)
    own = store is None
    kb = store or knowledge_store(settings)
    try:
        before = sources_digest(kb.kb_items())
        counts = kb.upsert_items(items)
        say(f"stored {len(items):,} {kind} for tenant {request.tenant!r}: {counts.to_dict()}")
        build = build_index(settings, kb, changed_since=before, progress=say) if request.build else None
    finally:
        if own:
            kb.close()
    return KbImportResult(
        path=request.path,
        tenant=request.tenant,
        kind=kind,
        rows=rows,
        items=len(items),
        counts=counts,
        redactions=dict(redactions),
        build=build,
    )


def build_index(
    settings: Settings,
    store: KnowledgeStore,
    *,
    changed_since: str | None = None,
    full: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Publish an index of everything in ``store``: incrementally from the current version when it was built
    from the sources whose digest is ``changed_since``, else in full; nothing when it is already current."""
    import time

    say = progress or (lambda _: None)
    catalog = IndexCatalog(settings.resolved_kb_dir)
    items = store.kb_items()
    digest = sources_digest(items)
    current = catalog.current_version()
    built_from = None if current is None else catalog.version(current).sources_digest
    started = time.perf_counter()
    if not full and built_from == digest:
        say(f"index version {current} is already built from these sources")
        return BuildResult("unchanged", catalog.version(current) if current is not None else None, 0, 0.0)
    if not items:
        raise EmptyDatasetError("the knowledge store is empty: import tickets or articles first")
    if not full and current is not None and changed_since is not None and built_from == changed_since:
        index = catalog.load(current)
        old = {(i.tenant, i.id): i for t in index.tenants() for i in index.items(t)}
        changed = [i for i in items if old.get((i.tenant, i.id)) != i]
        say(f"adding {len(changed):,} new or changed items to index version {current}")
        index = index.add(changed)  # an item whose search text is unchanged keeps its embedding
        encoded = index.stats.encoded if index.stats is not None else len(changed)
        mode: BuildMode = "incremental"
    else:
        say(f"building the index from {len(items):,} items")
        index = RetrievalIndex.build(items, _encoder(settings, catalog))
        mode, encoded = "full", len(items)
    version = catalog.publish(index, sources_digest=digest, note=f"{mode} build")
    seconds = time.perf_counter() - started
    say(f"published index version {version.version} ({mode}, {encoded:,} items embedded in {seconds:.1f} s)")
    return BuildResult(mode, version, encoded, seconds)


def reindex_after_erasure(settings: Settings, store: KnowledgeStore | None = None) -> BuildResult | None:
    """Rebuild the index from the store after items were erased from it, then delete every older version,
    so that no published version still holds them; ``None`` when nothing is left to index."""
    catalog = IndexCatalog(settings.resolved_kb_dir)
    if catalog.current_version() is None:
        return None
    own = store is None
    kb = store or knowledge_store(settings)
    try:
        if not kb.kb_items():
            catalog.clear()
            return None
        result = build_index(settings, kb, full=True)
    finally:
        if own:
            kb.close()
    catalog.remove_all_but_current()
    return result


KNOWLEDGE_ID = "knowledge_ticket_id"
"""The purpose a ticket id that is itself personal data is keyed-hashed for (part of the HMAC's input)."""


def knowledge_id(settings: Settings, ticket_id: str) -> str:
    """The id a ticket whose own id is personal data is stored under: a keyed hash of it (the audit key), so
    that an erasure request for that id finds it, and nobody without the key can turn it back."""
    return "t-" + keyed_digest(settings, KNOWLEDGE_ID, ticket_id)[1][:16]


def redact_items(
    items: Sequence[KnowledgeItem], pii_id: Callable[[str], str] | None = None
) -> tuple[list[KnowledgeItem], Counter[str]]:
    """Every text field redacted before anything is stored or indexed; an id that is itself personal data
    is replaced by ``pii_id(id)`` (:func:`knowledge_id`), else by a digest of its redaction and the text."""
    redactor = PiiRedactor()
    total: Counter[str] = Counter()
    out = []
    for item in items:
        text, found = redactor.redact_with_counts(item.text)
        total += found
        title = reply = None
        if item.title is not None:
            title, found = redactor.redact_with_counts(item.title)
            total += found
        if item.reply is not None:
            reply, found = redactor.redact_with_counts(item.reply)
            total += found
        item_id = item.id
        if item.kind == "ticket" and item_id == ticket_digest(item.text):
            item_id = ticket_digest(text)  # an id derived from a text must not be a digest of its PII
        elif redactor.redact(item_id) != item_id:  # an id that is itself PII (an e-mail, a phone number)
            item_id = pii_id(item_id) if pii_id else ticket_digest(f"{redactor.redact(item_id)}\n{text}")
        out.append(replace(item, id=item_id, text=text, title=title, reply=reply))
    return out, total


def _last_per_id(items: Sequence[KnowledgeItem]) -> list[KnowledgeItem]:
    """One item per (tenant, id), the last one, as the readers keep it: tickets whose ids are digests of
    texts that differed only in their PII share one id once redacted, and are one item from then on."""
    kept: dict[tuple[str, str], KnowledgeItem] = {}
    for item in items:
        kept.pop((item.tenant, item.id), None)
        kept[(item.tenant, item.id)] = item
    return list(kept.values())


def sources_digest(items: Sequence[KnowledgeItem]) -> str:
    """sha256 over every item's fields, in (tenant, id) order: equal digests mean equal sources."""
    hasher = hashlib.sha256()
    for item in sorted(items, key=lambda i: (i.tenant, i.id)):
        record = [
            item.tenant,
            item.id,
            item.kind,
            item.title,
            item.text,
            list(item.intents),
            item.reply,
            item.source,
        ]
        hasher.update(json.dumps(record, ensure_ascii=False).encode("utf-8"))
        hasher.update(b"\n")
    return hasher.hexdigest()


def _encoder(settings: Settings, catalog: IndexCatalog) -> PackagedEncoder:
    """The encoder of the current index when there is one (no torch needed), else a fresh export."""
    current = catalog.current_version()
    if current is not None:
        encoder = catalog.load(current).encoder
        if isinstance(encoder, PackagedEncoder):
            return encoder
    from deskpilot.models.encoder_export import ensure_encoder

    return PackagedEncoder.from_export(ensure_encoder(settings.encoder_cache_dir))
