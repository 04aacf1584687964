import numpy as np
import pytest

from securegal.data.datasets import DATASETS, load_csv, load_dataset
from securegal.data.split import contiguous_blocks, image_blocks, split_rows
from securegal.errors import ConfigError


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_offline_datasets_load(name):
    d = load_dataset(name)
    assert d.X.shape[0] == len(d.y) and np.isfinite(d.X).all()
    assert d.task in ("classification", "regression")


def test_blob_matches_the_reference_setup():
    d = load_dataset("blob")
    assert d.X.shape == (100, 10) and d.n_classes == 10


def test_splits_are_seeded_disjoint_and_complete():
    d = load_dataset("wine")
    a, b = split_rows(d, 3, 0.2, 0.1), split_rows(d, 3, 0.2, 0.1)
    np.testing.assert_array_equal(a.test, b.test)
    allids = np.concatenate([a.train, a.validation, a.test])
    assert len(np.unique(allids)) == len(allids) == len(d.y)
    assert not np.array_equal(split_rows(d, 4).test, a.test)


def test_contiguous_blocks_give_the_remainder_to_the_last_party():
    blocks = contiguous_blocks(10, 4)
    assert [len(b.columns) for b in blocks] == [2, 2, 2, 4]
    with pytest.raises(ConfigError, match="only 3 features"):
        contiguous_blocks(3, 4)


def test_image_patches_tile_the_image():
    blocks = image_blocks((28, 28), 8)
    assert [b.patch_shape for b in blocks] == [(14, 7)] * 8
    cols = np.sort(np.concatenate([b.columns for b in blocks]))
    np.testing.assert_array_equal(cols, np.arange(784))
    with pytest.raises(ConfigError, match="1, 2, 4 or 8"):
        image_blocks((8, 8), 3)


def test_csv_loading_and_errors(tmp_path):
    rows = "\n".join(f"{i},{i * 2.5},{i % 2}" for i in range(20))
    good = tmp_path / "good.csv"
    good.write_text("a,b,label\n" + rows + "\n")
    d = load_csv(good, "label")
    assert d.task == "classification" and d.X.shape == (20, 2)
    assert load_csv(good, "b").task == "regression"
    with pytest.raises(ConfigError, match="has no target column 'y'"):
        load_csv(good, "y")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,label\n" + "\n".join(["1,0"] * 12 + ["x,1"]) + "\n")
    with pytest.raises(ConfigError, match="column 'a' mixes numbers .* and text \\('x'\\)"):
        load_csv(bad, "label")
    nan = tmp_path / "nan.csv"
    nan.write_text("a,label\n" + "\n".join([f"{i},{i % 2}" for i in range(12)] + ["nan,1"]) + "\n")
    imputed = load_csv(nan, "label")  # the median, and an indicator column
    assert imputed.columns == ("a", "a=<missing>") and imputed.X[-1].tolist() == [5.5, 1.0]
    assert imputed.encoding["imputed"] == {"a": 1}
    with pytest.raises(ConfigError, match="column 'a' is missing in 1 rows"):
        load_csv(nan, "label", missing="refuse")
    with pytest.raises(ConfigError, match="no such file"):
        load_csv(tmp_path / "none.csv", "label")
