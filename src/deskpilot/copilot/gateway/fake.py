"""A scripted in-process :class:`ChatProvider`: the fake beside the real HTTP one, for the layers above.

Each call takes the next scripted step: a string answers with that text, a :class:`ProviderError` is raised,
a :class:`Completion` is returned as is. When the script runs out, ``default`` applies the same way.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from deskpilot.copilot.gateway.base import ChatRequest, Completion, ProviderError
from deskpilot.copilot.gateway.tokens import estimate_prompt_tokens, estimate_text_tokens

Step = str | ProviderError | Completion


class ScriptedProvider:
    def __init__(
        self,
        name: str = "fake",
        script: Iterable[Step] = (),
        *,
        model: str = "fake-model",
        default: Step = "A scripted reply.",
        delay_s: float = 0.0,
    ) -> None:
        self._name = name
        self._model = model
        self._script: deque[Step] = deque(script)
        self.default = default
        self.delay_s = delay_s
        self.requests: list[ChatRequest] = []
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._model

    def enqueue(self, *steps: Step) -> None:
        self._script.extend(steps)

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        step = self._script.popleft() if self._script else self.default
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if isinstance(step, ProviderError):
            raise step
        if isinstance(step, Completion):
            return step
        return Completion(
            text=step,
            provider=self._name,
            model=self._model,
            prompt_tokens=estimate_prompt_tokens(request.messages),
            completion_tokens=estimate_text_tokens(step),
            cost_usd=0.0,
        )

    async def aclose(self) -> None:
        self.closed = True
