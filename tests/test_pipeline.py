"""Pipeline fit / predict / evaluate on the demo data, and bundle save / load safety."""

import json
import shutil

import numpy as np
import pytest

from embedlab.core.errors import StoreError, ValidationError
from embedlab.data.datasets import load_demo
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.adapt import AdaptConfig
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.pipeline import Pipeline, should_adapt


@pytest.fixture(scope="module")
def fitted(st_encoder_uncached):
    train = load_demo("train")
    enc = SentenceTransformerEncoder(cache=False)
    enc._model = st_encoder_uncached.model
    pipe = Pipeline(
        encoder=enc, classifier=OpenSetClassifier(time_budget=30, target_fpr=0.05), adapt=False
    )
    return pipe.fit(train.texts, train.labels)


def test_fit_evaluate_on_demo(fitted):
    test = load_demo("test")
    m = fitted.evaluate(test.texts, test.labels)
    assert m["n"] == 102
    assert m["accuracy"] >= 0.8 and m["oos_auroc"] >= 0.9 and m["overall_accuracy"] >= 0.8
    assert fitted.info["training"]["n_oos"] == 10
    assert fitted.info["adapted"] is None


def test_predict_details(fitted):
    texts = ["book me a flight to oslo", "who painted the sistine chapel"]
    out = fitted.predict_details(texts)
    assert out.labels[0] == "book_flight"
    labels = fitted.predict(texts)  # the contract: an array of labels, nothing else
    assert isinstance(labels, np.ndarray) and labels.shape == (2,)
    np.testing.assert_array_equal(labels, out.labels)
    assert set(labels) <= set(fitted.classes_) | {fitted.oos_label}
    assert out.novelty[1] > out.novelty[0]
    assert out.top_labels[:, 0].shape == (2,)
    np.testing.assert_array_equal(out.confidence, out.top_confidences[:, 0])


def test_bundle_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.safetensors", "bundle.json"]
    loaded = Pipeline.load(path, cache=False)
    loaded.encoder._model = fitted.encoder.model
    texts = load_demo("test").texts
    a, b = fitted.predict_details(texts), loaded.predict_details(texts)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.novelty, b.novelty, rtol=1e-6)
    doc = json.loads((path / "bundle.json").read_text())
    assert doc["encoder"]["name"] == "all-MiniLM-L6-v2"
    assert doc["stages"] == ["encoder", "classifier"]  # no transform stage in this one
    assert doc["info"]["training"]["fingerprint"]
    # Nothing in the bundle is a pickle.
    assert b"pickle" not in (path / "arrays.safetensors").read_bytes()[:200]


def test_bundle_edited_by_hand_is_rejected(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    doc = json.loads((path / "bundle.json").read_text())
    doc["classifier"]["attributes"]["threshold_"] = -1.0
    (path / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="modified after it was saved"):
        Pipeline.load(path)


def test_bundle_arrays_replaced_is_rejected(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    other = fitted.save(tmp_path / "other")
    data = bytearray((other / "arrays.safetensors").read_bytes())
    data[-1] ^= 1
    (path / "arrays.safetensors").write_bytes(bytes(data))
    with pytest.raises(StoreError, match="does not match bundle.json"):
        Pipeline.load(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format_version=99), "upgrade embedlab"),
        (lambda d: d.update(embedlab_version="9.0.0"), "incompatible"),
        (lambda d: d.update(format="other"), "not an embedlab model bundle"),
    ],
)
def test_bundle_versions(fitted, tmp_path, edit, message):
    from embedlab.store.bundle import json_sha256

    path = fitted.save(tmp_path / "model")
    doc = json.loads((path / "bundle.json").read_text())
    doc.pop("checksum")
    doc.pop("timings", None)  # kept outside the checksum
    edit(doc)
    doc["checksum"] = json_sha256(doc)  # a consistent edit: only the version is wrong
    (path / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=message):
        Pipeline.load(path)


def test_bundle_cannot_name_arbitrary_classes(fitted, tmp_path):
    from embedlab.store.bundle import json_sha256

    path = fitted.save(tmp_path / "model")
    doc = json.loads((path / "bundle.json").read_text())
    doc.pop("checksum")
    doc.pop("timings", None)  # kept outside the checksum
    doc["classifier"]["class"] = "os.system"
    doc["checksum"] = json_sha256(doc)
    (path / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="unknown estimator"):
        Pipeline.load(path)


def test_missing_and_corrupt_bundles(tmp_path):
    with pytest.raises(StoreError, match="no model bundle"):
        Pipeline.load(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "bundle.json").write_text("{oops")
    with pytest.raises(StoreError, match="not valid JSON"):
        Pipeline.load(tmp_path / "m")


def test_vectors_of_another_dimension(fitted):
    with pytest.raises(ValueError, match="384 features"):
        fitted.classifier_.predict(np.zeros((2, 10), dtype=np.float32))


def test_unknown_labels_at_evaluation(fitted):
    with pytest.raises(ValidationError, match=r"not seen in training: \['brand_new'\]"):
        fitted.evaluate(["hello there"], ["brand_new"])


