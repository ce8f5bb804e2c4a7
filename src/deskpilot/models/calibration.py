"""Temperature scaling: one scalar that makes a classifier's confidences mean what they say.

Fit on validation logits by minimizing the negative log-likelihood; it rescales confidence without changing
which class ranks first, so accuracy is untouched while the auto-routing threshold becomes meaningful.
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
    """The temperature in [0.05, 20] that minimizes validation NLL; ``targets`` are class indices."""
    if logits.ndim != 2 or logits.shape[0] != targets.size:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} do not line up")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, targets, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))
