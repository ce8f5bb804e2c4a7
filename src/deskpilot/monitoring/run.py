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

from deskpilot.monitoring.multiple import adjust_signals
from deskpilot.monitoring.profile import Embedder, ReferenceProfile
from deskpilot.monitoring.result import MonitorResult, WindowResult
from deskpilot.monitoring.signals import embedding, label_shift, prediction, quality, text
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
    adjusted = iter(adjust_signals(flat, alpha=config.alpha))
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
    steps: list[tuple[SignalName, Callable[[], Signal]]] = [
        (SignalName.INTENT_HISTOGRAM, lambda: prediction.intent_histogram(profile, window)),
        (SignalName.CONFIDENCE, lambda: prediction.confidence(profile, window)),
        (SignalName.MARGIN, lambda: prediction.margin(profile, window)),
        (SignalName.AUTO_ROUTE_RATE, lambda: prediction.auto_route_rate(profile, window)),
        (
            SignalName.DOMAIN_CLASSIFIER,
            lambda: text.domain_classifier(
                profile.sample_texts, window.texts, seed=config.seed, max_texts=config.domain_max_texts
            ),
        ),
        (SignalName.VOCABULARY, lambda: text.vocabulary(profile, window)),
        (SignalName.TEXT_LENGTH, lambda: text.text_length(profile, window)),
        (SignalName.LANGUAGE, lambda: text.language(profile, window)),
        (SignalName.EMBEDDING_MMD, lambda: _embedding_signal(profile, window, embedder, config)),
        (SignalName.LABEL_SHIFT, lambda: label_shift.label_shift(profile, window, seed=config.seed)),
    ]
    signals = [_timed(name, step) for name, step in steps if config.wants(name)]
    shift = next((s for s in signals if s.name is SignalName.LABEL_SHIFT), None)
    quality_steps: list[tuple[SignalName, Callable[[], Signal]]] = [
        (SignalName.ACCURACY_FEEDBACK, lambda: quality.accuracy_feedback(profile, window)),
        (
            SignalName.ACCURACY_ESTIMATE,
            lambda: quality.accuracy_estimate(profile, window, label_shift=shift, seed=config.seed),
        ),
        (SignalName.ACCURACY_AUDIT_SAMPLE, lambda: quality.accuracy_audit_sample(profile, window)),
    ]
    signals += [_timed(name, step) for name, step in quality_steps if config.wants(name)]
    return signals


def _embedding_signal(
    profile: ReferenceProfile, window: Window, embedder: Embedder | None, config: MonitorConfig
) -> Signal:
    reference = profile.embedding
    if not config.embedding or embedder is None or reference is None:
        why = "switched off" if not config.embedding else "the model has no encoder to embed with"
        return embedding.skipped(why, n_window=len(window))
    rng = np.random.default_rng(config.seed)
    texts: Sequence[str] = window.texts
    if len(texts) > EMBEDDED_TEXTS:
        texts = [texts[i] for i in np.sort(rng.choice(len(texts), EMBEDDED_TEXTS, replace=False))]
    projected = reference.project(embedder.embed(list(texts)))
    return embedding.embedding_mmd(reference, projected, n_window=len(window), seed=config.seed)


def _timed(name: SignalName, step: Callable[[], Signal]) -> Signal:
    started = time.perf_counter()
    signal = step()
    if signal.name is not name:
        raise RuntimeError(f"the {name} step returned the {signal.name} signal")
    return replace(signal, seconds=time.perf_counter() - started)
