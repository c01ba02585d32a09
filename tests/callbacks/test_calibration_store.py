"""The calibration's warning and scale bar survive the browser store; older payloads stay readable."""

import pytest

from app.analysis.calibration import Calibration, ScaleBarEvidence
from app.analysis.errors import SaemiInputError
from app.session.stores import calibration_from_store, calibration_to_store


def test_warning_and_scale_bar_round_trip():
    calibration = Calibration(None, "none", "No pixel size found.", "Its label looks like '200 nm'.",
                              ScaleBarEvidence(10, 210, 700, "200 am", 41.0))
    assert calibration_from_store(calibration_to_store(calibration)) == calibration


def test_a_payload_without_the_new_fields_is_read():
    old = {"nm_per_px": 2.5, "source": "metadata:fei", "detail": "FEI"}
    assert calibration_from_store(old) == Calibration(2.5, "metadata:fei", "FEI")


@pytest.mark.parametrize("bar", [{"x0": 5, "x1": 2, "y": 1}, {"x0": "a", "x1": 9, "y": 1}, {"x0": 1, "y": 2}])
def test_a_damaged_scale_bar_is_refused(bar):
    payload = {"nm_per_px": None, "source": "none", "detail": "", "scale_bar": bar}
    with pytest.raises(SaemiInputError):
        calibration_from_store(payload)
