"""The index with a hashing stand-in encoder: tenant isolation, kinds filtering inside the search, incremental
adds that equal a rebuild, replacement by id, and the search contract. Exact and HNSW paths both run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from deskpilot.errors import UsageError
from deskpilot.retrieval.dense import AnnParams
from deskpilot.retrieval.fusion import FusionParams
from deskpilot.retrieval.index import RetrievalIndex
from deskpilot.retrieval.items import Hit, KnowledgeItem
from tests.unit.retrieval.fakes import HashingEncoder, ticket

WORDS = [
    "card",
    "pin",
    "transfer",
    "refund",
    "cash",
    "atm",
    "fee",
    "limit",
    "rate",
    "crypto",
    "salary",
    "phone",
]
EXACT = AnnParams()
HNSW = AnnParams(exact_below=10, hnsw_m=8, ef_construction=40, ef_search=16)
PLAIN_RRF = FusionParams(rrf_k=60, depth=50, dense_weight=1.0, lexical_weight=1.0, method="rrf")


def corpus(tenant: str, count: int, seed: int = 0) -> list[KnowledgeItem]:
    rng = np.random.default_rng(seed)
    return [
        ticket(tenant, f"{tenant}-{i}", " ".join(rng.choice(WORDS, size=5)), intent=f"i{i % 4}")
        for i in range(count)
    ]


def ids(hits: list[Hit]) -> list[str]:
    return [hit.item.id for hit in hits]


def signature(hits: list[Hit]) -> list[tuple[str, float, int | None, int | None]]:
    return [(h.item.id, round(h.score, 9), h.dense_rank, h.lexical_rank) for h in hits]


@pytest.fixture(scope="module", params=[EXACT, HNSW], ids=["exact", "hnsw"])
def ann(request: pytest.FixtureRequest) -> AnnParams:
    params: AnnParams = request.param
    return params


def test_a_tenant_never_sees_another_tenants_items(ann: AnnParams) -> None:
    shared = "my card was stolen at the atm"
    items = [
        *corpus("acme", 40),
        *corpus("globex", 40, seed=1),
        ticket("acme", "same", shared),
        ticket("globex", "same", shared),  # same id and text in the other tenant
        ticket("globex", "only-globex", shared + " yesterday"),
    ]
    index = RetrievalIndex.build(items, HashingEncoder(), ann=ann)
    assert index.partitions["acme"].dense.kind == ("hnsw" if ann is HNSW else "flat")
    for mode in ("hybrid", "dense", "lexical"):
        hits = index.search("acme", shared, k=60, mode=mode)  # more than acme has
        assert hits
        assert {hit.item.tenant for hit in hits} == {"acme"}
        assert "only-globex" not in ids(hits)
    assert index.search("acme", shared, k=1)[0].item == items[-3]
    assert index.search("initech", shared) == []
    assert index.items("initech") == ()
    assert index.counts() == {"acme": {"ticket": 41}, "globex": {"ticket": 42}}


def test_kinds_are_filtered_inside_the_search(ann: AnnParams) -> None:
    tickets = corpus("acme", 200)
    articles = [
        KnowledgeItem(id=f"kb-{i}", tenant="acme", kind="article", title=f"Guide {i}", text=f"about {word}")
        for i, word in enumerate(["refund", "atm", "salary", "limits", "crypto"])
    ]
    index = RetrievalIndex.build([*tickets, *articles], HashingEncoder(), ann=ann)
    query = tickets[0].text  # a ticket matches it best: unfiltered top-k is all tickets
    assert all(hit.item.kind == "ticket" for hit in index.search("acme", query, k=5))
    only_articles = index.search("acme", query, k=5, kinds=["article"])
    assert sorted(ids(only_articles)) == sorted(a.id for a in articles)
    assert len(index.search("acme", query, k=5, kinds=["article"], mode="dense")) == 5
    assert all(hit.item.kind == "ticket" for hit in index.search("acme", query, k=20, kinds=["ticket"]))
    assert len(index.search("acme", query, k=20, kinds=["ticket"], mode="dense")) == 20
    assert index.search("acme", query, k=5, kinds=["ticket", "article"]) == index.search("acme", query, k=5)
    tickets_only = RetrievalIndex.build(tickets, HashingEncoder(), ann=ann)
    assert tickets_only.search("acme", query, kinds=["article"]) == []


def test_hits_carry_fused_score_and_both_retrievers_scores_and_ranks() -> None:
    items = corpus("acme", 30)
    index = RetrievalIndex.build(items, HashingEncoder(), fusion=PLAIN_RRF)
    hits = index.search("acme", items[3].text, k=10)
    assert hits[0].item.id == "acme-3"
    assert hits[0].dense_rank == 1
    assert hits[0].dense_score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].lexical_rank is not None
    assert hits[0].lexical_score is not None
    assert hits[0].lexical_score > 0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:
        expected = sum(1 / (60 + r) for r in (hit.dense_rank, hit.lexical_rank) if r is not None)
        assert hit.score == pytest.approx(expected)
        assert hit.dense_score is not None  # filled from the stored vector even when only BM25 found it
    lexical = index.search("acme", items[3].text, k=5, mode="lexical")
    assert all(h.dense_rank is None and h.dense_score is None for h in lexical)
    dense = index.search("acme", items[3].text, k=5, mode="dense")
    assert all(h.lexical_rank is None and h.lexical_score is None for h in dense)


def test_the_default_convex_fusion_mixes_cosine_and_scaled_bm25() -> None:
    items = corpus("acme", 30)
    index = RetrievalIndex.build(items, HashingEncoder())
    hits = index.search("acme", items[3].text, k=10)
    best_bm25 = max(h.lexical_score or 0.0 for h in index.search("acme", items[3].text, k=1, mode="lexical"))
    for hit in hits:
        assert hit.dense_score is not None
        assert hit.lexical_score is not None
        assert hit.score == pytest.approx(
            0.9 * hit.dense_score + 0.1 * hit.lexical_score / best_bm25, rel=1e-5
        )


def test_search_encoded_matches_search_and_unknown_words_fall_back_to_dense() -> None:
    items = corpus("acme", 30)
    index = RetrievalIndex.build(items, HashingEncoder())
    text = items[5].text
    vector = index.encode([text])[0]
    assert index.search_encoded("acme", text, vector, 7) == index.search("acme", text, 7)
    hits = index.search("acme", "zzzz qqqq", 3)
    assert len(hits) == 3
    assert all(h.lexical_rank is None for h in hits)
    assert index.search("acme", "zzzz qqqq", 3, mode="lexical") == []


def test_convex_fusion_is_available_per_call() -> None:
    items = corpus("acme", 30)
    index = RetrievalIndex.build(items, HashingEncoder())
    params = FusionParams(dense_weight=0.9, lexical_weight=0.1, method="convex")
    hits = index.search("acme", items[2].text, 5, fusion=params)
    assert hits[0].item.id == "acme-2"
    assert all(0 < h.score <= 1.0 + 1e-6 for h in hits)
    assert index.with_fusion(params).search("acme", items[2].text, 5) == hits


def test_incremental_add_equals_a_full_rebuild(ann: AnnParams) -> None:
    first, second = corpus("acme", 30), [*corpus("acme", 45, seed=2)[30:], *corpus("globex", 12, seed=3)]
    second = [KnowledgeItem(**{**vars(i), "id": i.id + "-new"}) for i in second]
    encoder = HashingEncoder()
    incremental = RetrievalIndex.build(first, encoder, ann=ann).add(second)
    assert encoder.calls[-1] == len(second)  # only the new items were encoded
    full = RetrievalIndex.build([*first, *second], HashingEncoder(), ann=ann)
    assert incremental.counts() == full.counts()
    for tenant, query in [("acme", first[0].text), ("acme", second[0].text), ("globex", second[-1].text)]:
        for mode in ("hybrid", "dense", "lexical"):
            a = incremental.search(tenant, query, 10, mode=mode)
            b = full.search(tenant, query, 10, mode=mode)
            if ann is EXACT:
                assert signature(a) == signature(b)
            else:  # two HNSW graphs built in different orders may differ; the top hit does not
                assert ids(a)[:1] == ids(b)[:1]


def test_an_item_with_an_existing_id_replaces_the_old_one(ann: AnnParams) -> None:
    items = corpus("acme", 30)
    encoder = HashingEncoder()
    before = RetrievalIndex.build(items, encoder, ann=ann)
    renamed = KnowledgeItem(id="acme-7", tenant="acme", kind="ticket", text="quantum banana", intents=("x",))
    after = before.add([renamed, ticket("globex", "acme-7", "quantum banana")])
    assert encoder.calls[-1] == 2
    assert after.counts() == {"acme": {"ticket": 30}, "globex": {"ticket": 1}}
    assert after.items("acme")[7] == renamed
    top = after.search("acme", "quantum banana", 3)
    assert top[0].item == renamed
    assert top[0].dense_rank == 1
    assert top[0].lexical_rank == 1
    old_text = items[7].text
    assert all(h.item.text != old_text or h.item.id != "acme-7" for h in after.search("acme", old_text, 30))
    assert before.items("acme")[7] == items[7]  # the old index is untouched and still serves
    assert before.search("acme", old_text, 1)[0].item.id == "acme-7"
    rebuilt = RetrievalIndex.build([*items[:7], renamed, *items[8:]], HashingEncoder(), ann=ann)
    if ann is EXACT:
        assert signature(after.search("acme", old_text, 10)) == signature(
            rebuilt.search("acme", old_text, 10)
        )


def test_repeated_ids_in_one_build_keep_the_last() -> None:
    index = RetrievalIndex.build(
        [ticket("acme", "a", "first text"), ticket("acme", "b", "other"), ticket("acme", "a", "second text")],
        HashingEncoder(),
    )
    assert [i.text for i in index.items("acme")] == ["second text", "other"]


def test_an_exact_partition_that_grows_past_the_threshold_becomes_hnsw() -> None:
    params = AnnParams(exact_below=40, hnsw_m=8, ef_construction=40, ef_search=16)
    small = RetrievalIndex.build(corpus("acme", 30), HashingEncoder(), ann=params)
    assert small.partitions["acme"].dense.kind == "flat"
    grown = small.add(corpus("acme", 60, seed=5)[30:])
    assert grown.partitions["acme"].dense.kind == "hnsw"
    assert len(grown.items("acme")) == 60
    assert grown.search("acme", grown.items("acme")[50].text, 1)[0].item.id == "acme-50"


def test_concurrent_searches_agree_with_serial_ones() -> None:
    items = corpus("acme", 200)
    index = RetrievalIndex.build(items, HashingEncoder(), ann=HNSW)
    queries = [item.text for item in items[:40]]
    serial = [index.search("acme", q, 5) for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda q: index.search("acme", q, 5), queries))
    assert parallel == serial


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "at least 1"),
        ({"kinds": ["faq"]}, "unknown kind"),
        ({"mode": "sparse"}, "unknown search mode"),
    ],
)
def test_bad_search_arguments_are_usage_errors(kwargs: dict[str, object], message: str) -> None:
    index = RetrievalIndex.build(corpus("acme", 5), HashingEncoder())
    for tenant in ("acme", "nobody"):
        with pytest.raises(UsageError, match=message):
            index.search(tenant, "card", **kwargs)  # type: ignore[arg-type]


def test_vectors_given_to_build_must_match_the_items() -> None:
    items = corpus("acme", 5)
    with pytest.raises(UsageError, match="shape"):
        RetrievalIndex.build(items, HashingEncoder(), vectors=np.zeros((4, 64), dtype=np.float32))
    given = HashingEncoder().encode([i.search_text for i in items])
    encoder = HashingEncoder()
    index = RetrievalIndex.build(items, encoder, vectors=given)
    assert encoder.calls == []
    assert index.stats is not None
    assert index.stats.encoded == 0
    assert index.stats.items == 5


@pytest.mark.parametrize("articles", [3, 25, 120])
def test_a_filtered_hnsw_search_returns_k_of_the_asked_kind(articles: int) -> None:
    """Few (exact scan over them), some (graph walk with a wider beam) and many allowed rows."""
    tickets = corpus("acme", 300)
    kb = [
        KnowledgeItem(id=f"kb-{i}", tenant="acme", kind="article", text=f"guide {WORDS[i % len(WORDS)]} {i}")
        for i in range(articles)
    ]
    index = RetrievalIndex.build([*tickets, *kb], HashingEncoder(), ann=HNSW)
    assert index.partitions["acme"].dense.kind == "hnsw"
    for mode in ("dense", "hybrid"):
        hits = index.search("acme", tickets[1].text, k=10, kinds=["article"], mode=mode)
        assert len(hits) == min(10, articles)
        assert {h.item.kind for h in hits} == {"article"}


@pytest.mark.parametrize("method", ["rrf", "convex"])
def test_single_retriever_modes_ignore_the_other_retriever(method: str) -> None:
    items = corpus("acme", 60)
    index = RetrievalIndex.build(items, HashingEncoder())
    fusion = FusionParams(dense_weight=0.5, lexical_weight=0.5, method=method)  # type: ignore[arg-type]
    text = "refund card fee"
    vector = index.encode([text])[0]
    lexical = index.search_encoded("acme", text, vector, 10, mode="lexical", fusion=fusion)
    assert [h.lexical_rank for h in lexical] == list(range(1, 11))
    assert all(h.dense_score is None for h in lexical)
    dense = index.search_encoded("acme", text, vector, 10, mode="dense", fusion=fusion)
    assert [h.dense_rank for h in dense] == list(range(1, 11))
