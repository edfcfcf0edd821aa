"""Ordering by score and the diverse batch, against brute force."""

from __future__ import annotations

import itertools

import numpy as np

from app.metrics.selection import CANDIDATE_FACTOR, diverse_batch, k_center_greedy, rank_by_score


def test_rank_by_score_is_descending_with_ties_in_input_order_and_nan_last() -> None:
    scores = np.array([0.2, np.nan, 0.9, 0.2, 0.5])
    assert rank_by_score(scores).tolist() == [2, 4, 0, 3, 1]


def _farthest_reference(points: np.ndarray, chosen: list[int]) -> int:
    """The point whose nearest chosen point is farthest, by a double loop."""
    best, best_distance = -1, -1.0
    for i in range(len(points)):
        if i in chosen:
            continue
        nearest = min(float(np.sqrt(((points[i] - points[j]) ** 2).sum())) for j in chosen)
        if nearest > best_distance:
            best, best_distance = i, nearest
    return best


def test_k_center_greedy_adds_the_farthest_point_each_time() -> None:
    points = np.random.default_rng(3).normal(size=(25, 4))
    picked = k_center_greedy(points, 8, first=5)
    assert picked[0] == 5 and len(set(picked)) == 8
    for step in range(1, 8):
        assert picked[step] == _farthest_reference(points, picked[:step])


def test_k_center_greedy_is_within_twice_the_optimal_covering_radius() -> None:
    points = np.random.default_rng(4).normal(size=(12, 2))

    def radius(centres: tuple[int, ...] | list[int]) -> float:
        return float(max(min(np.linalg.norm(points[i] - points[c]) for c in centres) for i in range(len(points))))

    optimum = min(radius(c) for c in itertools.combinations(range(len(points)), 3))
    assert radius(k_center_greedy(points, 3, first=0)) <= 2 * optimum + 1e-12


def test_near_duplicates_do_not_fill_a_diverse_batch_but_fill_a_plain_one() -> None:
    rng = np.random.default_rng(5)
    duplicate = rng.normal(size=8)
    embeddings = np.vstack([duplicate + 1e-3 * rng.normal(size=(10, 8)), rng.normal(size=(10, 8))])
    scores = np.concatenate([np.linspace(0.95, 0.9, 10), np.linspace(0.85, 0.6, 10)])
    plain = [int(i) for i in rank_by_score(scores)[:5]]
    assert all(i < 10 for i in plain)
    diverse = diverse_batch(scores, embeddings, 5)
    assert diverse[0] == 0 and len(set(diverse)) == 5
    assert sum(i < 10 for i in diverse) == 1
    assert all(i in rank_by_score(scores)[: CANDIDATE_FACTOR * 5] for i in diverse)


def test_a_diverse_batch_never_picks_a_failed_image() -> None:
    scores = np.array([np.nan, 0.5, np.nan, 0.4])
    embeddings = np.eye(4)
    assert sorted(diverse_batch(scores, embeddings, 4)) == [1, 3]
