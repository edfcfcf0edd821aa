"""``analyze --full-resolution``'s second progress bar: the current image's sliding-window tiles (or passes), from the engine's
:class:`~app.engine.cancel.Progress`."""

from __future__ import annotations

import sys
from typing import Any

from app.engine.cancel import CancelToken, Progress

__all__ = ["AnalysisBar"]


class AnalysisBar:
    """A tqdm bar under the images' bar, advanced per sliding-window tile (or per pass, or sample chunk, of an image analysed
    whole) of the image being analysed; it starts again with each image.

    Args:
        token: The run's cancellation token: the bar becomes its :attr:`~app.engine.cancel.CancelToken.progress`.
    """

    def __init__(self, token: CancelToken) -> None:
        self.bar: Any = None
        self.done, self.total, self.unit = 0, 0, ""
        self.progress = Progress(self._report)
        token.progress = self.progress

    def _report(self, progress: Progress) -> None:
        from tqdm import tqdm

        done = int(progress.done + 1e-6)  # whole tiles (passes, chunks) done
        if self.bar is None:
            self.bar = tqdm(total=progress.total, unit=progress.unit, desc=_plural(progress.unit), position=1, leave=False, file=sys.stderr)
        elif (progress.total, progress.unit) != (self.total, self.unit) or done < self.done:
            self.bar.reset(total=progress.total)
            self.bar.unit = progress.unit
            self.bar.set_description(_plural(progress.unit), refresh=False)
            self.done = 0
        self.total, self.unit = progress.total, progress.unit
        self.bar.update(done - self.done)
        self.done = done

    def next_image(self) -> None:
        """Between two images: the next one's analysis starts from 0 even if this one stopped early."""
        self.progress.reset()

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()


def _plural(unit: str) -> str:
    """The bar's label: ``"  tiles"``, ``"  passes"``."""
    return f"  {unit}{'es' if unit.endswith('s') else 's'}"
