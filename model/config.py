"""The model folder and its settings: one frozen, typed view of ``config.json``.

A model folder holds the weights (``saemi_unet.keras``), their settings (``config.json``) and the
candidate scorer that ``config.json`` names (``candidate_scorer.json``, :mod:`model.candidate_fit`).
Every default of those settings lives in the dataclasses below; a key missing from ``config.json`` takes
that default. The folder itself comes from ``$SAEMI_MODEL_DIR``, else the folder of this package, where
the shipped weights are.

Examples
--------
>>> ThresholdConfig().foreground
0.5
>>> ModelConfig.from_dict({"thresholds": {"centre": 0.6}}).thresholds.centre
0.6
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Environment variable naming the folder with the weights and ``config.json``.
MODEL_DIR_ENV = "SAEMI_MODEL_DIR"
WEIGHTS_NAME = "saemi_unet.keras"
CONFIG_NAME = "config.json"
#: The candidate scorer, beside ``config.json`` (named there by ``input_scale.scorer_file``).
SCORER_NAME = "candidate_scorer.json"
#: The ``kind`` of the octave method's candidate scorer file (:mod:`model.candidate_fit`).
CANDIDATE_SCORER_KIND = "octave_candidates"
#: How the network can run (``inference_backend``): TensorFlow float32, or the int8 copy of :mod:`model.quantize`.
BACKENDS = ("tensorflow", "int8")
#: The network's output maps, in order: particle probability, centre map and size map
#: (:func:`model.preprocess.encode_size`).
OUTPUTS = ("foreground_probability", "centre_map", "size_map")


class ModelLoadError(RuntimeError):
    """The segmentation model's files are missing or corrupted; the message is a sentence for the user."""


def default_model_dir() -> Path:
    """``$SAEMI_MODEL_DIR`` if set, else the folder of this package (where the weights ship)."""
    return Path(os.environ.get(MODEL_DIR_ENV) or Path(__file__).resolve().parent)


@dataclass(frozen=True)
class ArchitectureConfig:
    """How to rebuild the network (:func:`model.unet.build_unet`)."""

    factory: str = "model.unet.build_unet"
    filters: tuple[int, ...] = (20, 40, 80, 160)
    convs_per_block: int = 2
    input_channels: int = 1
    outputs: tuple[str, ...] = OUTPUTS


@dataclass(frozen=True)
class NormalisationConfig:
    """Per-image intensity normalisation: these percentiles are mapped to 0 and 1, then clipped."""

    method: str = "per-image percentiles mapped to 0 and 1, clipped to [0, 1]"
    percentiles: tuple[float, float] = (1.0, 99.0)


