"""Conditions, particle sizes and placement of a synthetic sample, and the public generator.

See :mod:`model.synthetic` for the steps of :func:`generate_sample`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from app.analysis.errors import SaemiInputError

from .appearance import MODALITIES, render_gray, to_uint8
from .decorations import (
    PANEL_LETTERS,
    data_bar_text,
    grow_box,
    render_data_bar,
    render_panel_letter,
    render_scale_bar,
)
from .shapes import FAMILIES, SHAPES, Particle, clean_labels, make_particle, rasterise

ARRANGEMENTS = ("isolated", "touching", "clustered")
"""How particles are placed: apart, against a neighbour, or in overlapping agglomerates."""
MIN_PARTICLE_AREA_PX = 4
"""Visible fragments smaller than this (cut by the frame or a decoration) are not labelled."""

_MAX_CROP_PARTICLES = 500
"""Cap on the particles of a training crop, which keeps a crop fast when particles are tiny."""
SATELLITE_HOST_MIN_DIAMETER_PX = 40.0
"""Round particles at least this wide (area-equivalent diameter) receive satellites."""
SATELLITE_FRACTION = (0.05, 0.15)
"""Range of a satellite's diameter as a fraction of its host's (drawn log-uniformly)."""
_SATELLITE_MIN_DIAMETER_PX = 3.0
"""Smallest satellite diameter, so that a satellite keeps at least the label's minimum area."""


