"""The Dockerfile, .dockerignore and compose.yaml agree with the app; no container engine is needed.

What an image build would only reveal at run time is checked here against the real code: the image's command line is
parsed by the app's own CLI parser, the health check's path is a route that answers 200 once ready, the health check
command itself runs against a live uvicorn server (and fails when the server is down, not ready or hangs), the torch
install of both variants (run with a stand-in ``pip`` that prints its arguments) pins what pyproject.toml pins, and
compose's Prometheus target names the app service, its port and a route the app serves with compose's own settings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient
from starlette.routing import Match
from test_packaging import BUILD_INPUTS

from app.cli import build_parser
from app.web.factory import create_app
from app.web.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent / "web"))
from webutil import LiveServer, wait_ready, web_settings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TORCH_PACKAGES = ("torch", "torchvision")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its stage (0 = first FROM), keyword in upper case and the rest of the line."""

    stage: int
    keyword: str
    value: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments, parser directives and blank lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        lines.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continuation line"
    instructions: list[Instruction] = []
    stage = -1
    for line in lines:
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        stage += keyword == "FROM"
        instructions.append(Instruction(stage, keyword, value.strip()))
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def final(keyword: str) -> list[Instruction]:
    """The final (runtime) stage's instructions with this keyword."""
    return [i for i in INSTRUCTIONS if i.stage == FINAL_STAGE and i.keyword == keyword]


def only(keyword: str) -> str:
    """The value of the runtime stage's one instruction with this keyword."""
    found = final(keyword)
    assert len(found) == 1, f"expected one {keyword} in the runtime stage, found {len(found)}"
    return found[0].value


def exec_form(value: str) -> list[str]:
    """A JSON-array (exec form) argument list; the shell form is refused (signals would go to /bin/sh, not the app)."""
    argv = json.loads(value)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), value
    return argv


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The runtime stage's HEALTHCHECK: its ``--option=value`` flags and its command."""
    match = re.fullmatch(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(.+)", only("HEALTHCHECK"))
    assert match, "HEALTHCHECK must be `[--option=value ...] CMD [...]`"
    options = dict(flag.removeprefix("--").split("=", 1) for flag in match.group(1).split())
    return options, exec_form(match.group(2))


def seconds(duration: str) -> float:
    """A Docker duration such as ``5s``, ``1m30s`` or ``500ms`` in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


def health_url() -> str:
    """The one URL the health check command asks for."""
    urls = re.findall(r"https?://[^\s'\"]+", " ".join(healthcheck()[1]))
    assert len(urls) == 1, urls
    return str(urls[0])


def exposed_port() -> int:
    """The one port the runtime stage exposes."""
    ports = only("EXPOSE").split()
    assert len(ports) == 1, ports
    return int(ports[0].removesuffix("/tcp"))


def serve_args() -> list[str]:
    """The image's command after ``python -m app`` (``app/__main__.py`` runs ``app.cli.main``)."""
    assert not final("ENTRYPOINT"), "the command line is CMD alone"
    argv = exec_form(only("CMD"))
    assert argv[:3] == ["python", "-m", "app"], argv
    assert (REPO / "app" / "__main__.py").is_file()
    return argv[3:]


def pinned(names: tuple[str, ...]) -> dict[str, str]:
    """pyproject.toml's requirement strings of these packages, by name."""
    deps = PYPROJECT["project"]["dependencies"]
    return {name: next(d for d in deps if re.match(rf"{name}\s*[=<>~!]", d)) for name in names}


def is_get_route(path: str) -> bool:
    """Whether a GET of ``path`` is answered by a route of the app the factory builds with default settings (as routing matches)."""
    app = create_app(Settings(warmup=False, device="cpu"))
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def compose() -> dict[str, Any]:
    """compose.yaml, parsed."""
    data = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def app_service() -> tuple[str, dict[str, Any]]:
    """The compose service that builds this repository's Dockerfile: its name and its definition."""
    services = compose()["services"]
    assert isinstance(services, dict)
    built = [(name, spec) for name, spec in services.items() if isinstance(spec.get("build"), dict) and spec["build"].get("context") == "."]
    assert len(built) == 1, f"expected one service built from '.', got {[n for n, _ in built]}"
    return built[0]


def prometheus_config() -> dict[str, Any]:
    """The Prometheus configuration compose mounts into the prometheus service, parsed."""
    service = compose()["services"]["prometheus"]
    mounts = [v.split(":") for v in service["volumes"]]
    targets = {target: source for source, target, *_ in mounts}
    source = REPO / targets["/etc/prometheus/prometheus.yml"]
    data = yaml.safe_load(source.read_text())
    assert isinstance(data, dict)
    return data


# ---- the image's command line, port and user ----


def test_command_is_the_serve_command_of_the_app_cli_on_the_exposed_port() -> None:
    try:
        args = build_parser().parse_args(serve_args())
    except SystemExit as exc:
        pytest.fail(f"the app's CLI refuses the image's command {serve_args()} (exit {exc.code})")
    assert args.command == "serve"
    assert args.host == "0.0.0.0", "inside a container the server must listen on every interface"
    assert args.port == exposed_port()
    assert urlsplit(health_url()).port == exposed_port()


def test_runs_as_a_dedicated_non_root_user() -> None:
    user, _, group = only("USER").partition(":")
    assert user not in {"root", "0", ""} and group not in {"root", "0"}
    assert user.isdigit(), "a numeric UID lets Kubernetes' runAsNonRoot verify it"
    created = [i.value for i in final("RUN") if "useradd" in i.value]
    assert len(created) == 1 and re.search(rf"--uid\s+{user}\b", created[0]), "USER names the UID the runtime stage creates"
    assert not group or re.search(rf"--gid\s+{group}\b", created[0])


# ---- health check ----


def test_health_check_path_is_the_readiness_route_and_answers_200_once_ready(tiny_bundle_dir: Path) -> None:
    path = urlsplit(health_url()).path
    assert path == "/readyz"
    assert is_get_route(path) and not is_get_route(path + "-no-such-route")
    with TestClient(create_app(web_settings(tiny_bundle_dir)), base_url="http://localhost") as client:
        wait_ready(client)
        response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


def test_health_check_timing_leaves_room_for_start_up() -> None:
    options, argv = healthcheck()
    assert set(options) <= {"interval", "timeout", "start-period", "start-interval", "retries"}, options
    request_timeout = float(re.findall(r"timeout=(\d+(?:\.\d+)?)", " ".join(argv))[0])
    assert request_timeout < seconds(options["timeout"]), "the request gives up before Docker kills the check"
    assert seconds(options["start-period"]) >= 30, "loading the model and the warm-up analysis take seconds (more on a cold GPU)"
    assert int(options["retries"]) == 3, "three failed checks (30 s) before the container is marked unhealthy"


def run_health_check(port: int) -> subprocess.CompletedProcess[str]:
    """The image's health check command run here against ``127.0.0.1:port`` (this interpreter stands in for ``python``)."""
    options, argv = healthcheck()
    here = f"127.0.0.1:{exposed_port()}"
    assert argv[0] == "python" and sum(a.count(here) for a in argv) == 1, argv
    command = [sys.executable, *(a.replace(here, f"127.0.0.1:{port}") for a in argv[1:])]
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds(options["timeout"]), check=False)


