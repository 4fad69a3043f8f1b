"""The terminal's colours, for the renderers that are handed a painter
(:data:`reconciler.core.render.Paint`)."""

from __future__ import annotations

import click


def ansi(text: str, fg: str, bold: bool = False) -> str:
    """``text`` in the terminal's colour ``fg`` ("": its own foreground), bold or not."""
    return click.style(text, fg=fg or None, bold=bold)
