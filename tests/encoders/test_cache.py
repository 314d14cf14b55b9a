import multiprocessing as mp

import numpy as np

from embedlab.encoders.cache import EmbeddingCache, default_cache_dir, text_key


def test_default_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert EmbeddingCache().directory == tmp_path / "c"


def test_put_get_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path)
    keys = [text_key(t) for t in ["a", "b", "c"]]
    vecs = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache.put_many("m1", keys[:2], vecs[:2])
    got = cache.get_many("m1", keys, dim=2)
    assert sorted(got) == [0, 1]
    np.testing.assert_array_equal(got[1], vecs[1])
    assert cache.get_many("m2", keys, dim=2) == {}  # other model key: no hits
    assert cache.get_many("m1", keys, dim=3) == {}  # other dimension: no hits
    assert cache.count("m1") == 2


def test_duplicate_keys_in_one_lookup(tmp_path):
    cache = EmbeddingCache(tmp_path)
    k = text_key("same")
    cache.put_many("m", [k], np.ones((1, 2), np.float32))
    assert sorted(cache.get_many("m", [k, text_key("x"), k], dim=2)) == [0, 2]


def test_many_keys_span_chunks(tmp_path):
    cache = EmbeddingCache(tmp_path)
    keys = [text_key(str(i)) for i in range(1800)]
    vecs = np.random.default_rng(0).normal(size=(1800, 4)).astype(np.float32)
    cache.put_many("m", keys, vecs)
    got = cache.get_many("m", keys, dim=4)
    assert len(got) == 1800
    np.testing.assert_array_equal(np.stack([got[i] for i in range(1800)]), vecs)


def _writer(directory: str, worker: int, n: int) -> None:
    cache = EmbeddingCache(directory)
    rng = np.random.default_rng(worker)
    for start in range(0, n, 50):
        keys = [text_key(f"text-{i}") for i in range(start, start + 50)]
        # Overlapping keys between workers: the value depends only on the text.
        vecs = np.array([[i, i + 1] for i in range(start, start + 50)], dtype=np.float32)
        cache.put_many("m", keys, vecs)
        cache.get_many("m", keys[: int(rng.integers(1, 50))], dim=2)


def test_concurrent_writers(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 600)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = EmbeddingCache(tmp_path)
    assert cache.count("m") == 600
    got = cache.get_many("m", [text_key(f"text-{i}") for i in range(600)], dim=2)
    assert all(got[i][0] == i for i in range(600))


def test_unusable_cache_is_bypassed(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    cache = EmbeddingCache(blocker)
    cache.put_many("m", [text_key("a")], np.ones((1, 2), np.float32))
    assert cache.get_many("m", [text_key("a")], dim=2) == {}
    assert "unusable" in caplog.text


def test_corrupted_database_is_set_aside_and_rebuilt(tmp_path, caplog):
    (tmp_path / "embeddings.sqlite3").write_bytes(b"garbage" * 1000)
    cache = EmbeddingCache(tmp_path)
    assert cache.get_many("m", [text_key("a")], dim=2) == {}
    assert "was corrupted" in caplog.text
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1  # kept for inspection, not deleted
    cache.put_many("m", [text_key("a")], np.ones((1, 2), np.float32))  # works again
    assert sorted(EmbeddingCache(tmp_path).get_many("m", [text_key("a")], dim=2)) == [0]


def test_tampered_entry_is_a_miss(tmp_path, caplog):
    import sqlite3

    cache = EmbeddingCache(tmp_path)
    keys = [text_key("a"), text_key("b")]
    cache.put_many("m", keys, np.ones((2, 2), np.float32))
    with sqlite3.connect(tmp_path / "embeddings.sqlite3") as conn:
        conn.execute(
            "UPDATE vectors_v2 SET vec = ? WHERE key = ?",
            (np.array([5, 5], np.float32).tobytes(), keys[0]),
        )
    got = EmbeddingCache(tmp_path).get_many("m", keys, dim=2)
    assert sorted(got) == [1]  # the edited entry is not served
    assert "failed the checksum" in caplog.text
    assert EmbeddingCache(tmp_path).count("m") == 1  # and it was dropped
