import csv

import numpy as np
from PIL import Image

from model import evaluate


class OracleSegmenter:
    """Returns the ground truth it was given, to check the evaluation plumbing."""

    name = "oracle"
    version = "test"

    def __init__(self, truth):
        self.truth = truth

    def segment(self, gray, *, progress=None, notes=None):
        return self.truth[round(float(gray[0, 0]) * 255)]


def write_case(folder, name, labels, marker):
    image = (labels > 0).astype(np.uint8) * 200
    image[0, 0] = marker  # lets the oracle find its answer
    (folder / "images").mkdir(exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{name}.png")
    Image.fromarray(labels.astype(np.uint16)).save(folder / "masks" / f"{name}.png")


def test_folder_evaluation_pairs_images_with_masks_and_scores(tmp_path):
    truth = {}
    for marker, name in ((1, "a"), (2, "b")):
        labels = np.zeros((40, 40), np.int32)
        labels[5:20, 5:20] = 1
        labels[22:35, 22:35 + marker] = 2
        truth[marker] = labels
        write_case(tmp_path, name, labels, marker)
    (tmp_path / "images" / "orphan.png").write_bytes((tmp_path / "images" / "a.png").read_bytes())
    cases = list(evaluate.folder_cases(tmp_path / "images", tmp_path / "masks"))
    assert [c[0] for c in cases] == ["a", "b"]
    perfect = evaluate.evaluate(cases, {"oracle": OracleSegmenter(truth)}, out=open("/dev/null", "w"))
    summary = evaluate.summarize(perfect)["oracle"]
    assert summary["obj_f1"] == 1.0 and summary["dice"] == 1.0 and summary["ecd_err"] == 0.0
    assert summary["n_images"] == 2
    empty = {k: np.zeros_like(v) for k, v in truth.items()}
    nothing = evaluate.summarize(evaluate.evaluate(cases, {"oracle": OracleSegmenter(empty)},
                                                   out=open("/dev/null", "w")))["oracle"]
    assert nothing["obj_f1"] == 0.0 and nothing["count_err"] == 1.0


def test_cli_scores_the_classical_segmenter_on_a_synthetic_set(tmp_path, capsys):
    out_csv = tmp_path / "scores.csv"
    status = evaluate.main(["--synthetic", "2", "--seed", "5", "--size", "192", "--segmenter", "classical",
                            "--csv", str(out_csv)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "synthetic_5" in printed and "synthetic_6" in printed and "mean over 2 images" in printed
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["image"] for r in rows] == ["synthetic_5", "synthetic_6"]
    assert all(0.0 <= float(r["dice"]) <= 1.0 and int(r["n_true"]) > 0 for r in rows)


def test_cli_requires_a_data_source(capsys):
    import pytest

    with pytest.raises(SystemExit):
        evaluate.main([])
    assert "--synthetic" in capsys.readouterr().err


class DoubtfulSegmenter(OracleSegmenter):
    """The oracle, but it misses everything and says so with a note on the images marked 2."""

    def segment(self, gray, *, progress=None, notes=None):
        labels = super().segment(gray)
        if round(float(gray[0, 0]) * 255) == 2:
            notes.append("The particle size was hard to estimate.")
            return np.zeros_like(labels)
        return labels


def test_images_with_a_note_are_counted_and_scored_apart(tmp_path):
    truth = {}
    for marker, name in ((1, "a"), (2, "b"), (1, "c")):
        labels = np.zeros((40, 40), np.int32)
        labels[5:20, 5:20] = 1
        truth[marker] = labels
        write_case(tmp_path, name, labels, marker)
    cases = list(evaluate.folder_cases(tmp_path / "images", tmp_path / "masks"))
    rows = evaluate.evaluate(cases, {"doubtful": DoubtfulSegmenter(truth)}, out=open("/dev/null", "w"))
    assert [r["noted"] for r in rows] == [0, 1, 0]
    (line,) = evaluate.noted_lines(rows)
    assert "1 noted: obj_f1=0.000" in line and "2 others: obj_f1=1.000" in line
    assert evaluate.noted_lines(evaluate.evaluate(cases, {"oracle": OracleSegmenter(truth)},
                                                  out=open("/dev/null", "w"))) == []
