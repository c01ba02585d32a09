"""A missing or corrupted model is a clear error at start-up, and the app still serves."""

import json
import logging
import shutil

import pytest

from app.engine import default_segmenter_name, get_segmenter
from app.layout import ids
from app.session.guard import public_text
from app.webapp import create_app
from model.config import default_model_dir
from model.loading import model_problem


def _find(component, component_id):
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if child is not None and not isinstance(child, str):
            found = _find(child, component_id)
            if found is not None:
                return found
    return None


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"weights": "saemi_unet.keras", "version": "t"}))
    return tmp_path


@pytest.mark.parametrize("damage", ["missing", "garbage", "bad-config", "no-scorer"])
def test_broken_model_is_reported_at_startup(model_dir, damage, caplog):
    if damage == "garbage":
        (model_dir / "saemi_unet.keras").write_bytes(b"PK\x03\x04 this is not a keras archive")
    elif damage == "bad-config":
        (model_dir / "config.json").write_text("{ not json")
    elif damage == "no-scorer":  # the config names a candidate scorer file that is not there
        (model_dir / "config.json").write_text(json.dumps(
            {"weights": "saemi_unet.keras", "input_scale": {"scorer_file": "candidate_scorer.json"}}))
    problem = model_problem(model_dir)
    assert problem is not None and problem.count("classical segmenter") == 1  # said once, clearly
    if damage == "no-scorer":
        assert "candidate scorer file" in problem
    assert default_segmenter_name(model_dir) == "classical"
    with caplog.at_level(logging.ERROR, logger="app.webapp"):
        app = create_app(model_dir=model_dir)
    assert any("classical segmenter" in record.getMessage() for record in caplog.records)
    notice = _find(app.layout, ids.STARTUP_NOTICE)
    assert notice.children == public_text(problem, drop_details=True)  # no library details on the page
    assert "classical segmenter" in notice.children and str(model_dir) not in notice.children
    assert _find(app.layout, ids.SEGMENTER).value == "classical"


def test_sound_archive_passes_the_check(model_dir):
    import zipfile

    with zipfile.ZipFile(model_dir / "saemi_unet.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    (model_dir / "config.json").write_text(json.dumps(
        {"weights": "saemi_unet.keras", "input_scale": {"scorer_file": "candidate_scorer.json"}}))
    shutil.copy(default_model_dir() / "candidate_scorer.json", model_dir)
    assert model_problem(model_dir) is None


def test_shipped_model_is_the_default_and_workers_preload_it(monkeypatch):
    from app import config, gunicorn_conf
    from model.loading import load_shipped_model

    monkeypatch.setattr(config, "SEGMENTER_OVERRIDE", None)
    assert model_problem() is None
    assert default_segmenter_name() == "unet"
    assert _find(create_app().layout, ids.SEGMENTER).value == "unet"
    gunicorn_conf.post_worker_init(worker=None)
    assert load_shipped_model.cache_info().currsize >= 1
    # The forward pass is traced too, so the first user pays no tracing.
    from model.inference import _TRACED

    assert id(get_segmenter("unet").load().model) in _TRACED
