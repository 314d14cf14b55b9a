"""The packaged demo data, and CLINC150 from ../shared/data when present."""

import numpy as np

from embedlab.data.datasets import OOS_LABEL, load_clinc150, load_demo
from embedlab.data.embedding_set import EmbeddingSet
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.scale.encoding import encode_file


def test_demo_splits_are_disjoint_and_balanced():
    train, test = load_demo("train"), load_demo("test")
    assert not set(train.texts) & set(test.texts)
    counts = {lab: train.labels.count(lab) for lab in set(train.labels)}
    assert counts.pop(OOS_LABEL) == 10
    assert len(counts) == 12 and set(counts.values()) == {14}
    assert test.labels.count(OOS_LABEL) == 30
    assert set(test.labels) == set(train.labels)


def test_clinc150_reader(shared_data):
    shared_data("clinc150", "data_full.json")
    table = load_clinc150("train", "oos_test")
    assert len(table) == 15000 + 1000
    assert len(set(table.labels)) == 151 and table.labels.count("oos") == 1000
    assert set(table.metadata.column("split").to_pylist()) == {"train", "oos_test"}


def test_encode_clinc150_sample(tmp_path, st_encoder_uncached, shared_data):
    path = shared_data("clinc150", "data_full.json")
    enc = SentenceTransformerEncoder(cache=False)
    enc._model = st_encoder_uncached.model
    es, _ = encode_file(path, enc, splits=["val"])
    assert es.shape == (3000, 384)
    sub = es[0:300]
    saved = EmbeddingSet.load(sub.save(tmp_path / "s"))
    np.testing.assert_array_equal(saved.vectors, sub.vectors)
    # Same-intent pairs are closer than different-intent pairs on average.
    x, y = saved.vectors, saved.labels
    sims = x @ x.T
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    assert sims[same].mean() > sims[~same].mean() + 0.2
