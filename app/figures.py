"""Plotly figures built from arrays: the size histogram and the segmentation overlay.

These functions take plain numpy arrays and return ``plotly.graph_objects.Figure`` objects; they
hold no state and know nothing about Dash, so callbacks and tests call them directly.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from skimage.segmentation import find_boundaries

from app.analysis.encoding import rgb_to_png_data_url
from app.analysis.stats import histogram, lognormal_fit, lognormal_pdf

__all__ = ["PALETTE", "class_histogram_figure", "histogram_figure", "label_colour_image", "overlay_figure",
           "samples_figure"]

#: Fixed particle colours (RGB), reused in turn by particle id.
PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195),
    ],
    dtype=np.uint8,
)

_AXIS_STYLE = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "zerolinewidth": 2,
               "ticks": "", "automargin": True, "title": {"standoff": 15}}
#: A light look (white background, pale grid) of the few properties these figures show. Plotly's
#: built-in "plotly_white" looks the same, but validating that large template costs 15-25 ms per
#: figure, a sixth of the 150 ms budget of a canvas edit.
LIGHT_TEMPLATE = go.layout.Template(layout={
    "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"color": "#2a3f5f"}, "hovermode": "closest",
    "hoverlabel": {"align": "left"}, "xaxis": _AXIS_STYLE, "yaxis": _AXIS_STYLE,
})

_BASIS_WORDS = {"number": "number", "area": "area", "volume": "volume"}
_FIT_POINTS = 200
#: What a mouse drag on the overlay does: zoom, or draw the calibration line.
DRAG_MODES = ("zoom", "drawline")
#: Colour of the calibration line on the overlay, and of the data bar's frame.
LINE_COLOUR = "#00e5ff"
DATA_BAR_COLOUR = "#ffbf00"


def histogram_figure(
    values,
    *,
    bin_width,
    weights=None,
    quantity_label="ECD",
    unit="px",
    basis="number",
    fit=True,
    cumulative=True,
):
    """Histogram of a particle quantity with a log-normal fit and a cumulative curve.

    Parameters
    ----------
    values : array_like
        One value per particle, in ``unit``.
    bin_width : float
        Width of the bins, in ``unit``.
    weights : array_like, optional
        Final weight of each particle: the basis weights of
        :func:`app.analysis.stats.distribution_weights` times any edge-correction weights. When
        None, the bars show particle counts; otherwise percentages of the total weight.
    quantity_label : str, optional
        Name of the quantity for the axis and the hover text ("ECD", "Area", ...).
    unit : str, optional
        Unit of the values ("px", "nm", "nm²", or "" for ratios).
    basis : {"number", "area", "volume"}, optional
        Names the weighting in the y-axis title; the weights themselves come in ``weights``.
    fit : bool, optional
        Draw the log-normal fit (same weights), scaled to the bars.
    cumulative : bool, optional
        Draw the cumulative distribution (%) on a secondary y axis.

    Returns
    -------
    plotly.graph_objects.Figure
        Without finite values, an empty figure annotated "No particles found".
    """
    unit_suffix = f" ({unit})" if unit else ""
    unit_text = f" {unit}" if unit else ""
    # The figure is built from plain dicts and made in one step: each plotly update call validates
    # again, and this figure is rebuilt on every canvas edit.
    layout = {
        "template": LIGHT_TEMPLATE,
        "bargap": 0.02,
        "margin": {"l": 60, "r": 60, "t": 30, "b": 50},
        "legend": {"orientation": "h", "y": 1.08, "x": 0},
        "xaxis": {"title": {"text": f"{quantity_label}{unit_suffix}"}},
    }
    result = histogram(values, bin_width, weights)
    if result.heights.size == 0:
        layout["annotations"] = [{
            "text": "No particles found", "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5,
            "y": 0.5, "font": {"size": 16},
        }]
        layout["xaxis"]["visible"] = True
        layout["yaxis"] = {"title": {"text": "Particles"}, "visible": True}
        return go.Figure(layout=layout)

    by_count = weights is None and basis == "number"
    scale = float(result.counts.sum()) if by_count else 100.0
    heights = result.heights * scale
    edges = result.edges
    percent = result.heights * 100.0
    customdata = np.column_stack([edges[:-1], edges[1:], result.counts, percent])
    weight_word = _BASIS_WORDS.get(basis, basis)
    traces = [{
        "type": "bar",
        "x": (edges[:-1] + edges[1:]) / 2.0,
        "y": heights,
        "width": np.full(heights.size, bin_width),
        "customdata": customdata,
        "name": "Particles" if by_count else f"% by {weight_word}",
        "marker": {"color": "#4c78a8"},
        "hovertemplate": (
            f"{quantity_label} %{{customdata[0]:.4g}}–%{{customdata[1]:.4g}}{unit_text}<br>"
            "Particles: %{customdata[2]:d}<br>"
            f"Fraction by {weight_word}: %{{customdata[3]:.1f}}%<extra></extra>"
        ),
    }]
    layout["yaxis"] = {"title": {"text": "Particles" if by_count else f"Fraction by {weight_word} (%)"},
                       "rangemode": "tozero"}

    if fit:
        mu, sigma = lognormal_fit(values, weights)
        if np.isfinite(mu) and np.isfinite(sigma) and sigma > 0:
            x = np.linspace(max(edges[0], 0.0), edges[-1], _FIT_POINTS)
            traces.append({
                "type": "scatter",
                "x": x,
                "y": lognormal_pdf(x, mu, sigma) * scale * bin_width,
                "mode": "lines",
                "name": f"Log-normal fit (median {np.exp(mu):.3g}{unit_text}, σ {sigma:.2f})",
                "line": {"color": "#e45756", "width": 2},
                "hoverinfo": "skip",
            })

    if cumulative:
        traces.append({
            "type": "scatter",
            "x": edges,
            "y": np.r_[0.0, result.cumulative * 100.0],
            "mode": "lines",
            "name": "Cumulative",
            "yaxis": "y2",
            "line": {"color": "#54a24b", "width": 2, "dash": "dot"},
            "hovertemplate": f"≤ %{{x:.4g}}{unit_text}: %{{y:.1f}}%<extra></extra>",
        })
        layout["yaxis2"] = {
            "title": {"text": "Cumulative (%)"},
            "overlaying": "y",
            "side": "right",
            "range": [0, 100.5],
            "showgrid": False,
        }
    return go.Figure(data=traces, layout=layout)


def label_colour_image(label_image, mode="bw"):
    """RGB picture of a label image, for the paint canvas background.

    Parameters
    ----------
    label_image : (H, W) ndarray of int
        0 = background.
    mode : {"bw", "colour"}, optional
        White particles on black, or each particle in a colour of :data:`PALETTE` by id.

    Returns
    -------
    (H, W, 3) ndarray of uint8
    """
    labels = np.asarray(label_image)
    if mode == "bw":
        return np.repeat(((labels > 0) * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    if mode == "colour":
        rgb = PALETTE[(labels.astype(np.int64) - 1) % len(PALETTE)]
        rgb[labels == 0] = 0
        return rgb
    raise ValueError(f"mode must be 'bw' or 'colour', not {mode!r}.")


def overlay_figure(gray_uint8, label_image, *, opacity, mode="outline", data_bar_rows=None, line_px=None,
                   dragmode="zoom", scale_bar=None, label_colours=None, uirevision=None):
    """The image with the segmentation drawn over it, zoomable with equal aspect.

    Parameters
    ----------
    gray_uint8 : (H, W) ndarray of uint8, or str
        The image, or its PNG as a ``data:image/png;base64,...`` URL (reused as it is, which saves
        re-encoding it on every update).
    label_image : (H, W) ndarray of int
        Particle ids, 0 = background.
    opacity : float
        Opacity of the overlay, 0 to 1 (the ``opacity`` of its trace, so a slider can change it
        without redrawing).
    mode : {"outline", "fill"}, optional
        Particle boundaries only, or whole particles, each in its palette colour.
    data_bar_rows : (int, int), optional
        Rows [y0, y1) of the data bar, framed and labelled as not analysed.
    line_px : (x0, y0, x1, y1), optional
        The line drawn to calibrate, drawn editable in :data:`LINE_COLOUR`.
    dragmode : {"zoom", "drawline"}, optional
        What a mouse drag does: zoom, or draw the calibration line (anything else means zoom).
    scale_bar : (x0, x1, y, text), optional
        The scale bar measured in the image (columns [x0, x1) through row y) and its label as read,
        framed in :data:`DATA_BAR_COLOUR`.
    label_colours : (N, 3) ndarray of uint8, optional
        The colour of each particle id (row ``id``; row 0, the background, is not drawn), instead of the
        palette by id: particles coloured by class, say.
    uirevision : str, optional
        Plotly's ``uirevision``: while it stays the same, a redraw keeps the user's zoom.

    Returns
    -------
    plotly.graph_objects.Figure
        Two ``go.Image`` traces with PNG sources: the image, then the RGBA overlay.
    """
    labels = np.asarray(label_image)
    if isinstance(gray_uint8, str):
        image_source = gray_uint8
    else:
        gray = np.asarray(gray_uint8)
        if gray.shape[:2] != labels.shape:
            raise ValueError(f"Image {gray.shape[:2]} and labels {labels.shape} differ in size.")
        image_source = rgb_to_png_data_url(gray)
    if mode == "outline":
        painted = find_boundaries(labels, mode="inner") & (labels > 0)
    elif mode == "fill":
        painted = labels > 0
    else:
        raise ValueError(f"mode must be 'outline' or 'fill', not {mode!r}.")
    overlay = np.zeros(labels.shape + (4,), dtype=np.uint8)
    if label_colours is None:
        overlay[..., :3] = label_colour_image(labels, "colour")
    else:
        overlay[..., :3] = np.asarray(label_colours, dtype=np.uint8)[np.clip(labels, 0, len(label_colours) - 1)]
    overlay[..., 3] = painted * np.uint8(255)

    height, width = labels.shape
    fig = go.Figure()
    fig.add_trace(
        go.Image(
            source=image_source, name="image", hovertemplate="x %{x}, y %{y}<extra></extra>"
        )
    )
    fig.add_trace(
        go.Image(
            source=rgb_to_png_data_url(overlay), name="particles", opacity=float(opacity),
            hoverinfo="skip",
        )
    )
    fig.update_xaxes(
        range=[-0.5, width - 0.5], showticklabels=False, showgrid=False, zeroline=False
    )
    fig.update_yaxes(
        range=[height - 0.5, -0.5], showticklabels=False, showgrid=False, zeroline=False,
        scaleanchor="x", scaleratio=1, constrain="domain",
    )
    fig.update_layout(
        margin={"l": 0, "r": 0, "t": 0, "b": 0}, dragmode="zoom", template=LIGHT_TEMPLATE
    )
    if data_bar_rows:
        fig.add_shape(type="rect", x0=-0.5, x1=width - 0.5, y0=data_bar_rows[0] - 0.5,
                      y1=data_bar_rows[1] - 0.5, line={"color": DATA_BAR_COLOUR, "width": 2, "dash": "dash"})
        fig.add_annotation(x=0, y=data_bar_rows[0], xanchor="left", yanchor="bottom", showarrow=False,
                           text="data bar (not analysed)", font={"color": DATA_BAR_COLOUR})
    if scale_bar:
        x0, x1, y, text = scale_bar
        fig.add_shape(type="rect", x0=x0 - 0.5, x1=x1 - 0.5, y0=y - 3.5, y1=y + 3.5,
                      line={"color": DATA_BAR_COLOUR, "width": 2})
        fig.add_annotation(x=x0, y=y - 4, xanchor="left", yanchor="bottom", showarrow=False,
                           text=f"scale bar {x1 - x0} px" + (f", read {text!r}" if text else ""),
                           font={"color": DATA_BAR_COLOUR})
    if line_px:
        fig.add_shape(type="line", x0=line_px[0], y0=line_px[1], x1=line_px[2], y1=line_px[3], editable=True,
                      line={"color": LINE_COLOUR, "width": 2})
    fig.update_layout(dragmode=dragmode if dragmode in DRAG_MODES else "zoom",
                      newshape={"line": {"color": LINE_COLOUR, "width": 2}})
    if uirevision is not None:
        fig.update_layout(uirevision=uirevision)
    return fig


def canvas_mask_url(label_image, colour_mode, edit_version):
    """PNG data URL of the mask for the paint canvas, at full resolution.

    The edit version is written into a PNG text chunk, so that the canvas reloads (and clears its
    strokes) after every applied save, even when the mask did not change.
    """
    return rgb_to_png_data_url(label_colour_image(label_image, mode=colour_mode),
                               text={"saemi-edit-version": str(edit_version)})


#: Colours of the samples in the comparison figure, in turn.
SAMPLE_COLOURS = ("#4c78a8", "#e45756", "#54a24b", "#b279a2", "#f58518", "#72b7b2", "#9d755d", "#eeca3b")


def samples_figure(sizes, *, unit="nm", quantity_label="ECD"):
    """Samples compared: each sample's size histogram (percent of its particles, common bins, overlaid) and
    its cumulative curve on a secondary y axis.

    Parameters
    ----------
    sizes : mapping of str to array_like
        Each sample's pooled sizes, all in ``unit``.
    unit : str, optional
        Unit of the sizes.
    quantity_label : str, optional
        Name of the size for the axis.

    Returns
    -------
    plotly.graph_objects.Figure
        Without finite sizes, an empty figure annotated "No particles found".
    """
    cleaned = {name: np.asarray(values, dtype=float) for name, values in sizes.items()}
    cleaned = {name: values[np.isfinite(values)] for name, values in cleaned.items()}
    layout = {
        "template": LIGHT_TEMPLATE, "barmode": "overlay", "bargap": 0.02,
        "margin": {"l": 60, "r": 60, "t": 30, "b": 50}, "legend": {"orientation": "h", "y": 1.1, "x": 0},
        "xaxis": {"title": {"text": f"{quantity_label} ({unit})" if unit else quantity_label}},
        "yaxis": {"title": {"text": "Particles of the sample (%)"}, "rangemode": "tozero"},
        "yaxis2": {"title": {"text": "Cumulative (%)"}, "overlaying": "y", "side": "right", "range": [0, 100.5],
                   "showgrid": False},
    }
    everything = np.concatenate([*cleaned.values(), np.zeros(0)])
    if everything.size == 0:
        layout["annotations"] = [{"text": "No particles found", "showarrow": False, "xref": "paper",
                                  "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 16}}]
        return go.Figure(layout=layout)
    edges = np.histogram_bin_edges(everything, bins=min(40, max(5, int(np.sqrt(everything.size)))))
    traces = []
    for number, (name, values) in enumerate(cleaned.items()):
        if values.size == 0:
            continue
        colour = SAMPLE_COLOURS[number % len(SAMPLE_COLOURS)]
        counts, _ = np.histogram(values, bins=edges)
        ordered = np.sort(values)
        traces.append({"type": "bar", "x": (edges[:-1] + edges[1:]) / 2.0, "y": 100.0 * counts / values.size,
                       "width": np.diff(edges), "name": f"{name} (n = {values.size})", "opacity": 0.55,
                       "marker": {"color": colour}, "legendgroup": name,
                       "hovertemplate": f"{name}: %{{y:.1f}}% at %{{x:.4g}} {unit}<extra></extra>"})
        traces.append({"type": "scatter", "x": ordered, "y": 100.0 * np.arange(1, values.size + 1) / values.size,
                       "mode": "lines", "line": {"color": colour, "width": 2, "shape": "hv"}, "yaxis": "y2",
                       "name": f"{name}, cumulative", "legendgroup": name,
                       "hovertemplate": f"{name}: %{{y:.1f}}% ≤ %{{x:.4g}} {unit}<extra></extra>"})
    return go.Figure(data=traces, layout=layout)


def class_histogram_figure(values_by_class, *, bin_width, weights_by_class=None, quantity_label="ECD", unit="px",
                           basis="number"):
    """Histogram split by particle class: one bar trace per class, stacked, with the class names in the legend.

    Parameters
    ----------
    values_by_class : mapping of str to array_like
        Each class's values, in ``unit``.
    bin_width : float
        Width of the bins shared by all classes, in ``unit``.
    weights_by_class : mapping of str to array_like, optional
        Each class's particle weights (basis and edge correction). When None, the bars are counts; otherwise
        each bar is its share (%) of the total weight of all classes, so the stack adds up to the whole.
    quantity_label, unit, basis : str, optional
        As in :func:`histogram_figure`.

    Returns
    -------
    plotly.graph_objects.Figure
        Without finite values, an empty figure annotated "No particles found".
    """
    unit_suffix = f" ({unit})" if unit else ""
    weight_word = _BASIS_WORDS.get(basis, basis)
    by_count = weights_by_class is None
    layout = {
        "template": LIGHT_TEMPLATE, "barmode": "stack", "bargap": 0.02,
        "margin": {"l": 60, "r": 60, "t": 30, "b": 50}, "legend": {"orientation": "h", "y": 1.08, "x": 0},
        "xaxis": {"title": {"text": f"{quantity_label}{unit_suffix}"}},
        "yaxis": {"title": {"text": "Particles" if by_count else f"Fraction by {weight_word} (%)"},
                  "rangemode": "tozero"},
    }
    values = {name: np.asarray(v, dtype=float) for name, v in values_by_class.items()}
    weights = {name: (np.ones_like(v) if by_count else np.asarray(weights_by_class[name], dtype=float))
               for name, v in values.items()}
    everything = np.concatenate([np.zeros(0), *values.values()])
    whole = histogram(everything, bin_width, np.concatenate([np.zeros(0), *weights.values()]))
    if whole.heights.size == 0:
        layout["annotations"] = [{"text": "No particles found", "showarrow": False, "xref": "paper",
                                  "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 16}}]
        return go.Figure(layout=layout)
    edges = whole.edges
    finite = {name: np.isfinite(v) & np.isfinite(weights[name]) for name, v in values.items()}
    total = sum(float(weights[name][keep].sum()) for name, keep in finite.items()) or 1.0
    traces = []
    for number, (name, v) in enumerate(values.items()):
        keep = finite[name]
        sums, _ = np.histogram(v[keep], bins=edges, weights=weights[name][keep])
        heights = sums if by_count else 100.0 * sums / total
        traces.append({
            "type": "bar", "x": (edges[:-1] + edges[1:]) / 2.0, "y": heights,
            "width": np.full(heights.size, bin_width), "name": f"{name} (n = {int(keep.sum())})",
            "marker": {"color": SAMPLE_COLOURS[number % len(SAMPLE_COLOURS)]}, "legendgroup": name,
            "hovertemplate": (f"{name}: %{{y:.4g}}{'' if by_count else '%'} at %{{x:.4g}}"
                              f"{' ' + unit if unit else ''}<extra></extra>"),
        })
    return go.Figure(data=traces, layout=layout)