@dataclass(frozen=True)
class ScaleConfig:
    """The scales the network sees the image at (see :class:`model.segmenter.UNetSegmenter`).

    Without a particle diameter from the user, the network runs at the octaves of the image, full
    resolution down to a short side of :data:`model.multiscale.MIN_SIDE_PX`, and the candidate scorer
    (``scorer_file``, read into ``scorer``) chooses among their instances (:mod:`model.multiscale`). With
    one, the image is resized once so that it appears ``target_diameter_px`` across, the size training
    centres its crops on, within ``min_scale`` to ``max_scale``. No pass is larger than
    ``max_scaled_pixels``.
    """

    target_diameter_px: float = 16.0
    min_scale: float = 0.05
    max_scale: float = 4.0
    max_scaled_pixels: int = 67_108_864
    #: The candidate scorer's file (:mod:`model.candidate_fit`), beside ``config.json``.
    scorer_file: str | None = None
    #: The scorer read from ``scorer_file`` (JSON object), or None.
    scorer: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ThresholdConfig:
    """Post-processing of the two output maps (:func:`model.postprocess.maps_to_instances`).

    Areas are in network pixels; ``postprocess_upsampling`` is the resolution of the watershed
    relative to the network's (capped at the image's own).
    """

    foreground: float = 0.5
    centre: float = 0.5
    min_marker_area_px: int = 4
    min_area_px: int = 4
    postprocess_upsampling: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    """Everything ``config.json`` says about one set of weights.

    ``training`` is the free-form record of how the weights were made (commands, data, seeds); it
    is kept for provenance and never read by the code.
    """

    version: str = "unknown"
    weights: str = WEIGHTS_NAME
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)
    input_scale: ScaleConfig = field(default_factory=ScaleConfig)
    tile_px: int = 576
    overlap_px: int = 32
    batch_size: int = 1
    test_time_views: int = 1
    inference_backend: str = "tensorflow"
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    training: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.inference_backend not in BACKENDS:
            raise ValueError(f"inference_backend must be one of {', '.join(BACKENDS)}")
        if tuple(self.architecture.outputs) != OUTPUTS:
            raise ValueError(f"architecture.outputs must be {', '.join(OUTPUTS)}: a network without a size map "
                             "cannot be fused across scales")
        scorer = self.input_scale.scorer
        if scorer is not None and scorer.get("kind") != CANDIDATE_SCORER_KIND:
            raise ValueError("input_scale.scorer_file must name the candidate scorer of python -m model.candidate_fit")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """The configuration from the parsed JSON; missing keys take their defaults.

        Raises
        ------
        ModelLoadError
            For an unknown key or a value of the wrong kind.
        """
        try:
            sections = {"architecture": ArchitectureConfig, "normalisation": NormalisationConfig,
                        "input_scale": ScaleConfig, "thresholds": ThresholdConfig}
            values = dict(data)
            for key, section in sections.items():
                if key in values:
                    values[key] = _build(section, values[key])
            return _build(cls, values)
        except (TypeError, ValueError) as err:
            raise ModelLoadError(f"The model settings are not valid ({err}).") from err

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the loaded ``scorer`` left out: it has its own file)."""
        data = dataclasses.asdict(self)
        data["input_scale"].pop("scorer")
        return json.loads(json.dumps(data))

    def replace(self, **sections: Mapping[str, Any]) -> ModelConfig:
        """A copy with entries of the named sections changed, e.g. ``replace(thresholds={"centre": 0.6})``."""
        changes = {name: dataclasses.replace(getattr(self, name), **values) for name, values in sections.items()}
        return dataclasses.replace(self, **changes)


def _build(cls, values: Mapping[str, Any]):
    """``cls(**values)`` with lists turned into tuples where the field is a tuple; unknown keys refused."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} in {cls.__name__}")
    kwargs = {}
    for key, value in values.items():
        if isinstance(value, list) and "tuple" in str(names[key].type):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def read_config(model_dir: str | os.PathLike) -> ModelConfig:
    """The typed settings of the model folder ``model_dir``, with the candidate scorer its
    ``input_scale.scorer_file`` names loaded into ``input_scale.scorer``.

    Raises
    ------
    ModelLoadError
        When either file is missing, is not valid JSON, or holds settings of the wrong kind.
    """
    folder = Path(model_dir)
    data = read_json(folder / CONFIG_NAME, "model settings file")
    scaling = dict(data.get("input_scale", {}))
    if scaling.get("scorer_file"):
        scaling["scorer"] = read_json(folder / str(scaling["scorer_file"]), "candidate scorer file")
        data = {**data, "input_scale": scaling}
    return ModelConfig.from_dict(data)


def name_scorer_file(model_dir: str | os.PathLike, file_name: str) -> None:
    """Name ``file_name`` (beside it) as the candidate scorer in ``model_dir``'s ``config.json``
    (``input_scale.scorer_file``)."""
    path = Path(model_dir) / CONFIG_NAME
    settings = json.loads(path.read_text())
    settings.setdefault("input_scale", {}).pop("scorer", None)
    settings["input_scale"]["scorer_file"] = file_name
    path.write_text(json.dumps(settings, indent=2) + "\n")


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; ``what`` names the file in the error's sentence.

    Raises
    ------
    ModelLoadError
        When the file is missing or corrupted.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelLoadError(f"The {what} {path.name} is missing; reinstall SAEMI's model folder.") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"The {what} {path.name} is corrupted ({err}).") from err
    if not isinstance(data, dict):
        raise ModelLoadError(f"The {what} {path.name} is corrupted (not a JSON object).")
    return data
