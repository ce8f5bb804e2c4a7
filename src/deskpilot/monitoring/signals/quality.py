"""Quality: realized accuracy from agents' verdicts, and label-free estimates when verdicts are scarce.

All three are interval signals: each fires itself when its interval lies wholly below the reference
accuracy minus ``TOLERANCE`` (a drop an operator would act on), and gives a one-sided p-value of the same
comparison for the record. The reference accuracy is the fixed yardstick: its own sampling error (about
±1 % at 2 000 validation rows) is small next to the tolerance.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.base import MIN_WINDOW, skipped, timed, too_small
from deskpilot.monitoring.signals.label_shift import LabelShiftEstimate, estimate_label_shift
from deskpilot.monitoring.signals.stats import wilson, z_value
from deskpilot.monitoring.types import Signal, SignalKind, SignalName, Window

TOLERANCE = 0.05
LEVEL = 0.99
MIN_AUDIT_VERDICTS = 10


def verdicts(window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Which decisions have a verdict, and which of those were right (``__other__`` never matches)."""
    has = np.asarray([verdict is not None for verdict in window.correct_intent], dtype=bool)
    right = np.asarray(
        [
            v is not None and v == intent
            for v, intent in zip(window.correct_intent, window.intents, strict=True)
        ],
        dtype=bool,
    )
    return has, right


def _below(estimate: float, error: float, bar: float) -> float:
    """One-sided p-value of "accuracy is at least ``bar``" for a normal estimate."""
    if error <= 0 or not np.isfinite(error):
        return 0.0 if estimate < bar else 1.0
    return float(stats.norm.cdf((estimate - bar) / error))


def _rate(right: np.ndarray, level: float) -> dict[str, object]:
    k, n = int(right.sum()), len(right)
    return {"verdicts": n, "accuracy": round(k / n, 4) if n else None, "interval": wilson(k, n, level)}


@timed
def accuracy_feedback_signal(
    profile: ReferenceProfile, window: Window, *, tolerance: float = TOLERANCE, level: float = LEVEL
) -> Signal:
    """Realized accuracy, stratified by route to undo the selection of which tickets get a verdict.

    Verdicts come mostly for human-routed tickets, which are the hard ones, so pooling all verdicts
    understates accuracy (and weights the two routes by how much feedback each gets, not by traffic).
    Auto-route accuracy is taken only from the random audit sample, human-route accuracy from human-route
    verdicts, and the two are weighted by the window's route shares. Verdicts on auto routes outside the
    audit sample are left out: they exist because someone noticed a mistake. The assumption left is that
    within a route, which tickets get a verdict is unrelated to whether the model was right.

    The interval combines the two Wilson intervals by the MOVER method (Zou and Donner, 2008) and adds the
    route share's own sampling error by the delta method.
    """
    name, kind = SignalName.ACCURACY_FEEDBACK, SignalKind.QUALITY
    has, right = verdicts(window)
    auto = np.asarray(window.auto, dtype=bool)
    audited = has & auto & np.asarray(window.review_sample, dtype=bool)
    human = has & ~auto
    used = int(audited.sum() + human.sum())
    if small := too_small(name, kind, used, profile.n_validation):
        return small
    n, share = len(window), float(auto.mean())
    if share > 0 and audited.sum() < MIN_AUDIT_VERDICTS:
        return skipped(name, kind, f"{int(audited.sum())} audit-sample verdicts < {MIN_AUDIT_VERDICTS}", used)
    if share < 1 and not human.any():
        return skipped(name, kind, "no verdicts on human-routed tickets", used)
    a = float(right[audited].mean()) if audited.any() else 0.0
    h = float(right[human].mean()) if human.any() else 0.0
    la, ua = wilson(int(right[audited].sum()), int(audited.sum()), level)
    lh, uh = wilson(int(right[human].sum()), int(human.sum()), level)
    estimate = share * a + (1 - share) * h
    share_term = (z_value(level) * (a - h)) ** 2 * share * (1 - share) / n
    low = estimate - np.sqrt((share * (a - la)) ** 2 + ((1 - share) * (h - lh)) ** 2 + share_term)
    high = estimate + np.sqrt((share * (ua - a)) ** 2 + ((1 - share) * (uh - h)) ** 2 + share_term)
    bar = profile.validation_accuracy - tolerance
    error = (high - low) / (2 * z_value(level))
    return Signal(
        name=name,
        kind=kind,
        statistic=estimate,
        p_value=_below(estimate, error, bar),
        fired=bool(high < bar),
        n_window=used,
        n_reference=profile.n_validation,
        interval=(max(0.0, float(low)), min(1.0, float(high))),
        sampling_error=float(error),
        detail={
            "reference_accuracy": round(profile.validation_accuracy, 4),
            "tolerance": tolerance,
            "auto_share": round(share, 4),
            "auto_audit": _rate(right[audited], level),
            "human": _rate(right[human], level),
            "naive_pooled": _rate(right[has], level),
            "auto_verdicts_outside_audit": int((has & auto & ~audited).sum()),
        },
    )


