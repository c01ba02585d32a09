"""Network inference on images of any size: overlapping tiles with blended seams.

Tiles are cut from the image one batch at a time and their outputs accumulated into one float32
array of the image's size, so besides the outputs themselves memory stays at a few tiles
whatever the image size. TensorFlow is imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from model.preprocess import BAND_PX, resize_float, scaled_shape

Progress = Callable[[float, str], None]

#: Tile sides are rounded up to a multiple of this (the network's total down-sampling is 8).
TILE_MULTIPLE_PX = 32


def _graph_friendly(model):
    """A copy of ``model`` (same weights) that can be traced for tiles of unknown size.

    Keras' bilinear ``UpSampling2D`` checks its target size with Python comparisons, which fail
    when rows and columns are symbolic; the copy swaps it for the same TensorFlow resize
    (bilinear, half-pixel centres, no antialiasing) with the size taken from ``tf.shape``.
    """
    import keras
    import tensorflow as tf

    class DynamicUpsampling(keras.layers.Layer):
        def __init__(self, factor, interpolation, **kwargs):
            super().__init__(**kwargs)
            self.factor, self.interpolation = factor, interpolation

        def call(self, x):
            shape = tf.shape(x)
            return tf.image.resize(x, (shape[1] * self.factor[0], shape[2] * self.factor[1]),
                                   method=self.interpolation)

        def compute_output_shape(self, input_shape):
            batch, rows, cols, channels = input_shape
            return (batch, None if rows is None else rows * self.factor[0],
                    None if cols is None else cols * self.factor[1], channels)

    def swap(layer):
        if isinstance(layer, keras.layers.UpSampling2D) and layer.data_format == "channels_last":
            return DynamicUpsampling(tuple(layer.size), layer.interpolation, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    if not any(isinstance(layer, keras.layers.UpSampling2D) for layer in model.layers):
        return model
    copy = keras.models.clone_model(model, clone_function=swap)
    copy.set_weights(model.get_weights())
    return copy


_TRACED: dict[int, tuple[object, Callable]] = {}


def _traced_forward(model):
    """The model's inference pass as one ``tf.function`` traced once for any batch and tile shape.

    Graph execution is about 30% faster than eager calls on 2 CPU cores (Keras layers skip their
    Python overhead and TensorFlow fuses the convolution, batch norm and ReLU). The signature
    leaves batch, rows and columns free, so tiles of new shapes do not trigger retracing. The
    function is built once per loaded model (the cache keeps the model alive with it).
    """
    entry = _TRACED.get(id(model))
    if entry is None or entry[0] is not model:
        import tensorflow as tf

        graph_model = _graph_friendly(model)
        spec = tf.TensorSpec([None, None, None, model.input_shape[-1]], tf.float32)
        entry = (model, tf.function(lambda batch: graph_model(batch, training=False), input_signature=[spec]))
        _TRACED[id(model)] = entry
    return entry[1]


def _forward(model, batch: np.ndarray) -> np.ndarray:
    """One forward pass of ``batch`` (float32, NHWC) through the traced model or its int8 copy."""
    if getattr(model, "is_quantized", False):  # model.quantize.QuantizedNetwork: called like a function
        return model(batch)
    return np.asarray(_traced_forward(model)(np.ascontiguousarray(batch, dtype=np.float32)))


#: Views of a batch (NHWC) that the network can be shown, each as a pair (to the view, back from
#: it): 0 the batch as it is, 1 turned by 180 degrees, 2 mirrored left to right, 3 mirrored top to
#: bottom. The network is fully convolutional and was trained with all of these turns and mirrors,
#: so averaging its outputs over views smooths its errors (see ``views`` in :func:`predict_tiled`).
VIEWS: tuple[tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]], ...] = (
    (lambda b: b, lambda o: o),
    (lambda b: b[:, ::-1, ::-1], lambda o: o[:, ::-1, ::-1]),
    (lambda b: b[:, :, ::-1], lambda o: o[:, :, ::-1]),
    (lambda b: b[:, ::-1], lambda o: o[:, ::-1]),
)


def _forward_views(model, batch: np.ndarray, views: Sequence[int]) -> np.ndarray:
    """The network's outputs for ``batch``, averaged over the :data:`VIEWS` numbered ``views``."""
    total = None
    for view in views:
        to_view, back = VIEWS[view]
        out = back(_forward(model, np.ascontiguousarray(to_view(batch))))
        total = out if total is None else total + out
    return total if len(views) == 1 else total / len(views)


def _ramp_weights(length: int, overlap: int) -> np.ndarray:
    weights = np.ones(length, dtype=np.float32)
    if overlap > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        weights[:overlap] = ramp
        weights[-overlap:] = ramp[::-1]
    return weights


def blend_window(tile_rows: int, overlap: int, tile_cols: int | None = None) -> np.ndarray:
    """Separable weight window: 1 in the middle, raised-cosine ramps over ``overlap`` px at each side."""
    return np.outer(_ramp_weights(tile_rows, overlap),
                    _ramp_weights(tile_rows if tile_cols is None else tile_cols, overlap))


