"""The U-Net segmenter: SAEMI's default :class:`app.analysis.segmentation.Segmenter`.

The shipped network (``model/saemi_unet.keras``) and its settings (``model/config.json``) are loaded
lazily, once per process, in Keras safe mode. Segmentation normalises the image, chooses the scale
at which particles appear at about the size the network was trained on (as Cellpose does with its
diameter; here a learned choice among the passes of a pyramid, see :mod:`model.scale_select`),
runs tiled inference there, and turns the two output maps into instances with a marker-controlled
watershed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.analysis.errors import SaemiInputError
from model.config import BACKENDS, SCALE_METHODS, ModelConfig, default_model_dir
from model.inference import VIEWS, Progress, predict_tiled
from model.loading import ShippedModel, load_shipped_model
from model.multiscale import OctavePass, fuse_passes, octave_scales
from model.postprocess import maps_to_instances, refine_small_outlines, upsample_instances
from model.preprocess import LevelledImage, median_diameter_px, resize_float, scaled_shape
from model.quantize import quantized
from model.scale_select import (
    PASS_STEP,
    PassSummary,
    mean_peak,
    pass_features,
    pyramid_scales,
    selector_scores,
    summarize_pass,
)

logger = logging.getLogger(__name__)

#: With the octave method, particles whose ECD is under this (px) get their outlines redrawn at the
#: half-maximum (:func:`model.postprocess.refine_small_outlines`), where the network's outlines lie at the
#: blur's outer end; larger particles keep the network's outlines, which follow the people who drew EMPS
#: (model card, "The boundary convention").
REFINE_BELOW_PX = 12.0


def ambiguous_size_note(used_px: float, rival_px: float) -> str:
    """The sentence for the user when the size estimate found two convincing particle sizes.

    ``used_px`` is the particle diameter the segmentation was made for and ``rival_px`` the other
    one (the most convincing other proposal), both in image pixels.

    Examples
    --------
    >>> note = ambiguous_size_note(8.2, 230.0)
    >>> "particles about 8 px across" in note and "about 230 px across looked almost as convincing" in note
    True
    """
    return (f"The particle size was hard to estimate: the U-Net worked with particles about {used_px:.0f} px "
            f"across, but particles about {rival_px:.0f} px across looked almost as convincing. If the outlines "
            "are wrong, give the typical particle diameter in pixels (the \"Typical particle diameter\" "
            "field, or --diameter-px) and analyse again.")


def _as_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim == 3 and gray.shape[-1] in (3, 4):
        gray = gray[..., :3].mean(axis=-1)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise SaemiInputError(f"The segmenter needs a 2-D grayscale image; got an array of shape {gray.shape}.")
    return gray.astype(np.float32, copy=False)


def estimate_window(shape: tuple[int, int], window_px: int | None) -> tuple[slice, slice] | None:
    """The central ``window_px`` square (clipped to the image) that the scale is chosen on, or None
    when the image's longest side is at most ``window_px`` (the whole image is used).

    >>> estimate_window((8192, 6000), 2048)
    (slice(3072, 5120, None), slice(1976, 4024, None))
    >>> estimate_window((1024, 1536), 2048) is None
    True
    """
    if not window_px or max(shape[:2]) <= window_px:
        return None
    rows, cols = shape[:2]
    top, left = (rows - min(rows, window_px)) // 2, (cols - min(cols, window_px)) // 2
    return slice(top, top + min(rows, window_px)), slice(left, left + min(cols, window_px))


class UNetSegmenter:
    """Segment particles with the shipped U-Net (name ``"unet"``).

    Parameters
    ----------
    model_dir : str or Path, optional
        Folder with ``saemi_unet.keras`` and ``config.json``; default :func:`default_model_dir`.
        Nothing is read until :meth:`load` or :meth:`segment` is called.
    diameter_px : float, optional
        Typical (median) particle diameter in image pixels, when the user knows it. The image is
        then rescaled directly and the automatic size estimate is skipped.
    views : int, optional
        How many views of the image (:data:`model.inference.VIEWS`) the network averages at the
        chosen scale, 1 to 4; default: the config's ``test_time_views``. Each view adds one
        network pass (see :meth:`network_maps`).
    backend : {"tensorflow", "int8"}, optional
        How the network runs: TensorFlow in float32, or its 8-bit TensorFlow Lite copy
        (:mod:`model.quantize`, about 4x faster on CPUs with integer dot products, made once per process);
        default: the config's ``inference_backend``.
    scale_method : {"learned", "octaves"}, optional
        How the scale is found when ``diameter_px`` is not given: the learned choice of one scale per
        image (:meth:`network_maps`), or fixed octave passes fused by particle size (:mod:`model.multiscale`,
        under evaluation for mixed sizes); default: the config's ``input_scale.method``.
    network : ShippedModel, optional
        A network and config already loaded (a model just tuned, say), used instead of loading
        ``model_dir`` through the per-process cache.
    """

    name = "unet"

    def __init__(self, model_dir: str | os.PathLike | None = None, diameter_px: float | None = None,
                 views: int | None = None, backend: str | None = None,
                 scale_method: str | None = None, network: ShippedModel | None = None) -> None:
        if diameter_px is not None and not diameter_px > 0:
            raise SaemiInputError(f"The particle diameter must be a positive number of pixels; got {diameter_px}.")
        if views is not None and (not isinstance(views, (int, np.integer)) or isinstance(views, bool)
                                  or views not in range(1, len(VIEWS) + 1)):
            raise SaemiInputError(f"The number of network views must be a whole number from 1 to {len(VIEWS)}; "
                                  f"got {views}.")
        if backend is not None and backend not in BACKENDS:
            raise SaemiInputError(f"The network backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
        if scale_method is not None and scale_method not in SCALE_METHODS:
            raise SaemiInputError(f"The scale method must be one of {', '.join(SCALE_METHODS)}; got {scale_method!r}.")
        self.model_dir = str(Path(model_dir)) if model_dir is not None else str(default_model_dir())
        self.scale_method = scale_method
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

    def predict_maps(self, gray: np.ndarray, *, progress: Progress | None = None) -> tuple[np.ndarray, float]:
        """Network output maps at the resolution of ``gray`` and the scale they were computed at.

        See :meth:`network_maps` for how the scale is chosen.
        """
        maps, scale, _ = self.network_maps(gray, progress=progress)
        return self.resize_maps(maps, np.shape(gray)[:2]), scale

    def network_maps(self, gray: np.ndarray, *, progress: Progress | None = None,
                     notes: list[str] | None = None) -> tuple[np.ndarray, float, np.ndarray | None]:
        """Network output maps at network resolution (``gray`` resized by ``scale``) and that scale.

        A ``diameter_px`` given to the constructor sets the scale directly. Otherwise, when the
        config holds a fitted scale scorer (``input_scale.selector``), the scale is
        chosen among the passes of :meth:`pyramid` by :meth:`_learned_scale`. Without one, the
        confidence rule applies, as follows.

        The particle size is estimated first, as Cellpose does with its diameter, but without a
        separate size model: the image is run through the network at a pyramid of scales (from
        ``estimate_max_scale``, with the longest side at most ``estimate_max_side_px``, halving
        down to ``min_scale``, at most ``estimate_levels`` passes, and no pass whose shorter side
        is under ``estimate_min_side_px`` once an estimate exists: in a thumbnail a few dozen
        pixels across, clutter looks like confident large particles). At each scale the outputs are
        turned into instances and two numbers are measured: the mean height of the centre-map peak
        over the instances (the network's confidence that it sees whole particles; it is highest
        when particles appear at the size it was trained on) and the area-weighted median particle
        diameter. The pyramid stops early at a pass whose mean peak is at least ``accept_peak``
        and at least that of every earlier pass, and whose median diameter lies between
        ``target_diameter_px / rescale_tolerance`` and ``target_diameter_px * accept_max_ratio``:
        an image whose particles already appear at about the trained size costs one pass, and one
        whose particles appear up to ``accept_max_ratio`` times too large goes straight to the
        final pass (on EMPS training images the smaller passes it skips mostly chose worse scales;
        see the model card). Otherwise each of the ``verify_candidates`` most confident passes
        proposes the final scale that brings its median particle to ``target_diameter_px``, the
        network runs there (unless that pass was already within ``rescale_tolerance`` of it), and
        the proposal whose pass is most confident wins (:meth:`_choose_scale`). A ``diameter_px``
        given to the constructor replaces the estimate. When a checked proposal at a quite different
        scale was almost as convincing, a sentence saying so is appended to ``notes`` (if given).

        Once the scale is chosen, with ``views`` of 2 or more (the constructor's, else the config's
        ``test_time_views``) the network runs again at that scale on the other views
        of the image (:data:`model.inference.VIEWS`: turned by 180 degrees, then mirrored) and the
        maps are averaged.

        Returns
        -------
        maps : numpy.ndarray
            float32 (rows * scale, cols * scale, 2): particle probability and centre map.
        scale : float
            The scale factor of the final pass.
        labels : numpy.ndarray or None
            Instances of ``maps`` (at network resolution, network-pixel thresholds) when the final
            pass was a size-estimate pass that already computed them, else None.
        """
        views = self.views or self.load().config.test_time_views
        shown = progress
        if progress is not None and views > 1:
            # One view reports progress from 0 to 0.9. With more, it takes the first 1/views of
            # that, and the other views (one pass each at the chosen scale) the rest.
            def shown(fraction: float, message: str) -> None:
                progress(fraction / views, message)
        image, run, max_scale = self._runner(gray, shown)
        maps, scale, labels = self._scaled_maps(image, run, max_scale, notes, shown)
        if views > 1:
            # The chosen pass saw the image as it is; averaging in the other views at the same
            # scale smooths the network's errors. Its labels were made from one view, so they go.
            others = run(scale, 0.9, 0.9 * (views - 1), views=range(1, views))  # 0.9 / views to 0.9
            others *= views - 1  # in place: no third full-size array on large images
            others += maps
            others /= views
            maps, labels = others, None
        return maps, scale, labels

    def _scaled_maps(self, image: np.ndarray, run, max_scale: float, notes: list[str] | None,
                     progress: Progress | None) -> tuple[np.ndarray, float, np.ndarray | None]:
        """Maps, scale and labels of :meth:`network_maps` from one view of the normalised ``image``."""
        cfg = self.load().config
        scaling = cfg.input_scale
        target_px = scaling.target_diameter_px
        rows, cols = image.shape
        n_levels = scaling.estimate_levels
        accept_low_px = target_px / scaling.rescale_tolerance
        max_ratio = scaling.rescale_tolerance if scaling.accept_max_ratio is None else scaling.accept_max_ratio
        accept_high_px = target_px * max_ratio

        if self.diameter_px is not None:
            scale = float(np.clip(target_px / self.diameter_px, scaling.min_scale, max_scale))
            return run(scale, 0.0, 0.9), scale, None
        if scaling.selector is not None:
            return self._learned_scale(image, run, max_scale, notes, progress)
        scale = min(scaling.estimate_max_side_px / max(rows, cols), scaling.estimate_max_scale, max_scale)
        estimates = []  # (mean centre peak, scale, area-weighted median diameter in network px, maps, labels)
        for level in range(n_levels):
            maps = run(scale, 0.4 * level / n_levels, 0.4 / n_levels)
            labels = maps_to_instances(maps[..., 0], maps[..., 1], **self._threshold_kwargs(cfg, 1.0))
            diameter_px = median_diameter_px(labels, min_area_px=4, area_weighted=True)
            if diameter_px is not None:
                estimates.append((mean_peak(maps[..., 1], labels), scale, diameter_px, maps, labels))
                peak = estimates[-1][0]
                if (peak >= scaling.accept_peak and peak >= max(e[0] for e in estimates)
                        and accept_low_px <= diameter_px <= accept_high_px):
                    # Confident (and more so than any larger scale), and particles appear at the
                    # trained size or somewhat larger: smaller scales cannot do better, so the
                    # pyramid stops here (one pass when the size is already right, else one
                    # more pass at the final scale).
                    estimates = estimates[-1:]
                    break
            too_small = min(scaled_shape(image.shape, scale / 2)) < scaling.estimate_min_side_px
            if scale / 2 < scaling.min_scale or (too_small and estimates):
                break
            scale /= 2
        labels = None
        if not estimates:
            final_scale = min(1.0, max_scale)
            maps = run(final_scale, 0.4, 0.5)
        else:
            maps, final_scale, labels = self._choose_scale(cfg, estimates, run, max_scale, notes)
        logger.debug("U-Net size estimates %s; final scale %.3f",
                     [(round(e[1], 3), round(e[0], 2), round(e[2], 1)) for e in estimates], final_scale)
        return maps, final_scale, labels

    def _runner(self, gray: np.ndarray, progress: Progress | None = None):
        """The normalised image, ``run(scale, first, span)`` (the network on it resized by ``scale``,
        reporting progress from ``first`` over ``span``) and the largest scale allowed for it."""
        cfg = self.load().config
        scaling = cfg.input_scale
        # The image is normalised lazily: each pass resizes the raw image band by band, so a
        # large image is never held a second time as a normalised copy.
        image = LevelledImage.of(_as_gray(gray), *cfg.normalisation.percentiles)
        rows, cols = image.shape
        max_scale = min(scaling.max_scale, float(np.sqrt(scaling.max_scaled_pixels / (rows * cols))))
        return image, self._run_on(image, progress), max_scale

    def _run_on(self, image: LevelledImage, progress: Progress | None = None):
        """``run(scale, first, span, views=(0,))``: the network on the normalised ``image`` resized by
        ``scale``, averaged over ``views`` (:func:`model.inference.predict_tiled`)."""
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

    def pyramid(self, gray: np.ndarray, *, magnify: bool | None = None, max_scale: float | None = None,
                run=None, accept_peak: float | None = None) -> list[tuple[PassSummary, np.ndarray, np.ndarray]]:
        """Run the network on a pyramid of ``gray``; ``(summary, maps, labels)`` per pass, largest first.

        The reference pass has its longest side at ``estimate_max_side_px`` (scale at most
        ``estimate_max_scale``); the others are :data:`model.scale_select.PASS_STEP` apart, down to a
        shorter side of ``pyramid_min_side_px``. ``magnify_steps`` passes above the reference are
        added when ``magnify`` is true, or, when it is None, only if the reference pass shows a
        median particle smaller than ``target_diameter_px`` (small particles need a magnified
        look; the extra passes cost up to six times the reference pass). ``labels`` are the
        instances at network resolution. ``run(scale, first, span)`` runs the network (default:
        on the normalised ``gray``). With ``accept_peak``, a reference pass that is that confident
        (mean centre peak) and shows its median particle (area-weighted) within half an octave of
        ``target_diameter_px`` is returned alone: the pass the scorer would almost always choose,
        for a third of the cost of the whole pyramid.
        """
        cfg = self.load().config
        scaling = cfg.input_scale
        if run is None:
            _, run, runner_max_scale = self._runner(gray)
            max_scale = runner_max_scale if max_scale is None else max_scale
        shape = tuple(gray.shape[:2])
        reference_scale = scaling.estimate_max_side_px / max(shape)
        start_scale = min(reference_scale, scaling.estimate_max_scale, max_scale)
        below = pyramid_scales(shape, start_scale, scaling.pyramid_min_side_px)
        above = [start_scale * PASS_STEP ** k for k in range(scaling.magnify_steps, 0, -1)
                 if start_scale * PASS_STEP ** k <= max_scale]
        thresholds = self._threshold_kwargs(cfg, 1.0)
        n_total = len(below) + len(above)
        passes = []

        def one(scale: float) -> tuple[PassSummary, np.ndarray, np.ndarray]:
            maps = run(scale, 0.8 * len(passes) / n_total, 0.8 / n_total)
            labels = maps_to_instances(maps[..., 0], maps[..., 1], **thresholds)
            return summarize_pass(maps, labels, scale, start_scale, cfg.thresholds.foreground), maps, labels

        target_px = scaling.target_diameter_px
        passes.append(one(below[0]))
        start = passes[0][0]
        if (accept_peak is not None and start.mean_peak >= accept_peak
                and target_px / PASS_STEP <= start.diameter_aw_px <= target_px * PASS_STEP):
            return passes
        for scale in below[1:]:
            passes.append(one(scale))
        if magnify is None:
            magnify = start.diameter_median_px < target_px
        if magnify:
            passes = [one(scale) for scale in above] + passes
        return passes

    def _learned_scale(self, image: np.ndarray, run, max_scale: float, notes: list[str] | None = None,
                       progress: Progress | None = None) -> tuple[np.ndarray, float, np.ndarray | None]:
        """Final maps, scale and labels chosen among the :meth:`pyramid` passes by the learned scorer.

        A confident reference pass at about the trained size (``accept_start_peak``) is taken at
        once. Otherwise every pass is rated by ``input_scale.selector`` (:mod:`model.scale_select`) and the best
        one is segmented as it is. When a pass at a scale at least ``ambiguity_scale_ratio`` away
        is rated within ``ambiguity_logit_margin`` of the best, :func:`ambiguous_size_note` tells
        the user, through ``notes``. An image longer than ``estimate_window_px`` on a side has the
        pyramid run on its central window (:func:`estimate_window`) and is then segmented whole at
        the chosen scale (labels None: the caller makes the instances).
        """
        scaling = self.load().config.input_scale
        target_px = scaling.target_diameter_px
        window = estimate_window(image.shape, scaling.estimate_window_px)
        if window is None:
            pass_image, run_pass = image, run
        else:
            # A large image: the pyramid runs on its central window, where the reference pass is not
            # so coarse that the particles vanish; the chosen scale is then applied to the whole image.
            pass_image = image[window]
            run_window = self._run_on(pass_image, progress)

            def run_pass(scale: float, first: float, span: float) -> np.ndarray:
                return run_window(scale, 0.3 * first, 0.3 * span)
        passes = self.pyramid(pass_image, max_scale=max_scale, run=run_pass,
                              accept_peak=scaling.accept_start_peak)
        scores = selector_scores(scaling.selector, pass_features([p[0] for p in passes], target_px))
        best = int(np.argmax(scores))
        summary, maps, labels = passes[best]
        logger.debug("U-Net pyramid (scale, mean peak, diameter px, score): %s; chosen scale %.3f",
                     [(round(p[0].scale, 3), round(p[0].mean_peak, 2), round(p[0].diameter_aw_px, 1),
                       round(float(s), 2)) for p, s in zip(passes, scores)], summary.scale)
        scale = summary.scale
        if best == 0:  # the most magnified pass won: the particles may need more than the pyramid had
            maps, scale, labels = self._magnify_further(summary, maps, labels, run_pass, max_scale)
        if notes is not None and scaling.ambiguity_logit_margin is not None:
            far = [k for k, p in enumerate(passes)
                   if max(p[0].scale / summary.scale, summary.scale / p[0].scale) >= scaling.ambiguity_scale_ratio]
            rival = max(far, key=lambda k: scores[k], default=None)
            if rival is not None and scores[rival] >= scores[best] - scaling.ambiguity_logit_margin:
                # the sizes in image pixels: the one finally used, and the rival pass's
                notes.append(ambiguous_size_note(target_px / scale, target_px / passes[rival][0].scale))
        if window is not None:
            return run(scale, 0.3, 0.5), scale, None
        return maps, scale, labels

    def _magnify_further(self, summary: PassSummary, maps: np.ndarray, labels: np.ndarray, run,
                         max_scale: float) -> tuple[np.ndarray, float, np.ndarray]:
        """Maps, scale and labels after magnifying beyond the pyramid's largest pass (``summary``).

        While the median particle (area-weighted, in network pixels) is under ``magnify_below``
        times ``target_diameter_px``, the network runs again at the scale that would bring it to
        the target, if that is at least 10% larger (at most ``magnify_further_steps`` times, up to
        ``max_scale``). The pyramid's largest pass is twice its 512 px reference, so particles of
        5-9 px in a 1024 px image stay under the trained size there; each step measures again,
        because the network merges such particles into larger blobs (see the model card). The
        area-weighted median is used because a few small spurious detections pull the plain
        median down and sent the scale too far on EMPS training images.
        """
        cfg = self.load().config
        scaling = cfg.input_scale
        target_px = scaling.target_diameter_px
        steps = scaling.magnify_further_steps
        scale, diameter_px = summary.scale, summary.diameter_aw_px
        for step in range(steps):
            if not 0 < diameter_px < scaling.magnify_below * target_px:
                break
            proposed = min(scale * target_px / diameter_px, max_scale)
            if proposed < 1.1 * scale:
                break
            scale = proposed
            maps = run(scale, 0.8 + 0.1 * step / steps, 0.1 / steps)
            labels = maps_to_instances(maps[..., 0], maps[..., 1], **self._threshold_kwargs(cfg, 1.0))
            diameter_px = median_diameter_px(labels, min_area_px=4, area_weighted=True) or 0.0
        return maps, scale, labels

    def _choose_scale(self, cfg: ModelConfig, estimates: list, run, max_scale: float,
                      notes: list[str] | None = None) -> tuple[np.ndarray, float, np.ndarray | None]:
        """Final maps, scale and labels (or None) from the size-estimate passes.

        At the right scale the network is sure where particle centres are. Each of the
        ``verify_candidates`` most confident passes proposes a final scale (the one that brings
        its median particle to ``target_diameter_px``); the network is run there, and the
        proposal whose own pass is most confident wins. A proposal within ``rescale_tolerance``
        of its pass's scale, or of a proposal already run, reuses that pass. With one candidate
        this is the plain rule: rescale from the most confident pass.

        A checked proposal whose confidence is within ``ambiguity_peak_margin`` of the winner's and
        whose scale differs from it by at least ``ambiguity_scale_ratio`` makes the size uncertain;
        :func:`ambiguous_size_note` then tells the user, through ``notes``.
        """
        scaling = cfg.input_scale

        def ratio(a: float, b: float) -> float:
            return max(a / b, b / a)

        def close(a: float, b: float) -> bool:
            return ratio(a, b) <= scaling.rescale_tolerance

        ranked = sorted(estimates, key=lambda e: -e[0])[:max(1, scaling.verify_candidates)]
        checked = []  # (mean centre peak at the proposed scale, that scale) of every checked proposal
        best = None  # (mean centre peak at the proposed scale, that scale, maps, labels or None)
        for k, (peak, estimate_scale, diameter_px, maps, labels) in enumerate(ranked):
            final_scale = float(np.clip(estimate_scale * scaling.target_diameter_px / diameter_px,
                                        scaling.min_scale, max_scale))
            if close(final_scale, estimate_scale):
                final_scale = estimate_scale  # this pass already shows the proposed size
            elif any(close(final_scale, scale) for _, scale in checked):
                continue  # a pass at about this scale was already checked
            else:
                maps = run(final_scale, 0.4 + 0.5 * k / len(ranked), 0.5 / len(ranked))
                labels = None
                if len(ranked) > 1:
                    labels = maps_to_instances(maps[..., 0], maps[..., 1], **self._threshold_kwargs(cfg, 1.0))
                    peak = mean_peak(maps[..., 1], labels)
            checked.append((peak, final_scale))
            if best is None or peak > best[0]:  # only the winner's maps are kept (large images)
                best = (peak, final_scale, maps, labels)
        best_peak, final_scale, maps, labels = best
        if notes is not None and scaling.ambiguity_peak_margin is not None:
            rivals = [(peak, scale) for peak, scale in checked
                      if peak >= best_peak - scaling.ambiguity_peak_margin
                      and ratio(scale, final_scale) >= scaling.ambiguity_scale_ratio]
            if rivals:
                target_px = scaling.target_diameter_px
                notes.append(ambiguous_size_note(target_px / final_scale, target_px / max(rivals)[1]))
        return maps, final_scale, labels

    def instances(self, maps: np.ndarray, scale: float, shape: tuple[int, int],
                  labels: np.ndarray | None = None, thresholds: dict | None = None) -> np.ndarray:
        """Instance labels of the image of ``shape`` from network-resolution ``maps`` made at ``scale``.

        The watershed runs at ``scale * postprocess_upsampling`` (config ``thresholds``), capped
        at the image's own resolution. Below it, :func:`model.postprocess.upsample_instances`
        carries the instances to full resolution with outlines from the resized particle
        probability, so only the lines between touching particles keep the coarser resolution;
        on a strongly shrunk image this costs a fraction of a full-resolution watershed.
        ``labels``, if given, are the instances of ``maps`` already computed at network resolution.
        ``thresholds`` overrides entries of the config's ``thresholds`` for this call (used to
        compare post-processing settings on the same maps).
        """
        cfg = self.load().config
        if thresholds:
            cfg = cfg.replace(thresholds=thresholds)
        work_scale = min(1.0, scale * cfg.thresholds.postprocess_upsampling)
        if work_scale >= 1.0:
            if labels is not None and maps.shape[:2] == tuple(shape):
                return labels
            maps = self.resize_maps(maps, shape)
            return maps_to_instances(maps[..., 0], maps[..., 1], **self._threshold_kwargs(cfg, scale))
        if labels is None or work_scale != scale:
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

    def octave_passes(self, gray: np.ndarray, progress: Progress | None = None) -> list[OctavePass]:
        """The network's maps and instances at every octave of the image (:func:`model.multiscale.octave_scales`)."""
        cfg = self.load().config
        image, run, max_scale = self._runner(gray, progress)
        scales = octave_scales(image.shape, min(1.0, max_scale))
        costs = np.array(scales) ** 2
        done = np.concatenate([[0.0], np.cumsum(costs) / costs.sum()]) * 0.9
        passes = []
        for k, scale in enumerate(scales):
            maps = run(scale, done[k], done[k + 1] - done[k])
            labels = maps_to_instances(maps[..., 0], maps[..., 1], **self._threshold_kwargs(cfg, 1.0))
            passes.append(OctavePass(scale, maps[..., 0], maps[..., 1], labels,
                                     maps[..., 2] if maps.shape[-1] > 2 else None))
        return passes

    def _octave_labels(self, gray: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Instances from fixed octave passes fused by size (``scale_method="octaves"``), the outlines of
        particles under :data:`REFINE_BELOW_PX` redrawn at their half-maximum."""
        passes = self.octave_passes(gray, progress)
        if progress is not None:
            progress(0.92, "Separating particles")
        labels = fuse_passes(passes, np.shape(gray)[:2], scorer=self.load().config.input_scale.selector)
        return refine_small_outlines(_as_gray(gray), labels, REFINE_BELOW_PX)

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
            Sentences for the user about this result are appended here (an uncertain particle size).

        Raises
        ------
        ModelLoadError
            When the shipped weights or their config are missing or corrupted.
        """
        method = self.scale_method or self.load().config.input_scale.method
        if method == "octaves" and self.diameter_px is None:
            labels = self._octave_labels(gray, progress)
        else:
            maps, scale, labels = self.network_maps(gray, progress=progress, notes=notes)
            if progress is not None:
                progress(0.92, "Separating particles")
            labels = self.instances(maps, scale, np.shape(gray)[:2], labels)
        if progress is not None:
            progress(1.0, "Segmentation done")
        return labels
