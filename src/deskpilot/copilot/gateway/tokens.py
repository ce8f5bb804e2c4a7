"""Token estimates and prices, for when a provider reports no usage and for budget reservations.

No tokenizer: the gateway talks to any model. The estimate errs high on purpose (a reservation that is too
small is a budget bypass; one too large only turns a call away early): ASCII text averages about four
characters a token, so a third is generous; other scripts cost more tokens per character, so their UTF-8
bytes count half.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from deskpilot.copilot.gateway.base import ChatMessage

TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3


def estimate_text_tokens(text: str) -> int:
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    other_bytes = len(text.encode("utf-8")) - ascii_chars
    return math.ceil(ascii_chars / 3 + other_bytes / 2)


def estimate_prompt_tokens(
    messages: Iterable[ChatMessage],
    *,
    per_message: int = TOKENS_PER_MESSAGE,
    per_request: int = TOKENS_PER_REQUEST,
) -> int:
    return per_request + sum(per_message + estimate_text_tokens(m.content) for m in messages)


def price_usd(
    prompt_tokens: int, completion_tokens: int, *, prompt_per_1k: float, completion_per_1k: float
) -> float:
    return (prompt_tokens * prompt_per_1k + completion_tokens * completion_per_1k) / 1000.0
