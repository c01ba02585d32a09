"""gunicorn settings: ``gunicorn -c python:app.gunicorn_conf app.wsgi:server``.

The U-Net is loaded in each worker right after it starts (never in the master: a Keras model loaded
before the fork hangs the workers), so the first user of a worker does not wait for TensorFlow.
"""

import logging

logger = logging.getLogger("app.gunicorn")


def post_worker_init(worker) -> None:
    """Load the default segmenter's model once in this worker; a failure is logged, not fatal."""
    from app.engine import default_segmenter_name, get_segmenter
    from model.config import ModelLoadError

    name = default_segmenter_name()
    if name != "unet":
        return
    try:
        get_segmenter(name).warm_up()  # loads the weights and traces the network once
    except ModelLoadError as exc:
        logger.error("%s", exc)
