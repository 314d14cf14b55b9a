"""HTML report: content, self-containment, and rendering in a real (headless) Chromium."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedlab.analysis.report import model_report, space_report, write_report
from embedlab.core.errors import ValidationError
from embedlab.data.datasets import load_demo
from embedlab.data.embedding_set import EmbeddingSet
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.pipeline import Pipeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def demo_report(st_encoder_uncached, tmp_path_factory):
    train, test = load_demo("train"), load_demo("test")
    enc = SentenceTransformerEncoder(cache=False, backend="torch")
    enc._model = st_encoder_uncached.model
    clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.05)
    pipe = Pipeline(encoder=enc, classifier=clf, adapt=False).fit(train.texts, train.labels)
    plan_dir = tmp_path_factory.mktemp("plan")
    (plan_dir / "plan.json").write_text(
        json.dumps(
            {
                "metric": "accuracy",
                "recommended": {"name": "layer 2, dim 64, int8", "quality": 0.9},
                "rows": [
                    {
                        "layer": k,
                        "dim": d,
                        "storage": "float32",
                        "accuracy": 0.5 + k / 10 + d / 1000,
                    }
                    for k in (1, 2)
                    for d in (64, 32)
                ],
            }
        )
    )
    html = model_report(pipe, test.texts, test.labels, title="demo <test>", plan=plan_dir)
    return write_report(html, tmp_path_factory.mktemp("r") / "report.html")


def test_report_has_every_section_and_is_self_contained(demo_report):
    html = demo_report.read_text(encoding="utf-8")
    for heading in (
        "Headline metrics",
        "Where the classifier goes wrong",
        "Out-of-scope detection",
        "Guarantees",
        "Diagnostics of the in-scope embeddings",
        "Map",
        "More labels? The learning curve",
        "Labels that look wrong",
        "Layer × dimension quality",
    ):
        assert f"<h2>{heading}</h2>" in html
    # bars, histogram, ROC, map, learning curve, heat map
    assert html.count('<svg class="plot"') == 6
    assert "doubling the labels" in html
    assert "demo &lt;test&gt;" in html  # escaped
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched
    assert "<script" not in html
    assert html.count("<circle") + html.count("<path d=") == 102  # every test row mapped
    assert "oos_auroc" in html and "threshold" in html
    for figure in ("set coverage at 90%", "mean set size", "looks exchangeable with calibration"):
        assert figure in html
    # with and without rejection, side by side and first
    a = html.index("accuracy (rejection = error)")
    assert a < html.index("head accuracy (no rejection)") < html.index("macro_f1")


def test_space_report_without_labels(tmp_path):
    rng = np.random.default_rng(0)
    es = EmbeddingSet(rng.normal(size=(400, 8)))
    path = write_report(space_report(es, max_points=100), tmp_path / "s.html")
    html = path.read_text()
    assert "Diagnostics" in html and "PCA of 100 of 400 rows" in html
    with pytest.raises(ValidationError, match="name it \\*.html"):
        write_report(html, tmp_path / "s.pdf")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (`make browser` installs it where apt works)",
)
def test_report_renders_in_headless_chromium(demo_report, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(Path(demo_report).resolve().as_uri())
        page.wait_for_load_state("load")
        plots = page.eval_on_selector_all(
            "svg.plot",
            """els => els.map(e => { const b = e.getBoundingClientRect();
                 return {w: b.width, h: b.height, shapes:
                   e.querySelectorAll('circle,rect,path,polyline,line').length}; })""",
        )
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    assert len(plots) == 6
    assert all(p["w"] > 100 and p["h"] > 100 and p["shapes"] >= 3 for p in plots), plots
    assert shot.stat().st_size > 10_000


def test_a_plan_that_cannot_be_read_is_named(tmp_path):
    es = EmbeddingSet(np.random.default_rng(1).normal(size=(50, 4)))
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(ValidationError, match="cannot read a plan from .*plan.json"):
        space_report(es, plan=tmp_path)
    with pytest.raises(ValidationError, match="cannot read a plan from"):
        space_report(es, plan=tmp_path / "missing.json")


def test_report_on_closed_set_rows_says_which_accuracy_to_compare(quick_model):
    from embedlab.data.datasets import load_demo
    from embedlab.models.pipeline import Pipeline

    test = load_demo("test")
    rows = [i for i, y in enumerate(test.labels) if y != "oos"]
    html = model_report(
        Pipeline.load(quick_model),
        [test.texts[i] for i in rows],
        [test.labels[i] for i in rows],
    )
    assert "no out-of-scope examples" in html and "--no-reject" in html
