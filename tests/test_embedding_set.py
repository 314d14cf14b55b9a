import json

import numpy as np
import pyarrow as pa
import pytest

from embedlab.core.errors import StoreError, ValidationError
from embedlab.data.embedding_set import EmbeddingSet, Provenance


@pytest.fixture
def es() -> EmbeddingSet:
    rng = np.random.default_rng(0)
    return EmbeddingSet(
        rng.normal(size=(6, 4)),
        ids=[f"r{i}" for i in range(6)],
        labels=["a", "b", "a", "c", "b", "a"],
        texts=[f"text {i}" for i in range(6)],
        metadata={"source": ["x", "y", "x", "y", "x", "y"], "score": [1, 2, 3, 4, 5, 6]},
        provenance=Provenance(encoder={"name": "fake", "fingerprint": "f"}, dim=4),
    )


def test_basics(es):
    assert es.shape == (6, 4) and len(es) == 6 and es.vectors.dtype == np.float32
    assert es.classes == ["a", "b", "c"]
    assert es.label_counts() == {"a": 3, "b": 2, "c": 1}
    assert "n=6" in repr(es)


def test_default_ids_are_row_numbers():
    assert EmbeddingSet(np.eye(3)).ids.tolist() == ["0", "1", "2"]


def test_slicing_and_indexing(es):
    sub = es[1:4]
    assert sub.ids.tolist() == ["r1", "r2", "r3"]
    assert sub.labels.tolist() == ["b", "a", "c"]
    assert sub.metadata.column("score").to_pylist() == [2, 3, 4]
    np.testing.assert_array_equal(sub.vectors, es.vectors[1:4])
    assert es[2].ids.tolist() == ["r2"]
    assert es[[5, 0]].texts.tolist() == ["text 5", "text 0"]
    mask = es.labels == "b"
    assert es.filter(mask).ids.tolist() == ["r1", "r4"]


def test_where_label(es):
    assert es.where_label("a").ids.tolist() == ["r0", "r2", "r5"]
    assert es.where_label("a", exclude=True).ids.tolist() == ["r1", "r3", "r4"]
    with pytest.raises(ValidationError, match=r"unknown label\(s\) \['zzz'\]; known labels"):
        es.where_label("zzz")


def test_bad_selections(es):
    with pytest.raises(ValidationError, match="out of range"):
        es[[10]]
    with pytest.raises(ValidationError, match="empty"):
        es[0:0]
    with pytest.raises(ValidationError, match="boolean mask has shape"):
        es.filter([True, False])


def test_constructor_rejects_bad_input():
    with pytest.raises(ValidationError, match="NaN"):
        EmbeddingSet(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValidationError, match="empty"):
        EmbeddingSet(np.zeros((0, 4)))
    with pytest.raises(ValidationError, match="duplicated: 'x'"):
        EmbeddingSet(np.eye(2), ids=["x", "x"])
    with pytest.raises(ValidationError, match="labels has 1 entries for 2 rows"):
        EmbeddingSet(np.eye(2), labels=["a"])
    with pytest.raises(ValidationError, match="clash with reserved"):
        EmbeddingSet(np.eye(2), metadata={"label": ["a", "b"]})
    with pytest.raises(ValidationError, match="metadata has 1 rows"):
        EmbeddingSet(np.eye(2), metadata={"m": ["a"]})


def test_concat(es):
    other = EmbeddingSet(
        np.ones((2, 4)),
        ids=["s0", "s1"],
        labels=["z", "a"],
        texts=["t", "u"],
        metadata={"extra": [True, False]},
        provenance=es.provenance,
    )
    both = EmbeddingSet.concat([es, other])
    assert both.n == 8
    assert both.ids.tolist()[-2:] == ["s0", "s1"]
    assert both.metadata.column_names == ["source", "score", "extra"]
    assert both.metadata.column("extra").to_pylist() == [None] * 6 + [True, False]
    assert both.metadata.column("score").to_pylist()[-2:] == [None, None]


def test_concat_without_metadata_keeps_none():
    a = EmbeddingSet(np.eye(2), ids=["a", "b"])
    b = EmbeddingSet(np.eye(2), ids=["c", "d"])
    assert EmbeddingSet.concat([a, b]).metadata is None


def test_concat_rejects_mismatches(es):
    with pytest.raises(ValidationError, match="dimension 4, set 1 has 3"):
        EmbeddingSet.concat([es, EmbeddingSet(np.eye(3), ids=["q0", "q1", "q2"])])
    with pytest.raises(ValidationError, match="duplicated"):
        EmbeddingSet.concat([es, es])
    other = EmbeddingSet(
        np.ones((1, 4)),
        ids=["o"],
        labels=["a"],
        provenance=Provenance(encoder={"name": "other", "fingerprint": "g"}),
    )
    with pytest.raises(ValidationError, match="another encoder"):
        EmbeddingSet.concat([es, other])
    unl = EmbeddingSet(np.ones((1, 4)), ids=["o"], provenance=es.provenance)
    with pytest.raises(ValidationError, match="labelled and unlabelled"):
        EmbeddingSet.concat([es, unl])
    with pytest.raises(ValidationError, match="at least one"):
        EmbeddingSet.concat([])


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(es, tmp_path, mmap):
    path = es.save(tmp_path / "space")
    loaded = EmbeddingSet.load(path, mmap=mmap)
    assert isinstance(loaded.vectors, np.memmap) is mmap
    np.testing.assert_array_equal(loaded.vectors, es.vectors)
    assert loaded.ids.tolist() == es.ids.tolist()
    assert loaded.labels.tolist() == es.labels.tolist()
    assert loaded.texts.tolist() == es.texts.tolist()
    assert loaded.metadata.equals(es.metadata)
    assert loaded.provenance == es.provenance
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["shape"] == [6, 4] and manifest["dtype"] == "float32"
    assert set(manifest["files"]) == {"vectors.npy", "rows.parquet"}
    # A memory-mapped set still slices, filters and concatenates.
    assert loaded.where_label("c").ids.tolist() == ["r3"]
    assert isinstance(loaded[0:2].vectors, np.memmap) is mmap