@dataclass(frozen=True)
class SyntheticSample:
    """One generated image with its ground truth.

    Attributes
    ----------
    image : np.ndarray
        ``uint8`` (H, W) grayscale image, decorations included.
    labels : np.ndarray
        ``uint16`` (H, W) instance ids, 0 = background, ids ``1..n`` contiguous. Data bar, scale
        bar and panel letters are 0. Every id is one 4-connected region.
    nm_per_px : float
        Pixel size in nanometres.
    modality : str
        ``"sem"`` (bright particles on a darker substrate) or ``"tem"`` (dark on bright).
    data_bar_rows : tuple of int or None
        ``(y0, y1)``: rows ``y0 <= y < y1`` hold the burned-in data bar.
    scale_bar : dict or None
        ``x0``, ``x1`` (bar columns ``x0 <= x < x1``), ``y0``, ``y1`` (bar rows), ``y`` (middle
        row), ``length_px``, ``length_nm``, ``label`` (for example ``"200 nm"``), ``bbox``
        ``(x0, y0, x1, y1)`` of everything drawn, ``in_data_bar``.
    true_ecd_px : np.ndarray
        Equivalent circular diameter of each labelled particle as drawn, from its label area;
        entry ``i`` belongs to id ``i + 1``.
    touches_border : np.ndarray
        Boolean per id: the particle touches the image frame or the data bar.
    letter : dict or None
        ``text`` and ``bbox`` of the panel letter.
    params : dict
        The conditions actually used (shape, arrangement, median_diameter_px, sigma_log,
        n_particles placed, ...).
    satellite_host : np.ndarray
        Per id (entry ``i`` belongs to id ``i + 1``): the id of the particle a satellite sits on,
        0 for a particle that is not a satellite (or whose host was cut away by the frame).
    """

    image: np.ndarray
    labels: np.ndarray
    nm_per_px: float
    modality: str
    data_bar_rows: tuple[int, int] | None
    scale_bar: dict | None
    true_ecd_px: np.ndarray
    touches_border: np.ndarray
    letter: dict | None = None
    params: dict = field(default_factory=dict)
    satellite_host: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _choose(rng: np.random.Generator, value, options: tuple[str, ...], name: str) -> str:
    """``value`` if it is one of ``options``, a random option if None; raise for anything else."""
    if value is None:
        return str(rng.choice(options))
    if value not in options:
        raise SaemiInputError(f"Unknown {name} {value!r}; choose one of {', '.join(options)}.")
    return value


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A number between ``low`` and ``high`` whose logarithm is uniformly distributed."""
    return float(np.exp(rng.uniform(math.log(low), math.log(high))))


def _hits_boxes(x: float, y: float, radius_px: float, boxes: list[tuple[int, int, int, int]]) -> bool:
    """Whether a particle of circumscribed radius ``radius_px`` at ``(x, y)`` may overlap a box."""
    for x0, y0, x1, y1 in boxes:
        if x0 - radius_px <= x <= x1 + radius_px and y0 - radius_px <= y <= y1 + radius_px:
            return True
    return False


def _place(
    rng: np.random.Generator,
    particles: list[Particle],
    arrangement: str,
    height: int,
    width: int,
    avoid_boxes: list[tuple[int, int, int, int]],
) -> list[Particle]:
    """Give each particle a centre according to ``arrangement``; particles that find no room are dropped.

    Isolated particles go to random free spots with a 2 px gap between circumscribed circles.
    Touching and clustered particles are mostly set against an already placed one (touching: a
    recent or random one, sometimes a random spot; clustered: a member of the same cluster) at
    90-98 % (touching) or 72-95 % (clustered) of the summed outline radii in that direction. Each
    particle gets at most 15 tries, all particles together ``12 n + 100``; centres may lie up to
    30 % of the extent outside the frame.

    Parameters
    ----------
    rng : np.random.Generator
        Draws positions, neighbours and cluster membership.
    particles : list of Particle
        Particles to place, in drawing order; their ``cx``, ``cy`` are set in place.
    arrangement : {"isolated", "touching", "clustered"}
        Placement rule.
    height, width : int
        Image size in pixels.
    avoid_boxes : list of tuple
        ``(x0, y0, x1, y1)`` regions no particle may reach.

    Returns
    -------
    list of Particle
        The placed particles, in drawing order.
    """
    n = len(particles)
    cx = np.empty(n)
    cy = np.empty(n)
    ext = np.empty(n)
    req = np.empty(n)
    placed: list[Particle] = []
    cluster_of = np.zeros(n, dtype=np.int64)
    members: dict[int, list[int]] = {}
    if arrangement == "clustered":
        n_clusters = max(1, int(round(n / rng.uniform(6, 25))))
        cluster_of = rng.integers(0, n_clusters, n)
    budget = 12 * n + 100

    def free(x: float, y: float, p: Particle, k: int, factor: float, skip: int) -> bool:
        if _hits_boxes(x, y, p.extent_px, avoid_boxes):
            return False
        if k == 0:
            return True
        dist = np.hypot(cx[:k] - x, cy[:k] - y)
        if arrangement == "isolated":
            limit = ext[:k] + p.extent_px + 2.0
        else:
            limit = (req[:k] + p.radius_px) * factor
        if skip >= 0:
            limit[skip] = 0.0
        return not np.any(dist < limit)

    def random_xy(p: Particle) -> tuple[float, float]:
        slack = 0.3 * p.extent_px
        return rng.uniform(-slack, width + slack), rng.uniform(-slack, height + slack)

    for i, p in enumerate(particles):
        k = len(placed)
        ok = False
        tries = 0
        while budget > 0 and tries < 15 and not ok:
            budget -= 1
            tries += 1
            group = members.get(int(cluster_of[i]), []) if arrangement == "clustered" else None
            if arrangement == "isolated" or k == 0 or (group is not None and not group) or (
                arrangement == "touching" and rng.random() < 0.04
            ):
                x, y = random_xy(p)
                skip = -1
                factor = 1.0
            else:
                if group is not None:
                    j = int(group[int(rng.integers(0, len(group)))])
                elif rng.random() < 0.5:  # grow from the most recent particles, where there is room
                    j = int(rng.integers(max(0, k - 20), k))
                else:
                    j = int(rng.integers(0, k))
                direction = rng.uniform(0, 2 * math.pi)
                touch = rng.uniform(0.90, 0.98) if arrangement == "touching" else rng.uniform(0.72, 0.95)
                reach = placed[j].radius_towards(direction) + p.radius_towards(direction + math.pi)
                x = cx[j] + touch * reach * math.cos(direction)
                y = cy[j] + touch * reach * math.sin(direction)
                if not (-p.extent_px < x < width + p.extent_px and -p.extent_px < y < height + p.extent_px):
                    continue
                skip = j
                factor = 0.92 if arrangement == "touching" else 0.7
            ok = free(x, y, p, k, factor, skip)
        if not ok:
            continue
        p.cx, p.cy = x, y
        cx[k], cy[k], ext[k], req[k] = x, y, p.extent_px, p.radius_px
        if arrangement == "clustered":
            members.setdefault(int(cluster_of[i]), []).append(k)
        placed.append(p)
    return placed


def _mean_square_diameter_px2(median_diameter_px: float, sigma_log: float,
                              diameter_range_px: tuple[float, float] | None) -> float:
    """Expected squared diameter of the size law: log-normal, or log-uniform over ``diameter_range_px``."""
    if diameter_range_px is None:
        return median_diameter_px**2 * math.exp(2 * sigma_log**2)
    low, high = diameter_range_px
    if high <= low * (1 + 1e-9):
        return low * high
    return (high**2 - low**2) / (2 * math.log(high / low))


def _check_range(diameter_range_px) -> tuple[float, float]:
    """``(low, high)`` as floats, or raise the input error for anything but ``0 < low <= high``."""
    try:
        low, high = (float(value) for value in diameter_range_px)
    except (TypeError, ValueError):
        raise SaemiInputError("The diameter range must be two numbers of pixels, (low, high).") from None
    if not 0 < low <= high:
        raise SaemiInputError(f"The diameter range needs 0 < low <= high; got ({low:g}, {high:g}).")
    return low, high


def _satellites(rng: np.random.Generator, hosts: list[Particle], height: int, width: int,
                avoid_boxes: list[tuple[int, int, int, int]]) -> tuple[list[Particle], list[int]]:
    """Small round particles on the rim of the large round particles among ``hosts``.

    Every disk with ``aspect <= 1.15`` and a diameter of at least
    :data:`SATELLITE_HOST_MIN_DIAMETER_PX` gets 1-5 satellites, each of a diameter drawn
    log-uniformly in :data:`SATELLITE_FRACTION` of the host's (at least 3 px). A satellite's centre
    lies on a random ray from the host's centre, between 30 % of its radius inside and 50 % outside
    the host's outline, so the two always overlap and touch once the satellite is drawn on top.
    Satellites of one host keep their outlines apart; those that would reach a decoration are dropped.

    Returns
    -------
    satellites : list of Particle
        The placed satellites, to be drawn after every other particle.
    host_index : list of int
        For each satellite, the index of its host in ``hosts``.
    """
    satellites: list[Particle] = []
    host_index: list[int] = []
    for index, host in enumerate(hosts):
        host_diameter_px = 2 * host.radius_px
        if host.kind != "disk" or host.aspect > 1.15 or host_diameter_px < SATELLITE_HOST_MIN_DIAMETER_PX:
            continue
        mine: list[Particle] = []
        for _ in range(int(rng.integers(1, 6))):
            diameter_px = max(_SATELLITE_MIN_DIAMETER_PX,
                              host_diameter_px * _log_uniform(rng, *SATELLITE_FRACTION))
            satellite = make_particle(rng, "round", diameter_px)
            for _ in range(10):
                direction = rng.uniform(0, 2 * math.pi)
                reach = host.radius_towards(direction) + rng.uniform(-0.3, 0.5) * satellite.radius_px
                x = host.cx + reach * math.cos(direction)
                y = host.cy + reach * math.sin(direction)
                apart = all(math.hypot(x - other.cx, y - other.cy) > other.extent_px + satellite.extent_px + 1.0
                            for other in mine)
                if apart and not _hits_boxes(x, y, satellite.extent_px, avoid_boxes):
                    satellite.cx, satellite.cy = x, y
                    mine.append(satellite)
                    host_index.append(index)
                    break
        satellites.extend(mine)
    return satellites, host_index


#: Size cases of issue #19 (``generate_sample`` arguments besides seed, size and modality): the images of
#: ``bench/bench_real_sizes.py`` (its seeds) and part of the candidate scorer's training images (other seeds).
SIZE_CASES = {
    "tiny": {"diameter_range_px": (4.0, 8.0), "shape": "round", "arrangement": "isolated", "n_particles": 800},
    "medium": {"diameter_range_px": (16.0, 40.0), "shape": "mixed", "arrangement": "touching"},
    "large": {"diameter_range_px": (80.0, 200.0), "shape": "round", "arrangement": "touching"},
    "polydisperse": {"diameter_range_px": (8.0, 150.0), "shape": "round", "arrangement": "touching",
                     "n_particles": 150},
}
#: Seeds of the benchmark's size-case images (``size_case_samples(SIZE_CASE_BENCH_SEEDS.start)``); never fitted on.
SIZE_CASE_BENCH_SEEDS = range(1900, 1940)
#: With SIZE_CASES: no decorations and a fixed blur.
SIZE_CASE_PLAIN = {"data_bar": False, "scale_bar": False, "letters": False, "blur_sigma_px": 1.0}


def size_case_samples(first_seed: int, height: int = 768, width: int = 1024):
    """The images of :data:`SIZE_CASES`, SEM and TEM: ``(case, modality, sample)``, case ``k`` of the dict
    with seed ``first_seed + 10 k`` for SEM and the next for TEM."""
    for k, (case, kwargs) in enumerate(SIZE_CASES.items()):
        for m, modality in enumerate(MODALITIES):
            yield case, modality, generate_sample(first_seed + 10 * k + m, height, width, modality=modality,
                                                  **kwargs, **SIZE_CASE_PLAIN)


def generate_sample(
    seed: int,
    height: int = 768,
    width: int = 1024,
    *,
    modality: str | None = "sem",
    nm_per_px: float | None = None,
    shape: str | None = None,
    n_particles: int | None = None,
    median_diameter_px: float | None = None,
    sigma_log: float | None = None,
    arrangement: str | None = None,
    data_bar: bool | None = None,
    scale_bar: bool | None = None,
    letters: bool | None = None,
    blur_sigma_px: float | None = None,
    diameter_range_px: tuple[float, float] | None = None,
    satellites: bool = False,
) -> SyntheticSample:
    """Generate a synthetic SEM or TEM image of particles with its exact instance labels.

    Every argument left as None is drawn at random from ``seed``; the result depends only on the
    arguments.

    Parameters
    ----------
    seed : int
        Seed of the random generator.
    height, width : int
        Image size in pixels (decorations included).
    modality : {"sem", "tem"} or None
        SEM: bright particles with bright rims on a darker textured substrate. TEM bright field:
        dark particles on a bright film, darker where thicker. None picks one at random.
    nm_per_px : float, optional
        Pixel size in nm.
    shape : {"round", "faceted", "elongated", "irregular", "mixed"}, optional
        Shape family; "mixed" draws a family per particle.
    n_particles : int, optional
        Number of particles to place (fewer may fit; see ``params["n_placed"]``).
    median_diameter_px : float, optional
        Median of the log-normal distribution of area-equivalent diameters, in pixels.
    sigma_log : float, optional
        Standard deviation of the natural log of the diameter.
    arrangement : {"isolated", "touching", "clustered"}, optional
        Isolated particles never touch; touching ones are placed against a neighbour; clustered
        ones form overlapping agglomerates. Later particles occlude earlier ones.
    data_bar : bool, optional
        Burn a data bar into the bottom (sometimes top) rows.
    scale_bar : bool, optional
        Draw a scale bar: inside the data bar if there is one, free-standing otherwise.
    letters : bool, optional
        Draw a panel letter in a corner.
    blur_sigma_px : float, optional
        Standard deviation of the Gaussian point-spread function in pixels (default: drawn from 0.4-1.6).
        The labels are the shapes before blur, so the edge of a blurred particle is at its half-maximum.
        The labels stay exact down to particles 4 px across (area within a pixel or two of the disk's).
    diameter_range_px : tuple of float, optional
        ``(low, high)``: draw the area-equivalent diameters log-uniformly between ``low`` and
        ``high`` pixels instead of from the log-normal law (every octave of size holds the same
        number of particles), for polydisperse powders spanning 10-20x in one frame or for a narrow
        band such as tiny particles of 4-8 px. It replaces ``median_diameter_px`` and
        ``sigma_log``, which must then be left None (``params`` records the range's geometric mean
        and the standard deviation of its log). Particles are then drawn largest first, so small
        ones fill the gaps and sit on top of large ones instead of under them; the default number
        of particles follows the drawn coverage, as for the log-normal law.
    satellites : bool
        Put 1-5 small round particles (5-15 % of the host's diameter, at least 3 px) against the
        rim of every round particle at least 40 px across, partly embedded or just touching. Each
        satellite is its own label, drawn on top of its host; ``satellite_host`` names the host.
        Default False; the option draws nothing from the seed when off.

    Returns
    -------
    SyntheticSample

    Examples
    --------
    >>> sample = generate_sample(3, 128, 160, modality="tem", data_bar=False)
    >>> sample.image.shape, sample.labels.dtype.name
    ((128, 160), 'uint16')
    """
    if height < 32 or width < 32:
        raise SaemiInputError("A synthetic image must be at least 32x32 pixels.")
    rng = np.random.default_rng(seed)
    modality = _choose(rng, modality, MODALITIES, "modality")
    shape = _choose(rng, shape, SHAPES, "shape")
    arrangement = _choose(rng, arrangement, ARRANGEMENTS, "arrangement")
    if nm_per_px is None:
        nm_per_px = _log_uniform(rng, 0.5, 40.0) if modality == "sem" else _log_uniform(rng, 0.1, 3.0)
    short_side = min(height, width)
    if diameter_range_px is not None:
        if median_diameter_px is not None or sigma_log is not None:
            raise SaemiInputError("Give either a diameter range or a median diameter and sigma_log, not both.")
        diameter_range_px = _check_range(diameter_range_px)
        median_diameter_px = math.sqrt(diameter_range_px[0] * diameter_range_px[1])
        sigma_log = math.log(diameter_range_px[1] / diameter_range_px[0]) / math.sqrt(12.0)
    if median_diameter_px is None:
        median_diameter_px = _log_uniform(rng, 6.0, max(8.0, short_side / 5.0))
    if sigma_log is None:
        sigma_log = rng.uniform(0.05, 0.35)
    if nm_per_px <= 0 or median_diameter_px <= 0 or sigma_log < 0:
        raise SaemiInputError("Pixel size and median diameter must be positive and sigma_log not negative.")
    if n_particles is None:
        coverage = rng.uniform(0.08, 0.3) if arrangement == "isolated" else rng.uniform(0.2, 0.55)
        mean_area = math.pi / 4 * _mean_square_diameter_px2(median_diameter_px, sigma_log, diameter_range_px)
        n_particles = int(np.clip(round(coverage * height * width / mean_area), 1, 1200))
    if n_particles < 0:
        raise SaemiInputError("The number of particles cannot be negative.")
    if data_bar is None:
        data_bar = bool(rng.random() < 0.45)
    if scale_bar is None:
        scale_bar = bool(data_bar or rng.random() < 0.5)
    if letters is None:
        letters = bool(rng.random() < 0.3)

    # 1. decorations layout (drawn on a blank image now, burned into the real one at the end)
    blank = np.zeros((height, width), dtype=np.uint8)
    decorations = []
    zero_boxes: list[tuple[int, int, int, int]] = []
    avoid_boxes: list[tuple[int, int, int, int]] = []
    data_bar_rows = None
    bar_info = None
    letter_info = None
    bright_marks = modality == "sem" or rng.random() < 0.3
    if data_bar:
        kwargs = {
            "height_px": max(8, int(round(height * rng.uniform(0.06, 0.10)))),
            "position": "bottom" if rng.random() < 0.9 else "top",
            "dark": bool(rng.random() < 0.7),
            "text": data_bar_text(nm_per_px, width, rng, modality),
            "scale_bar": scale_bar,
        }
        _, info = render_data_bar(blank, nm_per_px, **kwargs)
        decorations.append((render_data_bar, (nm_per_px,), kwargs))
        data_bar_rows = info["rows"]
        bar_info = info["scale_bar"]
        zero_boxes.append((0, data_bar_rows[0], width, data_bar_rows[1]))
    elif scale_bar:
        kwargs = {
            "corner": str(rng.choice(["bottom-right", "bottom-right", "bottom-left", "top-right"])),
            "bright": bright_marks,
            "box": bool(rng.random() < 0.5),
        }
        _, bar_info = render_scale_bar(blank, nm_per_px, **kwargs)
        decorations.append((render_scale_bar, (nm_per_px,), kwargs))
        zero_boxes.append(grow_box(bar_info["bbox"], 2, height, width))
        if not kwargs["box"]:
            avoid_boxes.append(grow_box(bar_info["bbox"], 3, height, width))
    if letters:
        kwargs = {
            "letter": str(rng.choice(PANEL_LETTERS)),
            "corner": "top-left" if rng.random() < 0.8 else "top-right",
            "bright": bright_marks,
            "box": bool(rng.random() < 0.3),
        }
        _, letter_info = render_panel_letter(blank, **kwargs)
        decorations.append((render_panel_letter, (), kwargs))
        zero_boxes.append(grow_box(letter_info["bbox"], 2, height, width))
        if not kwargs["box"]:
            avoid_boxes.append(grow_box(letter_info["bbox"], 3, height, width))

    # 2. particles
    if diameter_range_px is None:
        diameters = median_diameter_px * np.exp(sigma_log * rng.standard_normal(n_particles))
    else:
        diameters = np.exp(rng.uniform(*np.log(diameter_range_px), n_particles))
    diameters = np.clip(diameters, 3.0, 2.5 * max(height, width))
    particles = []
    for diameter in diameters:
        family = str(rng.choice(FAMILIES)) if shape == "mixed" else shape
        particles.append(make_particle(rng, family, float(diameter)))
    if arrangement == "isolated" or diameter_range_px is not None:
        particles.sort(key=lambda q: -q.extent_px)  # big first: small ones fill the gaps, the size law is kept
    placed = _place(rng, particles, arrangement, height, width, avoid_boxes)
    n_main = len(placed)
    host_index: list[int] = []
    if satellites:
        extra, host_index = _satellites(rng, placed, height, width, avoid_boxes)
        placed = placed + extra
    mu = np.concatenate([[0.0], rng.uniform(0.4, 2.2) * rng.uniform(0.6, 1.4, len(placed))])
    absorbance = np.zeros((height, width), dtype=np.float32) if modality == "tem" else None
    raw_labels, rho_map, normal_map = rasterise(placed, height, width, absorbance, mu)
    for x0, y0, x1, y1 in zero_boxes:
        raw_labels[y0:y1, x0:x1] = 0
    labels, source = clean_labels(raw_labels, MIN_PARTICLE_AREA_PX)
    faceted = np.array([False] + [p.kind == "polygon" for p in placed], dtype=bool)
    satellite_host = _satellite_hosts(source, n_main, host_index)

    # 3. appearance, then the burned-in decorations
    gray = render_gray(rng, modality, labels, source, rho_map, normal_map, absorbance, faceted,
                       blur_sigma_px)
    image = to_uint8(rng, gray)
    for function, args, kwargs in decorations:
        image, _ = function(image, *args, **kwargs)

    areas_px = np.bincount(labels.ravel(), minlength=len(source))[1:]
    touches = _touching_border(labels, len(source) - 1, data_bar_rows)
    params = {
        "shape": shape,
        "arrangement": arrangement,
        "median_diameter_px": float(median_diameter_px),
        "sigma_log": float(sigma_log),
        "n_requested": int(n_particles),
        "n_placed": n_main,
        "seed": seed,
    }
    if diameter_range_px is not None:
        params["diameter_range_px"] = diameter_range_px
    if satellites:
        params["n_satellites"] = len(placed) - n_main
    return SyntheticSample(
        image=image,
        labels=labels.astype(np.uint16),
        nm_per_px=float(nm_per_px),
        modality=modality,
        data_bar_rows=data_bar_rows,
        scale_bar=bar_info,
        true_ecd_px=np.sqrt(4.0 * areas_px / math.pi),
        touches_border=touches,
        letter=letter_info,
        params=params,
        satellite_host=satellite_host,
    )


def _satellite_hosts(source: np.ndarray, n_main: int, host_index: list[int]) -> np.ndarray:
    """Per final id, the final id of its host (0: not a satellite, or its host was cleaned away).

    ``source[id]`` is the 1-based drawing index; satellites are drawn after the ``n_main`` others,
    and ``host_index[k]`` is the 0-based drawing index of the host of satellite ``k``.
    """
    new_id = np.zeros(n_main + len(host_index) + 1, dtype=np.int64)
    new_id[source] = np.arange(source.size)
    new_id[0] = 0
    hosts = np.zeros(n_main + len(host_index) + 1, dtype=np.int64)
    hosts[n_main + 1:] = np.asarray(host_index, dtype=np.int64) + 1
    return new_id[hosts[source[1:]]]


def _touching_border(labels: np.ndarray, n_ids: int, data_bar_rows: tuple[int, int] | None) -> np.ndarray:
    """Boolean per id 1..n: touches the image frame or the edge of the data bar."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    if data_bar_rows is not None:
        y0, y1 = data_bar_rows
        edge[max(y0 - 1, 0), :] = True
        edge[min(y1, labels.shape[0] - 1), :] = True
    touches = np.zeros(n_ids + 1, dtype=bool)
    touches[np.unique(labels[edge])] = True
    return touches[1:]


def generate_crop(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A random training crop covering the whole range of conditions.

    Renders a small full image of ``size`` x ``size`` pixels: either modality, every shape family
    and arrangement, particles from a few pixels to larger than the crop, with or without data
    bar, scale bar and letters. The size cases, drawn first:

    - 12 %: a polydisperse powder, diameters log-uniform from 4-10 px up to 10-20 times that
      (at most 60 % of the crop);
    - 8 %: tiny particles, log-uniform 4-8 px;
    - 7 %: round particles from 40 px to half the crop with satellites on their rims;
    - 11 %: a few big particles, some larger than the crop;
    - otherwise: a log-normal law with a median of 5 px to a fifth of the crop.

    Parameters
    ----------
    rng : np.random.Generator
        Source of randomness; the crop is determined by its state.
    size : int
        Side of the square crop.

    Returns
    -------
    image : np.ndarray
        ``uint8`` (size, size).
    labels : np.ndarray
        ``uint16`` (size, size) instance ids.
    """
    seed = int(rng.integers(0, 2**63 - 1))
    case = rng.random()
    shape = None
    satellites = False
    diameter_range_px = None
    median_diameter_px = None
    sigma_log = None
    if case < 0.12:
        low_px = _log_uniform(rng, 4.0, 10.0)
        diameter_range_px = (low_px, min(low_px * _log_uniform(rng, 10.0, 20.0), 0.6 * size))
    elif case < 0.20:
        diameter_range_px = (4.0, 8.0)
    elif case < 0.27 and size >= 2 * SATELLITE_HOST_MIN_DIAMETER_PX:
        shape, satellites = "round", True
        median_diameter_px = _log_uniform(rng, SATELLITE_HOST_MIN_DIAMETER_PX, size / 2.0)
        sigma_log = rng.uniform(0.05, 0.35)
    elif case < 0.38:  # a few big particles, some larger than the crop
        median_diameter_px = _log_uniform(rng, size / 4.0, 1.6 * size)
        sigma_log = rng.uniform(0.05, 0.35)
    else:
        median_diameter_px = _log_uniform(rng, 5.0, size / 5.0)
        sigma_log = rng.uniform(0.05, 0.35)
    coverage = rng.uniform(0.08, 0.55)
    mean_area_px = math.pi / 4 * _mean_square_diameter_px2(median_diameter_px or 0.0, sigma_log or 0.0,
                                                           diameter_range_px)
    n_particles = int(np.clip(round(coverage * size * size / mean_area_px), 1, _MAX_CROP_PARTICLES))
    sample = generate_sample(
        seed,
        size,
        size,
        modality=str(rng.choice(MODALITIES)),
        shape=shape,
        median_diameter_px=median_diameter_px,
        sigma_log=sigma_log,
        diameter_range_px=diameter_range_px,
        n_particles=n_particles,
        satellites=satellites,
        data_bar=bool(rng.random() < 0.25),
    )
    return sample.image, sample.labels
