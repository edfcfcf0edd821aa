"""Which images to label first: an order by an image-level score, and a diverse batch among the top-scoring ones."""

from __future__ import annotations

import numpy as np

__all__ = ["CANDIDATE_FACTOR", "diverse_batch", "k_center_greedy", "rank_by_score"]

CANDIDATE_FACTOR = 3
"""A diverse batch of ``n`` is picked among the ``CANDIDATE_FACTOR · n`` highest scores."""


def rank_by_score(scores: np.ndarray) -> np.ndarray:
    """Indices from the highest score to the lowest; ties keep input order, NaN (failed) last.

    Args:
        scores: ``(N,)`` image-level scores, higher = label first.
    """
    values = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(values), -np.inf, values)
    return np.argsort(-key, kind="stable")


def k_center_greedy(embeddings: np.ndarray, k: int, first: int) -> list[int]:
    """Greedy k-center selection (Sener & Savarese 2018): start at ``first``, then repeatedly add the point farthest
    (Euclidean) from everything picked so far, so near-duplicates of a picked point come last.

    Args:
        embeddings: ``(N, F)`` points.
        k: How many to pick (at most ``N``).
        first: The index picked first.

    Returns:
        ``min(k, N)`` distinct indices in the order picked.
    """
    points = np.asarray(embeddings, dtype=np.float64)
    count = min(k, len(points))
    if count <= 0:
        return []
    picked = [first]
    nearest = np.linalg.norm(points - points[first], axis=1)
    nearest[first] = -1.0
    while len(picked) < count:
        nxt = int(np.argmax(nearest))
        picked.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[nxt], axis=1))
        nearest[picked] = -1.0
    return picked


def diverse_batch(scores: np.ndarray, embeddings: np.ndarray, budget: int) -> list[int]:
    """A batch of ``budget`` images that are both uncertain and unlike each other.

    The candidates are the ``CANDIDATE_FACTOR · budget`` highest scores (failed images, NaN, never); the batch starts
    with the highest score and grows by :func:`k_center_greedy` over the candidates' embeddings.

    Args:
        scores: ``(N,)`` image-level scores, higher = label first.
        embeddings: ``(N, F)`` image embeddings.
        budget: Batch size.

    Returns:
        Indices into ``scores`` in the order picked.
    """
    order = [int(i) for i in rank_by_score(scores) if not np.isnan(scores[i])]
    candidates = order[: CANDIDATE_FACTOR * budget]
    if not candidates:
        return []
    local = k_center_greedy(np.asarray(embeddings)[candidates], budget, 0)
    return [candidates[i] for i in local]
