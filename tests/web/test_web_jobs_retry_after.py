"""A full job store's Retry-After: from the measured running time of finished jobs, not a fixed 5 s."""

from __future__ import annotations

import pytest

from app.web.admission import RETRY_AFTER_MAX, SERVICE_TIME_WEIGHT, Overloaded
from app.web.jobs import RETRY_AFTER, Job, JobStore


def _store(states: list[tuple[str, float | None]]) -> JobStore:
    store = JobStore(max_jobs=len(states), ttl=60.0)
    for i, (state, started) in enumerate(states):
        job = Job(id=f"j{i}", kind="analyze", model="default", work=1, describe="a job")
        job.state = state  # type: ignore[assignment]
        job.started = started
        store._jobs[job.id] = job
    return store


def test_before_any_job_finished_the_fixed_default_is_used() -> None:
    assert _store([("running", 1000.0)]).retry_after(now=1010.0) == RETRY_AFTER


def test_the_mean_running_time_less_the_longest_run_so_far() -> None:
    store = _store([("running", 1000.0), ("running", 1020.0), ("queued", None)])
    store.record_duration(50.0)
    assert store.retry_after(now=1030.0) == 20  # the job running for 30 s of a 50-s mean
    assert store.retry_after(now=1049.5) == 1  # overdue: at least 1 s
    store.record_duration(200.0)
    assert store.mean_job_seconds == pytest.approx((1 - SERVICE_TIME_WEIGHT) * 50.0 + SERVICE_TIME_WEIGHT * 200.0)
    assert store.retry_after(now=1030.0) == 50


def test_only_waiting_jobs_wait_the_whole_mean_clamped_to_a_minute() -> None:
    store = _store([("queued", None), ("queued", None)])
    store.record_duration(12.2)
    assert store.retry_after(now=0.0) == 13
    store.record_duration(10_000.0)
    assert store.retry_after(now=0.0) == RETRY_AFTER_MAX


def test_a_full_store_refuses_with_the_measured_retry_after() -> None:
    store = _store([("queued", None)])
    store.record_duration(30.0)
    with pytest.raises(Overloaded) as refused:
        store.check_room()
    assert refused.value.headers is not None
    assert refused.value.headers["Retry-After"] == "30"
