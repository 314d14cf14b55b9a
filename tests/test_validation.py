import numpy as np
import pytest

from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_ids, check_labels, check_vectors


def test_check_vectors_converts_to_float32_2d():
    out = check_vectors([[1, 2], [3, 4]])
    assert out.dtype == np.float32 and out.shape == (2, 2)


def test_check_vectors_keeps_float32_without_copy():
    x = np.ones((3, 2), dtype=np.float32)
    assert check_vectors(x) is x


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            np.array([[1.0, np.nan], [0, 0]]),
            r"NaN or infinite values in 1 row\(s\): rows 1 \(counted from 1\)",
        ),
        (np.array([[0, 0], [np.inf, 1.0]]), "rows 2 "),
        (np.zeros((0, 3)), "empty"),
        (np.zeros(3), "2-D"),
        (np.zeros((2, 0)), "0 dimensions"),
        ([["a", "b"]], "numeric"),
    ],
)
def test_check_vectors_rejects(value, message):
    with pytest.raises(ValidationError, match=message):
        check_vectors(value)


def test_check_vectors_wrong_dim_names_both():
    with pytest.raises(ValidationError, match="dimension 3, expected 4"):
        check_vectors(np.zeros((2, 3)), dim=4)


def test_check_vectors_1d_of_right_dim_suggests_reshape():
    with pytest.raises(ValidationError, match="reshape"):
        check_vectors(np.zeros(4), dim=4)


def test_check_ids_duplicates_named():
    with pytest.raises(ValidationError, match="duplicated: 'a'"):
        check_ids(["a", "b", "a"], 3)


def test_check_ids_length():
    with pytest.raises(ValidationError, match="2 entries for 3 rows"):
        check_ids(["a", "b"], 3)


def test_check_labels_missing_and_empty():
    with pytest.raises(ValidationError, match="missing in 1 row"):
        check_labels(["a", None], 2)
    with pytest.raises(ValidationError, match="empty in 1 row"):
        check_labels(["a", ""], 2)


def test_check_labels_stringifies():
    assert check_labels([1, 2], 2).tolist() == ["1", "2"]


def test_validated_rows_skip_the_second_check_but_not_the_width():
    """Inside ``validated()`` an estimator's parts trust float32 rows of the right width
    (checked once at the outer boundary); anything else is still checked in full."""
    from embedlab.core.validation import validated
    from embedlab.heads import PrototypeClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4)).astype(np.float32)
    head = PrototypeClassifier().fit(X, np.repeat(["a", "b"], 10))
    with validated():
        np.testing.assert_allclose(head.predict_proba(X), head.predict_proba(X.astype(float)))
        with pytest.raises(ValueError, match="features"):
            head.predict_proba(X[:, :3])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        head.predict_proba(bad)  # outside: the full check
