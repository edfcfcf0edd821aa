"""The web app on a local Ray Serve (app/web/ray_serve.py): two CPU replicas, the proxy's queue limit, the same maps.

One Ray session serves the module; it is shut down at the end and no Ray process may be left.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rayutil import local_ray
from webutil import LiveServer, free_port, random_png, web_settings

# Ray's own modules use APIs their dependencies deprecate (pydantic's Field(**extra), say).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

# Requests waiting at Ray's proxy. Two simultaneous requests both wait there for a moment while it picks their replicas,
# so with one place the second may be refused although a replica is free.
QUEUED = 2
# What Ray's proxy answers, as text/plain, once max_queued_requests requests wait at it.
BACKPRESSURE = re.compile(rf"Request dropped due to backpressure \(num_queued_requests=\d+, max_queued_requests={QUEUED}\)\.")
PER_ANALYSIS = ("analysis_id", "timings")


@pytest.fixture(scope="module")
def ray_url(tiny_bundle_dir: Path) -> Iterator[str]:
    """The app on Ray Serve: 2 replicas of 1 CPU, each holding one request at a time, :data:`QUEUED` more waiting at the proxy."""
    from ray import serve

    from app.web.ray_serve import APP_NAME, ReplicaOptions, build_application

    settings = web_settings(tiny_bundle_dir, max_concurrent=1)
    options = ReplicaOptions(replicas=2, cpus=1, max_ongoing_requests=1, max_queued_requests=QUEUED)
    with local_ray():
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_application(settings.model_dump(exclude_unset=True), options), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"


def _analyse(url: str, image: bytes, seed: int) -> httpx.Response:
    data = {"samples": "12", "seed": str(seed), "raw": "true", "resolution": "full"}
    return httpx.post(f"{url}/api/v1/analyze", files={"file": ("a.png", image, "image/png")}, data=data, timeout=60)


def _together(url: str, image: bytes, seeds: list[int]) -> list[httpx.Response]:
    """One request per seed, all sent at the same moment; the responses in seed order."""
    responses: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(len(seeds))

    def send(index: int, seed: int) -> None:
        barrier.wait()
        responses[index] = _analyse(url, image, seed)

    threads = [threading.Thread(target=send, args=(i, seed)) for i, seed in enumerate(seeds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert len(responses) == len(seeds), "a request did not finish"
    return [responses[i] for i in range(len(seeds))]


def _maps(response: httpx.Response) -> dict[str, Any]:
    """The answer without what differs per analysis (its id, also inside its links, and the timings)."""
    assert response.status_code == 200, response.text
    answer = json.loads(response.text.replace(response.json()["analysis_id"], "<id>"))
    return {k: v for k, v in answer.items() if k not in PER_ANALYSIS}


def test_requests_are_spread_over_both_replicas_and_give_the_single_process_maps(ray_url: str, live_server: LiveServer) -> None:
    """Pairs of simultaneous requests land on both replicas (one request at a time each); every answer is the one
    the single-process server gives for the same seed, raw values included."""
    ready = httpx.get(f"{ray_url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["model"] == "tiny"
    image = random_png(96, 96, seed=4)
    seeds = [11, 22]
    expected = {seed: _maps(_analyse(live_server.url, image, seed)) for seed in seeds}
    assert expected[11]["mean_probs"] != expected[22]["mean_probs"]
    replicas = set()
    for _ in range(3):
        for seed, response in zip(seeds, _together(ray_url, image, seeds), strict=True):
            assert _maps(response) == expected[seed], seed
            replicas.add(response.headers["x-replica-id"])
    assert len(replicas) == 2, replicas


def test_requests_for_an_analysis_reach_the_replica_that_holds_it(ray_url: str) -> None:
    """Each replica keeps its own analyses and names them after itself; exact pixel values and the NPZ of an analysis
    are always served by the replica that ran it (a random replica would answer 404 half of the time)."""
    image = random_png(64, 64, seed=6)
    owners: dict[str, dict[str, Any]] = {}
    for _ in range(3):
        for response in _together(ray_url, image, [31, 32]):
            assert response.status_code == 200, response.text
            owners[response.headers["x-replica-id"]] = response.json()
    assert len(owners) == 2, "both replicas should have run an analysis"
    for replica, answer in owners.items():
        assert answer["analysis_id"].startswith(f"{replica}.")
        for x in range(6):
            pixel = httpx.get(f"{ray_url}{answer['pixel_url']}", params={"x": x, "y": 5}, timeout=30)
            assert pixel.status_code == 200, pixel.text
            assert pixel.headers["x-replica-id"] == replica and pixel.json()["analysis_id"] == answer["analysis_id"]
        npz = httpx.get(f"{ray_url}{answer['npz_url']}", timeout=30)
        assert npz.status_code == 200 and npz.headers["x-replica-id"] == replica
    gone = httpx.get(f"{ray_url}/api/v1/analyses/nosuchreplica.abcdefgh/pixel", params={"x": 0, "y": 0}, timeout=30)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "analysis_not_found"


def test_owner_of_reads_the_replica_from_an_analysis_path() -> None:
    from app.web.ray_router import owner_of

    assert owner_of("/api/v1/analyses/ab12cd34.Zx_-9/pixel") == "ab12cd34"
    assert owner_of("/api/v1/analyses/ab12cd34.Zx_-9/maps/entropy.png") == "ab12cd34"
    assert owner_of("/api/v1/analyses/Zx_-9token/pixel") is None  # a single-process id
    assert owner_of("/api/v1/analyses/.Zx/pixel") is None
    assert owner_of("/api/v1/analyze") is None


def test_a_full_proxy_queue_answers_503(ray_url: str) -> None:
    """Ten simultaneous requests for two replicas holding one each and two places in the proxy's queue: some are
    served, the others get Ray's 503 (its plain-text body, not the app's JSON error) without reaching a replica."""
    responses = _together(ray_url, random_png(128, 128, seed=5), list(range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert BACKPRESSURE.fullmatch(response.text), response.text
            assert response.headers["content-type"].startswith("text/plain")
            assert "x-replica-id" not in response.headers and "retry-after" not in response.headers
        else:
            assert response.headers["x-replica-id"]


def test_the_serve_config_file_builds_this_deployment() -> None:
    """deploy/serve.yaml is a valid Serve config whose application is app_builder with valid settings, and whose
    deployment options name this deployment (Serve would otherwise reject or ignore them)."""
    import yaml
    from ray.serve import Application
    from ray.serve.schema import ServeDeploySchema

    from app.web.ray_serve import DEPLOYMENT_NAME, app_builder

    config = ServeDeploySchema.model_validate(yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "serve.yaml").read_text()))
    [application] = config.applications
    module, _, name = application.import_path.partition(":")
    assert (module, name) == ("app.web.ray_serve", "app_builder")
    assert [d.name for d in application.deployments] == [DEPLOYMENT_NAME]
    assert application.deployments[0].max_queued_requests > 0
    assert isinstance(app_builder(dict(application.args)), Application)


def test_serve_on_ray_refuses_bad_counts_before_starting_ray(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["serve", "--ray", "--replicas", "0"]) == 2
    assert "--replicas must be >= 1" in capsys.readouterr().err
    assert main(["serve", "--ray", "--gpus-per-replica", "-1"]) == 2
    assert "--gpus-per-replica must be >= 0" in capsys.readouterr().err


def test_the_app_builder_refuses_unknown_settings() -> None:
    from app.web.ray_serve import app_builder

    with pytest.raises(ValueError, match="not settings fields: max_concurent"):
        app_builder({"model": "default", "max_concurent": 2})
