"""The architecture holds: import-linter's contracts (pyproject.toml) pass, and they do catch a breach."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300)


def _copy_sources(destination: Path) -> Path:
    """The Python sources of ``app`` and ``model`` and the contracts, copied to ``destination``."""
    for package in ("app", "model"):
        for source in (REPO_ROOT / package).rglob("*.py"):
            target = destination / source.relative_to(REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    shutil.copy(REPO_ROOT / "pyproject.toml", destination)
    return destination


def test_the_import_contracts_are_kept():
    out = _lint_imports(REPO_ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("module", "line", "contract"), [
    ("model/inference.py", "import app", "package root"),
    ("app/analysis/measure.py", "import app", "package root"),
    ("app/analysis/imageio.py", "from app import config", "Layers"),
    ("model/segmenter.py", "from app import engine", "Layers"),
    ("model/segmenter.py", "import model.evaluate", "Inside model/"),
    ("app/analysis/stats.py", "import plotly", "web stack"),
])
def test_an_upward_import_breaks_a_contract(tmp_path, module, line, contract):
    root = _copy_sources(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n\ndef _breach():\n    {line}\n")
    out = _lint_imports(root)
    assert out.returncode != 0
    broken = out.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, out.stdout


CHECK = """
import sys
import app.analysis.pipeline, app.cli, app.engine, model.synthetic
import model, model.segmenter, model.postprocess, model.registry
bad = sorted(m for m in ('dash', 'flask', 'plotly', 'tensorflow', 'keras') if m in sys.modules)
print(','.join(bad))
"""


def test_core_model_and_cli_import_without_web_stack_or_tensorflow():
    """TensorFlow is imported lazily, when a network is first loaded; the CLI never loads Dash."""
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == ""