@pytest.mark.slow
def test_unfitted_pipeline():
    with pytest.raises(ValidationError, match="not fitted"):
        Pipeline(encoder=SentenceTransformerEncoder(cache=False)).predict(["x"])


def test_should_adapt_rule():
    assert should_adapt(150 * 10, 150) and not should_adapt(12 * 2, 12)


def test_adapted_pipeline_saves_its_encoder(tmp_path, st_encoder_uncached):
    train = load_demo("train")
    enc = SentenceTransformerEncoder(cache=False)
    enc._model = st_encoder_uncached.model
    pipe = Pipeline(
        encoder=enc,
        classifier=OpenSetClassifier(head="prototype", detector="max-cosine"),
        adapt=True,
        adapt_config=AdaptConfig(epochs=0.1, min_steps=2, batch_size=8),
    ).fit(train.texts, train.labels, progress=False)
    assert pipe.info["adapted"]["steps"] == 2
    path = pipe.save(tmp_path / "model")
    assert (path / "encoder" / "model.safetensors").is_file()
    loaded = Pipeline.load(path, cache=False)
    assert loaded.encoder.model_path == path / "encoder"
    texts = load_demo("test").texts[:8]
    np.testing.assert_array_equal(pipe.predict(texts), loaded.predict(texts))
    # A copied bundle still works (the encoder path is relative).
    shutil.copytree(path, tmp_path / "copy")
    assert Pipeline.load(tmp_path / "copy", cache=False).encoder.dim == 384


def test_calibration_holdout_is_stratified():
    from embedlab.models.pipeline import calibration_holdout

    labels = np.array(["a"] * 20 + ["b"] * 10 + ["c"] + ["oos"] * 5, dtype=object)
    is_oos = labels == "oos"
    mask = calibration_holdout(labels, is_oos, 0.1)
    assert mask[labels == "a"].sum() == 2 and mask[labels == "b"].sum() == 1
    assert mask[labels == "c"].sum() == 0 and not mask[is_oos].any()
    np.testing.assert_array_equal(mask, calibration_holdout(labels, is_oos, 0.1))


def test_openset_calibration_mask_sets_threshold_from_those_rows():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(50, 8)) + 4 * np.eye(8)[i] for i in range(3)]).astype(
        np.float32
    )
    y = np.repeat(["a", "b", "c"], 50).astype(object)
    mask = np.zeros(150, dtype=bool)
    mask[::5] = True
    clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.1)
    clf.fit(X, y, calibration_mask=mask)
    assert len(clf.detector_.calibration_scores_) == 30
    assert (clf.detector_.calibration_scores_ > clf.threshold_).mean() <= 0.1
    with pytest.raises(ValidationError, match="calibration_mask has shape"):
        clf.fit(X, y, calibration_mask=mask[:10])


def test_auto_adapt_skips_elastic_encoders(st_encoder_uncached, tmp_path):
    train = load_demo("train")
    enc = SentenceTransformerEncoder(cache=False, layer=4, dim=96)
    enc._model = st_encoder_uncached.model
    pipe = Pipeline(
        encoder=enc, classifier=OpenSetClassifier(head="prototype", detector="max-cosine")
    ).fit(train.texts, train.labels)
    assert pipe.info["adapted"] is None
    path = pipe.save(tmp_path / "m")
    loaded = Pipeline.load(path, cache=False)
    assert loaded.encoder.layer == 4 and loaded.encoder.dim == 96
    assert loaded.classifier_.n_features_in_ == 96


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["center,whiten,pca64,norm", "layer4,dim128,norm,sq8"])
def test_transform_chain_is_fitted_saved_and_reloaded(st_encoder_uncached, tmp_path, spec):
    train, test = load_demo("train"), load_demo("test")
    layer = 4 if spec.startswith("layer4") else None
    enc = SentenceTransformerEncoder(cache=False, layer=layer)
    enc._model = st_encoder_uncached.model
    clf = OpenSetClassifier(head="prototype", detector="max-cosine")
    pipe = Pipeline(encoder=enc, classifier=clf, adapt=False, transform=spec)
    pipe.fit(train.texts, train.labels)
    assert pipe.classifier_.n_features_in_ == (64 if "pca64" in spec else 128)
    assert pipe.evaluate(test.texts, test.labels)["accuracy"] >= 0.7
    path = pipe.save(tmp_path / "m")
    doc = json.loads((path / "bundle.json").read_text())
    assert doc["transforms"]["spec"] == spec and doc["info"]["transform"] == spec
    loaded = Pipeline.load(path, cache=False)
    loaded.encoder._model = st_encoder_uncached.model
    assert loaded.transform == spec and loaded.chain_.fitted
    a, b = pipe.predict_details(test.texts), loaded.predict_details(test.texts)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.novelty, b.novelty, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_transform_layer_must_match_the_encoder(fake_encoder):
    pipe = Pipeline(encoder=SentenceTransformerEncoder(cache=False), transform="layer3,norm")
    with pytest.raises(ValidationError, match="asks for layer 3"):
        pipe.fit(["a b", "c d", "e f", "g h"], ["x", "x", "y", "y"])
    assert Pipeline(transform="layer2,dim64").encoder_.layer == 2


