"""An 8-bit copy of the network for CPU inference: TensorFlow Lite with XNNPACK.

The U-Net's cost is its arithmetic: about 160 kFLOP per pixel in float32. TensorFlow Lite's converter
(part of TensorFlow, no new dependency) can store the weights and compute the activations as 8-bit
integers; XNNPACK then runs the convolutions with integer dot-product instructions. On the 2-core
development machine one 512x384 pass took 0.134 s in TensorFlow and 0.031 s int8 (``bench/bench_inference.py
--backend int8`` gives the current figures).

The conversion starts from the Keras model that :func:`model.loading.load_keras_model` loaded in safe mode,
so nothing but the ``.keras`` file is ever read from disk: the 8-bit copy lives in memory, made once per
process (about 7 s) the first time an int8 segmentation runs. Activation ranges are calibrated on tiles of
the project's own synthetic generator (:func:`calibration_tiles`), fixed seeds, so the copy is the same in
every process.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from model.inference import _traced_forward

#: Calibration: this many generated tiles of this side, particles drawn 4-48 px (the network's working band).
CALIBRATION_TILES = 16
CALIBRATION_SIDE_PX = 256
CALIBRATION_SEED = 61000
#: Interpreters kept per network, one per input shape (resizing an interpreter re-plans its memory).
MAX_SHAPES = 6


def calibration_tiles(n_tiles: int = CALIBRATION_TILES, side_px: int = CALIBRATION_SIDE_PX,
                      seed: int = CALIBRATION_SEED) -> Iterator[np.ndarray]:
    """Normalised generated tiles (1, side, side, 1) float32, SEM and TEM alternately, particles 4-48 px."""
    from model.preprocess import normalize_percentile
    from model.synthetic import generate_sample

    diameters = np.geomspace(4.0, 48.0, n_tiles)
    for k in range(n_tiles):
        sample = generate_sample(seed + k, side_px, side_px, modality=("sem", "tem")[k % 2],
                                 median_diameter_px=float(diameters[k]), data_bar=False, scale_bar=False,
                                 letters=False)
        yield normalize_percentile(sample.image.astype(np.float32))[None, ..., None].astype(np.float32)


class QuantizedNetwork:
    """The int8 TensorFlow Lite version of a Keras network, called like one batch-in, maps-out function.

    Parameters
    ----------
    model : keras.Model
        The float network (fully convolutional, NHWC, float32 outputs).
    threads : int
        Threads of each interpreter.

    Notes
    -----
    An interpreter is not thread-safe: calls are serialised by a lock. Its input shape is fixed once
    planned, so one interpreter is kept per batch shape (at most :data:`MAX_SHAPES`, least recently used
    dropped).
    """

    #: How :func:`model.inference.predict_tiled` tells this from a Keras model.
    is_quantized = True

    def __init__(self, model, threads: int = 2) -> None:
        import tensorflow as tf

        self.input_shape = tuple(model.input_shape)
        self.output_shape = tuple(model.output_shape)
        concrete = _traced_forward(model).get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([tile] for tile in calibration_tiles())
        with warnings.catch_warnings():  # the converter remarks that float inputs carry no quantisation stats
            warnings.simplefilter("ignore", UserWarning)
            self._flatbuffer = converter.convert()
        self._threads = threads
        self._interpreters: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self._lock = threading.Lock()

    def _interpreter(self, shape: tuple[int, ...]):
        interpreter = self._interpreters.get(shape)
        if interpreter is not None:
            self._interpreters.move_to_end(shape)
            return interpreter
        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to the LiteRT package
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(model_content=self._flatbuffer, num_threads=self._threads)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(shape), strict=False)
        interpreter.allocate_tensors()
        self._interpreters[shape] = interpreter
        if len(self._interpreters) > MAX_SHAPES:
            self._interpreters.popitem(last=False)
        return interpreter

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The network's outputs (N, H, W, C) float32 for ``batch`` (N, H, W, 1) float32."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            interpreter = self._interpreter(tuple(batch.shape))
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
            interpreter.invoke()
            return np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


_QUANTIZED: OrderedDict[int, tuple[object, QuantizedNetwork]] = OrderedDict()
_QUANTIZE_LOCK = threading.Lock()
#: Int8 copies kept per process, the oldest dropped first (tuned models come and go in a worker).
MAX_QUANTIZED = 4


def network_threads() -> int:
    """The threads an interpreter computes with: TensorFlow's intra-op setting when one was made (a batch
    worker gives its network one thread per task thread, ``app.batch``; a CLI or bench sets
    ``TF_NUM_INTRAOP_THREADS``), else 2. So N single-thread workers on N cores do not start 2N."""
    import tensorflow as tf

    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured:
        return configured
    text = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    return int(text) if text.isdigit() and int(text) > 0 else 2


def quantized(model) -> QuantizedNetwork:
    """The int8 copy of ``model``, made once per process and loaded model (the cache keeps the model alive)."""
    with _QUANTIZE_LOCK:
        entry = _QUANTIZED.get(id(model))
        if entry is None or entry[0] is not model:
            entry = (model, QuantizedNetwork(model, threads=network_threads()))
            _QUANTIZED[id(model)] = entry
            while len(_QUANTIZED) > MAX_QUANTIZED:
                _QUANTIZED.popitem(last=False)
        _QUANTIZED.move_to_end(id(model))
        return entry[1]
