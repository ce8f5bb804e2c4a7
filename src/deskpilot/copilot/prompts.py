"""Versioned reply templates: the LLM's messages and the extractive draft's frame.

A template is a YAML file (``copilot/templates/reply-v1.yaml`` is the default). Its ``version`` is stored
with every suggestion, so a draft can always be traced to the exact words that asked for it. The ticket goes
between ``<ticket>`` tags after every tag-like sequence in it is neutralized, so a customer cannot close the
data block and write instructions after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from deskpilot.copilot.gateway.base import ChatMessage
from deskpilot.errors import ConfigError

DEFAULT_TEMPLATE = "reply-v1.yaml"
_TAG = re.compile(r"<\s*/?\s*ticket\b[^>]*>", re.IGNORECASE)  # also "< /ticket>", "</ TICKET x=1>"


@dataclass(frozen=True)
class NumberedSource:
    """A source as the prompt shows it: ``[number] title: text``."""

    number: int
    title: str | None
    text: str


@dataclass(frozen=True)
class ReplyTemplate:
    version: str
    system: str
    user: str
    opening: str
    closing: str
    courtesy: tuple[re.Pattern[str], ...]
    blocked_topics: dict[str, re.Pattern[str]]

    def messages(
        self, *, ticket: str, intent: str, sources: list[NumberedSource], max_sentences: int
    ) -> tuple[ChatMessage, ...]:
        listed = "\n".join(
            f"[{s.number}] {s.title + ': ' if s.title else ''}{_one_line(s.text)}" for s in sources
        )
        return (
            ChatMessage("system", self.system.format(max_sentences=max_sentences).strip()),
            ChatMessage(
                "user",
                self.user.format(sources=listed, ticket=delimit(ticket), intent=intent).strip(),
            ),
        )

    def frame(self, intent: str) -> tuple[str, str]:
        """The extractive draft's opening (naming the intent's topic) and closing lines."""
        return self.opening.format(topic=topic(intent)), self.closing

    def is_courtesy(self, sentence: str) -> bool:
        text = sentence.strip()
        return any(pattern.search(text) for pattern in self.courtesy)


def delimit(ticket: str) -> str:
    """The ticket as data: tag-like sequences that could close the block are defused."""
    return _TAG.sub(lambda m: m.group(0).replace("<", "(").replace(">", ")"), ticket)


def topic(intent: str) -> str:
    """``card_arrival`` → ``card arrival``: the intent as words for the draft's opening line."""
    return intent.replace("_", " ").replace("?", "").strip().lower() or "your request"


def load_template(path: Path | None = None) -> ReplyTemplate:
    """The bundled template, or an operator's YAML file; a malformed one raises :class:`ConfigError`."""
    where = str(path) if path is not None else DEFAULT_TEMPLATE
    try:
        raw = (
            path.read_text(encoding="utf-8")
            if path is not None
            else resources.files("deskpilot.copilot")
            .joinpath("templates", DEFAULT_TEMPLATE)
            .read_text("utf-8")
        )
        data = yaml.safe_load(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the reply template {where}: {exc}") from exc
    return _parse(data, where)


def _parse(data: Any, where: str) -> ReplyTemplate:
    if not isinstance(data, dict):
        raise ConfigError(f"the reply template {where} is not a mapping")

    def text(key: str, parent: dict[str, Any] = data) -> str:
        value = parent.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"the reply template {where} needs a non-empty string {key!r}")
        return value

    extractive = data.get("extractive")
    if not isinstance(extractive, dict):
        raise ConfigError(f"the reply template {where} needs an 'extractive' mapping")
    courtesy_patterns = data.get("courtesy") or []
    if not isinstance(courtesy_patterns, list):  # a bare string would compile char by char: "^" exempts all
        raise ConfigError(f"the reply template {where}: 'courtesy' must be a list of patterns")
    try:
        courtesy = tuple(re.compile(p, re.IGNORECASE) for p in courtesy_patterns)
        blocked = {
            str(k): re.compile(v, re.IGNORECASE) for k, v in (data.get("blocked_topics") or {}).items()
        }
    except (re.error, TypeError, AttributeError) as exc:
        raise ConfigError(f"the reply template {where} has a bad pattern: {exc}") from exc
    template = ReplyTemplate(
        version=text("version"),
        system=text("system"),
        user=text("user"),
        opening=text("opening", extractive),
        closing=text("closing", extractive),
        courtesy=courtesy,
        blocked_topics=blocked,
    )
    for field in ("{sources}", "{ticket}", "{intent}"):
        if field not in template.user:
            raise ConfigError(f"the reply template {where}: 'user' must contain {field}")
    _check_fields(template, where)
    return template


def _check_fields(template: ReplyTemplate, where: str) -> None:
    """Format each formatted text once now, so that an unknown ``{field}`` fails at load, not on a ticket."""
    try:
        template.system.format(max_sentences=1)
        template.user.format(sources="", ticket="", intent="")
        template.opening.format(topic="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"the reply template {where} has a bad {{field}}: {exc!r}") from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())
