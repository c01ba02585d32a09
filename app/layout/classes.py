"""The particle classes panel: class names, the class of the next clicks, and the examples per class."""

from __future__ import annotations

from dash import dcc, html

from app.layout import ids


def classes_panel() -> html.Div:
    """Type class names, pick the active class, and click particles of it on the overlay."""
    return html.Div(
        [
            html.H3("Particle classes"),
            html.Div(
                "Type class names separated by commas, choose a class, then click particles of that class on "
                "the overlay above. From one clicked particle per class on, a random forest gives every particle "
                "a class: the histogram, the statistics and the particles CSV are then split by class. Click a "
                "particle again with another class chosen to correct it.",
                className="hint",
            ),
            html.Div([
                html.Div([html.Label("Class names", className="field-label"),
                          dcc.Input(id=ids.CLASS_NAMES, type="text", debounce=True, placeholder="e.g. sphere, rod")],
                         className="field"),
                html.Div([html.Label("Clicks label particles as", className="field-label"),
                          dcc.RadioItems(id=ids.CLASS_ACTIVE, options=[], value=0, inline=True)],
                         className="field"),
            ], className="controls"),
            html.Div(id=ids.CLASS_INFO, className="hint", role="status"),
        ],
        className="panel",
    )
