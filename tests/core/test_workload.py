"""The guess of an image's work that orders a batch: finer particles mean more work."""

from __future__ import annotations

import numpy as np

from app.analysis.workload import relative_work, texture_scale_px
from model.synthetic import generate_sample


def _image(seed: int, diameter_px: float, modality: str = "tem") -> np.ndarray:
    return generate_sample(seed, 384, 512, modality=modality, median_diameter_px=diameter_px, sigma_log=0.1,
                           arrangement="isolated", data_bar=False, scale_bar=False, letters=False).image / 255.0


def test_the_texture_scale_grows_with_the_particles():
    for modality in ("sem", "tem"):
        scales = [texture_scale_px(_image(40, d, modality)) for d in (6, 12, 24, 48)]
        assert scales == sorted(scales) and scales[0] < scales[-1] / 2, (modality, scales)


def test_pixel_noise_does_not_move_the_texture_scale():
    clean = _image(41, 20)
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape)
    assert abs(texture_scale_px(noisy) - texture_scale_px(clean)) <= 2


def test_work_grows_with_pixels_and_with_finer_particles():
    fine, coarse = _image(42, 8), _image(42, 32)
    assert relative_work(fine) > 4 * relative_work(coarse)
    assert relative_work(np.tile(coarse, (2, 2))) > 3 * relative_work(coarse)


def test_flat_and_tiny_images_have_a_finite_guess():
    assert np.isfinite(relative_work(np.zeros((64, 64))))
    assert np.isfinite(relative_work(np.ones((3, 5))))
