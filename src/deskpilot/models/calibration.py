"""Temperature scaling: one scalar that makes a classifier's confidences mean what they say.

Fit on validation logits by minimizing the negative log-likelihood; it rescales confidence without changing
which class ranks first, so accuracy is untouched while the auto-routing threshold becomes meaningful.

The fit is a maximum a posteriori estimate with a standard normal prior on log T (centred on the model's own
scale, T = 1). On a validation set the model classifies without error the likelihood alone keeps rising as T
falls, so a plain maximum-likelihood fit would drive T to its lower bound and every confidence to 1.0 (nothing
routed to a person) from no evidence at all; the prior stops that. Its weight is one row's worth, so on
validation sets of realistic size it moves T by a negligible amount.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities from logits at ``temperature`` (rows sum to one)."""
    probs: np.ndarray = softmax(logits / temperature, axis=1)
    return probs


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    log_probs = log_softmax(logits / temperature, axis=1)
    return float(-log_probs[np.arange(targets.size), targets].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimizes validation NLL plus the prior's penalty on log T;
    ``targets`` are class indices."""
    if logits.ndim != 2 or logits.shape[0] != targets.size:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} do not line up")
    rows = max(1, targets.size)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, targets, float(np.exp(log_t))) + log_t**2 / (2 * rows),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))
