"""CSV reports: per-particle tables with provenance, and per-image summaries."""

from __future__ import annotations

import io
import re
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


#: Characters on which a spreadsheet may split a ``#`` line into cells (comma, semicolon in some locales, tab).
_SEPARATORS = re.compile(r"([,;\t])")


def _clean_text(value: object) -> str:
    """One provenance key or value, safe in a ``#`` line that a spreadsheet may split into cells.

    Newlines become spaces; the value and every piece a spreadsheet could split off at a comma,
    semicolon or tab is neutralised like a text cell (:func:`neutralise_cell`, leading spaces
    ignored); a value holding such a separator or a double quote is quoted as a CSV
    field, inner quotes doubled.

    Examples
    --------
    >>> print(_clean_text('x.png,=HYPERLINK("http://evil")'))
    "x.png,'=HYPERLINK(""http://evil"")"
    >>> print(_clean_text("200 nm; -3 px"))
    "200 nm; '-3 px"
    """
    text = str(neutralise_cell(str(value))).replace("\r", " ").replace("\n", " ")
    pieces = _SEPARATORS.split(text)
    for index in range(2, len(pieces), 2):  # pieces after a separator
        piece = pieces[index]
        body = piece.lstrip()
        if body.startswith(_FORMULA_PREFIXES):
            pieces[index] = piece[: len(piece) - len(body)] + "'" + body
    text = "".join(pieces)
    if len(pieces) > 1 or '"' in text:
        text = '"' + text.replace('"', '""') + '"'
    return text


def provenance_lines(provenance: Mapping[str, object]) -> str:
    """``# key: value`` lines, one per entry, with newlines, separators and formula prefixes defused."""
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

