"""Input drift in the encoder's space: kernel two-sample test (MMD) on projected sentence embeddings.

Embeddings see paraphrase-level change that n-grams miss (same words, different requests) and ignore
surface changes that do not alter meaning, so this signal and the domain classifier disagree usefully.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.signals.base import skipped, timed, too_small
from deskpilot.monitoring.types import Signal, SignalKind, SignalName

MAX_POINTS = 1_000
PERMUTATIONS = 500


def _subsample(points: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) <= size:
        return points
    return points[np.sort(rng.choice(len(points), size=size, replace=False))]


def gaussian_kernel(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Gaussian kernel matrix with the median heuristic bandwidth (median pairwise distance)."""
    squared = (points**2).sum(axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * points @ points.T, 0.0)
    upper = distances[np.triu_indices(len(points), k=1)]
    bandwidth = float(np.sqrt(np.median(upper))) if upper.size else 1.0
    bandwidth = bandwidth if bandwidth > 0 else 1.0
    return np.exp(-distances / (2 * bandwidth**2)), bandwidth


def _mmd_from_sums(
    s_xx: np.ndarray, s_yy: np.ndarray, s_xy: np.ndarray, n: int, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Biased (V-statistic) and unbiased MMD² from the kernel's block sums; the diagonal is all ones."""
    biased = s_xx / n**2 + s_yy / m**2 - 2 * s_xy / (n * m)
    unbiased = (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2 * s_xy / (n * m)
    return biased, unbiased


def mmd_test(
    reference: np.ndarray, window: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """Unbiased MMD², the p-value, the raw permutation p-value, and the bandwidth.

    All permutations come from one matrix product: with ``Z`` the permuted membership indicators, the
    within-reference block sums are the row sums of ``(Z K) * Z``. The p-value is the upper tail of a gamma
    distribution fitted to the permutation mean and variance of the biased statistic (Gretton et al.'s
    gamma approximation to its weighted chi-square null): unlike the raw permutation p-value it is not
    floored at 1/(B+1), which a Benjamini–Hochberg cut over many tenants and signals would need to pass.
    """
    pooled = np.vstack([reference, window])
    kernel, bandwidth = gaussian_kernel(pooled)
    n, m, size = len(reference), len(window), len(pooled)
    row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())
    # float32 halves the one large product; the block sums are accumulated in float64, and MMD² needs
    # only about three significant digits of them
    membership = np.zeros((permutations + 1, size), dtype=np.float32)
    membership[0, :n] = 1.0
    for b in range(1, permutations + 1):
        membership[b, rng.permutation(size)[:n]] = 1.0
    s_xx = ((membership @ kernel.astype(np.float32)) * membership).sum(axis=1, dtype=np.float64)
    to_all = membership.astype(np.float64) @ row_sums
    s_xy = to_all - s_xx
    s_yy = total - 2 * to_all + s_xx
    biased, unbiased = _mmd_from_sums(s_xx, s_yy, s_xy, n, m)
    observed, null = biased[0], biased[1:]
    permutation_p = float((1 + (null >= observed).sum()) / (permutations + 1))
    mean, variance = float(null.mean()), float(null.var(ddof=1))
    if variance <= 0 or mean <= 0:
        return float(unbiased[0]), permutation_p, permutation_p, bandwidth
    shape, scale = mean**2 / variance, variance / mean
    p_value = float(stats.gamma.sf(observed, shape, scale=scale))
    return float(unbiased[0]), p_value, permutation_p, bandwidth


@timed
def embedding_signal(
    profile: ReferenceProfile,
    projected: np.ndarray | None,
    *,
    max_points: int = MAX_POINTS,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> Signal:
    """MMD² between the profile's projected embedding sample and the window's projected embeddings.

    The caller embeds the window's texts with the version's encoder and projects them with
    :meth:`EmbeddingReference.project`. Each side is subsampled to ``max_points``.
    """
    name, kind = SignalName.EMBEDDING_MMD, SignalKind.INPUT
    if profile.embedding is None:
        return skipped(name, kind, "the model has no embedding reference")
    if projected is None:
        return skipped(name, kind, "no window embeddings were given")
    reference_all = profile.embedding.sample_array
    window_all = np.asarray(projected, dtype=np.float64)
    if small := too_small(name, kind, len(window_all), len(reference_all)):
        return small
    if len(reference_all) < 2 or window_all.ndim != 2 or window_all.shape[1] != reference_all.shape[1]:
        return skipped(name, kind, "embedding sample and window dimensions do not match", len(window_all))
    rng = np.random.default_rng(seed)
    reference = _subsample(reference_all, max_points, rng)
    window = _subsample(window_all, max_points, rng)
    mmd2, p_value, permutation_p, bandwidth = mmd_test(reference, window, permutations, rng)
    return Signal(
        name=name,
        kind=kind,
        statistic=mmd2,
        p_value=p_value,
        n_window=len(window_all),
        n_reference=len(reference_all),
        detail={
            "bandwidth": round(bandwidth, 5),
            "permutation_p": round(permutation_p, 5),
            "permutations": permutations,
            "points_window": len(window),
            "points_reference": len(reference),
        },
    )
