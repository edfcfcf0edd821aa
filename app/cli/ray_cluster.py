"""The Ray options of ``serve --ray`` and ``analyze --ray``, and a Ray session that always ends with the command.

Without ``--ray-address`` (and without ``RAY_ADDRESS`` in the environment) the command starts a local Ray on this
machine (no dashboard, no usage statistics) and stops it when it ends; with one, it joins that cluster
(``auto``: the one ``ray start`` runs on this machine) and only disconnects.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["add_ray_args", "check_counts", "ray_session"]


def add_ray_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--ray`` and ``--ray-address``; ``what`` says what ``--ray`` runs on Ray."""
    p.add_argument("--ray", action="store_true", help=f"run {what} on Ray (pip install 'seg-uncertainty[ray]')")
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join (e.g. auto or ray://head:10001); default: env RAY_ADDRESS, else a local Ray started and stopped with the command",
    )


def check_counts(**counts: float) -> str | None:
    """The first of ``counts`` that is negative (or zero for the ``replicas``/``actors`` ones), as an error message."""
    for name, value in counts.items():
        smallest = 1 if name in ("replicas", "actors") else 0
        if value < smallest:
            return f"--{name.replace('_', '-')} must be >= {smallest}"
    return None


@contextmanager
def ray_session(address: str | None) -> Iterator[bool]:
    """Connect to Ray for the duration of the block; yields whether this process started the Ray it uses.

    A local Ray is stopped at the end of the block, a cluster only disconnected; the SIGTERM handler is restored.

    Raises:
        SystemExit: Ray is not installed (with a message saying how to install it).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:
        raise SystemExit("error: Ray is not installed: pip install 'seg-uncertainty[ray]' (or 'ray[serve,data]')") from exc
    local = address is None and not os.environ.get("RAY_ADDRESS")
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(address=address, logging_level=logging.WARNING, include_dashboard=False if local else None)
    try:
        yield local
    finally:
        ray.shutdown()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)  # ray.init installs its own and leaves it
