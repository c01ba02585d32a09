"""SAEMI: Size Analysis of Electron Microscopy Images."""

from app.analysis import __version__

__all__ = ["__version__"]
