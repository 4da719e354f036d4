"""`kit report`: one self-contained HTML page per run or ensemble, checked as HTML and rendered in headless
Chromium (no console errors, no network, every plot decoded and visibly drawn)."""

import io
import json
import os
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from kaggle_kit.predict.ensemble import ensemble_report
from kaggle_kit.registry import get_competition
from kaggle_kit.views.report import load_ensemble_file, score_ensemble
from tests.browser import Chromium, find_chromium
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e
ELL_TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


class Page(HTMLParser):
    """Tags with their attributes, the headings, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[str] = []
        self._in_heading = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_heading = tag == "h2"

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data.strip())
            self._in_heading = False


def check_self_contained(html: str) -> Page:
    page = Page(html)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "iframe" not in tags and "object" not in tags
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            if name in attrs:
                assert attrs[name].startswith("data:"), (tag, attrs[name][:80])
    assert "url(" not in html and "@import" not in html
    for tag, attrs in page.tags:
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
            with Image.open(io.BytesIO(__import__("base64").b64decode(attrs["src"].split(",", 1)[1]))) as image:
                assert image.size[0] > 200 and image.size[1] > 150
    return page


def report(capsys, *args):
    code, _, err = run_kit(capsys, "report", *args)
    assert code == 0, err
    return err


def test_run_report_has_every_section_and_the_runs_numbers(five_runs, tmp_path, capsys):
    out = tmp_path / "a.html"
    report(capsys, "a-attention", "--root", five_runs, "--out", out)
    html = out.read_text()
    page = check_self_contained(html)
    assert page.headings[:1] == ["CV per fold and target (MCRMSE, lower is better)"]
    assert page.headings[1:] == ["Learning curves", "Predicted vs true", "Residuals by text length", "Config",
                                 "Manifest"]
    assert sum(1 for t, _ in page.tags if t == "img") == 4
    cv = json.loads((five_runs / "ell" / "a-attention" / "cv.json").read_text())
    for value in [cv["score"], *cv["per_target"].values(), cv["folds"]["fold1"]["score"],
                  cv["baseline_train_mean"]["score"]]:
        assert f"<td>{value:.4f}</td>" in html
    manifest = json.loads((five_runs / "ell" / "a-attention" / "manifest.json").read_text())
    assert manifest["data"]["train.csv"]["sha256"] in html and manifest["git_commit"] in html
    assert "<td>pooling</td><td class=\"text changed\">attention</td>" in html  # differs from the default
    assert "<td>seed</td><td class=\"text\">42</td>" in html


def test_report_of_a_dead_run_says_so_and_uses_its_finished_folds(five_runs, tmp_path, capsys):
    out = tmp_path / "c.html"
    report(capsys, "c-dead", "--root", five_runs, "--out", out)
    html = out.read_text()
    check_self_contained(html)
    assert "This run is dead: 1 of 2 folds finished" in html and "mean of folds" in html
    fold0 = json.loads((five_runs / "ell" / "c-dead" / "folds" / "fold0.json").read_text())
    assert f"<b class=\"\">~{fold0['score']:.4f}</b>" in html


def test_default_output_is_report_html_in_the_run_folder(five_runs, tmp_path, capsys):
    run = shutil.copytree(five_runs / "uspppm" / "e-mse", tmp_path / "e-mse")
    err = report(capsys, run)
    assert (run / "report.html").is_file() and f"wrote {run / 'report.html'}" in err
    page = check_self_contained((run / "report.html").read_text())
    assert "CV per fold and target (Pearson, higher is better)" in page.headings


def test_report_of_a_multiclass_run_shows_curves_and_reliability_not_a_scatter(fbe_tiny_run, tmp_path, capsys):
    out = tmp_path / "fbe.html"
    report(capsys, fbe_tiny_run, "--out", out)
    html = out.read_text()
    page = check_self_contained(html)
    assert page.headings[2:5] == ["ROC and precision-recall curves", "Reliability", "Confusion matrix"]
    assert "Predicted vs true" not in page.headings and "Residuals by text length" not in page.headings
    record = json.loads((fbe_tiny_run / "cv.json").read_text())["classification_curves"]["discourse_effectiveness"]
    for name, values in record["per_class"].items():
        assert f"<td class=\"text\">discourse_effectiveness: {name}</td><td>{values['auc']:.4f}</td>" in html
    assert f"<td>{record['auc_macro']:.4f}</td>" in html and f"<td>{record['reliability']['ece']:.4f}</td>" in html
    assert sum(1 for t, _ in page.tags if t == "img") == 5  # CV, learning curves, ROC/PR, reliability, confusion


def test_report_without_labels_says_where_it_looked(five_runs, tmp_path, capsys):
    run = shutil.copytree(five_runs / "ell" / "b-mean", tmp_path / "moved")
    config = json.loads((run / "run_config.json").read_text())
    config["data"] = str(tmp_path / "gone")
    (run / "run_config.json").write_text(json.dumps(config))
    report(capsys, run, "--out", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "labels not available" in html and str(tmp_path / "gone") in html and "pass --data DIR" in html
    assert sum(1 for t, _ in check_self_contained(html).tags if t == "img") == 2  # CV and learning curves


def write_ensemble(path, runs, weights, oof=None):
    """An ensemble file in the format `kit ensemble` writes (kaggle_kit.predict.ensemble_file)."""
    path.write_text(json.dumps({"ensemble_format": 1, "competition": "ell", "metric": "MCRMSE",
                                "greater_is_better": False,
                                "runs": [{"path": str(r), "name": r.name, "folds": [0]} for r in runs],
                                "weights": weights, **({"oof": oof} if oof else {})}))
    return path


def test_ensemble_file_with_weights_per_target(five_runs, tmp_path, capsys):
    """Per-target weights that pick one run per target: the blend's score per target is that run's, exactly."""
    pick_a = ELL_TARGETS[:3]
    weights = {t: ([1.0, 0.0] if t in pick_a else [0.0, 1.0]) for t in ELL_TARGETS}
    runs = [five_runs / "ell" / "a-attention", five_runs / "ell" / "b-mean"]
    file = write_ensemble(tmp_path / "ens.json", runs, weights, {"blend": 0.123, "blend_held_out_estimate": 0.5})
    scored = score_ensemble(load_ensemble_file(file))
    err = report(capsys, "--ensemble", file)
    assert f"wrote {tmp_path / 'ens.html'}" in err
    folds = json.loads((five_runs / "ell" / "b-mean" / "cv.json").read_text())
    assert scored.n_rows == folds["n_oof"]  # b-mean predicted fold 0 only: the rows both runs cover
    for k, target in enumerate(ELL_TARGETS):
        assert scored.blend_scores[k] == pytest.approx(scored.member_scores[0 if target in pick_a else 1, k])
    html = (tmp_path / "ens.html").read_text()
    check_self_contained(html)
    assert "w cohesion" in html and "<td>1.000</td>" in html and "<td>0.000</td>" in html
    assert f"<td>{scored.blend_overall:.4f}</td>" in html and "held-out estimate" in html
    assert "records OOF MCRMSE 0.1230" in html  # the recorded score disagrees with the recomputed one


def test_report_of_the_file_kit_ensemble_writes(five_runs, tmp_path, capsys):
    out = tmp_path / "ell.json"
    code, _, err = run_kit(capsys, "ensemble", "ell", "--run", five_runs / "ell" / "a-attention", "--run",
                           five_runs / "ell" / "b-mean", "--out", out)
    assert code == 0, err
    data = json.loads(out.read_text())
    report(capsys, "--ensemble", out, "--out", tmp_path / "ell.html")
    html = (tmp_path / "ell.html").read_text()
    check_self_contained(html)
    assert f"<td>{data['oof']['blend']:.4f}</td>" in html and "records OOF" not in html  # recomputed = recorded
    for target in data["weights"]:
        assert f"w {target}" in html
    assert f"{data['oof']['blend_held_out_estimate']:.4f}" in html


def test_report_of_runs_blends_with_the_weights_kit_bundle_would_fit(five_runs, tmp_path, capsys, ell_small_dir):
    out = tmp_path / "blend.html"
    report(capsys, "--run", "a-attention", "--run", "b-mean", "--root", five_runs, "--out", out)
    fit = ensemble_report(get_competition("ell"), [five_runs / "ell" / "a-attention", five_runs / "ell" / "b-mean"])
    html = out.read_text()
    check_self_contained(html)
    assert f"<td>{fit.blend_score:.4f}</td>" in html
    for weight in fit.weights:
        assert f"<td>{weight:.3f}</td>" in html
    report(capsys, "--run", "a-attention", "--run", "b-mean", "--root", five_runs, "--weights", "equal", "--out", out)
    assert out.read_text().count("<td>0.500</td>") == 2


@pytest.mark.parametrize("content, fragments", [
    ({"competition": "ell", "runs": [], "weights": {}}, ["not an ensemble file"]),
    ({"competition": "ell", "runs": [{"path": "/nope/run"}], "weights": {"*": [1]}}, ["run /nope/run is not there"]),
    ({"competition": "ell", "runs": "A", "weights": {"*": [1]}}, ["not an ensemble file"]),
    ({"competition": "ell", "runs": ["A"], "weights": {"*": [1]}}, ["not an ensemble file"]),
])
def test_bad_ensemble_file_is_one_line_error(tmp_path, capsys, content, fragments):
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(content))
    code, _, err = run_kit(capsys, "report", "--ensemble", file)
    assert_one_line_error(code, err, "--ensemble", *fragments)


def test_ensemble_weights_must_match_the_runs(five_runs, tmp_path, capsys):
    runs = [five_runs / "ell" / "a-attention", five_runs / "ell" / "b-mean"]
    code, _, err = run_kit(capsys, "report", "--ensemble", write_ensemble(tmp_path / "e.json", runs, {"*": [1.0]}))
    assert_one_line_error(code, err, "expected 2 numbers")


@pytest.mark.parametrize("args, fragment", [
    ([], "give exactly one of RUN, --ensemble FILE or --run A --run B"),
    (["a-attention", "--run", "b-mean"], "(got RUN, --run)"),
    (["--run", "a-attention"], "needs at least two runs"),
    (["nope"], "run 'nope': no run folder of that name"),
])
def test_report_arguments(five_runs, capsys, args, fragment):
    code, _, err = run_kit(capsys, "report", *args, "--root", five_runs)
    assert_one_line_error(code, err, fragment)


# --- in a real browser ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        if os.environ.get("KIT_REQUIRE_BROWSER"):
            pytest.fail("KIT_REQUIRE_BROWSER is set but chromium is not installed (nox -s tests installs it as root)")
        pytest.skip("chromium is not installed: apt-get install chromium (nox -s tests does it as root)")
    with Chromium(binary) as chromium:
        yield chromium


def assert_renders(visit, page, images: int):
    """No console error, exception or failed load; nothing loaded but the file and its data: URIs; every plot
    decoded, and drawn on screen: its area of the screenshot is not blank and holds coloured pixels."""
    assert visit.errors() == []
    assert all(url == page.resolve().as_uri() or url.startswith("data:") for url in visit.requests), visit.requests
    assert len(visit.images) == images
    shot = np.asarray(Image.open(io.BytesIO(visit.screenshot)).convert("RGB")).astype(int)
    assert shot.shape[0] > 1000 and shot.std() > 10
    for image in visit.images:
        assert image["complete"] and image["width"] > 200 and image["height"] > 150, image
        x, y, w, h = (int(round(image[k])) for k in ("x", "y", "w", "h"))
        assert w > 200 and h > 150, image
        area = shot[y:y + h, x:x + w]
        saturation = area.max(axis=2) - area.min(axis=2)
        assert area.std() > 10 and (saturation > 40).mean() > 0.001, image["alt"]


def test_reports_render_in_headless_chromium(five_runs, fbe_tiny_run, tmp_path, capsys, browser):
    pages = {}
    for name, args, images in [("run", ["a-attention"], 4), ("dead", ["c-dead"], 4), ("uspppm", ["d-bce"], 4),
                               ("blend", ["--run", "a-attention", "--run", "b-mean"], 2),
                               ("multiclass", [str(fbe_tiny_run)], 5)]:
        out = tmp_path / f"{name}.html"
        report(capsys, *args, "--root", five_runs, "--out", out)
        pages[name] = (out, images)
    file = write_ensemble(tmp_path / "ens.json", [five_runs / "ell" / "a-attention", five_runs / "ell" / "b-mean"],
                          {"*": [0.7, 0.3]})
    report(capsys, "--ensemble", file)
    pages["file"] = (tmp_path / "ens.html", 2)
    for name, (page, images) in pages.items():
        visit = browser.visit(page)
        assert_renders(visit, page, images)
        assert "Traceback" not in visit.text
        if name == "run":
            assert "CV per fold and target" in visit.text and "Residuals by text length" in visit.text
        if name == "multiclass":
            assert "ROC and precision-recall curves" in visit.text and "Reliability" in visit.text
            assert {"ROC and precision-recall curves", "reliability diagram"} <= {i["alt"] for i in visit.images}


def test_the_browser_check_sees_errors_network_and_blank_images(tmp_path, browser):
    """The checks above can fail: a script error, a remote image and an empty plot are each caught."""
    blank = Image.new("RGB", (400, 300), "white")
    buffer = io.BytesIO()
    blank.save(buffer, format="PNG")
    data = __import__("base64").b64encode(buffer.getvalue()).decode()
    page = tmp_path / "bad.html"
    page.write_text(f'<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body style="height:1200px">'
                    f'<img alt="blank" src="data:image/png;base64,{data}">'
                    f'<img alt="remote" src="http://127.0.0.1:9/plot.png">'
                    f'<script>console.error("boom"); undefinedCall();</script></body></html>')
    visit = browser.visit(page)
    errors = visit.errors()
    assert any("boom" in e for e in errors) and any("undefinedCall" in e for e in errors), errors
    assert "http://127.0.0.1:9/plot.png" in visit.requests
    with pytest.raises(AssertionError):
        assert_renders(visit, page, 2)
    blank_only = tmp_path / "blank.html"
    blank_only.write_text(f'<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body '
                          f'style="height:1200px"><h1 style="background:#1f77b4;color:#fff;height:300px">a page</h1>'
                          f'<img alt="blank" src="data:image/png;base64,{data}"></body></html>')
    with pytest.raises(AssertionError, match="blank"):
        assert_renders(browser.visit(blank_only), blank_only, 1)
