"""Channel pruning of a trained U-Net into a slimmer one: ``python -m model.prune SRC DEST --filters 8,24,48,96``.

Speed on 2 CPU cores is set by the filter counts (the cost per pixel grows with their square),
so a network with fewer filters is built with :func:`model.unet.build_unet` and initialised
from the trained one: every convolution keeps the channels whose batch-normalisation scale
``|gamma|`` is largest (the "network slimming" criterion of Liu et al., ICCV 2017), and the
input channels of each layer follow the channels kept upstream, through the skip
concatenations. The result is a starting point for :mod:`model.train` (``--init``), which
recovers the accuracy in far fewer steps than training from scratch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _keep(gamma: np.ndarray, n_keep: int) -> np.ndarray:
    """Indices (sorted) of the ``n_keep`` channels with the largest ``|gamma|``."""
    if n_keep > gamma.size:
        raise ValueError(f"Cannot keep {n_keep} of {gamma.size} channels.")
    return np.sort(np.argsort(-np.abs(gamma), kind="stable")[:n_keep])


def _level_names(n_levels: int) -> list[str]:
    """Block names in the order of the forward pass."""
    return ([f"enc{level}" for level in range(n_levels - 1)] + ["bottleneck"]
            + [f"dec{level}" for level in reversed(range(n_levels - 1))])


def prune_unet(source, filters: tuple[int, ...]):
    """Return a new U-Net with ``filters`` per level whose weights are channels of ``source``.

    ``source`` must be a :func:`model.unet.build_unet` model with as many levels as ``filters``
    and at least as many filters per level.
    """
    from model.unet import build_unet

    n_levels = len(filters)
    convs_per_block = sum(1 for layer in source.layers if layer.name.startswith("enc0_conv"))
    target = build_unet(input_channels=source.input_shape[-1], filters=tuple(filters),
                        n_outputs=source.output_shape[-1], convs_per_block=convs_per_block)
    kept_out: dict[str, np.ndarray] = {}  # block name -> channels of its output kept
    old_out_count: dict[str, int] = {}
    previous_block = None
    for block in _level_names(n_levels):
        if block == "enc0":
            kept_in = np.arange(source.input_shape[-1])
        elif block.startswith("enc") or block == "bottleneck":
            kept_in = kept_out[previous_block]
        else:  # decoder: concatenation of the upsampled block below and the encoder skip
            level = block[3:]
            kept_in = np.concatenate([kept_out[previous_block],
                                      old_out_count[previous_block] + kept_out[f"enc{level}"]])
        level_filters = filters[-1] if block == "bottleneck" else filters[int(block[3:])]
        for i in range(convs_per_block):
            conv_old, bn_old = source.get_layer(f"{block}_conv{i}"), source.get_layer(f"{block}_bn{i}")
            gamma, beta, mean, var = (np.asarray(w) for w in bn_old.get_weights())
            keep = _keep(gamma, level_filters)
            kernel = np.asarray(conv_old.get_weights()[0])[:, :, kept_in][..., keep]
            target.get_layer(f"{block}_conv{i}").set_weights([kernel])
            target.get_layer(f"{block}_bn{i}").set_weights([gamma[keep], beta[keep], mean[keep], var[keep]])
            old_count = gamma.size
            kept_in = keep
        kept_out[block], old_out_count[block] = kept_in, old_count
        previous_block = block
    kernel, bias = (np.asarray(w) for w in source.get_layer("maps").get_weights())
    target.get_layer("maps").set_weights([kernel[:, :, kept_out["dec0"]], bias])
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prune", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="trained .keras model")
    parser.add_argument("dest", type=Path, help="pruned .keras model to write")
    parser.add_argument("--filters", required=True, help="comma-separated filter counts per level")
    args = parser.parse_args(argv)
    import keras

    source = keras.saving.load_model(args.source, safe_mode=True, compile=False)
    pruned = prune_unet(source, tuple(int(f) for f in args.filters.split(",")))
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    pruned.save(args.dest)
    print(f"{args.source} ({source.count_params()} parameters) -> {args.dest} ({pruned.count_params()} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
