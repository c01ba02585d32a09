"""While the server segments, the page says so and the demo button cannot be pressed twice."""

import time

import pytest

from app.layout import ids
from app.session import start
from app.webapp import create_app

pytestmark = pytest.mark.browser


def test_busy_indicator_shows_while_the_analysis_runs(dash_duo, monkeypatch):
    real = start.run_analysis
    calls = []

    def slow(*args, **kwargs):
        calls.append(args)
        time.sleep(2.0)  # the dash_duo server runs in this process, so the delay reaches the callback
        return real(*args, **kwargs)

    # the analysis callback calls ``start.run_analysis`` through the module, so the patch reaches it
    monkeypatch.setattr(start, "run_analysis", slow)
    dash_duo.start_server(create_app(default_segmenter="classical"))
    busy = dash_duo.wait_for_element(f"#{ids.BUSY}")
    assert not busy.is_displayed()
    dash_duo.find_element(f"#{ids.DEMO_BUTTON}").click()
    dash_duo.wait_for_style_to_equal(f"#{ids.BUSY}", "display", "flex", timeout=5)
    assert "megapixel" in busy.text
    assert dash_duo.find_element(f"#{ids.DEMO_BUTTON}").get_attribute("disabled") is not None
    dash_duo.wait_for_contains_text(f"#{ids.FILE_INFO}", "demo_sem.png", timeout=30)
    dash_duo.wait_for_style_to_equal(f"#{ids.BUSY}", "display", "none", timeout=5)
    assert dash_duo.find_element(f"#{ids.DEMO_BUTTON}").get_attribute("disabled") is None
    # Let the results callbacks finish before the server is stopped.
    dash_duo.wait_for_contains_text(f"#{ids.STATS_TABLE}", "Particles detected", timeout=30)
    assert len(calls) == 1  # the slowed analysis is the one the page ran
