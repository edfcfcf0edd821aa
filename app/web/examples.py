"""The page's example images (static/examples/, written by scripts/make_examples.py): a newcomer clicks one to see an analysis
without a file of their own, each with the served model that knows it preselected."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["EXAMPLES", "EXAMPLES_PATH", "Example", "served_examples"]

EXAMPLES_PATH = "/static/examples"


@dataclass(frozen=True)
class Example:
    """One example image.

    Attributes:
        file: Its file name under static/examples/.
        title: What the button says.
        model: The served model that is chosen when it is clicked.
        note: One line on what to look for (the button's tooltip).
    """

    file: str
    title: str
    model: str
    note: str

    @property
    def url(self) -> str:
        """Where the page fetches it."""
        return f"{EXAMPLES_PATH}/{self.file}"


EXAMPLES: tuple[Example, ...] = (
    Example("synthetic_scene.png", "synthetic scene", "default", "A test scene of the synthetic shapes the default model was trained on."),
    Example("astronaut.jpg", "portrait", "person", "A portrait (skimage's astronaut): the person model's own domain."),
    Example("cat.jpg", "cat", "person", "A cat (skimage's chelsea): no person, yet the person model calls most of it 'person'."),
    Example("coffee.jpg", "coffee", "person", "A photo without a person (skimage's coffee)."),
)


def served_examples(models: Iterable[str]) -> list[Example]:
    """The examples whose model is served (by name), in :data:`EXAMPLES` order."""
    served = set(models)
    return [example for example in EXAMPLES if example.model in served]
