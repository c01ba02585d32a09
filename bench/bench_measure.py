"""Time ``measure_particles`` on 2,000 particles of about 15 px diameter in a 1024 x 1024 image.

Run from the repository root: ``python bench/bench_measure.py``. Prints the median of 5 runs for
all columns, without the Feret diameters, and for comparison skimage's regionprops_table with
``feret_diameter_max`` on the same image.
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from skimage.draw import ellipse
from skimage.measure import regionprops_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.analysis.measure import measure_particles  # noqa: E402


def build_label_image(n_particles=2000, size=1024, seed=0):
    """Ellipses of about 15 px diameter on a jittered grid, one id each, none overlapping."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.int32)
    per_row = int(np.ceil(np.sqrt(n_particles)))
    pitch = size / per_row
    for k in range(n_particles):
        row, col = divmod(k, per_row)
        centre_y = (row + 0.5) * pitch + rng.uniform(-2, 2)
        centre_x = (col + 0.5) * pitch + rng.uniform(-2, 2)
        radius_y, radius_x = rng.uniform(5.5, 9.0, size=2)
        rr, cc = ellipse(centre_y, centre_x, radius_y, radius_x, shape=labels.shape,
                         rotation=rng.uniform(0, np.pi))
        labels[rr, cc] = k + 1
    return labels


def median_seconds(func, runs=5):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    labels = build_label_image()
    intensity = np.random.default_rng(1).random(labels.shape)
    n = len(measure_particles(labels))
    print(f"{n} particles, image {labels.shape[1]}x{labels.shape[0]}")
    t_all = median_seconds(
        lambda: measure_particles(labels, intensity_image=intensity, nm_per_px=2.5)
    )
    print(f"measure_particles, all columns:       {t_all * 1000:7.1f} ms (median of 5)")
    t_nofe = median_seconds(
        lambda: measure_particles(labels, intensity_image=intensity, include_feret=False)
    )
    print(f"measure_particles, no Feret:          {t_nofe * 1000:7.1f} ms (median of 5)")
    properties = ("label", "area", "feret_diameter_max")
    t_sk = median_seconds(lambda: regionprops_table(labels, properties=properties), runs=1)
    print(f"skimage regionprops_table with Feret: {t_sk * 1000:7.1f} ms (1 run)")


if __name__ == "__main__":
    main()
