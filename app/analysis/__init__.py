"""The pure analysis core: decoding, calibration, labels, measurement, statistics (never Dash or TensorFlow)."""

#: Version of SAEMI, written into the provenance of every result.
__version__ = "1.0.0"
