"""How much work an image will be, guessed in milliseconds before it is analysed, to order a batch.

A batch finishes when its last image does. When the heaviest images happen to come last, one worker
is still busy with them while the others wait (on the 40-image benchmark, 1024 x 768 images took
0.6 s to 7.3 s each, and the two heaviest came last). Starting the heaviest first ("longest
processing time first", a classical list-scheduling rule) leaves only light images for the end.

The guess was made for the U-Net up to model v3, which enlarged images of small particles two or
three times before looking again, at a cost that grows with the square of the scale. So the guess is
the number of pixels divided by the square of the image's texture scale: the half-width of its
autocorrelation, about the radius of a typical particle (:func:`texture_scale_px`). Pixel noise
decorrelates at one pixel and does not move it. From model v4 the network looks at every octave of
every image, at a cost that grows with the pixels alone; the guess still grows with the number of
particles, whose candidates are rated and outlines drawn one by one, but how well it orders v4's work
has not been measured. The guess only orders the work; a wrong guess costs time, never a result.
"""

from __future__ import annotations

import numpy as np

#: The autocorrelation is measured on the image shrunk by this factor (area average).
REDUCE = 2
#: Longest lag looked at, in shrunk pixels; a texture coarser than that counts as this coarse.
MAX_LAG_PX = 48


def texture_scale_px(gray: np.ndarray) -> float:
    """Half-width of the autocorrelation of ``gray``, in its own pixels.

    The lag, averaged over directions, at which the autocorrelation falls to half its value at a lag of
    one (shrunk) pixel, so that white noise, which is uncorrelated beyond a lag of zero, does not count.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> fine = np.kron(rng.random((64, 64)), np.ones((4, 4)))     # blobs 4 px across
    >>> coarse = np.kron(rng.random((16, 16)), np.ones((16, 16)))  # blobs 16 px across
    >>> texture_scale_px(fine) < texture_scale_px(coarse)
    True
    """
    gray = np.asarray(gray, dtype=np.float32)
    rows, cols = (gray.shape[0] // REDUCE) * REDUCE, (gray.shape[1] // REDUCE) * REDUCE
    if rows < 4 * REDUCE or cols < 4 * REDUCE:
        return 1.0
    small = sum(gray[r:rows:REDUCE, c:cols:REDUCE] for r in range(REDUCE) for c in range(REDUCE))
    small -= small.mean()  # (a sum, not a mean, of each block: the scale does not matter here)
    power = np.abs(np.fft.rfft2(small)) ** 2
    correlation = np.fft.irfft2(power, s=small.shape)
    lags = min(MAX_LAG_PX, small.shape[0] // 2, small.shape[1] // 2)
    # both quadrants of non-negative row lag (the other two are their mirror images)
    block = np.concatenate([correlation[:lags, :lags], correlation[:lags, :-lags:-1]], axis=1)
    row_lag, col_lag = np.meshgrid(np.arange(lags), np.r_[np.arange(lags), -np.arange(1, lags)], indexing="ij")
    radius = np.rint(np.hypot(row_lag, col_lag)).astype(np.intp).ravel()
    keep = radius < lags
    profile = (np.bincount(radius[keep], block.ravel()[keep], minlength=lags)
               / np.maximum(np.bincount(radius[keep], minlength=lags), 1))
    if profile[1] <= 0:
        return float(REDUCE)
    below = np.flatnonzero(profile[1:] < 0.5 * profile[1])
    half_width = (below[0] + 1) if below.size else lags
    return float(half_width * REDUCE)


def relative_work(gray: np.ndarray) -> float:
    """A number proportional to the guessed analysis time of ``gray``: its pixels over the square of
    :func:`texture_scale_px`.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> fine = np.kron(rng.random((64, 64)), np.ones((4, 4)))
    >>> coarse = np.kron(rng.random((16, 16)), np.ones((16, 16)))
    >>> relative_work(fine) > relative_work(coarse)
    True
    """
    return float(np.asarray(gray).size / texture_scale_px(gray) ** 2)
