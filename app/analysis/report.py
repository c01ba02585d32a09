"""CSV reports: per-particle tables with provenance, and per-image summaries."""

from __future__ import annotations

import io
from collections.abc import Mapping

import pandas as pd

#: Leading characters that make Excel, LibreOffice or Google Sheets evaluate a cell as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "|", "%")


def neutralise_cell(value: object) -> object:
    """Defuse a text cell that a spreadsheet would run as a formula by prefixing a single quote.

    Numbers are returned unchanged, so negative values stay numeric.

    Examples
    --------
    >>> neutralise_cell("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> neutralise_cell(-3.5)
    -3.5
    """
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def _clean_text(value: object) -> str:
    text = str(neutralise_cell(str(value)))
    return text.replace("\r", " ").replace("\n", " ")


def provenance_lines(provenance: Mapping[str, object]) -> str:
    """``# key: value`` lines, one per entry, with newlines and formula prefixes defused."""
    return "".join(f"# {_clean_text(key)}: {_clean_text(value)}\n" for key, value in provenance.items())


def _neutralise_frame(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(neutralise_cell)
    out.columns = [str(neutralise_cell(str(c))) for c in out.columns]
    return out


def particles_csv(table: pd.DataFrame, provenance: Mapping[str, object]) -> str:
    """The per-particle CSV: provenance as ``#`` lines, then a header and one row per particle.

    Parameters
    ----------
    table : DataFrame
        One row per particle (see :func:`app.analysis.measure.measure_particles`).
    provenance : mapping
        File name, SHA-256, image size, segmenter, parameters, date, calibration ...

    Returns
    -------
    str
        CSV text readable with ``pandas.read_csv(..., comment="#")``.
    """
    buffer = io.StringIO()
    buffer.write(provenance_lines(provenance))
    _neutralise_frame(table).to_csv(buffer, index=False, float_format="%.6g", lineterminator="\n")
    return buffer.getvalue()


def summary_csv(rows: list[Mapping[str, object]], provenance: Mapping[str, object] | None = None) -> str:
    """A summary table, one row per image, optionally preceded by ``#`` provenance lines."""
    buffer = io.StringIO()
    if provenance:
        buffer.write(provenance_lines(provenance))
    frame = pd.DataFrame([dict(r) for r in rows])
    _neutralise_frame(frame).to_csv(buffer, index=False, float_format="%.6g", lineterminator="\n")
    return buffer.getvalue()

