"""Between the page and the core: per-session state and the steps that change it.

The browser keeps each session's state in ``dcc.Store`` components; :mod:`app.session.stores` gives
each store a typed, checked payload. The other modules are plain Python (no Dash) and are tested
without a browser; each callback calls one of their functions:

| module | concern |
|---|---|
| :mod:`~app.session.stores` | what the browser stores, typed and checked |
| :mod:`~app.session.start` | uploads, the demo, the page's settings and starting an analysis |
| :mod:`~app.session.edits` | the canvas edit history (apply, undo, redo) |
| :mod:`~app.session.results` | the calibration in force and the current labels and table |
| :mod:`~app.session.display` | the inputs of the histogram, statistics, overlay and canvas |
| :mod:`~app.session.downloads` | the CSV and label-image downloads with their provenance |
| :mod:`~app.session.guard` | failures turned into sentences, so the server keeps serving |
"""
