"""Errors that a user can cause, each carrying one sentence a scientist understands."""


class SaemiInputError(ValueError):
    """Raised for bad input the user can fix: unreadable file, wrong scale, bad canvas data.

    ``str(err)`` is a complete sentence that the UI shows as it is and the CLI prints on one line.
    """

