import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedlab.core.errors import DataFormatError
from embedlab.data.embedding_set import read_vector_file
from embedlab.data.readers import read_table, read_texts, write_table


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_csv_with_labels_and_metadata(tmp_path):
    f = write(
        tmp_path / "d.csv", 'text,label,lang\nhello there,greet,en\n"a, quoted ""one""",q,fr\n'
    )
    t = read_texts(f)
    assert t.texts == ["hello there", 'a, quoted "one"']
    assert t.labels == ["greet", "q"]
    assert t.ids == ["0", "1"]
    assert t.metadata.column("lang").to_pylist() == ["en", "fr"]


def test_csv_numbers_stay_text(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\n007,1\n")
    t = read_texts(f)
    assert t.texts == ["007"] and t.labels == ["1"]


def test_tsv_and_custom_columns(tmp_path):
    f = write(tmp_path / "d.tsv", "id\tbody\tqueue\nA\tfirst\tx\nB\tsecond\ty\n")
    t = read_texts(f, text_col="body", label_col="queue", id_col="id")
    assert t.ids == ["A", "B"] and t.labels == ["x", "y"] and t.metadata is None


def test_jsonl(tmp_path):
    f = write(
        tmp_path / "d.jsonl", '{"text": "a", "label": 3}\n\n{"text": "b", "label": 4, "x": [1]}\n'
    )
    t = read_texts(f)
    assert t.texts == ["a", "b"] and t.labels == ["3", "4"]


def test_parquet(tmp_path):
    pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", "y"]}), tmp_path / "d.parquet")
    t = read_texts(tmp_path / "d.parquet")
    assert t.texts == ["a", "b"] and t.labels == ["x", "y"]


def test_split_layout_json(tmp_path):
    doc = {"train": [["a", "x"], ["b", "y"]], "oos_train": [["c", "oos"]]}
    f = write(tmp_path / "d.json", json.dumps(doc))
    t = read_texts(f, splits=["train", "oos_train"])
    assert t.texts == ["a", "b", "c"] and t.labels == ["x", "y", "oos"]
    assert t.metadata.column("split").to_pylist() == ["train", "train", "oos_train"]
    with pytest.raises(DataFormatError, match=r"unknown split\(s\) \['dev'\]; available"):
        read_texts(f, splits=["dev"])


def test_unlabelled_file(tmp_path):
    f = write(tmp_path / "d.csv", "text\na\nb\n")
    assert read_texts(f).labels is None
    with pytest.raises(DataFormatError, match="no label column 'label'"):
        read_texts(f, require_labels=True)


def test_missing_text_column_lists_columns(tmp_path):
    f = write(tmp_path / "d.csv", "body,label\na,x\n")
    with pytest.raises(
        DataFormatError, match=r"no text column 'text'; columns are \['body', 'label'\]"
    ):
        read_texts(f)


@pytest.mark.parametrize("content", ["", "   \n"])
def test_empty_file(tmp_path, content):
    with pytest.raises(DataFormatError, match="is empty"):
        read_texts(write(tmp_path / "d.csv", content))


def test_header_only(tmp_path):
    with pytest.raises(DataFormatError, match="no data rows"):
        read_texts(write(tmp_path / "d.csv", "text,label\n"))


def test_non_utf8_names_the_row(tmp_path):
    f = write(tmp_path / "d.csv", b"text,label\nok,a\nalso ok,b\ncaf\xe9,c\n")
    with pytest.raises(
        DataFormatError, match=r"not valid UTF-8: byte 0xe9 at line 4 \(data row 3\)"
    ):
        read_texts(f)


def test_non_utf8_jsonl(tmp_path):
    f = write(tmp_path / "d.jsonl", b'{"text": "a"}\n{"text": "\xff"}\n')
    with pytest.raises(DataFormatError, match="line 2"):
        read_texts(f)


def test_non_utf8_parquet_binary_column(tmp_path):
    pq.write_table(
        pa.table({"text": pa.array([b"ok", b"\xff\xfe"], type=pa.binary())}), tmp_path / "d.parquet"
    )
    with pytest.raises(DataFormatError, match="not valid UTF-8 at data row 1"):
        read_texts(tmp_path / "d.parquet")


def test_empty_texts_rejected_or_skipped(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\n   ,y\nb,z\n,w\n")
    with pytest.raises(
        DataFormatError, match=r"2 empty text\(s\) in column 'text' at rows 2, 4 \(lines 3, 5\)"
    ):
        read_texts(f)
    t = read_texts(f, on_empty="skip")
    assert t.texts == ["a", "b"] and t.labels == ["x", "z"] and t.ids == ["0", "2"]
    assert t.skipped_rows == [1, 3]


def test_missing_labels(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\nb,\n")
    with pytest.raises(DataFormatError, match=r"no label in column 'label' at row 2 \(line 3\)"):
        read_texts(f)


def test_ragged_csv(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\nb,y,extra\n")
    with pytest.raises(DataFormatError, match="line 3 has 3 fields"):
        read_texts(f)


def test_bad_jsonl_line(tmp_path):
    f = write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": \n')
    with pytest.raises(DataFormatError, match="line 2 is not valid JSON"):
        read_texts(f)


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="unknown file type '.xlsx'"):
        read_texts(write(tmp_path / "d.xlsx", "x"))
    with pytest.raises(DataFormatError, match="no such file"):
        read_texts(tmp_path / "nope.csv")


def test_truncated_parquet(tmp_path):
    pq.write_table(pa.table({"text": ["a"] * 100}), tmp_path / "d.parquet")
    data = (tmp_path / "d.parquet").read_bytes()
    (tmp_path / "d.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="cannot read Parquet"):
        read_table(tmp_path / "d.parquet")


def test_vectors_from_npy_parquet_csv(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "v.npy", x)
    np.testing.assert_array_equal(read_vector_file(tmp_path / "v.npy").vectors, x)

    pq.write_table(
        pa.table(
            {"id": list("abcd"), "label": list("xxyy"), "embedding": [row.tolist() for row in x]}
        ),
        tmp_path / "v.parquet",
    )
    es = read_vector_file(tmp_path / "v.parquet")
    np.testing.assert_array_equal(es.vectors, x)
    assert es.ids.tolist() == list("abcd") and es.labels.tolist() == list("xxyy")

    write(
        tmp_path / "v.csv",
        "id,label,d0,d1,d2\n"
        + "".join(f"r{i},l{i % 2},{r[0]},{r[1]},{r[2]}\n" for i, r in enumerate(x)),
    )
    es = read_vector_file(tmp_path / "v.csv")
    np.testing.assert_array_equal(es.vectors, x)
    assert es.labels.tolist() == ["l0", "l1", "l0", "l1"]


def test_vectors_bad_input(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(Exception, match="NaN"):
        read_vector_file(tmp_path / "nan.npy")
    pq.write_table(pa.table({"vector": [[1.0, 2.0], [1.0]]}), tmp_path / "ragged.parquet")
    with pytest.raises(DataFormatError, match="different lengths"):
        read_vector_file(tmp_path / "ragged.parquet")
    write(tmp_path / "v.csv", "name,d0\nfoo,1.0\n")
    with pytest.raises(DataFormatError, match=r"non-numeric column\(s\) \['name'\]"):
        read_vector_file(tmp_path / "v.csv")
    write(tmp_path / "bad.npy", b"not a numpy file")
    with pytest.raises(DataFormatError, match="cannot read .npy"):
        read_vector_file(tmp_path / "bad.npy")


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_write_table_round_trip(tmp_path, ext):
    table = pa.table({"text": ["a", "b"], "label": ["x", "y"]})
    path = write_table(table, tmp_path / f"out.{ext}")
    back = read_table(path)
    assert back.column("text").to_pylist() == ["a", "b"]


def test_read_pairs_stsb_layout_and_columns(tmp_path):
    from embedlab.data.pair_files import read_pairs

    f = tmp_path / "sts.csv"
    f.write_text(
        "main-captions\tMSRvid\t2012test\t0001\t5.000\tA man is dancing.\tA man dances.\n"
        "main-news\theadlines\t2013\t0002\t0.500\tStocks fall.\tA cat sleeps.\tsrc\tsrc\n",
        encoding="utf-8",
    )
    pairs = read_pairs(f)
    assert pairs.first == ["A man is dancing.", "Stocks fall."]
    assert pairs.second[1] == "A cat sleeps." and pairs.scores.tolist() == [5.0, 0.5]
    g = tmp_path / "pairs.jsonl"
    g.write_text('{"a": "x y", "b": "y z", "s": 0.3}\n{"a": "p", "b": "q", "s": "1"}\n')
    pairs = read_pairs(g, first_col="a", second_col="b", score_col="s")
    assert len(pairs) == 2 and pairs.scores.tolist() == [0.3, 1.0]


def test_read_pairs_bad_input(tmp_path):
    from embedlab.data.pair_files import read_pairs

    g = tmp_path / "pairs.csv"
    g.write_text("sentence1,sentence2,score\nhello,world,high\n")
    with pytest.raises(DataFormatError, match="non-number at row 0: 'high'"):
        read_pairs(g)
    g.write_text("sentence1,sentence2,score\nhello,,1\n")
    with pytest.raises(DataFormatError, match=r"empty text at rows \[0\]"):
        read_pairs(g)
    g.write_text("s1,s2,score\nhello,world,1\n")
    with pytest.raises(DataFormatError, match=r"no column\(s\) \['sentence1', 'sentence2'\]"):
        read_pairs(g)
    g.write_text("a\tb\tc\td\t3.0\tonly six fields\n")  # not STS-B: read as a header
    with pytest.raises(DataFormatError, match="has a header but no data rows"):
        read_pairs(g)


def test_a_suspended_chunk_reader_leaves_the_csv_cell_cap_alone(tmp_path):
    """The csv module's cell cap is process-wide: a chunked read raises it only while it
    parses a block, so a generator left suspended between chunks changes nothing."""
    import csv

    from embedlab.data.text_chunks import iter_texts

    f = tmp_path / "t.csv"
    f.write_text("text\n" + "".join(f"row {i}\n" for i in range(10)))
    before = csv.field_size_limit()
    chunks = iter_texts(f, 3, label_col=None)
    first, table = next(chunks)
    assert first == 0 and len(table.texts) == 3
    assert csv.field_size_limit() == before
    assert sum(len(t.texts) for _, t in chunks) == 7
