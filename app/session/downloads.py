"""The downloads: per-particle CSV, label image and summary CSV, each with its provenance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pandas as pd

from app.analysis import pipeline, report
from app.session.stores import AnalysisState, ResultsState


def provenance(analysis: AnalysisState, results: ResultsState, edge_mode: str) -> dict[str, str]:
    """Provenance header lines for the downloads, with the settings in force now."""
    manual = results.calibration.nm_per_px if results.calibration.source == "manual" else None
    prov = pipeline.build_provenance(
        filename=analysis.filename,
        sha256=analysis.sha256,
        shape=analysis.shape,
        segmenter=analysis.segmenter,
        params=replace(analysis.params, edge_mode=edge_mode, nm_per_px=manual),
        calibration=results.calibration,
        data_bar=analysis.data_bar,
        analysed_at=analysis.analysed_at,
    )
    prov["canvas_edits"] = str(results.n_edits)
    return public_provenance(prov)


def public_provenance(provenance: Mapping[str, str]) -> dict[str, str]:
    """``provenance`` as a user may read it: a tuned or uploaded model is named by its folder, not by its path
    on the server (the segmenter's version, ``+ft.<digest>``, names the weights themselves).

    Examples
    --------
    >>> public_provenance({"param_model_dir": "/srv/saemi/batches/b1/models/t2"})["param_model_dir"]
    't2'
    """
    if not provenance.get("param_model_dir"):
        return dict(provenance)
    return {**provenance, "param_model_dir": provenance["param_model_dir"].replace("\\", "/").rsplit("/", 1)[-1]}


def _stem(analysis: AnalysisState) -> str:
    name = str(analysis.filename).rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] or "image"


def particles_download(analysis: AnalysisState, results: ResultsState, edge_mode: str,
                       table: pd.DataFrame | None = None, extra: Mapping[str, str] | None = None) -> dict:
    """``dcc.Download`` payload of the per-particle CSV.

    ``table`` replaces the results' particle table (the same particles with more columns, such as their
    classes), and ``extra`` adds provenance lines.
    """
    prov = {**provenance(analysis, results, edge_mode), **(extra or {})}
    text = report.particles_csv(results.particles() if table is None else table, prov)
    return {"content": text, "filename": f"{_stem(analysis)}_particles.csv", "type": "text/csv"}


def labels_download(analysis: AnalysisState, results: ResultsState) -> dict:
    """``dcc.Download`` payload of the label image (16-bit PNG, 0 = background)."""
    return {"content": results.labels_png, "filename": f"{_stem(analysis)}_labels.png",
            "base64": True, "type": "image/png"}


def summary_download(analysis: AnalysisState, results: ResultsState, edge_mode: str,
                     class_tables: Mapping[str, pd.DataFrame] | None = None,
                     extra: Mapping[str, str] | None = None) -> dict:
    """``dcc.Download`` payload of the summary CSV: one row for the image, then, given ``class_tables`` (each
    class's particles), one row per class with a ``class`` column; ``extra`` adds provenance lines."""
    prov = {**provenance(analysis, results, edge_mode), **(extra or {})}
    params = replace(analysis.params, edge_mode=edge_mode)
    rows = [pipeline.summary_row(analysis.filename, results.particles(), params, results.calibration,
                                 analysis.shape, analysis.frame)]
    for name, table in (class_tables or {}).items():
        rows.append({**pipeline.summary_row(analysis.filename, table, params, results.calibration, analysis.shape,
                                            analysis.frame), "class": name})
    if len(rows) > 1:
        rows[0]["class"] = "all"
    return {"content": report.summary_csv(rows, prov), "filename": f"{_stem(analysis)}_summary.csv",
            "type": "text/csv"}
