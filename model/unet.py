"""U-Net factory for particle segmentation (Keras 3).

The network maps a normalised grayscale image to ``n_outputs`` sigmoid maps; SAEMI uses two:
particle probability and a per-particle normalised distance ("centre") map, from which
:mod:`model.postprocess` builds instances.
"""

from __future__ import annotations


def _conv_block(x, n_filters: int, n_convs: int, name: str):
    from keras import layers

    for i in range(n_convs):
        x = layers.Conv2D(n_filters, 3, padding="same", use_bias=False,
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(input_channels: int = 1, filters: tuple[int, ...] = (16, 32, 64, 128),
               n_outputs: int = 2, convs_per_block: int = 2, name: str = "saemi_unet"):
    """Build a U-Net whose encoder and decoder are loops over ``filters``.

    Parameters
    ----------
    input_channels : int
        Channels of the input image (1 for grayscale).
    filters : tuple of int
        Filter count per resolution level, finest first; the last entry is the bottleneck.
        With ``len(filters) = L`` the input height and width must be multiples of ``2**(L-1)``.
    n_outputs : int
        Number of sigmoid output maps.
    convs_per_block : int
        3x3 convolutions (each followed by batch normalisation and ReLU) per block.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Model taking ``(batch, rows, cols, input_channels)`` float32 and returning
        ``(batch, rows, cols, n_outputs)`` values in [0, 1].
    """
    import keras
    from keras import layers

    if len(filters) < 2:
        raise ValueError("A U-Net needs at least two filter levels.")
    inputs = keras.Input(shape=(None, None, input_channels), name="image")
    x = inputs
    skips = []
    for level, n_filters in enumerate(filters[:-1]):
        x = _conv_block(x, n_filters, convs_per_block, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, filters[-1], convs_per_block, "bottleneck")
    for level in reversed(range(len(filters) - 1)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"cat{level}")([x, skips[level]])
        x = _conv_block(x, filters[level], convs_per_block, f"dec{level}")
    outputs = layers.Conv2D(n_outputs, 1, activation="sigmoid", name="maps")(x)
    return keras.Model(inputs, outputs, name=name)


def with_size_output(model):
    """A copy of ``model`` with one more output map, the particle size (:func:`model.preprocess.encode_size`).

    Every layer keeps its weights (shared with ``model``); the final 1x1 convolution ``maps`` gains a channel
    whose weights start at zero, so the new map starts at 0.5 (about 23 px) everywhere and the existing
    maps are unchanged. Used to start a size-aware network from trained weights.
    """
    import keras
    import numpy as np
    from keras import layers

    old = model.get_layer("maps")
    kernel, bias = old.get_weights()
    head = layers.Conv2D(kernel.shape[-1] + 1, 1, activation="sigmoid", name="maps")
    extended = keras.Model(model.inputs, head(old.input), name=model.name)
    head.set_weights([np.concatenate([kernel, np.zeros_like(kernel[..., :1])], axis=-1),
                      np.concatenate([bias, np.zeros(1, bias.dtype)])])
    return extended
