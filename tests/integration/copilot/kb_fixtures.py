"""A home for the copilot suites: a trained triage model and a knowledge index built once, by the real import.

Tenant ``acme`` gets resolved tickets of the six intents the model knows (some with an agent's reply) and
the sample help-center articles of those intents; tenant ``globex`` gets a few tickets of its own, one of
them with the same text as an acme ticket but its own id and reply. The encoder is the shared test export,
linked into the home so that no build exports it again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deskpilot.config import Settings
from deskpilot.models.encoder_export import ensure_encoder
from deskpilot.retrieval.articles import split_front_matter
from deskpilot.workflows.knowledge import KbImportRequest, KbImportResult, import_knowledge
from tests.helpers import REPO_ROOT, bundled_subset
from tests.integration.api_fixtures import TrainedHome, settings_for, trained_home

SAMPLE_KB = REPO_ROOT / "data" / "banking77" / "kb"
LABELS = 6  # the first six intents of the bundled data; the sample KB has an article for each
ACTIVATE_REPLY = "You can activate the new card in the app under Cards, then tap Activate."
GLOBEX_REPLY = "GLOBEX-ONLY reply: our gizmo desk will call you back about this."
GLOBEX_ONLY_TEXT = "GLOBEX-ONLY question about my zorblax subscription renewal"


@dataclass(frozen=True)
class CopilotHome:
    trained: TrainedHome
    labels: tuple[str, ...]
    acme_tickets: pd.DataFrame  # text, label, reply (None for most rows)
    shared_text: str  # an acme ticket's text that globex has too, under its own id and reply
    article_titles: dict[str, str]  # acme's article titles by intent
    imports: tuple[KbImportResult, ...]

    @property
    def home(self) -> Path:
        return self.trained.home

    def settings(self, **values: object) -> Settings:
        return settings_for(self.trained, kb_reload_interval_s=0, **values)


def link_encoder(home: Path, encoder_cache: Path) -> None:
    """Point the home's encoder cache at the shared export (exported first when missing)."""
    ensure_encoder(encoder_cache)
    target = home / "cache" / "encoders"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(encoder_cache.resolve(), target_is_directory=True)


def copy_articles(intents: set[str], folder: Path) -> dict[str, str]:
    """The sample articles answering any of ``intents``, copied into ``folder``; their titles by intent."""
    titles: dict[str, str] = {}
    for file in sorted(SAMPLE_KB.rglob("*.md")):
        if file.name == "README.md":
            continue
        front, _ = split_front_matter(file.read_text(encoding="utf-8"), file)
        wanted = intents.intersection(front.intents)
        if wanted:
            target = folder / file.relative_to(SAMPLE_KB)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            titles.update(dict.fromkeys(wanted, front.title or file.stem))
    return titles


def build_copilot_home(
    root: Path, encoder_cache: Path, *, per_label: int = 10, versions: int = 1
) -> CopilotHome:
    trained = trained_home(root / "home", versions=versions, labels=LABELS, per_label=30)
    link_encoder(trained.home, encoder_cache)
    settings = settings_for(trained)
    tickets = bundled_subset(labels=LABELS, per_label=per_label, seed=1)[["text", "label"]].copy()
    tickets["reply"] = None
    activate = tickets.index[tickets["label"] == "activate_my_card"][:3]
    tickets.loc[activate, "reply"] = ACTIVATE_REPLY
    labels = tuple(sorted(tickets["label"].unique()))
    sources = root / "sources"
    sources.mkdir()
    tickets.to_csv(sources / "acme.csv", index=False)
    titles = copy_articles(set(labels), sources / "acme-articles")
    shared_text = str(tickets["text"].iloc[0])
    globex = pd.DataFrame(
        [
            {"id": "g-shared", "text": shared_text, "label": tickets["label"].iloc[0], "reply": GLOBEX_REPLY},
            {"id": "g-2", "text": GLOBEX_ONLY_TEXT, "label": "subscriptions", "reply": GLOBEX_REPLY},
            {"id": "g-3", "text": "GLOBEX-ONLY my gizmo arrived broken", "label": "returns", "reply": None},
        ]
    )
    globex.to_csv(sources / "globex.csv", index=False)
    imports = (
        import_knowledge(
            settings, KbImportRequest(sources / "acme.csv", tenant="acme", reply_column="reply")
        ),
        import_knowledge(settings, KbImportRequest(sources / "acme-articles", tenant="acme")),
        import_knowledge(
            settings,
            KbImportRequest(sources / "globex.csv", tenant="globex", reply_column="reply", id_column="id"),
        ),
    )
    return CopilotHome(
        trained=trained,
        labels=labels,
        acme_tickets=tickets,
        shared_text=shared_text,
        article_titles=titles,
        imports=imports,
    )
