"""SAEMI: Size Analysis of Electron Microscopy Images."""

__version__ = "1.0.0"