@timed
def audit_accuracy_signal(
    profile: ReferenceProfile, window: Window, *, tolerance: float = TOLERANCE, level: float = LEVEL
) -> Signal:
    """Accuracy of auto routes on the random audit sample (Wilson) against validation's auto accuracy:
    the one unbiased check of the tickets no human looks at."""
    name, kind = SignalName.ACCURACY_AUDIT_SAMPLE, SignalKind.QUALITY
    if profile.auto_accuracy is None:
        return skipped(name, kind, "the model routes nothing auto", len(window))
    has, right = verdicts(window)
    audited = has & np.asarray(window.auto, dtype=bool) & np.asarray(window.review_sample, dtype=bool)
    k, n = int(right[audited].sum()), int(audited.sum())
    if small := too_small(name, kind, n, profile.n_validation):
        return small
    bar = profile.auto_accuracy - tolerance
    low, high = wilson(k, n, level)
    return Signal(
        name=name,
        kind=kind,
        statistic=k / n,
        p_value=float(stats.binomtest(k, n, max(bar, 1e-9), alternative="less").pvalue),
        fired=bool(high < bar),
        n_window=n,
        n_reference=profile.n_validation,
        interval=(low, high),
        sampling_error=float(np.sqrt(k / n * (1 - k / n) / n)),
        detail={"reference_auto_accuracy": round(profile.auto_accuracy, 4), "tolerance": tolerance},
    )


def _confidence_shift(profile: ReferenceProfile, window: Window) -> tuple[float, float]:
    """Window mean confidence minus validation's, and its CLT standard error (both sides sampled)."""
    current = np.asarray(window.confidence, dtype=np.float64)
    reference = profile.confidence_array
    shift = float(current.mean() - reference.mean())
    error = float(np.sqrt(current.var(ddof=1) / len(current) + reference.var(ddof=1) / len(reference)))
    return shift, error


@timed
def accuracy_estimate_signal(
    profile: ReferenceProfile,
    window: Window,
    *,
    label_shift: Signal | None = None,
    shift: LabelShiftEstimate | None = None,
    tolerance: float = TOLERANCE,
    level: float = LEVEL,
    seed: int = 0,
) -> Signal:
    """Label-free accuracy estimates, anchored at validation accuracy.

    Confidence-based: validation accuracy plus the change in mean calibrated confidence. Anchoring on the
    change rather than using the mean confidence itself keeps a model that was a little under- or
    over-confident on validation from alarming on day one; the comparison with validation accuracy minus
    ``tolerance`` then only needs the change's error.

    Label-shift-corrected: ``Σ_y p_window(y) · recall_y`` with the window mix from BBSE and recalls from
    the validation confusion matrix, i.e. what accuracy becomes when only the intent mix moved; its
    interval comes from the BBSE bootstrap. Under label shift calibrated confidence is biased (the priors
    it was calibrated on no longer hold), so when ``label_shift`` fired the decision uses the corrected
    estimate and ``detail["reliable"]`` is ``False`` to mark the confidence-based one as not to be trusted.
    """
    name, kind = SignalName.ACCURACY_ESTIMATE, SignalKind.QUALITY
    if small := too_small(name, kind, len(window), profile.n_validation):
        return small
    if len(profile.confidence) < MIN_WINDOW[name]:
        return skipped(name, kind, "profile has too few confidences", len(window), len(profile.confidence))
    z = z_value(level)
    reference = profile.validation_accuracy
    bar = reference - tolerance
    change, change_error = _confidence_shift(profile, window)
    confidence_based = {
        "estimate": round(reference + change, 4),
        "interval": (
            round(reference + change - z * change_error, 4),
            round(reference + change + z * change_error, 4),
        ),
        "window_mean_confidence": round(float(np.mean(window.confidence)), 4),
        "reference_mean_confidence": round(float(profile.confidence_array.mean()), 4),
    }
    reliable = not (label_shift is not None and label_shift.fired)
    corrected = _corrected(profile, window, shift, seed)
    if reliable or corrected is None:
        used, used_error = change, change_error
    else:
        used, used_error = corrected
    estimate = reference + used
    low, high = estimate - z * used_error, estimate + z * used_error
    return Signal(
        name=name,
        kind=kind,
        statistic=estimate,
        p_value=_below(estimate, used_error, bar),
        fired=bool(high < bar),
        n_window=len(window),
        n_reference=profile.n_validation,
        interval=(low, high),
        sampling_error=used_error,
        detail={
            "reliable": reliable,
            "estimator": "confidence" if reliable or corrected is None else "label_shift_corrected",
            "reference_accuracy": round(reference, 4),
            "tolerance": tolerance,
            "confidence_based": confidence_based,
            "label_shift_corrected": None
            if corrected is None
            else {
                "estimate": round(reference + corrected[0], 4),
                "interval": (
                    round(reference + corrected[0] - z * corrected[1], 4),
                    round(reference + corrected[0] + z * corrected[1], 4),
                ),
            },
        },
    )


def _corrected(
    profile: ReferenceProfile, window: Window, shift: LabelShiftEstimate | None, seed: int
) -> tuple[float, float] | None:
    """Change in accuracy implied by the BBSE mix (window mix vs validation mix, same recalls) and its
    bootstrap standard error; ``None`` when the window has none of the model's intents."""
    if shift is None:
        if not any(intent in profile.classes for intent in window.intents) or not np.any(profile.confusion):
            return None
        shift = estimate_label_shift(profile, window.intents, seed=seed)
    point = float(shift.target_prior @ shift.recall - shift.reference_prior @ shift.recall)
    if len(shift.boot_target) < 2:
        return point, float("nan")
    replicates = (shift.boot_target * shift.boot_recall).sum(axis=1) - (
        shift.boot_reference * shift.boot_recall
    ).sum(axis=1)
    return point, float(replicates.std(ddof=1))
