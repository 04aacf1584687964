import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from securegal.errors import ConfigError
from securegal.learners.linear import LinearLearner
from securegal.learners.streamed import StreamedRidge


def _write(path, X, **extra):
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    pq.write_table(pa.table({**columns, **extra}), path, row_group_size=700)
    return [f"x{j}" for j in range(X.shape[1])]


def test_streaming_equals_the_in_memory_fit(tmp_path):
    """Batches of 1000 rows over row groups of 700, columns with large offsets: the same z-scoring,
    the same ridge model and the same train predictions as the in-memory l2 fit."""
    rng = np.random.default_rng(0)
    n, d = 5003, 6
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.uniform(-1e4, 1e4, size=d)
    X[:, 2] = 7.0  # a constant column: std 0 becomes 1, as FeatureParty does
    cols = _write(tmp_path / "t.parquet", X)
    r = rng.normal(size=(n, 2))
    streamed = StreamedRidge(tmp_path / "t.parquet", cols, lam=1e-3, batch_rows=1000)

    std = X.std(axis=0)
    std[std == 0] = 1.0
    Z = (X - X.mean(axis=0)) / std
    model, preds = LinearLearner(lam=1e-3).bind(Z).fit_predict(r)
    np.testing.assert_allclose(streamed.mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(streamed.std, std, rtol=1e-9)
    got_model, got_preds = streamed.fit_predict(r)
    np.testing.assert_allclose(got_model.coef, model.coef, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(got_preds, preds, rtol=1e-7, atol=1e-9)
    assert streamed.n == n and got_preds.shape == (n, 2)


def test_bad_tables_are_refused_by_name(tmp_path):
    X = np.random.default_rng(1).normal(size=(50, 2))
    cols = _write(tmp_path / "t.parquet", X, city=np.array(["a"] * 50))
    with pytest.raises(ConfigError, match="no column 'x9'"):
        StreamedRidge(tmp_path / "t.parquet", ["x9"])
    with pytest.raises(ConfigError, match="'city'.*not numeric"):
        StreamedRidge(tmp_path / "t.parquet", ["city"])
    with pytest.raises(ConfigError, match="no Parquet file"):
        StreamedRidge(tmp_path / "missing.parquet", cols)
    with pytest.raises(ConfigError, match="batch_rows"):
        StreamedRidge(tmp_path / "t.parquet", cols, batch_rows=0)
    with pytest.raises(ValueError, match="n=50"):
        StreamedRidge(tmp_path / "t.parquet", cols).fit_predict(np.zeros((49, 1)))
