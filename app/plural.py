"""Counts in messages: ``1 image``, ``2 images``, never ``1 images``."""

from __future__ import annotations

__all__ = ["plural", "word_for"]


def word_for(count: int, word: str, many: str | None = None) -> str:
    """``word`` when ``count`` is 1 (or -1), else its plural: ``many`` when given, else ``word + "s"``.

    Args:
        count: How many.
        word: The singular (``"image"``, ``"analysis"``).
        many: The plural when it is not ``word + "s"`` (``"analyses"``, ``"passes"``).
    """
    if abs(count) == 1:
        return word
    return many if many is not None else f"{word}s"


def plural(count: int, word: str, many: str | None = None, thousands: bool = False) -> str:
    """``count`` and the word that agrees with it: ``plural(1, "image")`` is ``"1 image"``, ``plural(2, "image")`` ``"2 images"``.

    Args:
        count: How many.
        word: The singular.
        many: The plural when it is not ``word + "s"``.
        thousands: Group the digits with commas (``1,024 pixels``).
    """
    number = f"{count:,}" if thousands else str(count)
    return f"{number} {word_for(count, word, many)}"