@pytest.mark.slow
def test_health_check_command_passes_on_a_ready_server_and_fails_once_it_is_down(tiny_bundle_dir: Path) -> None:
    server = LiveServer(web_settings(tiny_bundle_dir)).start()
    try:
        ready = run_health_check(server.port)
    finally:
        server.stop()
    assert ready.returncode == 0, ready.stderr
    down = run_health_check(server.port)
    assert down.returncode == 1, "Docker reads 1 as unhealthy (2 is reserved)"
    assert "Connection refused" in down.stderr


class _NotReady(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": {"code": "not_ready", "message": "the model is still loading"}}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_ready_port() -> Iterator[int]:
    """A loopback HTTP server answering every GET with the app's 503 ``not_ready``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_health_check_command_fails_while_the_app_answers_503(not_ready_port: int) -> None:
    result = run_health_check(not_ready_port)
    assert result.returncode == 1
    assert "503" in result.stderr


@pytest.mark.slow
def test_health_check_command_gives_up_on_a_hung_server_before_docker_does() -> None:
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        result = run_health_check(int(listener.getsockname()[1]))  # raises TimeoutExpired past HEALTHCHECK --timeout
    assert result.returncode == 1
    assert "timed out" in result.stderr


# ---- build: variants, pins, wheel ----


def arg_defaults() -> dict[str, str]:
    """The runtime stage's ``ARG NAME=default`` values (an ARG without a default is empty in RUN)."""
    return {name: default for name, _, default in (i.value.partition("=") for i in final("ARG"))}


def run_torch_install(tmp_path: Path, **args: str) -> subprocess.CompletedProcess[str]:
    """The runtime stage's torch RUN under ``sh -c`` as Docker runs it, with build ``args``; ``pip`` prints its arguments."""
    runs = [i.value for i in final("RUN") if "torch==" in i.value]
    assert len(runs) == 1, runs
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    pip = bin_dir / "pip"
    pip.write_text('#!/bin/sh\necho "$@"\n')
    pip.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **arg_defaults(), **args}
    return subprocess.run(["sh", "-c", runs[0]], env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(
    ("args", "index"),
    [
        ({}, "https://download.pytorch.org/whl/cpu"),
        ({"VARIANT": "cpu"}, "https://download.pytorch.org/whl/cpu"),
        ({"VARIANT": "cuda"}, "https://pypi.org/simple"),
        ({"VARIANT": "cuda", "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu126"}, "https://download.pytorch.org/whl/cu126"),
    ],
)
def test_each_variant_installs_pyprojects_torch_pins_from_its_index(tmp_path: Path, args: dict[str, str], index: str) -> None:
    result = run_torch_install(tmp_path, **args)
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[:3] == ["install", "--index-url", index], argv
    assert sorted(argv[3:]) == sorted(pinned(TORCH_PACKAGES).values()), "the image pins torch as pyproject.toml does"


def test_an_unknown_variant_fails_the_build(tmp_path: Path) -> None:
    result = run_torch_install(tmp_path, VARIANT="rocm")
    assert result.returncode != 0
    assert "VARIANT must be cpu or cuda" in result.stderr
    assert result.stdout == "", "pip must not run"


def test_builder_makes_the_wheel_and_the_runtime_installs_only_the_wheel() -> None:
    builder = [i for i in INSTRUCTIONS if i.stage == 0]
    assert re.search(r"\bAS\s+builder$", builder[0].value, re.IGNORECASE)
    copied = {source for i in builder if i.keyword == "COPY" for source in i.value.split()[:-1]}
    assert copied == set(BUILD_INPUTS), "the builder copies exactly what the wheel is built from"
    assert any(re.search(r"pip wheel --no-deps -w /wheels \.$", i.value) for i in builder if i.keyword == "RUN")
    assert not final("COPY") and not final("ADD"), "no source tree in the runtime stage"
    installs = [i.value for i in final("RUN") if "/wheels" in i.value]
    assert len(installs) == 1
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in installs[0]
    assert installs[0].endswith("pip install /wheels/*.whl"), "non-editable install of the wheel alone"


def test_dockerignore_keeps_the_build_inputs_and_drops_local_state() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch(path, p) or (p.startswith("**/") and fnmatch(Path(path).name, p[3:])) for p in patterns)

    assert not [p for p in BUILD_INPUTS if ignored(p)]
    for local in (".venv", "node_modules", "runs", ".git", ".pytest_cache", ".mypy_cache", "seg_uncertainty.egg-info", "app/__pycache__"):
        assert ignored(local), local


