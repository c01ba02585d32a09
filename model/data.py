"""Training and validation data: EMPS images with instance masks plus synthetic crops.

Every sample is rescaled so that its median particle diameter is
:data:`model.preprocess.TARGET_DIAMETER_PX` (the scale the network works at; inference estimates
the size and rescales the same way), normalised with :func:`model.preprocess.normalize_percentile`,
and turned into targets with :func:`model.preprocess.instance_targets`. Crops are then augmented
(scale jitter, flips, 90 degree rotations, inversion, contrast, gamma, blur, noise).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from model.preprocess import (
    SIZE_LOG2_RANGE,
    TARGET_DIAMETER_PX,
    instance_targets,
    log2_size_map,
    median_diameter_px,
    normalize_percentile,
    resize_float,
    resize_labels,
    scaled_shape,
)

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Environment variable naming the datasets folder; default ``<repo>/../shared/datasets``.
DATA_ROOT_ENV = "SAEMI_DATA_ROOT"
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "datasets"
SPLITS_DIR = Path(__file__).resolve().parent / "splits"
EMPS_FOLDER = "emps_train"
CROP_SIZE_PX = 256
#: Scale jitter (multiplicative, log-uniform) applied around the target particle diameter.
SCALE_JITTER = (0.6, 1.6)
#: Rescale factors applied to bring a sample to the target diameter are clipped to this range.
BASE_SCALE_LIMITS = (0.04, 4.0)

SyntheticCropFn = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def data_root(path: str | os.PathLike | None = None) -> Path:
    """The datasets folder: ``path`` if given, else ``$SAEMI_DATA_ROOT``, else ``<repo>/../shared/datasets``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(DATA_ROOT_ENV, DEFAULT_DATA_ROOT))


def list_names(root: Path, folder: str = EMPS_FOLDER) -> list[str]:
    """Sorted image names (file stems) of one dataset folder that have both an image and a mask."""
    images = {p.stem for p in (root / folder / "images").glob("*.png")}
    masks = {p.stem for p in (root / folder / "masks").glob("*.png")}
    return sorted(images & masks)


