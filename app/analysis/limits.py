"""Every limit of the analysis core, in one place, each with its reason.

A limit is checked before the work it guards starts, and hitting one raises
:class:`~app.analysis.errors.SaemiInputError` with a sentence that names it. The deployment's own
limits (upload size, image size, request body, sidecar size, how long the page's data stays valid)
are read from the environment in ``app.config``; their defaults are here.

Each limit, its value and its reason:

``DEFAULT_MAX_BYTES`` (50 MB)
    Largest image file. The biggest microscope exports (8192² 16-bit TIFF, 134 MB raw) compress below it.
``DEFAULT_MAX_PIXELS`` (70 Mpx)
    8192 × 8192 (67 Mpx), the largest SEM frame; the U-Net's memory grows with the image.
``MAX_DECODED_BYTES`` (8 bytes × 70 Mpx)
    A decoded image (all samples, in the file's data type) is never larger than a float64 gray image
    of the pixel limit. Checked from the TIFF header, tiles included.
``MAX_TIFF_PAGES`` (10,000)
    Counting pages walks every IFD; stacks of more pages are not single micrographs.
``MAX_TIFF_SAMPLES`` (4)
    Gray, gray + alpha, RGB, RGBA; more samples per pixel are spectral cubes, not micrographs.
``MAX_SIDECAR_BYTES`` (1 MB)
    A JEOL or Hitachi ``.txt`` is a few kilobytes; it is read whole.
``MAX_LABEL_ID`` (65,535)
    Label images are stored and written as 16-bit PNG.
``MAX_BRUSH_PX`` (1,024 image px)
    The page's widest brush (40 canvas px) on an 8192-px-wide image is 512 image px; a segment's cost
    grows with the square of the width.
``MAX_POINTS_PER_SAVE`` (20,000)
    A long hand-drawn stroke has a few hundred points; each point is one segment to rasterise.
``MAX_PATHS_PER_SAVE`` (500)
    Each stroke is applied to the whole label image (one relabelling pass each).
``MAX_SAVES`` (200)
    Every save is replayed on each later change of the results.
``MAX_REPLAYED_POINTS`` (200,000)
    Points replayed over all saves, which bounds the CPU of every later callback.
``MAX_EDIT_WORK_PX`` (2·10⁹ pixel visits)
    Replaying the edits costs one pass over the image per stroke plus the pixels around each segment;
    this keeps a replay to about a minute of CPU, under the server's 300 s timeout.
``MAX_FERET_CELLS`` (4 M)
    Hull-vertex pairs held at once by the Feret measurement (about 32 MB per array); more particles
    are measured in batches, so the memory does not grow with their number.
``MAX_BATCH_IMAGES`` (200)
    Images in one batch of the samples view, uploaded loose or in a ``.zip``: each is stored on the
    server and listed on the page, and fifty images per sample is already a large study.
``DEFAULT_MAX_BATCH_BYTES`` (100 MB)
    All files of one batch upload together (a ``.zip`` counted by the sizes of its members, not of the
    archive). The browser sends them as base64 (4/3 of the bytes) in one request, which must stay under
    the server's request limit (three times the 50 MB upload limit).
``MAX_ZIP_MEMBERS`` (2,000)
    Entries of an uploaded ``.zip`` (folders and other files included), read from its directory before
    anything is unpacked.
"""

from __future__ import annotations

#: Largest image file, in bytes (decimal megabytes in messages).
DEFAULT_MAX_BYTES = 50_000_000
#: Largest image, in pixels (8192 x 8192 is 67 Mpx).
DEFAULT_MAX_PIXELS = 70_000_000
#: Largest decoded image in bytes (all samples, the file's own data type), for the default pixel limit.
MAX_DECODED_BYTES = 8 * DEFAULT_MAX_PIXELS
#: Most pages (IFDs) a TIFF may have; only the first is analysed.
MAX_TIFF_PAGES = 10_000
#: Most samples (channels) per pixel of a TIFF.
MAX_TIFF_SAMPLES = 4
#: Largest JEOL or Hitachi sidecar ``.txt`` file, in bytes.
MAX_SIDECAR_BYTES = 1_000_000
#: Largest particle id a 16-bit label PNG can hold.
MAX_LABEL_ID = 65535
#: Widest brush, in image pixels.
MAX_BRUSH_PX = 1024.0
#: Most stroke points in one canvas save.
MAX_POINTS_PER_SAVE = 20_000
#: Most strokes (paths) in one canvas save.
MAX_PATHS_PER_SAVE = 500
#: Most canvas saves kept in the edit history.
MAX_SAVES = 200
#: Most stroke points replayed over the whole edit history.
MAX_REPLAYED_POINTS = 200_000
#: Most pixel visits of one replay of the edit history (see :func:`app.analysis.strokes.edit_work_px`).
MAX_EDIT_WORK_PX = 2_000_000_000
#: Most hull-vertex pairs the Feret measurement holds in one batch.
MAX_FERET_CELLS = 4_000_000
#: Most images in one batch of the samples view.
MAX_BATCH_IMAGES = 200
#: Largest total of one batch upload, in bytes (members of a ``.zip`` counted unpacked).
DEFAULT_MAX_BATCH_BYTES = 100_000_000
#: Most entries of an uploaded ``.zip``.
MAX_ZIP_MEMBERS = 2_000


def max_decoded_bytes(max_pixels: int) -> int:
    """Largest decoded image, in bytes, for a pixel limit: 8 bytes (one float64 sample) per pixel.

    Examples
    --------
    >>> max_decoded_bytes(DEFAULT_MAX_PIXELS) == MAX_DECODED_BYTES
    True
    """
    return 8 * int(max_pixels)
