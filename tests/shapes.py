"""A generated image of two particle shapes, discs ("sphere") and rotated ellipses ("rod"), with the truth."""

from __future__ import annotations

import numpy as np

SHAPES_SIZE = (400, 600)
#: Grid of particle centres (row, col); the kind alternates in a pattern that is not a column or a row.
GRID_ROWS = (60, 150, 240, 330)
GRID_COLS = (60, 156, 252, 348, 444, 540)


def shapes_truth() -> list[tuple[int, int, str]]:
    """(row, col, kind) of every particle of :func:`shapes_image`: 12 spheres and 12 rods."""
    return [(row, col, "rod" if (i + j) % 2 else "sphere")
            for i, row in enumerate(GRID_ROWS) for j, col in enumerate(GRID_COLS)]


def shapes_image(seed: int = 0) -> np.ndarray:
    """Bright discs (radius 12-16 px) and rods (ellipses of 22-28 by 7 px, turned) on a dark noisy ground, uint8."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: SHAPES_SIZE[0], : SHAPES_SIZE[1]]
    image = np.full(SHAPES_SIZE, 40.0) + rng.normal(0.0, 4.0, SHAPES_SIZE)
    for number, (row, col, kind) in enumerate(shapes_truth()):
        dy, dx = rows - row, cols - col
        if kind == "sphere":
            inside = dy**2 + dx**2 <= rng.uniform(12, 16) ** 2
        else:
            angle = np.pi * number / 7
            along = dx * np.cos(angle) + dy * np.sin(angle)
            across = -dx * np.sin(angle) + dy * np.cos(angle)
            inside = (along / rng.uniform(22, 28)) ** 2 + (across / 7.0) ** 2 <= 1
        image[inside] = 200.0
    return np.clip(image, 0, 255).astype(np.uint8)