# ---- compose and Prometheus ----


def test_compose_publishes_the_exposed_port_and_builds_a_known_variant() -> None:
    _, app = app_service()
    assert f"{exposed_port()}:{exposed_port()}" in app["ports"]
    build_args = app["build"]["args"]
    assert set(build_args) <= set(arg_defaults())
    assert re.fullmatch(r"\$\{SEGU_VARIANT:-cpu\}", build_args["VARIANT"])


def test_prometheus_scrapes_the_app_service_metrics_route() -> None:
    name, _ = app_service()
    jobs = prometheus_config()["scrape_configs"]
    assert isinstance(jobs, list) and len(jobs) == 1
    job = jobs[0]
    assert job["static_configs"] == [{"targets": [f"{name}:{exposed_port()}"]}]
    assert job["metrics_path"] == "/metrics"
    assert is_get_route(job["metrics_path"])
    assert job["scrape_interval"] == "15s"
    assert "depends_on" in compose()["services"]["prometheus"]


@pytest.fixture
def compose_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The app service's compose environment, set in this process's environment."""
    _, app = app_service()
    env = {str(k): str(v) for k, v in app["environment"].items()}
    assert all(k.startswith("SEGU_") for k in env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_app_with_compose_settings_answers_prometheus_and_the_health_check(compose_env: dict[str, str], tiny_bundle_dir: Path) -> None:
    settings = Settings(model=str(tiny_bundle_dir), device="cpu")  # the rest from compose's SEGU_* variables
    name, _ = app_service()
    scrape = urlsplit(f"http://{name}:{exposed_port()}")
    with TestClient(create_app(settings), base_url=scrape.geturl()) as prometheus:
        wait_ready(prometheus)  # Host: app:8000, as Prometheus sends it
        metrics = prometheus.get(prometheus_config()["scrape_configs"][0]["metrics_path"])
        assert metrics.status_code == 200, metrics.text
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "# TYPE " in metrics.text
    probe = urlsplit(health_url())
    with TestClient(create_app(settings), base_url=f"{probe.scheme}://{probe.netloc}") as docker:
        wait_ready(docker)
        assert docker.get(probe.path).status_code == 200, "the health check's Host must stay trusted under compose's SEGU_ALLOWED_HOSTS"
