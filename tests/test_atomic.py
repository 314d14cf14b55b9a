import os

import pytest

from embedlab.store.atomic import atomic_directory, atomic_write_bytes

MARK = '{"format": "embedlab.embedding_set", "files": {"a.txt": {}}}'  # a manifest listing a.txt


def test_atomic_write_bytes_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_directory_failure_keeps_previous(tmp_path):
    target = tmp_path / "d"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("old")
        (tmp / "manifest.json").write_text(MARK)
    with pytest.raises(RuntimeError), atomic_directory(target, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("disk full")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["d"]  # temp directory cleaned up


def test_atomic_directory_replaces(tmp_path):
    target = tmp_path / "d"
    for text in ("old", "new"):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "a.txt").write_text(text)
            (tmp / "manifest.json").write_text(MARK)
    assert (target / "a.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_atomic_directory_refuses_existing_without_overwrite(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(FileExistsError), atomic_directory(tmp_path / "d"):
        pass