def _tile_layout(length: int, max_tile: int, overlap: int) -> tuple[int, list[int], int]:
    """Tile side, tile starts and padded length covering ``length`` px plus ``overlap // 2`` margins.

    The fewest tiles of at most ``max_tile`` px are used, each shrunk to the smallest multiple of
    :data:`TILE_MULTIPLE_PX` that still covers the span, so little work is spent on padding.
    """
    span = length + 2 * (overlap // 2)
    n_tiles = max(1, int(np.ceil((span - overlap) / (max_tile - overlap))))
    tile = int(np.ceil((np.ceil((span - overlap) / n_tiles) + overlap) / TILE_MULTIPLE_PX)) * TILE_MULTIPLE_PX
    stride = tile - overlap
    return tile, [i * stride for i in range(n_tiles)], (n_tiles - 1) * stride + tile


def predict_tiled(model, image: np.ndarray, *, tile: int = 256, overlap: int = 64, batch_size: int = 4,
                  progress: Progress | None = None, views: Sequence[int] = (0,)) -> np.ndarray:
    """Run ``model`` over ``image`` in overlapping tiles and blend the outputs.

    Parameters
    ----------
    model : keras.Model
        Fully convolutional network; ``tile`` must suit its down-sampling (a multiple of 16 does).
    image : numpy.ndarray
        2-D float32 image, already normalised.
    tile, overlap : int
        Largest tile side and overlap between neighbouring tiles, in pixels
        (``0 <= overlap < tile``). The image is reflect-padded by ``overlap // 2`` px; tiles
        are shrunk (to multiples of 32 px) so that the fewest tiles cover the image snugly.
    batch_size : int
        Tiles per forward pass.
    progress : callable, optional
        Called as ``progress(fraction, message)`` after each batch.
    views : sequence of int
        Which :data:`VIEWS` of each tile the network sees; its outputs are averaged over them
        (default: the tile only). Each view costs one more forward pass.

    Returns
    -------
    numpy.ndarray
        float32 (rows, cols, n_outputs) network outputs at the resolution of ``image``.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile): got overlap={overlap}, tile={tile}.")
    image = np.asarray(image)
    rows, cols = image.shape
    margin = overlap // 2
    tile_rows, row_starts, padded_rows = _tile_layout(rows, tile, overlap)
    tile_cols, col_starts, padded_cols = _tile_layout(cols, tile, overlap)
    # Rows and columns of the reflect-padded image, as indices into the image: tiles are cut
    # straight from the image, so no padded copy of it is made.
    row_source = reflect_indices(rows, margin, padded_rows)
    col_source = reflect_indices(cols, margin, padded_cols)
    n_outputs = model.output_shape[-1]
    # Outputs are kept for the image's own pixels only (not the margins), and the blend weights
    # are separable: their sum over tiles is the outer product of the sums along each axis.
    accumulated = np.zeros((rows, cols, n_outputs), dtype=np.float32)
    row_ramp, col_ramp = _ramp_weights(tile_rows, overlap), _ramp_weights(tile_cols, overlap)
    row_weight_sum = _weight_sums(row_ramp, row_starts, padded_rows)[margin:margin + rows]
    col_weight_sum = _weight_sums(col_ramp, col_starts, padded_cols)[margin:margin + cols]
    window = np.outer(row_ramp, col_ramp)[..., None]
    corners = [(r, c) for r in row_starts for c in col_starts]
    for first in range(0, len(corners), batch_size):
        chunk = corners[first:first + batch_size]
        batch = np.stack([image[np.ix_(row_source[r:r + tile_rows], col_source[c:c + tile_cols])]
                          for r, c in chunk]).astype(np.float32, copy=False)[..., None]
        for (r, c), out in zip(chunk, _forward_views(model, batch, views)):
            # the part of the tile that covers the image (padded rows r.., image rows r - margin..)
            r0, r1 = max(r, margin), min(r + tile_rows, margin + rows)
            c0, c1 = max(c, margin), min(c + tile_cols, margin + cols)
            if r0 < r1 and c0 < c1:
                accumulated[r0 - margin:r1 - margin, c0 - margin:c1 - margin] += (
                    out[r0 - r:r1 - r, c0 - c:c1 - c] * window[r0 - r:r1 - r, c0 - c:c1 - c])
        if progress is not None:
            progress(min(1.0, (first + len(chunk)) / len(corners)), "Running the segmentation model")
    band = max(1, BAND_PX // max(1, cols))
    for r0 in range(0, rows, band):
        accumulated[r0:r0 + band] /= np.outer(row_weight_sum[r0:r0 + band], col_weight_sum)[..., None]
    return accumulated


def reflect_indices(length: int, margin: int, padded_length: int) -> np.ndarray:
    """Indices into an axis of ``length`` px of its reflect-padded version (``margin`` px before).

    The same mapping as ``numpy.pad(..., mode="reflect")`` (the edge pixel is not repeated, and
    a pad longer than the axis reflects again), so a tile of the padded image can be cut from
    the image itself.

    Examples
    --------
    >>> reflect_indices(4, 2, 9)
    array([2, 1, 0, 1, 2, 3, 2, 1, 0])
    """
    positions = np.arange(padded_length) - margin
    if length == 1:
        return np.zeros(padded_length, dtype=np.intp)
    period = 2 * (length - 1)
    positions = np.mod(positions, period)
    return np.where(positions < length, positions, period - positions).astype(np.intp)


def _weight_sums(ramp: np.ndarray, starts: list[int], padded_length: int) -> np.ndarray:
    """Sum over tiles, along one axis, of the blend ``ramp`` placed at each of ``starts``."""
    total = np.zeros(padded_length, dtype=np.float32)
    for start in starts:
        total[start:start + ramp.size] += ramp
    return total


def predict_at_scale(model, image: np.ndarray, scale: float, *, tile: int = 256, overlap: int = 64,
                     batch_size: int = 4, progress: Progress | None = None) -> np.ndarray:
    """Resize ``image`` by ``scale``, predict tiled, and resize the maps back to the image's shape."""
    scaled = resize_float(image, scaled_shape(image.shape, scale)) if scale != 1.0 else image
    maps = predict_tiled(model, scaled, tile=tile, overlap=overlap, batch_size=batch_size, progress=progress)
    if scale == 1.0:
        return maps
    return np.stack([resize_float(maps[..., k], image.shape) for k in range(maps.shape[-1])], axis=-1)
