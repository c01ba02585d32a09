"""The samples demo: two synthetic samples of three TEM images each, with known, different size
distributions, rendered on demand by SAEMI's generator (:func:`model.synthetic.generate_sample`) from
fixed seeds, so that every particle and the pixel size are known exactly.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from model.synthetic import SyntheticSample, generate_sample

#: Pixel size of the demo images, in nm.
DEMO_NM_PER_PX = 2.0
#: The file-name pattern that groups the demo images into their samples.
DEMO_PATTERN = r"(.*)_\d+$"
#: Side of each demo image, in pixels.
DEMO_SIZE_PX = 256


@dataclass(frozen=True)
class DemoSample:
    """One demo sample: its name, the median of its log-normal ECD distribution, particles per image, seeds."""

    name: str
    median_diameter_px: float
    n_particles: int
    seeds: tuple[int, ...]
    sigma_log: float = 0.15


DEMO_SAMPLES = (
    DemoSample("small", 18.0, 50, (11, 12, 13)),
    DemoSample("large", 28.0, 25, (21, 22, 23)),
)


def render(sample: DemoSample, seed: int) -> SyntheticSample:
    """One demo image of ``sample`` (TEM, isolated round particles, no decorations)."""
    return generate_sample(seed, DEMO_SIZE_PX, DEMO_SIZE_PX, modality="tem", nm_per_px=DEMO_NM_PER_PX,
                           shape="round", arrangement="isolated", n_particles=sample.n_particles,
                           median_diameter_px=sample.median_diameter_px, sigma_log=sample.sigma_log,
                           data_bar=False, scale_bar=False, letters=False)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def demo_files() -> list[tuple[str, bytes]]:
    """The demo images as PNG files named ``<sample>_<k>.png``."""
    return [(f"{sample.name}_{k}.png", _png(render(sample, seed).image))
            for sample in DEMO_SAMPLES for k, seed in enumerate(sample.seeds)]


def true_ecd_nm(sample: DemoSample) -> np.ndarray:
    """The true ECDs (nm) of the sample's particles that lie wholly inside their image."""
    parts = []
    for seed in sample.seeds:
        rendered = render(sample, seed)
        parts.append(rendered.true_ecd_px[~rendered.touches_border] * DEMO_NM_PER_PX)
    return np.concatenate(parts)
