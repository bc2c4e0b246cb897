"""Checks that a written figure is a real picture that shows something, for the tests of every module that draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.image import imread


def assert_picture(path: Path, *, min_width: int = 200, min_height: int = 100, min_colours: int = 8) -> np.ndarray:
    """Assert that ``path`` is a PNG at least ``min_width`` x ``min_height`` pixels that is not blank.

    Not blank: at least ``min_colours`` distinct colours, and no single colour covers more than 98% of the image
    (a figure of white axes and a title only would fail both). Returns the (H, W, C) pixels.
    """
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4), f"{path} is not an RGB(A) image: {pixels.shape}"
    height, width = pixels.shape[:2]
    assert width >= min_width and height >= min_height, f"{path} is {width}x{height} pixels"
    rgb = (pixels[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    assert len(colours) >= min_colours, f"{path} has only {len(colours)} colours: blank"
    assert counts.max() / counts.sum() < 0.98, f"{path} is {counts.max() / counts.sum():.1%} one colour: blank"
    return pixels
