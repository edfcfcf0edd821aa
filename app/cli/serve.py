"""``serve``: the web app under uvicorn."""

from __future__ import annotations

import argparse

from app.cli.common import error

NAME = "serve"
HELP = "serve the web app"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=None, help="bundle name or folder (default: env SEGU_MODEL or 'default')")
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: env SEGU_DEVICE or auto)")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; exit 2 on invalid settings.

    Slow clients: uvicorn closes idle keep-alive connections after ``SEGU_KEEP_ALIVE_TIMEOUT`` s and refuses a request
    head over ``SEGU_MAX_HEADER_BYTES``; a head not complete within ``SEGU_HEADER_TIMEOUT`` s gets 408 and is closed
    (:mod:`app.web.protocol`), and a body not complete within ``SEGU_BODY_TIMEOUT`` s too (:mod:`app.web.limits`).
    """
    import uvicorn
    from pydantic import ValidationError

    from app.web.factory import create_app
    from app.web.protocol import uvicorn_options
    from app.web.settings import Settings

    overrides = {k: v for k, v in (("model", args.model), ("device", args.device)) if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        error(exc)
        return 2
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        **uvicorn_options(settings),
    )
    return 0
