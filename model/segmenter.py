"""The U-Net segmenter: SAEMI's default :class:`app.analysis.segmentation.Segmenter`.

The shipped network (``model/saemi_unet.keras``) and its settings (``model/config.json``) are loaded
lazily, once per process, in Keras safe mode. Segmentation normalises the image and runs the network at
its octaves (full resolution, 1/2, 1/4, ...); each particle is kept from the pass where the candidate
scorer finds it most convincing (:mod:`model.multiscale`), so particles of a few pixels and of hundreds
are found in the same image. Small particles then have their outlines redrawn at the half-maximum of
their edge. An image with a side over 2,048 px is segmented window by window (:func:`windows`), so the
memory stays that of one window. When the user gives the typical particle diameter, the network instead
runs once, at the scale that brings that diameter to the size it was trained on, and a marker-controlled
watershed turns its maps into instances.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.analysis.errors import SaemiInputError
from app.analysis.labels import sequential_labels
from model.config import BACKENDS, ModelConfig, ModelLoadError, default_model_dir
from model.inference import VIEWS, Progress, predict_tiled
from model.loading import NO_SCORER, ShippedModel, load_shipped_model
from model.multiscale import OctavePass, fuse_passes, octave_scales
from model.postprocess import maps_to_instances, refine_small_outlines, upsample_instances
from model.preprocess import LevelledImage, resize_float, scaled_shape
from model.quantize import quantized

logger = logging.getLogger(__name__)

#: Particles whose ECD is under this (px) get their outlines redrawn at the half-maximum
#: (:func:`model.postprocess.refine_small_outlines`), where the network's outlines lie at the blur's outer
#: end; larger particles keep the network's outlines, which follow the people who drew EMPS (model card,
#: "The boundary convention").
REFINE_BELOW_PX = 12.0
#: An image with a side over ``WINDOW_PX + 2 * MARGIN_PX`` is segmented in windows (:func:`windows`): cores of
#: at most ``WINDOW_PX`` a side, each seen with ``MARGIN_PX`` of its surroundings, so a particle up to about
#: twice the margin across whose centre lies in a core is whole in its window, and the memory of the passes
#: and their fusion stays that of one window (an 8192 x 8192 image in 1.9 GB; bench/bench_memory.py).
WINDOW_PX = 1536
MARGIN_PX = 256


def _as_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim == 3 and gray.shape[-1] in (3, 4):
        gray = gray[..., :3].mean(axis=-1)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise SaemiInputError(f"The segmenter needs a 2-D grayscale image; got an array of shape {gray.shape}.")
    return gray.astype(np.float32, copy=False)


class UNetSegmenter:
    """Segment particles with the shipped U-Net (name ``"unet"``).

    Parameters
    ----------
    model_dir : str or Path, optional
        Folder with ``saemi_unet.keras``, ``config.json`` and the candidate scorer; default
        :func:`default_model_dir`. Nothing is read until :meth:`load` or :meth:`segment` is called.
    diameter_px : float, optional
        Typical (median) particle diameter in image pixels, when the user knows it. The network then
        runs once, on the image rescaled to bring that diameter to ``input_scale.target_diameter_px``,
        instead of at every octave.
    views : int, optional
        How many views of the image (:data:`model.inference.VIEWS`) the network averages in every pass, 1 to
        4; default: the config's ``test_time_views``. Each view adds the cost of one more look.
    backend : {"tensorflow", "int8"}, optional
        How the network runs: TensorFlow in float32, or its 8-bit TensorFlow Lite copy
        (:mod:`model.quantize`, about 4x faster on CPUs with integer dot products, made once per process);
        default: the config's ``inference_backend``.
    network : ShippedModel, optional
        A network and config already loaded (a model just tuned, say), used instead of loading
        ``model_dir`` through the per-process cache.
    """

    name = "unet"

    def __init__(self, model_dir: str | os.PathLike | None = None, diameter_px: float | None = None,
                 views: int | None = None, backend: str | None = None, network: ShippedModel | None = None) -> None:
        if diameter_px is not None and not diameter_px > 0:
            raise SaemiInputError(f"The particle diameter must be a positive number of pixels; got {diameter_px}.")
        if views is not None and (not isinstance(views, (int, np.integer)) or isinstance(views, bool)
                                  or views not in range(1, len(VIEWS) + 1)):
            raise SaemiInputError(f"The number of network views must be a whole number from 1 to {len(VIEWS)}; "
                                  f"got {views}.")
        if backend is not None and backend not in BACKENDS:
            raise SaemiInputError(f"The network backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
        self.model_dir = str(Path(model_dir)) if model_dir is not None else str(default_model_dir())
        self.diameter_px = diameter_px
        self.views = views
        self.backend = backend
        self._network = network

    def load(self) -> ShippedModel:
        """Load (once per process) and return the network and its config; raises ``ModelLoadError``."""
        if self._network is not None:
            return self._network
        return load_shipped_model(self.model_dir)

    def network(self, shipped: ShippedModel | None = None):
        """What runs the network: the Keras model, or its int8 copy for the ``int8`` backend."""
        shipped = shipped or self.load()
        if (self.backend or shipped.config.inference_backend) == "int8":
            return quantized(shipped.model)
        return shipped.model

    def warm_up(self) -> ShippedModel:
        """Load the model and trace its forward pass on a small blank tile.

        The graph is traced once for every tile shape, so after this the first real image pays
        neither the load nor the tracing (about 0.5 s). gunicorn workers call it at start-up.
        """
        shipped = self.load()
        multiple = 2 ** (len(shipped.config.architecture.filters) - 1)
        predict_tiled(self.network(shipped), np.zeros((multiple * 4, multiple * 4), np.float32),
                      tile=multiple * 4, overlap=0, batch_size=1)
        return shipped

    @property
    def version(self) -> str:
        """Model version from ``config.json`` (recorded in provenance)."""
        return str(self.load().config.version)

    def segment(self, gray: np.ndarray, *, progress: Progress | None = None,
                notes: list[str] | None = None) -> np.ndarray:
        """Return int32 instance labels (0 = background) of the same shape as ``gray``.

        Parameters
        ----------
        gray : numpy.ndarray
            2-D float image (values in [0, 1] by convention; any range works since the image is
            normalised by percentiles). An RGB(A) array is averaged to gray.
        progress : callable, optional
            ``progress(fraction, message)``.
        notes : list of str, optional
            Part of the :class:`app.analysis.segmentation.Segmenter` interface; this segmenter adds none.

        Raises
        ------
        ModelLoadError
            When the shipped weights, their config or the candidate scorer are missing or corrupted.
        """
        if self.diameter_px is None:
            labels = self._octave_labels(gray, progress)
        else:
            maps, scale = self.network_maps(gray, progress=progress)
            if progress is not None:
                progress(0.92, "Separating particles")
            labels = self.instances(maps, scale, np.shape(gray)[:2])
        if progress is not None:
            progress(1.0, "Segmentation done")
        return labels

    def scale_for(self, diameter_px: float, shape: tuple[int, int]) -> float:
        """The scale that brings particles ``diameter_px`` across to the trained size, within the config's
        ``min_scale`` and the largest scale allowed for an image of ``shape``."""
        scaling = self.load().config.input_scale
        return float(np.clip(scaling.target_diameter_px / diameter_px, scaling.min_scale,
                             self._max_scale(shape)))

    def predict_maps(self, gray: np.ndarray, *, progress: Progress | None = None) -> tuple[np.ndarray, float]:
        """Network output maps at the resolution of ``gray`` and the scale they were computed at
        (see :meth:`network_maps`)."""
        maps, scale = self.network_maps(gray, progress=progress)
        return self.resize_maps(maps, np.shape(gray)[:2]), scale

    def network_maps(self, gray: np.ndarray, *, progress: Progress | None = None) -> tuple[np.ndarray, float]:
        """One network pass: its maps at network resolution and its scale.

        The scale is :meth:`scale_for` the given ``diameter_px``, or full resolution (as far as
        ``max_scaled_pixels`` allows) without one. With ``views`` of 2 or more (the constructor's, else
        the config's ``test_time_views``) the network also sees the image turned by 180 degrees, then
        mirrored (:data:`model.inference.VIEWS`), and the maps are averaged.

        Returns
        -------
        maps : numpy.ndarray
            float32 (rows * scale, cols * scale, 3): particle probability, centre map and size map.
        scale : float
        """
        views = self.views or self.load().config.test_time_views
        run = self._runner(self.levelled(gray), progress)
        shape = np.shape(gray)[:2]
        scale = self.scale_for(self.diameter_px, shape) if self.diameter_px is not None else min(
            1.0, self._max_scale(shape))
        return run(scale, 0.0, 0.9, views=range(views)), scale

    def _max_scale(self, shape: tuple[int, int]) -> float:
        """The largest scale a pass over an image of ``shape`` may have (``max_scale``, ``max_scaled_pixels``)."""
        scaling = self.load().config.input_scale
        return min(scaling.max_scale, float(np.sqrt(scaling.max_scaled_pixels / (shape[0] * shape[1]))))

    def levelled(self, gray: np.ndarray) -> LevelledImage:
        """``gray`` with its normalisation levels (the config's percentiles over the whole image). The image is
        normalised lazily: each pass resizes the raw image band by band, so a large image is never held a
        second time as a normalised copy."""
        return LevelledImage.of(_as_gray(gray), *self.load().config.normalisation.percentiles)

    def _runner(self, image: LevelledImage, progress: Progress | None = None):
        """``run(scale, first, span, views=(0,))``: the network on ``image`` resized by ``scale``, averaged
        over ``views`` (:func:`model.inference.predict_tiled`), reporting progress from ``first`` over
        ``span``."""
        shipped = self.load()
        cfg = shipped.config
        network = self.network(shipped)

        def run(scale: float, first: float, span: float, views: Sequence[int] = (0,)) -> np.ndarray:
            def report(fraction: float, message: str) -> None:
                if progress is not None:
                    progress(first + span * fraction, message)

            shape = scaled_shape(image.shape, scale)
            scaled = image.normalised() if shape == image.shape else image.resized(shape)
            return predict_tiled(network, scaled, tile=cfg.tile_px, overlap=cfg.overlap_px,
                                 batch_size=cfg.batch_size, progress=report, views=views)

        return run

    def instances(self, maps: np.ndarray, scale: float, shape: tuple[int, int],
                  thresholds: dict | None = None) -> np.ndarray:
        """Instance labels of the image of ``shape`` from network-resolution ``maps`` made at ``scale``.

        The watershed runs at ``scale * postprocess_upsampling`` (config ``thresholds``), capped
        at the image's own resolution. Below it, :func:`model.postprocess.upsample_instances`
        carries the instances to full resolution with outlines from the resized particle
        probability, so only the lines between touching particles keep the coarser resolution;
        on a strongly shrunk image this costs a fraction of a full-resolution watershed.
        ``thresholds`` overrides entries of the config's ``thresholds`` for this call (used to
        compare post-processing settings on the same maps).
        """
        cfg = self.load().config
        if thresholds:
            cfg = cfg.replace(thresholds=thresholds)
        work_scale = min(1.0, scale * cfg.thresholds.postprocess_upsampling)
        if work_scale >= 1.0:
            maps = self.resize_maps(maps, shape)
            return maps_to_instances(maps[..., 0], maps[..., 1], **self._threshold_kwargs(cfg, scale))
        work_maps = self.resize_maps(maps, scaled_shape(shape, work_scale))
        labels = maps_to_instances(work_maps[..., 0], work_maps[..., 1],
                                   **self._threshold_kwargs(cfg, scale / work_scale))
        return upsample_instances(labels, maps[..., 0], shape=tuple(shape),
                                  foreground_threshold=cfg.thresholds.foreground,
                                  min_area_px=self._threshold_kwargs(cfg, scale)["min_area_px"])

    @staticmethod
    def resize_maps(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``maps`` (rows, cols, channels) resized bilinearly to ``shape``, each channel on its own."""
        if maps.shape[:2] == tuple(shape):
            return maps
        return np.stack([resize_float(maps[..., k], shape) for k in range(maps.shape[-1])], axis=-1)

    @staticmethod
    def _threshold_kwargs(cfg: ModelConfig, scale: float) -> dict:
        """Post-processing arguments for maps at image resolution when the network ran at ``scale``."""
        thresholds = cfg.thresholds
        area_factor = 1.0 / scale ** 2  # network-scale areas to areas in image pixels
        return {"foreground_threshold": thresholds.foreground, "centre_threshold": thresholds.centre,
                "min_marker_area_px": max(1, int(round(thresholds.min_marker_area_px * area_factor))),
                "min_area_px": max(1, int(round(thresholds.min_area_px * area_factor)))}

    def octave_passes(self, gray: np.ndarray | LevelledImage, progress: Progress | None = None) -> list[OctavePass]:
        """The network's maps and instances at every octave of the image (:func:`model.multiscale.octave_scales`),
        each pass's maps averaged over the ``views`` (the constructor's, else the config's ``test_time_views``).
        ``gray`` may be a :class:`model.preprocess.LevelledImage` already (a window with the whole image's
        levels)."""
        cfg = self.load().config
        views = range(self.views or cfg.test_time_views)
        image = gray if isinstance(gray, LevelledImage) else self.levelled(gray)
        run = self._runner(image, progress)
        scales = octave_scales(image.shape, min(1.0, self._max_scale(image.shape)))
        costs = np.array(scales) ** 2
        done = np.concatenate([[0.0], np.cumsum(costs) / costs.sum()]) * 0.9
        passes = []
        for k, scale in enumerate(scales):
            maps = run(scale, done[k], done[k + 1] - done[k], views=views)
            labels = maps_to_instances(maps[..., 0], maps[..., 1], **self._threshold_kwargs(cfg, 1.0))
            passes.append(OctavePass(scale, maps[..., 0], maps[..., 1], labels, maps[..., 2]))
        return passes

    def _octave_labels(self, gray: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Instances from the octave passes fused by the candidate scorer (:func:`model.multiscale.fuse_passes`),
        the outlines of particles under :data:`REFINE_BELOW_PX` redrawn at their half-maximum; an image larger
        than one window (:func:`windows`) window by window, each particle kept from the window whose core
        holds its centre."""
        if self.load().config.input_scale.scorer is None:
            raise ModelLoadError(NO_SCORER)
        image = self.levelled(gray)
        plan = windows(image.shape)
        if len(plan) == 1:
            return self._window_labels(image, progress)
        out = np.zeros(image.shape, np.int32)
        next_id = 1
        for k, (core, box) in enumerate(plan):
            def shown(fraction: float, message: str, k: int = k) -> None:
                if progress is not None:
                    progress(0.95 * (k + fraction) / len(plan), f"{message} (part {k + 1} of {len(plan)})")

            labels = self._window_labels(image[box], shown)
            n = int(labels.max())
            if n == 0:
                continue
            rows, cols = np.indices(labels.shape, dtype=np.float64)
            area = np.bincount(labels.ravel(), minlength=n + 1)
            centre_row = np.bincount(labels.ravel(), weights=rows.ravel(), minlength=n + 1) / np.maximum(area, 1)
            centre_col = np.bincount(labels.ravel(), weights=cols.ravel(), minlength=n + 1) / np.maximum(area, 1)
            top, left = core[0].start - box[0].start, core[1].start - box[1].start
            bottom, right = core[0].stop - box[0].start, core[1].stop - box[1].start
            region = out[box]
            taken = np.bincount(labels[region > 0], minlength=n + 1)
            # its centre in this window's core, and not mostly drawn already (a particle wider than twice the
            # margin can have its centre in two cores, as two cut pieces)
            keep = ((centre_row >= top) & (centre_row < bottom) & (centre_col >= left) & (centre_col < right)
                    & (area > 0) & (taken <= 0.5 * area))
            keep[0] = False
            lookup = np.zeros(n + 1, np.int32)
            lookup[keep] = np.arange(next_id, next_id + int(keep.sum()), dtype=np.int32)
            next_id += int(keep.sum())
            free = region == 0
            region[free] = lookup[labels[free]]
        if progress is not None:
            progress(0.95, "Separating particles")
        return sequential_labels(out, min_area_px=1, in_place=True)

    def _window_labels(self, image: LevelledImage, progress: Progress | None = None) -> np.ndarray:
        """:meth:`_octave_labels` of one window (or of a whole image that fits in one)."""
        passes = self.octave_passes(image, progress)
        if progress is not None:
            progress(0.92, "Separating particles")
        labels = fuse_passes(passes, image.shape, self.load().config.input_scale.scorer)
        del passes
        return refine_small_outlines(image.gray, labels, REFINE_BELOW_PX)


def windows(shape: tuple[int, int], window_px: int | None = None,
            margin_px: int | None = None) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """How an image of ``shape`` is cut for the octave method: ``(core, box)`` slices per window, the cores
    tiling the image in equal parts of at most ``window_px`` a side and each box its core grown by
    ``margin_px`` (clipped to the image). A side of at most ``window_px + 2 * margin_px`` is not cut.
    Defaults: :data:`WINDOW_PX` and :data:`MARGIN_PX`.

    >>> windows((768, 1024)) == [((slice(0, 768), slice(0, 1024)),) * 2]
    True
    >>> [core for core, _ in windows((6000, 1000))][1]
    (slice(1500, 3000, None), slice(0, 1000, None))
    >>> [box for _, box in windows((6000, 1000))][1]
    (slice(1244, 3256, None), slice(0, 1000, None))
    """
    window_px = WINDOW_PX if window_px is None else window_px
    margin_px = MARGIN_PX if margin_px is None else margin_px

    def cuts(n: int) -> list[tuple[slice, slice]]:
        if n <= window_px + 2 * margin_px:
            return [(slice(0, n), slice(0, n))]
        parts = -(-n // window_px)
        edges = [round(k * n / parts) for k in range(parts + 1)]
        return [(slice(a, b), slice(max(0, a - margin_px), min(n, b + margin_px))) for a, b in zip(edges, edges[1:])]

    return [((rc, cc), (rb, cb)) for rc, rb in cuts(shape[0]) for cc, cb in cuts(shape[1])]
