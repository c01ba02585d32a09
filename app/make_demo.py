"""Write the synthetic demo images, their ground-truth labels and a README into ``demo_images/``.

Run with ``python -m app.make_demo``. The images come from :mod:`model.synthetic`, so every
particle and the pixel size are known exactly; the README records them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from app import config
from model.synthetic import SyntheticSample, generate_sample

DEMO_DIR = config.DEMO_DIR

DEMOS = (
    {
        "name": "demo_sem",
        "title": "SEM, touching round particles, data bar at the bottom",
        "seed": 20240,
        "kwargs": {
            "modality": "sem",
            "nm_per_px": 2.5,
            "shape": "round",
            "arrangement": "touching",
            "n_particles": 140,
            "median_diameter_px": 42.0,
            "sigma_log": 0.2,
            "data_bar": True,
            "scale_bar": True,
            "letters": False,
        },
    },
    {
        "name": "demo_tem",
        "title": "TEM bright field, dark particles, free-standing scale bar and panel letter",
        "seed": 31,
        "kwargs": {
            "modality": "tem",
            "nm_per_px": 0.4,
            "shape": "round",
            "arrangement": "isolated",
            "n_particles": 160,
            "median_diameter_px": 30.0,
            "sigma_log": 0.25,
            "data_bar": False,
            "scale_bar": True,
            "letters": True,
        },
    },
    {
        "name": "demo_sem_faceted",
        "title": "SEM, faceted crystals in agglomerates, free-standing scale bar",
        "seed": 7,
        "kwargs": {
            "modality": "sem",
            "nm_per_px": 8.0,
            "shape": "faceted",
            "arrangement": "clustered",
            "n_particles": 120,
            "median_diameter_px": 36.0,
            "sigma_log": 0.2,
            "data_bar": False,
            "scale_bar": True,
            "letters": False,
        },
    },
)


def _describe(name: str, title: str, seed: int, kwargs: dict, sample: SyntheticSample) -> str:
    """One README section with the conditions and the true size statistics of a demo image."""
    ecd_px = sample.true_ecd_px
    inner_px = ecd_px[~sample.touches_border]
    height, width = sample.image.shape
    bar = sample.scale_bar
    decoration = []
    if sample.data_bar_rows is not None:
        decoration.append(f"data bar in rows {sample.data_bar_rows[0]}-{sample.data_bar_rows[1] - 1}")
    if bar is not None:
        decoration.append(
            f"scale bar {bar['label']!r} = {bar['length_px']} px at x {bar['x0']}-{bar['x1'] - 1}, y {bar['y']}"
        )
    if sample.letter is not None:
        decoration.append(f"panel letter {sample.letter['text']!r}")
    arguments = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    return "\n".join(
        [
            f"## `{name}.png` — {title}",
            "",
            f"- generator call: `generate_sample({seed}, {height}, {width}, {arguments})`",
            f"- size: {width} × {height} px; pixel size: {sample.nm_per_px:g} nm/px",
            f"- particles labelled: {ecd_px.size} ({int(sample.touches_border.sum())} touch the frame"
            + (" or the data bar" if sample.data_bar_rows is not None else "")
            + f"; {inner_px.size} lie wholly inside)",
            f"- true median ECD, all labelled particles: {np.median(ecd_px):.1f} px"
            f" = {np.median(ecd_px) * sample.nm_per_px:.1f} nm",
            f"- true median ECD, particles wholly inside: {np.median(inner_px):.1f} px"
            f" = {np.median(inner_px) * sample.nm_per_px:.1f} nm"
            f" (mean {inner_px.mean():.1f} px = {inner_px.mean() * sample.nm_per_px:.1f} nm)",
            f"- burned-in: {'; '.join(decoration) if decoration else 'nothing'}",
            f"- ground truth: `{name}_labels.png` (16-bit, 0 = background, ids 1..{ecd_px.size})",
            "",
        ]
    )


def write_demo_images(out_dir: Path = DEMO_DIR) -> list[Path]:
    """Generate the demo images, their 16-bit label PNGs and ``README.md`` in ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Destination folder, created if missing.

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    sections = [
        "# Demo images (synthetic)",
        "",
        "These images are **synthetic**: they were rendered by SAEMI's own generator",
        "(`model/synthetic/`), not taken on a microscope. Because they are generated, the pixel",
        "size and every particle are known exactly, so the app's result can be checked against the truth.",
        "Regenerate them with `python -m app.make_demo` (the output is deterministic).",
        "",
        "ECD is the equivalent circular diameter, sqrt(4 · area / π), of each particle's label as drawn",
        "(after occlusion by neighbours and cutting by the frame or the data bar).",
        "",
    ]
    for demo in DEMOS:
        sample = generate_sample(demo["seed"], 768, 1024, **demo["kwargs"])
        image_path = out_dir / f"{demo['name']}.png"
        labels_path = out_dir / f"{demo['name']}_labels.png"
        Image.fromarray(sample.image).save(image_path, optimize=True)
        Image.fromarray(sample.labels.astype(np.uint16)).save(labels_path, optimize=True)
        written += [image_path, labels_path]
        sections.append(_describe(demo["name"], demo["title"], demo["seed"], demo["kwargs"], sample))
    readme_path = out_dir / "README.md"
    readme_path.write_text("\n".join(sections), encoding="utf-8")
    written.append(readme_path)
    return written


def main() -> None:
    """Write the demo images into ``demo_images/`` and list the files."""
    for path in write_demo_images():
        size_kb = math.ceil(path.stat().st_size / 1024)
        print(f"wrote {path} ({size_kb} KB)")


if __name__ == "__main__":
    main()
