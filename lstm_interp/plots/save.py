"""``save_figure``: write a figure to disk atomically, so a reader never sees half an image."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from lstm_interp._io import atomic_path


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Render ``fig`` to a temporary file beside ``path``, then rename it into place.

    The format follows the file extension (``.png`` by default; ``.svg`` and ``.pdf`` work too). No pyplot and no
    global backend are involved: the figure renders through its own canvas, so this works headless.

    Args:
        fig: a figure from one of the ``plot_*`` functions (or any matplotlib figure).
        path: where to write; missing parent folders are created.
        dpi: resolution (``None`` keeps the figure's own, 100 for the figures of this package).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the extension names a format matplotlib cannot write.

    Example::

        >>> save_figure(plot_cell_text(tr, [("layers.0", 3)]), "plots/cell.png")  # doctest: +SKIP
        PosixPath('plots/cell.png')
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"cannot write {str(path)!r}: {fmt!r} is not one of the formats {sorted(supported)}")
    with atomic_path(path) as tmp:
        # The temporary name ends in ".tmp", so the format must be given, not guessed from the name.
        fig.savefig(tmp, format=fmt, dpi=dpi if dpi is not None else "figure")
    return path
