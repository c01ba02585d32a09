"""The Dash application factory."""

from __future__ import annotations

import logging
from pathlib import Path

import dash
import flask

from app import config
from app.callbacks import analysis, canvas, classes, downloads, linecal, samples, teach, views
from app.engine import default_segmenter_name
from app.layout.main import build_layout
from app.session.guard import public_text
from model.loading import model_problem

logger = logging.getLogger(__name__)


def create_app(*, default_segmenter: str | None = None, model_dir: Path | None = None) -> dash.Dash:
    """Build the SAEMI Dash app.

    Parameters
    ----------
    default_segmenter : str, optional
        Segmenter selected when the page opens; default from :func:`app.engine.default_segmenter_name`.
    model_dir : Path, optional
        Folder of the shipped U-Net, checked at start-up (default :func:`model.config.default_model_dir`). A missing or
        corrupted model is logged as an error and announced on the page; the app then serves with the
        classical segmenter.

    Returns
    -------
    dash.Dash
        The app; ``app.server`` is the Flask server for gunicorn.
    """
    app = dash.Dash(
        __name__,
        title="SAEMI",
        assets_folder=str(config.REPO_ROOT / "assets"),
        suppress_callback_exceptions=False,
    )
    problem = model_problem(model_dir)
    if problem:
        logger.error(problem)
    notice = None if problem is None else public_text(problem, drop_details=True)
    app.layout = build_layout(default_segmenter or default_segmenter_name(model_dir), notice=notice)
    limit_request_body(app.server)
    # Callbacks are attached to this app, not to Dash's global registry: the first app created in a
    # process empties that registry, so a second app (tests, several apps) would get none.
    for module in (analysis, views, canvas, downloads, linecal, samples, teach, classes):
        module.register(app)
    return app


#: The answer to a request body above ``MAX_REQUEST_BYTES`` (the page's upload limit already refuses most).
TOO_LARGE = ("The request is larger than this server accepts ({limit:.0f} MB; uploads up to {upload:.0f} MB); "
             "please upload a smaller file.")


def limit_request_body(server: flask.Flask) -> None:
    """Refuse request bodies above :data:`app.config.MAX_REQUEST_BYTES` before they are read (HTTP 413)."""
    server.config["MAX_CONTENT_LENGTH"] = config.MAX_REQUEST_BYTES

    @server.errorhandler(413)
    def too_large(_error):
        text = TOO_LARGE.format(limit=config.MAX_REQUEST_BYTES / 1e6, upload=config.MAX_UPLOAD_BYTES / 1e6)
        return text, 413, {"Content-Type": "text/plain; charset=utf-8"}
