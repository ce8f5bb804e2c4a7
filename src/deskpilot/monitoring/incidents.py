"""Realistic upstream changes to replay through a served model, for the incident drill and the benchmarks.

Each scenario turns a stream of (text, intent) pairs into what the service would see after a pipeline
change: an e-mail template wrapped around every message, a bug that lower-cases and truncates, a new kind
of request the model was never trained on, or a shift of the intent mix (a product launch, an outage). The
true intents travel with the texts so that the drill can simulate agents' verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

WRAPPER_HEAD = "[Support form v2] Customer wrote: "
WRAPPER_TAIL = " -- Reply above this line. Sent from the DeskPilot mobile app. Ref: case update."
TRUNCATE_AT = 40
NEW_INTENT_SHARE = 0.3
MIX_SURGE_SHARE = 0.5  # of the traffic goes to a few surging intents
SURGING_INTENTS = 3


class ScenarioKind(StrEnum):
    TEMPLATE_WRAPPER = "template_wrapper"
    TRUNCATE_LOWERCASE = "truncate_lowercase"
    NEW_INTENT = "new_intent"
    SHIFTED_MIX = "shifted_mix"


@dataclass(frozen=True)
class Traffic:
    texts: list[str]
    intents: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Scenario:
    kind: ScenarioKind
    description: str
    apply: Callable[[Traffic, np.random.Generator], Traffic]


def sample(pool: Traffic, size: int, rng: np.random.Generator) -> Traffic:
    """``size`` messages drawn from ``pool`` with replacement (a steady stream of unchanged traffic)."""
    picked = rng.integers(0, len(pool), size=size)
    return Traffic([pool.texts[i] for i in picked], [pool.intents[i] for i in picked])


def template_wrapper(traffic: Traffic, _rng: np.random.Generator) -> Traffic:
    return Traffic([f"{WRAPPER_HEAD}{text}{WRAPPER_TAIL}" for text in traffic.texts], list(traffic.intents))


def truncate_lowercase(traffic: Traffic, _rng: np.random.Generator) -> Traffic:
    return Traffic([text.lower()[:TRUNCATE_AT] for text in traffic.texts], list(traffic.intents))


def new_intent(
    unseen: Traffic, share: float = NEW_INTENT_SHARE
) -> Callable[[Traffic, np.random.Generator], Traffic]:
    """Replace ``share`` of the stream by messages of an intent the model never saw."""

    def apply(traffic: Traffic, rng: np.random.Generator) -> Traffic:
        texts, intents = list(traffic.texts), list(traffic.intents)
        swapped = rng.random(len(texts)) < share
        for i in np.flatnonzero(swapped):
            j = int(rng.integers(0, len(unseen)))
            texts[i], intents[i] = unseen.texts[j], unseen.intents[j]
        return Traffic(texts, intents)

    return apply


def shifted_mix(
    pool: Traffic, surge: float = MIX_SURGE_SHARE
) -> Callable[[Traffic, np.random.Generator], Traffic]:
    """Draw ``surge`` of the stream from a few intents (the same texts, another mix): pure label shift."""
    by_intent: dict[str, list[int]] = {}
    for i, intent in enumerate(pool.intents):
        by_intent.setdefault(intent, []).append(i)

    def apply(traffic: Traffic, rng: np.random.Generator) -> Traffic:
        names = sorted(by_intent)
        surging = [
            names[i] for i in rng.choice(len(names), size=min(SURGING_INTENTS, len(names)), replace=False)
        ]
        texts, intents = list(traffic.texts), list(traffic.intents)
        for i in np.flatnonzero(rng.random(len(texts)) < surge):
            rows = by_intent[surging[int(rng.integers(0, len(surging)))]]
            j = rows[int(rng.integers(0, len(rows)))]
            texts[i], intents[i] = pool.texts[j], pool.intents[j]
        return Traffic(texts, intents)

    return apply


def scenarios(pool: Traffic, unseen: Traffic | None) -> list[Scenario]:
    """Every scenario this pool supports (``new_intent`` needs messages of an intent held out of training)."""
    found = [
        Scenario(
            ScenarioKind.TEMPLATE_WRAPPER,
            "a help-desk form starts wrapping every message in a header and a mobile signature",
            template_wrapper,
        ),
        Scenario(
            ScenarioKind.TRUNCATE_LOWERCASE,
            f"an ingestion bug lower-cases messages and cuts them at {TRUNCATE_AT} characters",
            truncate_lowercase,
        ),
        Scenario(
            ScenarioKind.SHIFTED_MIX,
            f"an outage: {MIX_SURGE_SHARE:.0%} of the traffic is about {SURGING_INTENTS} intents",
            shifted_mix(pool),
        ),
    ]
    if unseen is not None and len(unseen):
        found.insert(
            2,
            Scenario(
                ScenarioKind.NEW_INTENT,
                f"a product launch: {NEW_INTENT_SHARE:.0%} of messages ask about something the model never "
                f"learned ({unseen.intents[0]})",
                new_intent(unseen),
            ),
        )
    return found


def split_pool(
    texts: Sequence[str], intents: Sequence[str], *, held_out_intent: str | None, seed: int
) -> tuple[Traffic, Traffic]:
    """(known, unseen): the messages of ``held_out_intent`` apart from the rest, shuffled."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    known = Traffic([], [])
    unseen = Traffic([], [])
    for i in order:
        target = unseen if intents[i] == held_out_intent else known
        target.texts.append(texts[i])
        target.intents.append(intents[i])
    return known, unseen
