"""Particle outlines and their rasterisation into instance label images.

A :class:`Particle` is a disk (optionally stretched), a regular polygon, a rod (stadium) or a
star-shaped blob whose radius varies with a few angular harmonics. Each shape is described by a
normalised radial coordinate ``rho`` that is at most 1 inside the outline; :func:`rasterise` draws
particles in order (later ones occlude earlier ones) and :func:`clean_labels` reduces every id to one
4-connected region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.measure import label as connected_components

FAMILIES = ("round", "faceted", "elongated", "irregular")
"""Shape families of a single particle."""
SHAPES = FAMILIES + ("mixed",)
"""Shape families of a sample; "mixed" draws a family per particle."""


@dataclass
class Particle:
    """One particle: centre, area-equivalent radius and a shape in its own rotated frame.

    Attributes
    ----------
    cx, cy : float
        Centre in image pixels (x = column, y = row); 0 until the particle is placed.
    radius_px : float
        Radius of the disk of equal area (for a star, the base radius before the harmonics).
    kind : {"disk", "polygon", "rod", "star"}
        Outline type.
    angle : float
        Rotation of the shape's own frame, in radians.
    aspect : float
        Stretch of disks, polygons and stars along their own x axis (area kept); for a rod,
        ``(half length + cap) / cap``.
    n_sides : int
        Number of sides of a polygon.
    apothem_px : float
        Centre-to-side distance of a polygon before the stretch.
    half_len_px, cap_px : float
        Half length of a rod's straight part and radius of its round caps.
    harmonics : np.ndarray or None
        Rows ``(order, amplitude, phase)`` of a star's radius modulation.
    extent_px : float
        Circumscribed radius, for bounding boxes and spacing.
    """

    cx: float
    cy: float
    radius_px: float
    kind: str  # "disk", "polygon", "rod" or "star"
    angle: float
    aspect: float = 1.0
    n_sides: int = 0
    apothem_px: float = 0.0
    half_len_px: float = 0.0
    cap_px: float = 0.0
    harmonics: np.ndarray | None = None  # rows (k, amplitude, phase)
    extent_px: float = 0.0  # circumscribed radius
    _profile: np.ndarray | None = None

    def rho(self, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Normalised radial coordinate (<= 1 inside) and, for polygons, the facet normal angle.

        Parameters
        ----------
        dx, dy : np.ndarray
            Offsets from the centre in pixels (broadcastable).

        Returns
        -------
        rho : np.ndarray
            Radial coordinate, 1 on the outline.
        facet_angle : np.ndarray or None
            Image-frame angle of the outward normal of the nearest side (polygons only).
        """
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = dx * c + dy * s
        v = dy * c - dx * s
        if self.kind == "rod":
            return np.hypot(np.maximum(np.abs(u) - self.half_len_px, 0.0), v) / self.cap_px, None
        root = math.sqrt(self.aspect)
        u = u / root
        v = v * root
        if self.kind == "disk":
            return np.hypot(u, v) / self.radius_px, None
        if self.kind == "polygon":
            phi = np.arange(self.n_sides) * (2 * math.pi / self.n_sides)
            proj = u[..., None] * np.cos(phi) + v[..., None] * np.sin(phi)
            facet = np.argmax(proj, axis=-1)
            best = np.take_along_axis(proj, facet[..., None], axis=-1)[..., 0]
            return best / self.apothem_px, phi[facet] + self.angle
        theta = np.arctan2(v, u)
        orders, amplitudes, phases = self.harmonics.T
        r = 1.0 + np.cos(theta[..., None] * orders + phases) @ amplitudes
        return np.hypot(u, v) / (self.radius_px * np.maximum(r, 0.35)), None

    def radius_towards(self, angle: float) -> float:
        """Distance from the centre to the outline along the image-frame direction ``angle``."""
        if self._profile is None:  # outline radius at 64 directions, computed once
            directions = np.linspace(0.0, 2 * math.pi, 65)[:-1, None]
            if self.kind == "rod":
                t = np.linspace(0.0, self.extent_px * 1.05, 48)[None, :]
                rho, _ = self.rho(t * np.cos(directions), t * np.sin(directions))
                first_outside = np.argmax(rho > 1.0, axis=1)
                first_outside[~np.any(rho > 1.0, axis=1)] = t.size - 1
                self._profile = t[0, first_outside]
            else:  # rho is homogeneous of degree one along a ray from the centre
                rho, _ = self.rho(np.cos(directions[:, 0]), np.sin(directions[:, 0]))
                self._profile = 1.0 / rho
        index = int(round((angle % (2 * math.pi)) / (2 * math.pi) * 64)) % 64
        return float(self._profile[index])


