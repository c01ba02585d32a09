"""The model folder and its settings: one frozen, typed view of ``config.json``.

A model folder holds the weights (``saemi_unet.keras``), their settings (``config.json``) and the scale
scorer that ``config.json`` names (``scale_selector.json``). Every default of those settings lives in
the dataclasses below; a key missing from ``config.json`` takes that default. The folder itself comes
from ``$SAEMI_MODEL_DIR``, else the folder of this package, where the shipped weights are.

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
#: The learned scale scorer, beside ``config.json`` (named there by ``input_scale.selector_file``).
SELECTOR_NAME = "scale_selector.json"
#: The ``kind`` of the octave method's candidate scorer file (:mod:`model.candidate_fit`).
CANDIDATE_SCORER_KIND = "octave_candidates"
#: How the network can run (``inference_backend``): TensorFlow float32, or the int8 copy of :mod:`model.quantize`.
BACKENDS = ("tensorflow", "int8")
#: How the scale is found (``input_scale.method``): see :class:`ScaleConfig`.
SCALE_METHODS = ("learned", "octaves")


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
    outputs: tuple[str, ...] = ("foreground_probability", "centre_map")


@dataclass(frozen=True)
class NormalisationConfig:
    """Per-image intensity normalisation: these percentiles are mapped to 0 and 1, then clipped."""

    method: str = "per-image percentiles mapped to 0 and 1, clipped to [0, 1]"
    percentiles: tuple[float, float] = (1.0, 99.0)


@dataclass(frozen=True)
class ScaleConfig:
    """How the scale the network sees the image at is chosen (see :class:`model.segmenter.UNetSegmenter`).

    The network was trained on particles about ``target_diameter_px`` across. Optional settings
    (None) switch their step off: without ``selector`` the confidence rule chooses the scale; without
    ``ambiguity_logit_margin`` or ``ambiguity_peak_margin`` no uncertain-size note is written; without
    ``estimate_window_px`` the pyramid always sees the whole image.
    """

    target_diameter_px: float = 16.0
    #: "learned": one scale per image, chosen among pyramid passes; "octaves": :mod:`model.multiscale`.
    method: str = "learned"
    estimate_max_side_px: int = 512
    estimate_max_scale: float = 2.0
    min_scale: float = 0.05
    max_scale: float = 4.0
    max_scaled_pixels: int = 67_108_864
    rescale_tolerance: float = 1.3
    estimate_levels: int = 7
    accept_peak: float = 0.7
    accept_max_ratio: float | None = None
    verify_candidates: int = 1
    ambiguity_peak_margin: float | None = None
    ambiguity_scale_ratio: float = 1.5
    estimate_min_side_px: int = 32
    pyramid_min_side_px: int = 16
    magnify_steps: int = 2
    ambiguity_logit_margin: float | None = None
    accept_start_peak: float | None = None
    #: The learned scorer's file: with method "learned" the pass scorer (:mod:`model.scale_fit`), with
    #: "octaves" and a size map the candidate scorer (:mod:`model.candidate_fit`).
    selector_file: str | None = None
    #: The scorer read from ``selector_file`` (JSON object), or None.
    selector: Mapping[str, Any] | None = None
    estimate_window_px: int | None = None
    magnify_below: float = 1.0
    magnify_further_steps: int = 0


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
        if self.input_scale.method not in SCALE_METHODS:
            raise ValueError(f"input_scale.method must be one of {', '.join(SCALE_METHODS)}")
        scorer = self.input_scale.selector
        if scorer is not None:
            is_candidate_scorer = scorer.get("kind") == CANDIDATE_SCORER_KIND
            if self.input_scale.method == "octaves" and "size_map" in self.architecture.outputs \
                    and not is_candidate_scorer:
                raise ValueError("with a size map, input_scale.method octaves needs the candidate scorer of "
                                 "python -m model.candidate_fit as its selector_file")
            if self.input_scale.method == "learned" and is_candidate_scorer:
                raise ValueError("input_scale.method learned needs the pass scorer of python -m model.scale_fit, "
                                 "not the octave method's candidate scorer")

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
        """JSON-ready settings (the loaded ``selector`` left out: it has its own file)."""
        data = dataclasses.asdict(self)
        data["input_scale"].pop("selector")
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
    """The typed settings of the model folder ``model_dir``, with the scale scorer its
    ``input_scale.selector_file`` names loaded into ``input_scale.selector``.

    Raises
    ------
    ModelLoadError
        When either file is missing, is not valid JSON, or holds settings of the wrong kind.
    """
    folder = Path(model_dir)
    data = read_json(folder / CONFIG_NAME, "model settings file")
    scaling = dict(data.get("input_scale", {}))
    if scaling.get("selector_file"):
        scaling["selector"] = read_json(folder / scaling["selector_file"], "scale selector file")
        data = {**data, "input_scale": scaling}
    return ModelConfig.from_dict(data)


def name_scorer_file(model_dir: str | os.PathLike, file_name: str, method: str | None = None) -> None:
    """Name ``file_name`` (beside it) as the scorer in ``model_dir``'s ``config.json``
    (``input_scale.selector_file``), and set ``input_scale.method`` when ``method`` is given."""
    path = Path(model_dir) / CONFIG_NAME
    settings = json.loads(path.read_text())
    settings["input_scale"].pop("selector", None)
    settings["input_scale"]["selector_file"] = file_name
    if method is not None:
        settings["input_scale"]["method"] = method
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
