"""One tenant's share of an index: its items, their vectors, and a dense and a lexical index over them.

Each tenant gets its own partition, so a search for one tenant runs over that tenant's arrays only and has no
way to reach another's items; a filter applied after a shared search could, and could also return fewer than
k results. Partitions are immutable: adding items makes a new partition and the old one keeps serving.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deskpilot.retrieval.dense import AnnParams, DenseIndex
from deskpilot.retrieval.items import KINDS, Kind, KnowledgeItem
from deskpilot.retrieval.lexical import LexicalIndex, LexicalParams


@dataclass(frozen=True, eq=False)
class Partition:
    tenant: str
    items: tuple[KnowledgeItem, ...]
    vectors: np.ndarray  # float32, one unit row per item, row = position
    dense: DenseIndex
    lexical: LexicalIndex
    positions: Mapping[str, int]  # item id -> position
    kind_masks: Mapping[Kind, np.ndarray]  # bool per position, for kinds present

    @classmethod
    def assemble(
        cls,
        tenant: str,
        items: Sequence[KnowledgeItem],
        vectors: np.ndarray,
        dense: DenseIndex,
        lexical: LexicalIndex,
    ) -> Partition:
        items = tuple(items)
        kinds = np.array([item.kind for item in items], dtype=object)
        masks = {kind: kinds == kind for kind in KINDS if (kinds == kind).any()}
        positions = {item.id: position for position, item in enumerate(items)}
        if len(positions) != len(items):
            raise ValueError(f"tenant {tenant!r} has repeated item ids")
        return cls(tenant, items, vectors, dense, lexical, positions, masks)

    @classmethod
    def build(
        cls,
        tenant: str,
        items: Sequence[KnowledgeItem],
        vectors: np.ndarray,
        ann: AnnParams,
        lexical: LexicalParams,
    ) -> Partition:
        """A partition of ``items`` (a repeated id: the last one wins, at the first one's position)."""
        placed, rows = _place({}, items)
        ordered = [placed[position] for position in range(len(placed))]
        table = np.empty((len(ordered), vectors.shape[1]), dtype=np.float32)
        for position, row in rows.items():
            table[position] = vectors[row]
        return cls.assemble(
            tenant,
            ordered,
            table,
            DenseIndex.build(table, ann),
            LexicalIndex(lexical).fit([item.search_text for item in ordered]),
        )

    def merged(self, items: Sequence[KnowledgeItem], vectors: np.ndarray) -> Partition:
        """This partition with ``items`` added; an existing id is replaced in place.

        Only ``vectors`` (of ``items``) are new: stored rows are reused. Pure additions extend a copy of the
        ANN index; a replacement rebuilds it from the stored rows. BM25 is refit, its statistics being global.
        """
        positions = dict(self.positions)
        placed, rows = _place(positions, items)
        ordered = [placed[p] if p in placed else self.items[p] for p in range(len(positions))]
        table = np.empty((len(ordered), self.vectors.shape[1]), dtype=np.float32)
        table[: len(self.items)] = self.vectors
        for position, row in rows.items():
            table[position] = vectors[row]
        replaced = any(position < len(self.items) for position in rows)
        dense = DenseIndex.build(table, self.dense.params) if replaced else self.dense.extended(table)
        lexical = LexicalIndex(self.lexical.params).fit([item.search_text for item in ordered])
        return Partition.assemble(self.tenant, ordered, table, dense, lexical)

    def allowed(self, kinds: Collection[Kind] | None) -> tuple[np.ndarray | None, int]:
        """Mask of the positions of ``kinds`` (``None``: no filter needed) and how many there are."""
        if kinds is None or all(kind in kinds for kind in self.kind_masks):
            return None, len(self.items)
        masks = [self.kind_masks[kind] for kind in kinds if kind in self.kind_masks]
        if not masks:
            return np.zeros(len(self.items), dtype=bool), 0
        mask = np.logical_or.reduce(masks)
        return mask, int(mask.sum())

    def counts(self) -> dict[str, int]:
        return {kind: int(mask.sum()) for kind, mask in self.kind_masks.items()}


def _place(
    positions: dict[str, int], items: Sequence[KnowledgeItem]
) -> tuple[dict[int, KnowledgeItem], dict[int, int]]:
    """Give each of ``items`` a position (an id already in ``positions`` keeps its own, a new one is appended;
    ``positions`` is updated), and return the item now at each touched position and its row in ``items``."""
    placed: dict[int, KnowledgeItem] = {}
    rows: dict[int, int] = {}
    for row, item in enumerate(items):
        position = positions.setdefault(item.id, len(positions))
        placed[position] = item
        rows[position] = row
    return placed, rows