def test_round_trip_minimal(tmp_path):
    es = EmbeddingSet(np.eye(3))
    loaded = EmbeddingSet.load(es.save(tmp_path / "s"))
    assert loaded.labels is None and loaded.texts is None and loaded.metadata is None


def test_save_refuses_to_overwrite_by_default(es, tmp_path):
    es.save(tmp_path / "s")
    with pytest.raises(StoreError, match="already exists"):
        es.save(tmp_path / "s")


def test_interrupted_save_keeps_previous_copy(es, tmp_path, monkeypatch):
    path = es.save(tmp_path / "s")
    import embedlab.data.embedding_set as space_mod

    def boom(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(space_mod.pq, "write_table", boom)
    bigger = EmbeddingSet(np.zeros((9, 4)))
    with pytest.raises(OSError, match="No space left"):
        bigger.save(path, overwrite=True)
    loaded = EmbeddingSet.load(path)
    assert loaded.n == 6
    np.testing.assert_array_equal(loaded.vectors, es.vectors)
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_overwrite_replaces(es, tmp_path):
    path = es.save(tmp_path / "s")
    EmbeddingSet(np.zeros((2, 3))).save(path, overwrite=True)
    assert EmbeddingSet.load(path).shape == (2, 3)


def test_checksum_failure(es, tmp_path):
    path = es.save(tmp_path / "s")
    data = bytearray((path / "vectors.npy").read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    (path / "vectors.npy").write_bytes(bytes(data))
    with pytest.raises(StoreError, match="checksum mismatch for vectors.npy"):
        EmbeddingSet.load(path)
    assert EmbeddingSet.load(path, verify=False).n == 6  # explicit opt-out still loads


def test_truncated_file(es, tmp_path):
    path = es.save(tmp_path / "s")
    data = (path / "vectors.npy").read_bytes()
    (path / "vectors.npy").write_bytes(data[:-10])
    with pytest.raises(StoreError, match="truncated"):
        EmbeddingSet.load(path)


def test_missing_file(es, tmp_path):
    path = es.save(tmp_path / "s")
    (path / "rows.parquet").unlink()
    with pytest.raises(StoreError, match="rows.parquet is missing"):
        EmbeddingSet.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not an EmbeddingSet manifest"),
        ('{"format": "embedlab.embedding_set", "format_version": 99}', "upgrade embedlab"),
        ('{"format": "embedlab.embedding_set", "format_version": 1, "shape": [2]}', "corrupted"),
    ],
)
def test_corrupted_manifest(es, tmp_path, content, message):
    path = es.save(tmp_path / "s")
    (path / "manifest.json").write_text(content)
    with pytest.raises(StoreError, match=message):
        EmbeddingSet.load(path)


def test_manifest_shape_mismatch(es, tmp_path):
    path = es.save(tmp_path / "s")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["shape"] = [6, 5]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"manifest says float32\(6, 5\)"):
        EmbeddingSet.load(path)


def test_load_missing_directory(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        EmbeddingSet.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="manifest.json is missing"):
        EmbeddingSet.load(tmp_path / "empty")


def test_from_texts_records_provenance(fake_encoder):
    es = EmbeddingSet.from_texts(["a b", "c"], fake_encoder, labels=["x", "y"], source="f.csv")
    assert es.shape == (2, 8)
    assert es.provenance.encoder["fingerprint"] == "fake-8"
    assert es.provenance.source == "f.csv"
    assert es.texts.tolist() == ["a b", "c"]


def test_metadata_accepts_arrow_table():
    es = EmbeddingSet(np.eye(2), metadata=pa.table({"m": [1, 2]}))
    assert es.metadata.column("m").to_pylist() == [1, 2]


def test_transform_returns_float_rows_and_records_the_spec():
    rng = np.random.default_rng(0)
    es = EmbeddingSet(rng.standard_normal((300, 16)), labels=["a", "b", "c"] * 100)
    out = es.transform("center,pca8,norm")
    assert out.shape == (300, 8) and out.labels is es.labels
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, rtol=1e-5)
    assert out.provenance.dim == 8 and out.provenance.extra["transforms"] == ["center,pca8,norm"]
    assert es.provenance.dim == 16  # the source set is unchanged
    coded = es.transform("sq8")
    err = np.abs(coded.vectors - es.vectors)
    assert coded.vectors.dtype == np.float32 and np.median(err) < 0.01  # tails are clipped
    with pytest.raises(ValidationError, match="names layer 3"):
        es.transform("layer3,norm")
