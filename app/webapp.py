"""The Dash application factory."""

from __future__ import annotations

import logging
from pathlib import Path

import dash

from app.callbacks import analysis, canvas, downloads, linecal, views
from app.config import REPO_ROOT
from app.engine import default_segmenter_name
from app.layout.main import build_layout
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
        assets_folder=str(REPO_ROOT / "assets"),
        suppress_callback_exceptions=False,
    )
    problem = model_problem(model_dir)
    if problem:
        logger.error(problem)
    app.layout = build_layout(default_segmenter or default_segmenter_name(model_dir), notice=problem)
    # Callbacks are attached to this app, not to Dash's global registry: the first app created in a
    # process empties that registry, so a second app (tests, several apps) would get none.
    for module in (analysis, views, canvas, downloads, linecal):
        module.register(app)
    return app
