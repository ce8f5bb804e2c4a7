"""Which models answer: the champion, the challenger under rollout, and a fast fallback; all follow the
registry without a restart.

A candidate is loaded and smoke-tested off the request path, then swapped in with one reference assignment,
so every batch sees either the old or the new model, never a half-loaded one. A candidate that fails to load
or to predict never replaces the model serving; the failure is logged and retried on the next poll.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deskpilot import tags
from deskpilot.domain import ModelRef, Role
from deskpilot.errors import DeskPilotError
from deskpilot.models.artifact import TriageModel
from deskpilot.registry.base import CHAMPION, ModelRegistry
from deskpilot.rollout.actions import read_state
from deskpilot.rollout.state import RolloutState, Stage

FALLBACK_ALIAS = "fallback"
FALLBACK_FAMILY = "tfidf"
FALLBACK_RECHECK_S = 60.0
SMOKE_TEXT = "hello, I have a question about my account"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model: TriageModel
    name: str
    version: str

    @property
    def uri(self) -> str:
        return ModelRef(self.name, version=self.version).uri

    @property
    def family(self) -> str:
        return self.model.manifest.family

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_proba(texts)


class ModelEvent(Protocol):
    """Told of every model swap (``loaded``, with the model) and failed load (``load_failed``, model None)."""

    def __call__(self, event: str, role: Role, loaded: LoadedModel | None, detail: str) -> None: ...


LOADED = "loaded"
LOAD_FAILED = "load_failed"


class ModelManager:
    """Holds the champion, the challenger and the fallback model of one registered name."""

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        *,
        on_event: ModelEvent | None = None,
    ) -> None:
        self.registry = registry
        self.name = name
        self._on_event = on_event
        self._champion: LoadedModel | None = None
        self._fallback: LoadedModel | None = None
        self._challenger: LoadedModel | None = None
        self._fallback_checked = 0.0
        self._state = RolloutState()
        self._lock = threading.Lock()  # one refresh at a time; readers never take it
        self.last_error: str | None = None

    @property
    def champion(self) -> LoadedModel | None:
        return self._champion

    def serving(self, role: Role) -> LoadedModel | None:
        """The model loaded for ``role`` now (None before the first load, or with no such model)."""
        return {
            Role.CHAMPION: self._champion,
            Role.CHALLENGER: self._challenger,
            Role.FALLBACK: self._fallback,
        }[role]

    @property
    def fallback(self) -> LoadedModel | None:
        return self._fallback

    @property
    def challenger(self) -> LoadedModel | None:
        """The challenger of the current rollout (shadow or canary), once loaded."""
        return self._challenger

    @property
    def state(self) -> RolloutState:
        """The rollout state the loaded models follow (the challenger is loaded before it is published)."""
        return self._state

    def refresh(self) -> bool:
        """Follow the registry's rollout state; load what changed. True when a model swapped."""
        with self._lock:
            try:
                state = read_state(self.registry, self.name)
            except DeskPilotError as exc:
                self._failed(Role.CHAMPION, f"registry unreachable: {exc.message}")
                return False
            champion_swapped = self._refresh_champion(state)
            challenger_swapped = self._refresh_challenger(state)
            swapped = self._refresh_fallback() or champion_swapped or challenger_swapped
        if swapped:
            settle_heap()
        return swapped

    def _refresh_challenger(self, state: RolloutState) -> bool:
        wanted = state.challenger if state.stage is not Stage.NONE else None
        current = self._challenger
        if wanted is None or self._champion is None or state.champion != self._champion.version:
            # no challenger, or the champion itself could not be loaded: serve no challenger traffic
            self._challenger = None
            self._state = RolloutState(champion=self._champion.version if self._champion else None)
            return current is not None
        if current is None or current.version != wanted:
            candidate = self._load(ModelRef(self.name, version=wanted), Role.CHALLENGER)
            if candidate is None:
                self._challenger = None
                self._state = RolloutState(champion=state.champion)
                return current is not None
            self._challenger = candidate
            self._loaded(Role.CHALLENGER, candidate)
        self._state = state
        return current is None or current.version != wanted

    def _refresh_champion(self, state: RolloutState) -> bool:
        version = state.champion
        if version is None:
            self._failed(Role.CHAMPION, f"models:/{self.name}@{CHAMPION} is not set")
            return False
        if self._champion is not None and self._champion.version == version:
            return False
        candidate = self._load(ModelRef(self.name, version=version), Role.CHAMPION)
        if candidate is None:
            return False
        self._champion = candidate
        self.last_error = None
        self._loaded(Role.CHAMPION, candidate)
        return True

    def _refresh_fallback(self) -> bool:
        now = time.monotonic()
        if self._fallback is not None and now - self._fallback_checked < FALLBACK_RECHECK_S:
            return False  # listing every version is the costly registry call; the fallback rarely moves
        self._fallback_checked = now
        try:
            version = self._fallback_version()
        except DeskPilotError as exc:
            self._failed(Role.FALLBACK, f"registry unreachable: {exc.message}")
            return False
        if version is None or (self._fallback is not None and self._fallback.version == version):
            return False
        champion = self._champion
        candidate = champion if champion is not None and champion.version == version else None
        candidate = candidate or self._load(ModelRef(self.name, version=version), Role.FALLBACK)
        if candidate is None:
            return False
        self._fallback = candidate
        self._loaded(Role.FALLBACK, candidate)
        return True

    def _fallback_version(self) -> str | None:
        """``@fallback`` if set, else the newest tfidf version that did not fail its gate."""
        explicit = self.registry.alias_version(self.name, FALLBACK_ALIAS)
        if explicit is not None:
            return explicit
        for version in self.registry.versions(self.name):
            if version.family == FALLBACK_FAMILY and version.tags.get(tags.GATE) != tags.GATE_FAIL:
                return version.version
        return None

    def _load(self, ref: ModelRef, role: Role) -> LoadedModel | None:
        try:
            model = self.registry.load(ref)
            probs = model.predict_proba([SMOKE_TEXT])
            if probs.shape != (1, len(model.classes)) or not np.isfinite(probs).all():
                raise ValueError(f"smoke prediction returned shape {probs.shape} or non-finite values")
        except Exception as exc:  # any failure keeps the serving model; the operator sees why
            self._failed(role, f"{ref.uri} failed to load: {exc}")
            return None
        return LoadedModel(model=model, name=ref.name, version=str(ref.version))

    def _loaded(self, role: Role, loaded: LoadedModel) -> None:
        logger.info("%s model %s (%s) serving", role, loaded.uri, loaded.family)
        if self._on_event is not None:
            self._on_event(LOADED, role, loaded, loaded.uri)

    def _failed(self, role: Role, detail: str) -> None:
        if role is Role.CHAMPION:
            self.last_error = detail
        logger.warning("%s model not updated: %s", role, detail)
        if self._on_event is not None:
            self._on_event(LOAD_FAILED, role, None, detail)


def settle_heap() -> None:
    """Move the loaded models out of the garbage collector's view.

    A loaded model is hundreds of thousands of long-lived objects; every full collection walks them all
    (~0.4 s for the bundled tfidf model), which showed up as the service's p99. Unfreezing first lets the
    replaced model be freed; freezing after a collection keeps the survivors out of later passes.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Poller:
    """Calls ``refresh`` every ``interval_s`` on a daemon thread (never when ``interval_s`` is 0), surviving
    any single failed call: how the service follows the registry and the retrieval index catalog."""

    def __init__(self, refresh: Callable[[], object], interval_s: float, *, what: str) -> None:
        self.refresh = refresh
        self.interval_s = interval_s
        self.what = what
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s <= 0 or self._thread is not None:
            return
        name = f"deskpilot-{self.what.replace(' ', '-')}-watcher"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any single bad poll
                logger.exception("%s refresh failed", self.what)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class ModelWatcher(Poller):
    """Polls the registry and refreshes the manager when aliases move."""

    def __init__(self, manager: ModelManager, interval_s: float) -> None:
        super().__init__(manager.refresh, interval_s, what="model")
        self.manager = manager
