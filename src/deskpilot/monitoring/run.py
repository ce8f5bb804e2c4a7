"""One monitor run: read windows of logged decisions, compute every signal on each, adjust for multiple
testing across all of them, and say whether anything fired.

The family of tests that Benjamini–Hochberg controls is the whole run (every signal of every window and
tenant): an operator reading one run's alerts sees at most the stated share of false discoveries among
them, however many tenants and windows it covered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from deskpilot.monitoring.multiple import apply_fdr
from deskpilot.monitoring.profile import Embedder, ReferenceProfile
from deskpilot.monitoring.result import MonitorResult, WindowResult
from deskpilot.monitoring.signals import domain, embedding, label_shift, prediction, quality, text
from deskpilot.monitoring.signals.base import MIN_WINDOW
from deskpilot.monitoring.types import Signal, SignalName, Window
from deskpilot.monitoring.window import WindowPlan, read_windows
from deskpilot.store.base import DecisionStore
from deskpilot.store.records import utc_now

DEFAULT_ALPHA = 0.01
EMBEDDED_TEXTS = 1_000  # texts of a window the encoder embeds for the MMD test (the slow signal)


@dataclass(frozen=True)
class MonitorConfig:
    alpha: float = DEFAULT_ALPHA
    seed: int = 0
    domain_max_texts: int = 5_000
    text_max_texts: int = text.MAX_TEXTS  # sampled texts of the vocabulary and language signals
    embedding: bool = True  # the MMD test on encoder embeddings, when the model has an encoder
    only: frozenset[SignalName] | None = None  # compute just these (benchmarks, quick checks)

    def wants(self, name: SignalName) -> bool:
        return self.only is None or name in self.only


def run_monitor(
    store: DecisionStore,
    profile: ReferenceProfile,
    plan: WindowPlan,
    *,
    model_name: str,
    model_version: str,
    tenant: str | None = None,
    per_tenant: bool = True,
    embedder: Embedder | None = None,
    config: MonitorConfig | None = None,
) -> MonitorResult:
    """Every signal on every window of ``plan``, q-values across all of them, nothing stored."""
    config = config or MonitorConfig()
    started = utc_now()
    windows = read_windows(
        store,
        plan,
        model_name=model_name,
        model_version=model_version,
        tenant=tenant,
        per_tenant=per_tenant,
    )
    computed = [compute_signals(profile, window, config=config, embedder=embedder) for window in windows]
    flat = [signal for signals in computed for signal in signals]
    adjusted = iter(apply_fdr(flat, alpha=config.alpha))
    results = [
        WindowResult(
            tenant=window.tenant,
            start=window.start,
            end=window.end,
            decisions=len(window),
            signals=[next(adjusted) for _ in signals],
            model_versions=window.model_versions,
        )
        for window, signals in zip(windows, computed, strict=True)
    ]
    return MonitorResult(
        model_name=model_name,
        model_version=model_version,
        since=plan.since,
        until=plan.until,
        started_at=started,
        finished_at=utc_now(),
        alpha=config.alpha,
        windows=results,
        reference_accuracy=profile.validation_accuracy,
    )


def compute_signals(
    profile: ReferenceProfile,
    window: Window,
    *,
    config: MonitorConfig,
    embedder: Embedder | None = None,
) -> list[Signal]:
    """Every signal of one window, in a fixed order (raw p-values: the run adjusts them)."""
    seed = config.seed
    steps: list[tuple[SignalName, Callable[[], Signal]]] = [
        (SignalName.INTENT_HISTOGRAM, lambda: prediction.intent_histogram_signal(profile, window)),
        (SignalName.CONFIDENCE, lambda: prediction.confidence_signal(profile, window)),
        (SignalName.MARGIN, lambda: prediction.margin_signal(profile, window)),
        (SignalName.AUTO_ROUTE_RATE, lambda: prediction.auto_route_rate_signal(profile, window)),
        (
            SignalName.DOMAIN_CLASSIFIER,
            lambda: domain.domain_classifier_signal(
                profile, window, max_texts=config.domain_max_texts, seed=seed
            ),
        ),
        (
            SignalName.VOCABULARY,
            lambda: text.vocabulary_signal(profile, window, max_texts=config.text_max_texts, seed=seed),
        ),
        (SignalName.TEXT_LENGTH, lambda: text.text_length_signal(profile, window)),
        (
            SignalName.LANGUAGE,
            lambda: text.language_signal(profile, window, max_texts=config.text_max_texts, seed=seed),
        ),
        (SignalName.EMBEDDING_MMD, lambda: _embedding_signal(profile, window, embedder, config)),
    ]
    signals = [_timed(name, step) for name, step in steps if config.wants(name)]
    shift_estimate = None
    shift_signal = None
    if config.wants(SignalName.LABEL_SHIFT) or config.wants(SignalName.ACCURACY_ESTIMATE):
        if len(window) >= MIN_WINDOW[SignalName.LABEL_SHIFT]:
            shift_estimate = label_shift.estimate_label_shift(profile, window.intents, seed=seed)
        shift_signal = _timed(
            SignalName.LABEL_SHIFT,
            lambda: label_shift.label_shift_signal(profile, window, estimate=shift_estimate, seed=seed),
        )
        if config.wants(SignalName.LABEL_SHIFT):
            signals.append(shift_signal)
    quality_steps: list[tuple[SignalName, Callable[[], Signal]]] = [
        (SignalName.ACCURACY_FEEDBACK, lambda: quality.accuracy_feedback_signal(profile, window)),
        (
            SignalName.ACCURACY_ESTIMATE,
            lambda: quality.accuracy_estimate_signal(
                profile, window, label_shift=shift_signal, shift=shift_estimate, seed=seed
            ),
        ),
        (SignalName.ACCURACY_AUDIT_SAMPLE, lambda: quality.audit_accuracy_signal(profile, window)),
    ]
    signals += [_timed(name, step) for name, step in quality_steps if config.wants(name)]
    return signals


def _embedding_signal(
    profile: ReferenceProfile, window: Window, embedder: Embedder | None, config: MonitorConfig
) -> Signal:
    """Embed (a sample of) the window with the version's encoder, project it, and test it."""
    projected = None
    if config.embedding and embedder is not None and profile.embedding is not None and len(window):
        rng = np.random.default_rng(config.seed)
        texts: Sequence[str] = window.texts
        if len(texts) > EMBEDDED_TEXTS:
            texts = [texts[i] for i in np.sort(rng.choice(len(texts), EMBEDDED_TEXTS, replace=False))]
        projected = profile.embedding.project(embedder.embed(list(texts)))
    elif not config.embedding:
        return replace(
            embedding.embedding_signal(profile, None, seed=config.seed),
            skipped="switched off (--no-embedding)",
        )
    return embedding.embedding_signal(profile, projected, seed=config.seed)


def _timed(name: SignalName, step: Callable[[], Signal]) -> Signal:
    started = time.perf_counter()
    signal = step()
    if signal.name is not name:
        raise RuntimeError(f"the {name} step returned the {signal.name} signal")
    return replace(signal, seconds=time.perf_counter() - started)