def test_bundle_with_a_damaged_transform_is_refused(st_encoder_uncached, tmp_path):
    from embedlab.store.bundle import json_sha256

    train = load_demo("train")
    enc = SentenceTransformerEncoder(cache=False)
    enc._model = st_encoder_uncached.model
    clf = OpenSetClassifier(head="prototype", detector="max-cosine")
    pipe = Pipeline(encoder=enc, classifier=clf, adapt=False, transform="center,pca32")
    path = pipe.fit(train.texts, train.labels).save(tmp_path / "m")
    doc = json.loads((path / "bundle.json").read_text())
    doc.pop("checksum")
    doc.pop("timings", None)  # kept outside the checksum
    doc["transforms"]["spec"] = "center,pca32,binary,whiten"
    doc["checksum"] = json_sha256(doc)
    (path / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="saved transform cannot be rebuilt"):
        Pipeline.load(path, cache=False)


def test_the_public_face_the_service_uses(quick_model):
    """The service reads a pipeline through public names only: its encoder and why its
    classes cannot change (None when they can)."""
    from embedlab.models.multilabel import MultiLabelClassifier
    from embedlab.models.openset import OpenSetClassifier

    bare = Pipeline(classifier=MultiLabelClassifier(keep_rows=False))
    assert bare.class_change_refusal == "it keeps no training rows"
    unfitted = Pipeline(classifier=OpenSetClassifier())
    assert unfitted.class_change_refusal == "it keeps no training rows"
    loaded = Pipeline.load(quick_model, cache=False)
    assert loaded.class_change_refusal is None
    assert loaded.encoder_ is loaded.encoder and loaded.encoder_.dim == 384


@pytest.mark.slow
def test_a_bundle_written_by_round_2_still_loads_and_predicts_the_same(tmp_path):
    """tests/fixtures/bundle_0_1_0: a model fitted by embedlab 0.1.0 (commit 07abd70, the
    round-2 release; demo training data, prototype head, max-cosine detector, torch), with
    its predictions on the demo test set. It still loads (from a copy: loading writes
    nothing), predicts the same labels and novelty, and takes a new version in place."""
    from pathlib import Path

    here = Path(__file__).parent / "fixtures"
    shutil.copytree(here / "bundle_0_1_0", tmp_path / "model")
    expected = json.loads((here / "bundle_0_1_0_predictions.json").read_text())["rows"]
    pipe = Pipeline.load(tmp_path / "model", cache=False, backend="torch")
    d = pipe.predict_details([r["text"] for r in expected])
    assert d.labels.tolist() == [r["label"] for r in expected]
    np.testing.assert_allclose(d.novelty, [r["novelty"] for r in expected], atol=1e-5)
    child = pipe.add_classes(["tell me a joke", "make me laugh"], ["tell_joke"] * 2)
    child.save(tmp_path / "model", overwrite=True, expect_stamp=pipe.source_stamp)
    assert Pipeline.load(tmp_path / "model").info["lineage"]["version"] == 2


def test_the_adaptation_settings_survive_a_save(fitted, tmp_path):
    """A loaded model keeps the adaptation settings it was made with (a refit of the
    loaded model adapts as the first fit would have)."""
    from embedlab.models.adapt import AdaptConfig

    fitted.adapt_config = AdaptConfig(epochs=1.5, seed=7)
    try:
        path = fitted.save(tmp_path / "m")
    finally:
        fitted.adapt_config = None
    back = Pipeline.load(path, cache=False)
    assert back.adapt_config == AdaptConfig(epochs=1.5, seed=7)
    assert Pipeline.load(fitted.save(tmp_path / "plain"), cache=False).adapt_config is None


def test_scikit_learn_conventions(fake_encoder):
    """Parameters are never changed by fit (the fitted classifier is ``classifier_``, the
    encoder in use ``encoder_``); get_params / set_params / clone work."""
    from sklearn.base import clone

    template = OpenSetClassifier(head="prototype", detector="max-cosine")
    pipe = Pipeline(fake_encoder, template, adapt=False)
    before = pipe.get_params(deep=False)
    assert set(before) == {
        "encoder",
        "classifier",
        "adapt",
        "adapt_config",
        "calibration_fraction",
        "transform",
        "hierarchy",
    }
    texts = [f"{w} number {i}" for w in ("alarm", "music", "timer") for i in range(8)]
    labels = [w for w in ("alarm", "music", "timer") for _ in range(8)]
    pipe.fit(texts, labels)
    assert pipe.get_params(deep=False) == before
    assert not hasattr(template, "head_")  # the template was cloned, not fitted
    assert pipe.classifier_ is not template and pipe.encoder_ is fake_encoder
    twin = clone(pipe)
    with pytest.raises(ValidationError, match="not fitted yet"):
        twin.classifier_  # noqa: B018 - a clone is unfitted
    np.testing.assert_array_equal(twin.fit(texts, labels).predict(texts), pipe.predict(texts))
    pipe.set_params(adapt="auto")
    assert pipe.adapt == "auto"
