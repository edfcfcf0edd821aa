"""``serve``: the web app under uvicorn."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from app.cli.common import error
from app.cli.ray_cluster import add_ray_args, check_counts
from app.plural import plural

if TYPE_CHECKING:
    from app.web.settings import Settings

NAME = "serve"
HELP = "serve the web app"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface; see the security settings first)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="bundle name or folder; repeat it to serve several models, the first the default (default: env SEGU_MODELS, SEGU_MODEL or 'default')",
    )
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: env SEGU_DEVICE or auto)")
    add_ray_args(p, "the app as a Ray Serve deployment of --replicas replicas, one model each")
    ray = p.add_argument_group("with --ray")
    ray.add_argument("--replicas", type=int, default=1, help="replicas of the app, one model each")
    ray.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs each replica reserves (fractions share a GPU)")
    ray.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs each replica reserves")
    ray.add_argument("--max-ongoing-requests", type=int, default=None, help="requests a replica holds at once (default: SEGU_MAX_CONCURRENT + 1)")
    ray.add_argument("--max-queued-requests", type=int, default=16, help="requests waiting at Ray's proxy before it answers 503 (-1: no limit)")


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line sets: ``--model`` (once or more: ``models``, which replaces ``SEGU_MODEL(S)``) and ``--device``."""
    overrides: dict[str, Any] = {}
    if args.model:
        overrides["models"] = list(args.model)
    if args.device is not None:
        overrides["device"] = args.device
    return overrides


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; exit 2 on invalid settings.

    Slow clients and framing: uvicorn closes idle keep-alive connections after ``SEGU_KEEP_ALIVE_TIMEOUT`` s; a request head
    over ``SEGU_MAX_HEADER_BYTES`` gets 431, one not complete within ``SEGU_HEADER_TIMEOUT`` s 408, one with ambiguous body
    framing 400, each closed (:mod:`app.web.protocol`, counted as rejections by code); a body not complete within
    ``SEGU_BODY_TIMEOUT`` s gets 408 (:mod:`app.web.limits`).
    Each request is logged as one JSON line on stdout (:mod:`app.web.access_log`), in place of uvicorn's access line.
    """
    import uvicorn
    from pydantic import ValidationError

    from app.web.access_log import serve_log_config
    from app.web.factory import create_app
    from app.web.protocol import uvicorn_options
    from app.web.settings import Settings

    try:
        settings = Settings(**settings_overrides(args))
    except ValidationError as exc:
        error(exc)
        return 2
    if args.ray:
        return _serve_on_ray(args, settings)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        log_config=serve_log_config(),
        **uvicorn_options(settings, on_refusal=app.state.metrics.reject),
    )
    return 0


def _serve_on_ray(args: argparse.Namespace, settings: Settings) -> int:
    """Deploy the app on Ray Serve (:mod:`app.web.ray_serve`) and serve until SIGINT or SIGTERM; then remove it.

    The signals are handled here, not by Ray's handlers, so that Ray is always shut down through the same path.
    """
    import time

    problem = check_counts(replicas=args.replicas, gpus_per_replica=args.gpus_per_replica, cpus_per_replica=args.cpus_per_replica)
    if problem is not None:
        error(problem)
        return 2
    from ray import serve

    from app.cli.interrupt import StopSignals
    from app.cli.ray_cluster import ray_session
    from app.web.ray_serve import APP_NAME, ReplicaOptions, build_application

    options = ReplicaOptions(
        replicas=args.replicas,
        cpus=args.cpus_per_replica,
        gpus=args.gpus_per_replica,
        max_ongoing_requests=args.max_ongoing_requests or settings.max_concurrent + 1,
        max_queued_requests=args.max_queued_requests,
    )
    with ray_session(args.ray_address) as local, StopSignals() as stop:
        serve.start(http_options={"host": args.host, "port": args.port, "keep_alive_timeout_s": settings.keep_alive_timeout})
        try:
            serve.run(build_application(settings.model_dump(exclude_unset=True), options), name=APP_NAME, route_prefix="/")
            print(f"serving http://{args.host}:{args.port} on Ray: {plural(args.replicas, 'replica')}; Ctrl-C stops", file=sys.stderr)
            while not stop.token.expired():
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            with stop.held():
                if local:
                    shutdown = cast(Callable[[], None], serve.shutdown)  # Ray Serve's shutdown() has no annotations
                    shutdown()
                else:
                    serve.delete(APP_NAME)
    return 0
