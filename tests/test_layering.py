"""The analysis core and the model package must not pull in the web stack or TensorFlow on import."""

import subprocess
import sys

from app.config import REPO_ROOT

CHECK = """
import sys
import app.analysis.pipeline, app.analysis.synthetic, app.cli, app.segmenters
import model, model.segmenter, model.postprocess
bad = sorted(m for m in ('dash', 'flask', 'plotly', 'tensorflow', 'keras') if m in sys.modules)
print(','.join(bad))
"""


def test_core_and_model_import_without_web_stack_or_tensorflow():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == ""
