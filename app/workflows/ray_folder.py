"""Analyse many images on Ray Data: the same analysis and outputs as :func:`~app.workflows.analyse_folder.analyse_files`,
mapped over the inputs by a pool of actors that each load the model once.

The actors read the inputs and return each one's row and files (:class:`~app.workflows.analyse_folder.AnalysedImage`);
the driver writes them into the output folder with :func:`~app.workflows.analyse_folder.install_image`, so the output
folder need only exist where the command runs. On a multi-node cluster the inputs must be readable at the same path on
every node (shared storage).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from app.defaults import MAX_PIXELS, MEMORY_BUDGET
from app.engine.compiled import set_compilation
from app.engine.device import resolve_device
from app.io.bundle import load_bundle
from app.request import AnalysisRequest
from app.workflows.analyse_folder import AnalysedImage, SummaryRow, analyse_image, install_image
from app.workflows.analyzer import Analyzer
from app.workflows.output_folder import output_names
from app.workflows.outputs import FILE_DEFAULT, Outputs

__all__ = ["ActorOptions", "actor_arguments", "analyse_files_ray"]


@dataclass(frozen=True)
class ActorOptions:
    """The actor pool: how many actors (one model each), what each one reserves, its analyser's memory budget and whether
    it compiles the estimator's kernels (:func:`app.engine.compiled.set_compilation`, in the actor's process)."""

    actors: int = 2
    cpus: float = 1.0
    gpus: float = 0.0
    memory_budget: int = MEMORY_BUDGET
    compile_kernels: bool = True


class _AnalyseRow:
    """A Ray Data actor: loads the bundle once, then turns ``{"index", "path", "name"}`` rows into pickled results."""

    def __init__(
        self,
        model: str,
        device: str,
        max_pixels: int,
        request: AnalysisRequest,
        outputs: Outputs = FILE_DEFAULT,
        memory_budget: int = MEMORY_BUDGET,
        compile_kernels: bool = True,
    ) -> None:
        set_compilation(compile_kernels)
        resolved = resolve_device(device)
        self.analyzer = Analyzer(load_bundle(model, resolved), resolved, max_pixels=max_pixels, memory_budget=memory_budget)
        self.request = request
        self.outputs = outputs

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        image = analyse_image(self.analyzer, Path(row["path"]), str(row["name"]), self.request, outputs=self.outputs)
        return {"index": int(row["index"]), "result": pickle.dumps(image)}


def actor_arguments(model: str, device: str, max_pixels: int, request: AnalysisRequest, outputs: Outputs, actors: ActorOptions) -> dict[str, Any]:
    """What each actor of the pool is built with: ``_AnalyseRow``'s arguments."""
    return {
        "model": model,
        "device": device,
        "max_pixels": max_pixels,
        "request": request,
        "outputs": outputs,
        "memory_budget": actors.memory_budget,
        "compile_kernels": actors.compile_kernels,
    }


def analyse_files_ray(
    model: str,
    device: str,
    files: Sequence[Path],
    out: Path,
    request: AnalysisRequest,
    actors: ActorOptions = ActorOptions(),
    max_pixels: int = MAX_PIXELS,
    outputs: Outputs = FILE_DEFAULT,
) -> Iterator[tuple[int, SummaryRow]]:
    """Analyse ``files`` into ``out/<name>/`` on the running Ray cluster, yielding ``(input index, row)`` as images finish.

    Rows come in the order the actors finish, not the input order. Stopping the iteration early leaves the finished
    images' folders complete and nothing of the others. A model that cannot be loaded fails the whole run (the
    actors' start-up raises).

    Args:
        model: Bundle name or folder, loaded by every actor.
        device: ``auto``, ``cpu`` or ``cuda`` in each actor (a GPU actor sees only the GPUs Ray gave it).
        files: Inputs (see :func:`~app.workflows.analyse_folder.expand_inputs`).
        out: Output folder (created).
        request: How every image is analysed.
        actors: The actor pool.
        max_pixels: Largest decoded image.
        outputs: The files written for each input and the ``(C, H, W)`` arrays each ``maps.npz`` adds (:mod:`app.workflows.outputs`).
    """
    import ray.data

    out.mkdir(parents=True, exist_ok=True)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    items = [{"index": i, "path": str(path), "name": name} for i, (path, name) in enumerate(zip(files, output_names(files), strict=True))]
    actor_class = cast("Callable[[dict[str, Any]], dict[str, Any]]", _AnalyseRow)  # Ray Data runs a class as an actor pool
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map(
        actor_class,
        fn_constructor_kwargs=actor_arguments(model, device, max_pixels, request, outputs, actors),
        compute=ray.data.ActorPoolStrategy(size=actors.actors, max_tasks_in_flight_per_actor=2),
        num_cpus=actors.cpus,
        num_gpus=actors.gpus,
    )
    for result in dataset.iter_rows():
        image: AnalysedImage = pickle.loads(result["result"])
        yield int(result["index"]), install_image(image, out)
