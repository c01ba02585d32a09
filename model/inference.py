"""Network inference on images of any size: overlapping tiles with blended seams.

Tiles are processed a batch at a time and accumulated into float32 arrays, so memory stays bounded
(a few float32 copies of the image) whatever the image size. TensorFlow is imported lazily.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np

from model.preprocess import resize_float, scaled_shape

Progress = Callable[[float, str], None]

_PREDICT_FUNCTIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _predict_fn(model):
    """A compiled forward pass for ``model`` (cached per model; traced once per input shape).

    Shapes stay concrete (bilinear up-sampling needs them), so callers keep the batch shape fixed.
    """
    fn = _PREDICT_FUNCTIONS.get(model)
    if fn is None:
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False))
        _PREDICT_FUNCTIONS[model] = fn
    return fn


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """Separable weight window: 1 in the middle, raised-cosine ramps over ``overlap`` px at each side."""
    weights = np.ones(tile, dtype=np.float32)
    if overlap > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        weights[:overlap] = ramp
        weights[-overlap:] = ramp[::-1]
    return np.outer(weights, weights).astype(np.float32)


def _tile_starts(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Tile start offsets covering ``length`` px plus an ``overlap`` margin on both sides, and the padded length."""
    stride = tile - overlap
    n_tiles = max(1, int(np.ceil((length + 2 * overlap - tile) / stride)) + 1)
    return [i * stride for i in range(n_tiles)], (n_tiles - 1) * stride + tile


def predict_tiled(model, image: np.ndarray, *, tile: int = 256, overlap: int = 64, batch_size: int = 4,
                  progress: Progress | None = None) -> np.ndarray:
    """Run ``model`` over ``image`` in overlapping tiles and blend the outputs.

    Parameters
    ----------
    model : keras.Model
        Fully convolutional network; ``tile`` must suit its down-sampling (a multiple of 16 does).
    image : numpy.ndarray
        2-D float32 image, already normalised.
    tile, overlap : int
        Tile side and overlap between neighbouring tiles, in pixels (``0 <= overlap < tile``).
    batch_size : int
        Tiles per forward pass.
    progress : callable, optional
        Called as ``progress(fraction, message)`` after each batch.

    Returns
    -------
    numpy.ndarray
        float32 (rows, cols, n_outputs) network outputs at the resolution of ``image``.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile): got overlap={overlap}, tile={tile}.")
    rows, cols = image.shape
    row_starts, padded_rows = _tile_starts(rows, tile, overlap)
    col_starts, padded_cols = _tile_starts(cols, tile, overlap)
    padded = np.pad(np.asarray(image, np.float32),
                    ((overlap, padded_rows - rows - overlap), (overlap, padded_cols - cols - overlap)),
                    mode="reflect")
    n_outputs = model.output_shape[-1]
    accumulated = np.zeros((padded_rows, padded_cols, n_outputs), dtype=np.float32)
    weight_sum = np.zeros((padded_rows, padded_cols), dtype=np.float32)
    window = blend_window(tile, overlap)
    predict = _predict_fn(model)
    corners = [(r, c) for r in row_starts for c in col_starts]
    batch_size = min(batch_size, len(corners))
    batch = np.zeros((batch_size, tile, tile, 1), dtype=np.float32)
    for first in range(0, len(corners), batch_size):
        chunk = corners[first:first + batch_size]
        for k, (r, c) in enumerate(chunk):
            batch[k, ..., 0] = padded[r:r + tile, c:c + tile]
        outputs = np.asarray(predict(batch))
        for (r, c), out in zip(chunk, outputs):
            accumulated[r:r + tile, c:c + tile] += out * window[..., None]
            weight_sum[r:r + tile, c:c + tile] += window
        if progress is not None:
            progress(min(1.0, (first + len(chunk)) / len(corners)), "Running the segmentation model")
    core = (slice(overlap, overlap + rows), slice(overlap, overlap + cols))
    return accumulated[core] / weight_sum[core][..., None]


def predict_whole(model, image: np.ndarray, *, margin: int = 32, multiple: int = 16) -> np.ndarray:
    """Run ``model`` on the whole image at once, as a reference for :func:`predict_tiled`.

    The image is reflect-padded by ``margin`` px on every side (as the tiles are) and up to a
    multiple of ``multiple`` px, and the outputs are cropped back.
    """
    rows, cols = image.shape
    pad = ((margin, margin + (-(rows + 2 * margin)) % multiple),
           (margin, margin + (-(cols + 2 * margin)) % multiple))
    padded = np.pad(np.asarray(image, np.float32), pad, mode="reflect")
    outputs = np.asarray(_predict_fn(model)(padded[None, ..., None]))[0]
    return outputs[margin:margin + rows, margin:margin + cols]


def predict_at_scale(model, image: np.ndarray, scale: float, *, tile: int = 256, overlap: int = 64,
                     batch_size: int = 4, progress: Progress | None = None) -> np.ndarray:
    """Resize ``image`` by ``scale``, predict tiled, and resize the maps back to the image's shape."""
    scaled = resize_float(image, scaled_shape(image.shape, scale)) if scale != 1.0 else image
    maps = predict_tiled(model, scaled, tile=tile, overlap=overlap, batch_size=batch_size, progress=progress)
    if scale == 1.0:
        return maps
    return np.stack([resize_float(maps[..., k], image.shape) for k in range(maps.shape[-1])], axis=-1)
