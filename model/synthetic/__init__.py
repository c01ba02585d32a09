"""Synthetic SEM/TEM images of particles with exact instance labels.

The generator serves three purposes: on-the-fly training crops for the segmentation model, test
images with a known answer, and the demo images shipped in ``demo_images/``. Everything is drawn
from one seed, so a sample is reproducible from its arguments alone.

:func:`generate_sample` builds a sample in five steps:

1. draw the conditions (pixel size, shape family, arrangement, size distribution, decorations);
2. lay out the burned-in decorations (data bar, scale bar, panel letter) so particles can avoid
   or be cut by them;
3. place and rasterise the particles (later particles occlude earlier ones), then clean the label
   image so that every instance is one 4-connected region and nothing is labelled under a
   decoration;
4. render the image *from the final label image* (substrate, SEM edge brightening or TEM
   thickness contrast, blur, shot noise, scan-line noise), so image and labels always agree;
5. burn the decorations into the 8-bit image.

Modules
-------
shapes
    Particle outlines, rasterisation into label images, label clean-up.
decorations
    Scale bar, data bar and panel letter, drawn on any image.
appearance
    Substrate, SEM/TEM contrast, blur, noise and 8-bit conversion.
sampling
    Conditions, size distribution and placement; :func:`generate_sample`, :func:`generate_crop`
    and :class:`SyntheticSample`.
styles
    Out-of-domain styles for measuring fine-tuning: :func:`halo_sample`.

The package depends only on numpy, scipy, scikit-image, Pillow and :mod:`app.analysis.errors`.
"""

from .appearance import MODALITIES
from .decorations import (
    data_bar_text,
    format_length,
    nice_scale_length_nm,
    render_data_bar,
    render_panel_letter,
    render_scale_bar,
)
from .sampling import (
    ARRANGEMENTS,
    MIN_PARTICLE_AREA_PX,
    SIZE_CASE_BENCH_SEEDS,
    SIZE_CASE_PLAIN,
    SIZE_CASES,
    SyntheticSample,
    generate_crop,
    generate_sample,
    size_case_samples,
)
from .shapes import SHAPES
from .styles import HALO_EVAL_SEEDS, HALO_TRAIN_SEEDS, halo_sample

__all__ = [
    "ARRANGEMENTS",
    "HALO_EVAL_SEEDS",
    "HALO_TRAIN_SEEDS",
    "MIN_PARTICLE_AREA_PX",
    "MODALITIES",
    "SHAPES",
    "SIZE_CASES",
    "SIZE_CASE_BENCH_SEEDS",
    "SIZE_CASE_PLAIN",
    "SyntheticSample",
    "data_bar_text",
    "format_length",
    "generate_crop",
    "generate_sample",
    "halo_sample",
    "nice_scale_length_nm",
    "render_data_bar",
    "render_panel_letter",
    "render_scale_bar",
    "size_case_samples",
]
