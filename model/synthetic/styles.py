"""Out-of-domain styles for measuring fine-tuning (issue #23): images the shipped model handles badly.

The **halo** style: TEM bright-field images (isolated particles, 18–30 px, no decorations) in which every
particle carries a dark ring 4–6 px wide just outside its edge, as a thick contamination layer or a
defocus ring can draw. The ring is not part of the particle (the labels are the generator's), but it is
as dark as the particle's rim, so a model that never saw it draws the outline at the ring's outer edge:
particles come out 8–12 px too wide and touching rings merge neighbours. A user's corrections on two such
images teach where the edge is.

Seeds :data:`HALO_TRAIN_SEEDS` give the images a tune learns from, :data:`HALO_EVAL_SEEDS` the ones it is
scored on (never learned from).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .sampling import generate_sample

#: The two images a halo tune learns from, and the ten it is scored on.
HALO_TRAIN_SEEDS = (7000, 7001)
HALO_EVAL_SEEDS = tuple(range(7002, 7012))


def halo_sample(seed: int, height: int = 384, width: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit halo-style image and its instance labels (int32), from ``seed`` alone."""
    rng = np.random.default_rng(seed)
    sample = generate_sample(seed, height, width, modality="tem", median_diameter_px=float(rng.uniform(18, 30)),
                             arrangement="isolated", data_bar=False, scale_bar=False, letters=False)
    rng = np.random.default_rng(seed + 7)
    inside = sample.labels > 0
    distance_px = ndimage.distance_transform_edt(~inside)
    ring = ((distance_px > 0) & (distance_px <= rng.uniform(4, 6))).astype(np.float32)
    ring = ndimage.gaussian_filter(ring, 0.8)
    image = sample.image.astype(np.float32) / 255.0 * (1 - rng.uniform(0.35, 0.5) * ring)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), sample.labels.astype(np.int32)