def make_split(names: list[str], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split ``names`` into sorted (train, val) lists, ``ceil(val_fraction * n)`` names for validation."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    n_val = int(np.ceil(val_fraction * len(names)))
    val = sorted(names[i] for i in order[:n_val])
    train = sorted(names[i] for i in order[n_val:])
    return train, val


def read_split(which: str) -> list[str]:
    """Names of the committed EMPS split ``which`` ("train" or "val")."""
    path = SPLITS_DIR / f"emps_{which}.txt"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def available_train_names(root: Path) -> list[str]:
    """The EMPS training split's names when ``root`` holds the EMPS folder, else none (generated data only)."""
    return read_split("train") if (root / EMPS_FOLDER).is_dir() else []


def load_pair(root: Path, folder: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``images/NAME.png`` as float32 gray and ``masks/NAME.png`` as int32 labels."""
    with Image.open(root / folder / "images" / f"{name}.png") as im:
        image = np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "I") else im, dtype=np.float32)
    with Image.open(root / folder / "masks" / f"{name}.png") as im:
        labels = np.asarray(im, dtype=np.int32)
    return image, labels


@dataclass
class Sample:
    """One image at network scale: ``image`` float32 in [0, 1], ``targets`` (rows, cols, 2), ``labels``.

    ``supervised`` (bool, rows x cols), when given, marks the pixels whose labels are known; the others are
    left out of the loss (:func:`random_crop` then returns a third target channel, the pixel weight).
    """

    image: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    name: str
    supervised: np.ndarray | None = None


@dataclass(frozen=True)
class LabelledImage:
    """An image at its own resolution, as given: ``gray`` 2-D float (any range: the network normalises it by
    percentiles), ``labels`` int32 instances of the same shape and, optionally, ``supervised`` (bool): the
    pixels whose labels count (None: all)."""

    name: str
    gray: np.ndarray
    labels: np.ndarray
    supervised: np.ndarray | None = None


def base_scale(labels: np.ndarray, target_diameter_px: float = TARGET_DIAMETER_PX) -> float:
    """Scale factor that brings the median particle diameter of ``labels`` to ``target_diameter_px``."""
    diameter_px = median_diameter_px(labels)
    if diameter_px is None:
        return 1.0
    return float(np.clip(target_diameter_px / diameter_px, *BASE_SCALE_LIMITS))


def prepare_sample(image: np.ndarray, labels: np.ndarray, name: str, min_side_px: int = 0,
                   target_diameter_px: float = TARGET_DIAMETER_PX, supervised: np.ndarray | None = None) -> Sample:
    """Normalise, rescale to ``target_diameter_px``, compute targets, reflect-pad to ``min_side_px``.

    ``supervised`` (bool, the image's shape) is rescaled with the labels; the padding is unsupervised.
    """
    scale = base_scale(labels, target_diameter_px)
    shape = scaled_shape(image.shape, scale)
    image = resize_float(normalize_percentile(image), shape)
    labels = resize_labels(labels, shape)
    if supervised is not None:
        supervised = resize_labels(np.asarray(supervised, dtype=np.int32), shape) > 0
    pad = [(0, max(0, min_side_px - n)) for n in shape]
    if any(p[1] for p in pad):
        image = np.pad(image, pad, mode="reflect")
        # Reflected copies of a particle must be separate instances: relabel by connectivity per id.
        labels = _relabel_connected(np.pad(labels, pad, mode="reflect"))
        if supervised is not None:
            supervised = np.pad(supervised, pad, mode="constant", constant_values=False)
    return Sample(image, instance_targets(labels), labels, name, supervised)


def _relabel_connected(labels: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    return label(labels, background=0, connectivity=1).astype(np.int32)


def load_emps(root: Path, names: list[str], min_side_px: int = 0,
              target_diameter_px: float = TARGET_DIAMETER_PX) -> list[Sample]:
    """Load and prepare the EMPS images ``names`` (kept in memory)."""
    return [prepare_sample(*load_pair(root, EMPS_FOLDER, n), name=n, min_side_px=min_side_px,
                           target_diameter_px=target_diameter_px) for n in names]


def _resize_stack(stack: np.ndarray, size_px: int) -> np.ndarray:
    return np.stack([resize_float(stack[..., c], (size_px, size_px)) for c in range(stack.shape[-1])], axis=-1)


def augment_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random inversion, contrast, gamma, blur and noise on a [0, 1] image; result clipped to [0, 1]."""
    if rng.random() < 0.5:
        image = 1.0 - image
    if rng.random() < 0.25:
        image = ndimage.gaussian_filter(image, rng.uniform(0.5, 1.5))
    image = np.clip(image, 0.0, 1.0) ** np.exp(rng.uniform(-0.5, 0.5))
    image = image * rng.uniform(0.6, 1.2) + rng.uniform(-0.15, 0.2)
    if rng.random() < 0.5:
        image = image + rng.normal(0.0, rng.uniform(0.01, 0.1), image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def random_crop(sample: Sample, rng: np.random.Generator, size_px: int = CROP_SIZE_PX,
                scale_jitter: tuple[float, float] = SCALE_JITTER,
                size_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An augmented ``size_px`` square crop of ``sample``: (image (s, s, 1), targets (s, s, 2)).

    The crop is rescaled by a factor drawn log-uniformly from ``scale_jitter`` (the sample's
    particles are at the target diameter; a factor of 0.25 shows them at a quarter of it).

    A sample with a ``supervised`` mask gives a crop that holds a supervised pixel drawn at random, and
    targets of three channels, the third the pixel weight (1 supervised, 0 not).

    With ``size_channel`` the targets gain a channel after the centre map: each pixel's particle
    diameter as it appears in the crop, coded by :func:`model.preprocess.encode_size` (the pixel weight,
    if any, comes last).
    """
    jitter = float(np.exp(rng.uniform(*np.log(scale_jitter))))
    region_px = min(int(round(size_px / jitter)), *sample.image.shape)
    rows, cols = sample.image.shape
    if sample.supervised is not None and sample.supervised.any():
        known_rows, known_cols = np.nonzero(sample.supervised)
        pick = int(rng.integers(known_rows.size))
        row, col = int(known_rows[pick]), int(known_cols[pick])
        r0 = int(rng.integers(max(0, row - region_px + 1), min(row, rows - region_px) + 1))
        c0 = int(rng.integers(max(0, col - region_px + 1), min(col, cols - region_px) + 1))
    else:
        r0 = int(rng.integers(0, rows - region_px + 1))
        c0 = int(rng.integers(0, cols - region_px + 1))
    window = (slice(r0, r0 + region_px), slice(c0, c0 + region_px))
    channels = [sample.image[window][..., None], sample.targets[window]]
    if size_channel:
        channels.append(log2_size_map(sample.labels[window])[..., None])
    if sample.supervised is not None:
        channels.append(sample.supervised[window][..., None].astype(np.float32))
    stack = np.concatenate(channels, axis=-1)
    if region_px != size_px:
        stack = _resize_stack(stack, size_px)
    stack = np.rot90(stack, int(rng.integers(4)))
    if rng.random() < 0.5:
        stack = stack[:, ::-1]
    image = augment_intensity(np.ascontiguousarray(stack[..., 0]), rng)
    targets = np.ascontiguousarray(stack[..., 1:], dtype=np.float32)
    if size_channel:  # the crop was resized by size_px / region_px: particles look that much larger
        low, high = SIZE_LOG2_RANGE
        log2_px = targets[..., 2] + np.log2(size_px / region_px)
        targets[..., 2] = np.clip((log2_px - low) / (high - low), 0.0, 1.0)
    if sample.supervised is not None:  # a resized weight is 1 only where every source pixel was supervised
        targets[..., -1] = targets[..., -1] > 0.999
    return image[..., None], targets


class SyntheticPool:
    """A refreshed pool of prepared synthetic samples, so generation does not dominate training.

    Each draw replaces a random pool entry with a freshly generated sample with probability
    ``refresh``; otherwise it reuses one (the crop and its augmentation are new every time).
    """

    def __init__(self, generate: SyntheticCropFn, rng: np.random.Generator, size: int = 256,
                 refresh: float = 0.15, generate_size_px: int = 384,
                 target_diameter_px: float = TARGET_DIAMETER_PX):
        self._generate = generate
        self._target_px = target_diameter_px
        self._rng = rng
        self._size = size
        self._refresh = refresh
        self._generate_size_px = generate_size_px
        self._pool: list[Sample] = []

    def _new(self) -> Sample:
        image, labels = self._generate(self._rng, self._generate_size_px)
        labels = _relabel_connected(labels)
        # Small particles are enlarged up to 4x: keep only the window that fills a crop afterwards.
        window_px = int(np.ceil(CROP_SIZE_PX / base_scale(labels, self._target_px)))
        if window_px < min(labels.shape):
            r0 = int(self._rng.integers(0, labels.shape[0] - window_px + 1))
            c0 = int(self._rng.integers(0, labels.shape[1] - window_px + 1))
            window = (slice(r0, r0 + window_px), slice(c0, c0 + window_px))
            image, labels = image[window], _relabel_connected(labels[window])
        return prepare_sample(np.asarray(image, np.float32), labels, "synthetic", min_side_px=CROP_SIZE_PX,
                              target_diameter_px=self._target_px)

    def draw(self) -> Sample:
        """Return a pool sample (generating a new one first when the pool is filling or refreshing)."""
        if len(self._pool) < self._size:
            self._pool.append(self._new())
            return self._pool[-1]
        index = int(self._rng.integers(len(self._pool)))
        if self._rng.random() < self._refresh:
            self._pool[index] = self._new()
        return self._pool[index]


def training_batches(samples: list[Sample], *, batch_size: int, seed: int,
                     synthetic: SyntheticCropFn | None = None,
                     synthetic_fraction: float = 0.0,
                     crop_size_px: int = CROP_SIZE_PX,
                     target_diameter_px: float = TARGET_DIAMETER_PX,
                     scale_jitter: tuple[float, float] = SCALE_JITTER,
                     size_channel: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless batches ``(images (b, s, s, 1), targets (b, s, s, 2))`` of augmented crops (three target
    channels with ``size_channel``, see :func:`random_crop`).

    EMPS images are drawn with probability proportional to the square root of their area at
    network scale, synthetic samples with probability ``synthetic_fraction``.
    """
    rng = np.random.default_rng(seed)
    pool = (SyntheticPool(synthetic, np.random.default_rng(seed + 1), target_diameter_px=target_diameter_px)
            if synthetic and synthetic_fraction > 0 else None)
    weights = np.sqrt([s.image.size for s in samples])
    weights = weights / weights.sum()
    while True:
        images, targets = [], []
        for _ in range(batch_size):
            if pool is not None and rng.random() < synthetic_fraction:
                sample = pool.draw()
            else:
                sample = samples[int(rng.choice(len(samples), p=weights))]
            x, y = random_crop(sample, rng, crop_size_px, scale_jitter, size_channel)
            images.append(x)
            targets.append(y)
        yield np.stack(images), np.stack(targets)


def _batch_worker(samples: list[Sample], queue, seed: int, use_synthetic: bool, options: dict) -> None:
    """Worker process of :func:`parallel_batches`: one seeded batch stream into ``queue``."""
    synthetic = synthetic_crop_generator() if use_synthetic else None
    for batch in training_batches(samples, seed=seed, synthetic=synthetic, **options):
        queue.put(batch)


def parallel_batches(samples: list[Sample], *, workers: int, seed: int, use_synthetic: bool = False,
                     queue_batches: int = 4, **options) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`training_batches` made by ``workers`` processes, for machines where one core cannot keep up.

    ``options`` are :func:`training_batches`' keyword arguments other than ``seed`` and
    ``synthetic`` (``use_synthetic`` asks each worker for its own generator instead). Worker ``k``
    runs the stream seeded ``seed + 7919 * k``; batches are taken from the workers in turn, so the
    sequence depends only on ``seed`` and ``workers``, not on timing. The workers stop when the
    generator is closed or garbage-collected, or with the main process.
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process that runs TensorFlow/torch
    queues = [context.Queue(maxsize=queue_batches) for _ in range(workers)]
    processes = [context.Process(target=_batch_worker, daemon=True,
                                 args=(samples, queue, seed + 7919 * k, use_synthetic, options))
                 for k, queue in enumerate(queues)]
    for process in processes:
        process.start()
    try:
        while True:
            for queue in queues:
                yield queue.get()
    finally:
        for process in processes:
            process.terminate()


def save_samples(path: Path, samples: list[Sample], target_diameter_px: float) -> None:
    """Store prepared samples (image at 8 bits, labels) so a later run skips loading and rescaling."""
    arrays = {"names": np.array([s.name for s in samples]), "target_diameter_px": np.float64(target_diameter_px)}
    for i, sample in enumerate(samples):
        arrays[f"image{i}"] = np.round(sample.image * 255).astype(np.uint8)
        arrays[f"labels{i}"] = sample.labels
    np.savez_compressed(path, **arrays)


def load_samples(path: Path, names: list[str], target_diameter_px: float) -> list[Sample] | None:
    """Samples saved by :func:`save_samples`, or None when ``path`` holds other images or another scale."""
    if not Path(path).is_file():
        return None
    with np.load(path) as stored:
        if list(stored["names"]) != list(names) or float(stored["target_diameter_px"]) != target_diameter_px:
            return None
        samples = []
        for i, name in enumerate(names):
            labels = stored[f"labels{i}"]
            samples.append(Sample((stored[f"image{i}"] / np.float32(255)).astype(np.float32),
                                  instance_targets(labels), labels, name))
    return samples


def validation_crops(samples: list[Sample], *, per_image: int = 2, seed: int = 1234,
                     size_px: int = CROP_SIZE_PX, zooms: tuple[float, ...] = (1.0,)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed, un-augmented validation crops: (images (n, s, s, 1), targets (n, s, s, 2), labels (n, s, s)).

    ``per_image`` crops per sample and zoom. A zoom z shows the particles z times their prepared size
    (``target_diameter_px``): the crop covers ``size_px / z`` pixels of the sample, resized, with its labels
    resized by nearest neighbour and the targets recomputed from them. Zooms other than 1 judge a network
    trained over a band of sizes (``--scale-jitter``) on that band.
    """
    rng = np.random.default_rng(seed)
    images, targets, labels = [], [], []
    for sample in samples:
        rows, cols = sample.image.shape
        for zoom in zooms:
            region_px = min(int(round(size_px / zoom)), rows, cols)
            for _ in range(per_image):
                r0 = int(rng.integers(0, rows - region_px + 1))
                c0 = int(rng.integers(0, cols - region_px + 1))
                window = (slice(r0, r0 + region_px), slice(c0, c0 + region_px))
                if region_px == size_px:
                    images.append(sample.image[window][..., None])
                    targets.append(sample.targets[window])
                    labels.append(sample.labels[window])
                    continue
                crop_labels = _relabel_connected(resize_labels(sample.labels[window], (size_px, size_px)))
                images.append(resize_float(sample.image[window], (size_px, size_px))[..., None])
                targets.append(instance_targets(crop_labels))
                labels.append(crop_labels)
    return np.stack(images), np.stack(targets), np.stack(labels)


def synthetic_crop_generator() -> SyntheticCropFn | None:
    """The project's synthetic crop generator ``generate_crop(rng, size)``, or None if unavailable."""
    try:
        from model.synthetic import generate_crop
    except ImportError as err:
        logger.warning("Synthetic generator unavailable (%s); training on EMPS only.", err)
        return None

    def generate(rng: np.random.Generator, size_px: int) -> tuple[np.ndarray, np.ndarray]:
        return generate_crop(rng, size=size_px)

    return generate
