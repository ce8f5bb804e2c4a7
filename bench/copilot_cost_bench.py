"""What an LLM costs per 1,000 suggestions, for each provider setting, on the bundled data.

The prompts are the real ones: Banking77 validation messages (seeded split, as ``deskpilot kb eval``), the
training side indexed as tickets plus the sample knowledge base, each message's sources numbered into the
versioned template. No LLM is reachable here, so the model is a stand-in that answers what a compliant model
would: the first two sentences of source [1], each cited. Tokens are counted with the MiniLM WordPiece
tokenizer (close to, not equal to, a GPT tokenizer's count for English); prices are example list prices and
are printed with the result. What it measures: how many suggestions call the LLM under each policy, the
tokens per call our prompts take, the cost that follows, the guard's verdict on the answers, and the
gateway's and guard's own time (the stand-in answers instantly).

Settings:
* ``extractive``: no LLM configured (the default);
* ``llm-always``: every ticket with an answering source goes to the LLM;
* ``llm-policy``: the cost rule on: intents whose template drafts agents send unchanged at least 80% of the
  time (over 20+ verdicts) get no LLM. The verdicts are simulated: half the intents (seeded) accepted at 90%,
  the rest at 40%, which is stated in the output.

    .venv/bin/python bench/copilot_cost_bench.py [--queries 400] [--prompt-per-1m 0.15]
        [--completion-per-1m 0.60]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
from pathlib import Path

import pandas as pd
from tokenizers import Tokenizer

from deskpilot.copilot.evaluation import DraftReport, LabelledQuery, evaluate_drafts
from deskpilot.copilot.gateway.base import ChatRequest, Completion
from deskpilot.copilot.gateway.router import Gateway, Route
from deskpilot.copilot.gateway.tokens import price_usd
from deskpilot.copilot.prompts import load_template
from deskpilot.copilot.suggest import Copilot
from deskpilot.data.pii import PiiRedactor
from deskpilot.models.encoder import TOKENIZER_FILE
from deskpilot.models.encoder_export import ensure_encoder
from deskpilot.retrieval.encoding import PackagedEncoder
from deskpilot.retrieval.evaluate import retrieval_splits, tickets_from_frame
from deskpilot.retrieval.index import RetrievalIndex
from deskpilot.retrieval.passages import split_sentences
from deskpilot.retrieval.sources import read_articles
from deskpilot.store.knowledge import Acceptance

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "banking77" / "train.csv"
ARTICLES = ROOT / "data" / "banking77" / "kb"
ENCODERS = Path.home() / ".cache" / "deskpilot" / "encoders"
TENANT = "cost"


class QuotingModel:
    """A stand-in chat model: quotes the first two sentences of source [1] with citations."""

    def __init__(self, tokenizer: Tokenizer, prompt_per_1k: float, completion_per_1k: float) -> None:
        self.tokenizer = tokenizer
        self.prices = (prompt_per_1k, completion_per_1k)

    @property
    def name(self) -> str:
        return "llm"

    @property
    def model(self) -> str:
        return "quoting-stand-in"

    async def complete(self, request: ChatRequest) -> Completion:
        user = request.messages[-1].content
        first = next(line for line in user.splitlines() if line.startswith("[1] "))
        body = first[4:].split(": ", 1)[-1]
        answer = " ".join(f"{s.rstrip('.')} [1]." for s in split_sentences(body)[:2])
        prompt = sum(len(self.tokenizer.encode(m.content).ids) + 4 for m in request.messages) + 3
        completion = len(self.tokenizer.encode(answer).ids)
        cost = price_usd(prompt, completion, prompt_per_1k=self.prices[0], completion_per_1k=self.prices[1])
        return Completion(answer, self.name, self.model, prompt, completion, cost)

    async def aclose(self) -> None:
        return None


def setup(queries: int) -> tuple[RetrievalIndex, list[LabelledQuery]]:
    frame = pd.read_csv(DATA)[["text", "category"]].rename(columns={"category": "label"}).astype(str)
    digest = hashlib.sha256(DATA.read_bytes()).hexdigest()
    split, _ = retrieval_splits(frame, digest=digest, seed=0)
    encoder = PackagedEncoder.from_export(ensure_encoder(ENCODERS))
    tickets = tickets_from_frame(frame, split.indexed, tenant=TENANT)
    index = RetrievalIndex.build([*tickets, *read_articles(ARTICLES, tenant=TENANT)], encoder)
    rows = random.Random(0).sample(split.queries.tolist(), queries)
    return index, [LabelledQuery(str(frame["text"].iat[r]), str(frame["label"].iat[r])) for r in rows]


def simulated_acceptance(intents: list[str]) -> dict[tuple[str, str], Acceptance]:
    rng = random.Random(0)
    liked = set(rng.sample(sorted(intents), len(intents) // 2))
    return {
        (intent, "extractive"): Acceptance(27, 0, 3) if intent in liked else Acceptance(12, 10, 8)
        for intent in intents
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--prompt-per-1m", type=float, default=0.15)
    parser.add_argument("--completion-per-1m", type=float, default=0.60)
    args = parser.parse_args()
    index, queries = setup(args.queries)
    tokenizer = Tokenizer.from_file(str(ensure_encoder(ENCODERS) / TOKENIZER_FILE))
    model = QuotingModel(tokenizer, args.prompt_per_1m / 1000, args.completion_per_1m / 1000)
    acceptance = simulated_acceptance(sorted({q.intent for q in queries}))
    template, redactor = load_template(), PiiRedactor()
    settings = {
        "extractive": (None, {}),
        "llm-always": (Gateway([Route(model)]), {}),
        "llm-policy": (Gateway([Route(model)]), acceptance),
    }
    print(
        f"{len(queries)} Banking77 validation messages; prices ${args.prompt_per_1m}/1M prompt and "
        f"${args.completion_per_1m}/1M completion tokens (example list prices); llm-policy's verdicts are "
        "simulated (half the intents accepted at 90%, the rest at 40%)\n"
    )
    print("setting      LLM calls  prompt tok/call  completion tok/call  USD per 1,000  grounded  p50 ms")
    for name, (gateway, table) in settings.items():
        copilot = Copilot(template=template, redactor=redactor, gateway=gateway)
        copilot.warm(index)
        report = asyncio.run(_evaluate(copilot, index, queries, table))
        calls = report.providers.get("llm", 0)
        per_call = (report.prompt_tokens / calls, report.completion_tokens / calls) if calls else (0.0, 0.0)
        print(
            f"{name:<12} {calls:>9}  {per_call[0]:>15.0f}  {per_call[1]:>19.0f}  "
            f"{report.cost_per_1000:>13.4f}  {report.grounding_rate:>8.3f}  "
            f"{report.latency_ms.get('p50', 0):6.2f}"
        )


async def _evaluate(
    copilot: Copilot,
    index: RetrievalIndex,
    queries: list[LabelledQuery],
    table: dict[tuple[str, str], Acceptance],
) -> DraftReport:
    return await evaluate_drafts(
        copilot,
        index,
        tenant=TENANT,
        queries=queries,
        answerable_intents=frozenset(q.intent for q in queries),
        acceptance=table,
    )


if __name__ == "__main__":
    main()
