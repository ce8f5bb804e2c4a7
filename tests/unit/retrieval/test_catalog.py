"""The versioned catalog with the real ONNX encoder: publish → CURRENT → load gives the same answers, the
encoder travels with the index, a failed publish leaves nothing behind, and damaged files are named."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deskpilot.errors import ArtifactError, UsageError
from deskpilot.models.encoder_export import ensure_encoder
from deskpilot.retrieval import catalog as catalog_module
from deskpilot.retrieval.catalog import IndexCatalog
from deskpilot.retrieval.dense import AnnParams
from deskpilot.retrieval.encoding import PackagedEncoder
from deskpilot.retrieval.index import RetrievalIndex
from deskpilot.retrieval.items import KnowledgeItem
from tests.helpers import bundled_subset
from tests.unit.retrieval.fakes import HashingEncoder, ticket


@pytest.fixture(scope="module")
def encoder(encoder_cache: Path) -> PackagedEncoder:
    return PackagedEncoder.from_export(ensure_encoder(encoder_cache))


@pytest.fixture(scope="module")
def items() -> list[KnowledgeItem]:
    frame = bundled_subset(labels=4, per_label=10)
    tickets = [
        ticket("acme" if i % 2 else "globex", f"t{i}", text, intent=label)
        for i, (text, label) in enumerate(zip(frame["text"], frame["label"], strict=True))
    ]
    article = KnowledgeItem(
        id="kb-card",
        tenant="acme",
        kind="article",
        title="Card delivery",
        text="Cards arrive in 5 days.",
        intents=("card_arrival",),
    )
    return [*tickets, article]


@pytest.fixture(scope="module")
def index(items: list[KnowledgeItem], encoder: PackagedEncoder) -> RetrievalIndex:
    # exact_below=15: acme (21 items) is HNSW, globex (20) too; a 3rd tenant below stays exact
    return RetrievalIndex.build(
        [*items, ticket("initech", "x1", "where is my new card")], encoder, ann=AnnParams(exact_below=15)
    )


@pytest.fixture
def published(tmp_path: Path, index: RetrievalIndex) -> IndexCatalog:
    catalog = IndexCatalog(tmp_path / "kb")
    catalog.publish(index, sources_digest="abc123", note="first")
    return catalog


def test_publish_then_load_answers_the_same(published: IndexCatalog, index: RetrievalIndex) -> None:
    assert published.current_version() == 1
    loaded = published.load()
    assert loaded.origin == 1
    assert loaded.counts() == index.counts()
    kinds = {tenant: partition.dense.kind for tenant, partition in loaded.partitions.items()}
    assert kinds == {"acme": "hnsw", "globex": "hnsw", "initech": "flat"}
    for tenant, query in [
        ("acme", "my card has not arrived"),
        ("globex", "card arrival"),
        ("initech", "card"),
    ]:
        for kinds in (None, ("article",), ("ticket",)):
            assert loaded.search(tenant, query, 5, kinds=kinds) == index.search(tenant, query, 5, kinds=kinds)
    assert isinstance(loaded.partitions["acme"].vectors, np.memmap)


def test_manifest_records_lineage_encoder_counts_and_ann_choice(
    published: IndexCatalog, index: RetrievalIndex
) -> None:
    version = published.versions()[0]
    manifest = version.manifest
    assert (version.version, version.parent, version.note, version.sources_digest) == (
        1,
        None,
        "first",
        "abc123",
    )
    assert version.path == published.root / "versions" / "000001"
    assert manifest["encoder"]["key"] == "all-minilm-l6-v2-0.1.0-opset17"
    assert set(manifest["encoder"]["sha256"]) == {"encoder.onnx", "tokenizer.json"}
    assert (published.root / manifest["encoder"]["path"] / "encoder.onnx").is_file()
    assert not (published.root / manifest["encoder"]["path"] / "encoder.int8.onnx").exists()
    assert version.counts == {
        "acme": {"ticket": 20, "article": 1},
        "globex": {"ticket": 20},
        "initech": {"ticket": 1},
    }
    anns = {p["tenant"]: p["ann"] for p in manifest["partitions"]}
    assert anns["acme"]["type"] == "IndexHNSWFlat"
    assert anns["acme"]["M"] == 32
    assert anns["initech"] == {"kind": "flat", "type": "IndexFlatIP", "exact_below": 15}
    assert manifest["build"]["items"] == 42
    assert manifest["build"]["items_per_second"] > 0
    assert manifest["params"]["fusion"]["rrf_k"] == 60


def test_a_second_publish_chains_versions_and_reuses_the_encoder(
    published: IndexCatalog, encoder: PackagedEncoder
) -> None:
    loaded = published.load()
    grown = loaded.add([ticket("acme", "t-new", "I lost my card yesterday")])
    second = published.publish(grown, sources_digest="def456")
    assert (second.version, second.parent) == (2, 1)
    assert published.current_version() == 2
    assert [v.version for v in published.versions()] == [1, 2]
    assert len(list((published.root / "encoders").iterdir())) == 1
    assert published.load().search("acme", "lost card", 1)[0].item.id == "t-new"
    assert published.load(1).search("acme", "lost card", 1)[0].item.id != "t-new"
    published.activate(1)  # a rollback
    assert published.current_version() == 1
    with pytest.raises(ArtifactError, match="no index version 9"):
        published.activate(9)


def test_a_failed_publish_leaves_no_version_and_current_unchanged(
    published: IndexCatalog, index: RetrievalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(directory: Path, partition: object) -> dict[str, object]:
        directory.mkdir(parents=True)
        (directory / "items.jsonl").write_text("half", encoding="utf-8")
        raise OSError("disk full")

    monkeypatch.setattr(catalog_module, "write_partition", broken)
    with pytest.raises(OSError, match="disk full"):
        published.publish(index, sources_digest="x")
    assert published.current_version() == 1
    assert [v.version for v in published.versions()] == [1]
    assert [p.name for p in (published.root / "versions").iterdir()] == ["000001"]


def test_concurrent_publishers_get_distinct_versions(published: IndexCatalog, index: RetrievalIndex) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        numbers = sorted(
            pool.map(lambda n: published.publish(index, sources_digest=f"d{n}").version, range(3))
        )
    assert numbers == [2, 3, 4]
    assert [v.version for v in published.versions()] == [1, 2, 3, 4]
    assert sorted(v.sources_digest for v in published.versions()[1:]) == ["d0", "d1", "d2"]
    assert published.current_version() in {2, 3, 4}
    assert not [p for p in (published.root / "versions").iterdir() if p.name.startswith(".")]


def test_an_empty_catalog_has_no_version(tmp_path: Path) -> None:
    catalog = IndexCatalog(tmp_path / "none")
    assert catalog.current_version() is None
    assert catalog.versions() == []
    with pytest.raises(ArtifactError, match="no index has been published"):
        catalog.load()


def test_only_an_index_that_carries_its_encoder_can_be_published(tmp_path: Path) -> None:
    index = RetrievalIndex.build([ticket("acme", "a", "hello")], HashingEncoder())
    with pytest.raises(UsageError, match="PackagedEncoder"):
        IndexCatalog(tmp_path).publish(index, sources_digest="x")


def _version_dir(catalog: IndexCatalog) -> Path:
    return catalog.root / "versions" / "000001"


def _rewrite_manifest(version: Path, **changes: object) -> None:
    path = version / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **changes}), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda v: (v / "manifest.json").write_text("{not json", encoding="utf-8"), "manifest.json"),
        (
            lambda v: (v / "manifest.json").write_text(json.dumps({"version": 1}), encoding="utf-8"),
            "manifest.json",
        ),
        (lambda v: _rewrite_manifest(v, format=99), "manifest.json"),
        (lambda v: (v / "p0000" / "vectors.npy").unlink(), "p0000/vectors.npy"),
        (lambda v: (v / "p0000" / "items.jsonl").write_text("{}\n", encoding="utf-8"), "p0000/items.jsonl"),
        (lambda v: (v / "p0001" / "dense.faiss").write_bytes(b"\0" * 64), "p0001/dense.faiss"),
        (lambda v: (v / "p0000" / "bm25" / "vocab.index.json").unlink(), "p0000/bm25/vocab.index.json"),
    ],
    ids=[
        "manifest-garbage",
        "manifest-incomplete",
        "manifest-format",
        "vectors-missing",
        "items-corrupt",
        "hnsw-corrupt",
        "bm25-missing",
    ],
)
def test_damaged_files_raise_an_artifact_error_naming_them(
    published: IndexCatalog, damage: object, named: str
) -> None:
    damage(_version_dir(published))  # type: ignore[operator]
    with pytest.raises(ArtifactError) as caught:
        published.load()
    assert named in caught.value.message


def test_without_verification_a_corrupt_file_is_still_named(published: IndexCatalog) -> None:
    (_version_dir(published) / "p0000" / "items.jsonl").write_text('{"id": 1}\n', encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"p0000/items\.jsonl"):
        published.load(verify=False)


def test_a_damaged_encoder_or_pointer_is_named(published: IndexCatalog) -> None:
    (published.root / "CURRENT").write_text("latest\n", encoding="ascii")
    with pytest.raises(ArtifactError, match="CURRENT"):
        published.current_version()
    published.activate(1)
    tokenizer = next((published.root / "encoders").iterdir()) / "tokenizer.json"
    tokenizer.unlink()  # a copy, not the export cache's file: replace it rather than edit it in place
    tokenizer.write_text("{}", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"tokenizer\.json"):
        published.load()