def make_particle(rng: np.random.Generator, family: str, diameter_px: float) -> Particle:
    """A particle of the given shape family whose area equals that of a disk of ``diameter_px``.

    Parameters
    ----------
    rng : np.random.Generator
        Draws the orientation and the family's free shape parameters.
    family : {"round", "faceted", "elongated", "irregular"}
        Round: a slightly stretched disk. Faceted: a regular polygon of 3-8 sides. Elongated: a
        stretched disk or a rod, half each. Irregular: a star-shaped blob.
    diameter_px : float
        Area-equivalent diameter in pixels.

    Returns
    -------
    Particle
        Centred on the origin; the caller places it.
    """
    radius = diameter_px / 2.0
    angle = rng.uniform(0, 2 * math.pi)
    if family == "round":
        aspect = rng.uniform(1.0, 1.12)
        return Particle(0, 0, radius, "disk", angle, aspect, extent_px=radius * math.sqrt(aspect))
    if family == "faceted":
        n_sides = int(rng.choice([3, 4, 4, 4, 5, 6, 6, 8]))
        aspect = rng.uniform(1.0, 1.5 if n_sides == 4 else 1.2)
        apothem = radius * math.sqrt(math.pi / (n_sides * math.tan(math.pi / n_sides)))
        extent = apothem / math.cos(math.pi / n_sides) * math.sqrt(aspect)
        return Particle(
            0, 0, radius, "polygon", angle, aspect, n_sides=n_sides, apothem_px=apothem, extent_px=extent
        )
    if family == "elongated":
        if rng.random() < 0.5:
            aspect = rng.uniform(1.6, 4.0)
            return Particle(0, 0, radius, "disk", angle, aspect, extent_px=radius * math.sqrt(aspect))
        aspect = rng.uniform(1.8, 5.0)  # (half length + cap) / cap
        cap = radius * math.sqrt(math.pi / (math.pi + 4 * (aspect - 1)))
        half_len = (aspect - 1) * cap
        return Particle(
            0, 0, radius, "rod", angle, aspect, half_len_px=half_len, cap_px=cap, extent_px=half_len + cap
        )
    orders = np.arange(2, 8, dtype=np.float64)
    amplitudes = rng.normal(0.0, 0.16, orders.size) / orders**0.7
    phases = rng.uniform(0, 2 * math.pi, orders.size)
    base = radius / math.sqrt(1 + 0.5 * float(np.sum(amplitudes**2)))
    aspect = rng.uniform(1.0, 1.4)
    extent = base * (1 + float(np.sum(np.abs(amplitudes)))) * math.sqrt(aspect)
    harmonics = np.column_stack([orders, amplitudes, phases])
    return Particle(0, 0, base, "star", angle, aspect, harmonics=harmonics, extent_px=extent)


def rasterise(
    particles: list[Particle], height: int, width: int, tem_absorbance: np.ndarray | None, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw particles in order (later on top): label, radial coordinate and surface-normal angle maps.

    Parameters
    ----------
    particles : list of Particle
        Placed particles; particle ``i`` gets label ``i + 1``.
    height, width : int
        Image size in pixels.
    tem_absorbance : np.ndarray or None
        float32 (H, W) map to which each particle adds ``mu[label] * thickness`` (projected
        thickness of a sphere-like body, nearly flat for polygons); None for SEM.
    mu : np.ndarray
        Absorption coefficient per label, index 0 unused.

    Returns
    -------
    labels : np.ndarray
        int32 (H, W) label of the topmost particle at each pixel, 0 = background.
    rho_map : np.ndarray
        float32 (H, W) radial coordinate of that particle (0 outside particles).
    normal_map : np.ndarray
        float32 (H, W) outward surface-normal angle in radians (facet normal for polygons).
    """
    labels = np.zeros((height, width), dtype=np.int32)
    rho_map = np.zeros((height, width), dtype=np.float32)
    normal_map = np.zeros((height, width), dtype=np.float32)
    for index, p in enumerate(particles, start=1):
        x0 = max(int(math.floor(p.cx - p.extent_px - 1)), 0)
        x1 = min(int(math.ceil(p.cx + p.extent_px + 2)), width)
        y0 = max(int(math.floor(p.cy - p.extent_px - 1)), 0)
        y1 = min(int(math.ceil(p.cy + p.extent_px + 2)), height)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = np.arange(x0, x1, dtype=np.float64)[None, :] - p.cx
        dy = np.arange(y0, y1, dtype=np.float64)[:, None] - p.cy
        rho, facet = p.rho(dx, dy)
        inside = rho <= 1.0
        if not inside.any():
            continue
        if facet is None:
            dx_full, dy_full = np.broadcast_arrays(dx, dy)
            normal = np.arctan2(dy_full[inside], dx_full[inside])
        else:
            normal = facet[inside]
        labels[y0:y1, x0:x1][inside] = index
        rho_map[y0:y1, x0:x1][inside] = rho[inside]
        normal_map[y0:y1, x0:x1][inside] = normal
        if tem_absorbance is not None:
            if p.kind == "polygon":  # a flat crystal: nearly uniform projected thickness
                thickness = 0.75 + 0.25 * np.minimum(1.0, (1.0 - rho[inside]) * 6.0)
            else:
                thickness = np.sqrt(np.clip(1.0 - rho[inside] ** 2, 0.0, 1.0))
            tem_absorbance[y0:y1, x0:x1][inside] += mu[index] * thickness
    return labels, rho_map, normal_map


def clean_labels(labels: np.ndarray, min_area_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each id's largest 4-connected piece if at least ``min_area_px``; renumber 1..n in order.

    Parameters
    ----------
    labels : np.ndarray
        Integer label image, 0 = background.
    min_area_px : int
        Smallest piece that keeps its id.

    Returns
    -------
    labels : np.ndarray
        int32 label image with ids 1..n.
    source : np.ndarray
        ``source[new_id]`` = the id it had in the input (index 0 maps to 0).
    """
    pieces = connected_components(labels, background=0, connectivity=1)
    n_pieces = int(pieces.max())
    owner = np.zeros(n_pieces + 1, dtype=np.int64)
    owner[pieces.ravel()] = labels.ravel()
    sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    candidates = np.arange(1, n_pieces + 1)
    order = candidates[np.lexsort((-sizes[candidates], owner[candidates]))]
    _, first = np.unique(owner[order], return_index=True)
    best = order[first]
    best = best[sizes[best] >= min_area_px]
    best = best[np.argsort(owner[best])]
    new_id = np.zeros(n_pieces + 1, dtype=np.int32)
    new_id[best] = np.arange(1, best.size + 1, dtype=np.int32)
    source = np.concatenate([[0], owner[best]])
    return new_id[pieces], source
