import numpy as np
import pytest

from model import data
from model.preprocess import TARGET_DIAMETER_PX, median_diameter_px, normalize_percentile
from tests.model.conftest import two_touching_discs


def test_committed_split_is_disjoint_and_a_fifth():
    train, val = data.read_split("train"), data.read_split("val")
    assert not set(train) & set(val)
    assert len(val) >= 0.2 * (len(train) + len(val))


def test_split_is_reproducible_from_its_seed():
    names = [f"img{i:03d}" for i in range(50)]
    first = data.make_split(names, seed=0)
    assert first == data.make_split(names, seed=0)
    assert first != data.make_split(names, seed=1)
    assert len(first[1]) == 10


def test_committed_split_matches_the_dataset_when_present():
    root = data.data_root()
    if not (root / data.EMPS_FOLDER).is_dir():
        pytest.skip(f"dataset folder {root / data.EMPS_FOLDER} not present on this machine")
    train, val = data.make_split(data.list_names(root), seed=0)
    assert (train, val) == (data.read_split("train"), data.read_split("val"))


def test_prepared_sample_has_target_particle_size():
    labels = two_touching_discs(shape=(200, 300), radius=40)
    image = (labels > 0).astype(np.float32) * 200 + 20
    sample = data.prepare_sample(image, labels, "discs", min_side_px=256)
    assert min(sample.image.shape) >= 256
    assert abs(median_diameter_px(sample.labels) - TARGET_DIAMETER_PX) < 0.15 * TARGET_DIAMETER_PX
    assert sample.targets.shape == sample.image.shape + (2,)
    wide = data.prepare_sample(image, labels, "discs", target_diameter_px=32.0)
    assert abs(median_diameter_px(wide.labels) - 32.0) < 0.15 * 32.0


def test_crops_are_augmented_and_shaped():
    labels = two_touching_discs(shape=(300, 300), radius=30)
    sample = data.prepare_sample((labels > 0) * 1.0, labels, "discs", min_side_px=256)
    rng = np.random.default_rng(0)
    crops = [data.random_crop(sample, rng, 64) for _ in range(8)]
    assert all(x.shape == (64, 64, 1) and y.shape == (64, 64, 2) for x, y in crops)
    assert all(0.0 <= x.min() and x.max() <= 1.0 for x, _ in crops)
    assert len({float(x.mean()) for x, _ in crops}) == 8


def test_normalisation_maps_percentiles_to_unit_range():
    image = np.linspace(0, 1000, 10_000, dtype=np.float32).reshape(100, 100)
    normalised = normalize_percentile(image)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    assert normalised[50, 0] == pytest.approx(0.5, abs=0.01)
    assert normalize_percentile(np.full((5, 5), 3.0)).max() == 0.0


def test_data_root_follows_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path))
    assert data.data_root() == tmp_path
    assert data.data_root("/elsewhere") == data.Path("/elsewhere")
    monkeypatch.delenv(data.DATA_ROOT_ENV)
    assert data.data_root() == data.REPO_ROOT.parent / "shared" / "datasets"


def test_area_weighted_median_resists_many_tiny_detections():
    labels = np.zeros((100, 100), np.int32)
    labels[10:50, 10:50] = 1  # one 40 x 40 particle
    for k in range(5):  # five 4 x 4 specks
        labels[60:64, 10 * k:10 * k + 4] = k + 2
    assert median_diameter_px(labels, min_area_px=4) == pytest.approx(2 * np.sqrt(16 / np.pi))
    assert median_diameter_px(labels, min_area_px=4, area_weighted=True) == pytest.approx(2 * np.sqrt(1600 / np.pi))
    assert median_diameter_px(np.zeros((5, 5), np.int32)) is None


def _disc_samples():
    labels = two_touching_discs(shape=(300, 300), radius=30)
    return [data.prepare_sample((labels > 0) * 0.8 + 0.1, labels, name, min_side_px=256) for name in ("a", "b")]


def test_worker_processes_interleave_reproducible_streams():
    samples = _disc_samples()
    options = {"batch_size": 2, "crop_size_px": 32, "synthetic_fraction": 0.0}
    workers = data.parallel_batches(samples, workers=2, seed=5, **options)
    got = [next(workers) for _ in range(4)]
    workers.close()
    first, second = (data.training_batches(samples, seed=s, **options) for s in (5, 5 + 7919))
    expected = [next(first), next(second), next(first), next(second)]
    for (x, y), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    assert not np.array_equal(got[0][0], got[1][0])


def test_prepared_samples_are_cached_at_eight_bits(tmp_path):
    samples = _disc_samples()
    path = tmp_path / "cache.npz"
    data.save_samples(path, samples, TARGET_DIAMETER_PX)
    loaded = data.load_samples(path, ["a", "b"], TARGET_DIAMETER_PX)
    assert [s.name for s in loaded] == ["a", "b"]
    for original, copy in zip(samples, loaded):
        assert np.abs(original.image - copy.image).max() <= 0.5 / 255 + 1e-6
        np.testing.assert_array_equal(original.labels, copy.labels)
        np.testing.assert_allclose(original.targets, copy.targets)
    assert data.load_samples(path, ["a"], TARGET_DIAMETER_PX) is None
    assert data.load_samples(path, ["a", "b"], 2 * TARGET_DIAMETER_PX) is None
    assert data.load_samples(tmp_path / "missing.npz", ["a", "b"], TARGET_DIAMETER_PX) is None


def test_validation_crops_at_other_zooms_show_particles_that_much_smaller_or_larger():
    from model.synthetic import generate_sample

    sample = generate_sample(4, 768, 768, median_diameter_px=20, sigma_log=0.0, shape="round",
                             arrangement="isolated", data_bar=False, scale_bar=False, letters=False)
    prepared = data.prepare_sample(sample.image.astype(np.float32), sample.labels, "x", min_side_px=256)
    images, targets, labels = data.validation_crops([prepared], per_image=3, size_px=128, zooms=(0.5, 1.0, 2.0))
    assert images.shape == (9, 128, 128, 1) and targets.shape == (9, 128, 128, 2) and labels.shape == (9, 128, 128)
    sizes = [np.median([median_diameter_px(lab) for lab in labels[k:k + 3] if lab.any()]) for k in (0, 3, 6)]
    assert sizes[0] == pytest.approx(sizes[1] / 2, rel=0.15) and sizes[2] == pytest.approx(sizes[1] * 2, rel=0.15)
    assert np.array_equal(targets[..., 0] > 0.5, labels > 0)  # the targets follow the resized labels
