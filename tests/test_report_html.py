"""The run report (``skewtune.evaluation.report``): one self-contained HTML page per training run.

Structure and numbers are checked in Python on a synthetic run that looks like a real one (3 imbalanced
classes, logged curves, softmax rows, baselines); hostile texts must render as text; the ECE matches a
hand-computed example. Then a real headless Chromium renders the page: every image decodes, no hostile markup
became an element, and a screenshot is far from blank. Without a ``chromium`` / ``chromium-browser`` binary
on PATH (``apt-get install chromium``) those tests skip, saying so.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skewtune.evaluation.report import (
    calibration_bins,
    confident_mistakes,
    curve_family,
    expected_calibration_error,
    write_report,
)

LABELS = ["negative", "neutral", "positive"]
HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "</td></tr></table><h1>owned</h1>"]
SECTIONS = ["headline", "settings", "class-counts", "curves", "confusion", "per-class", "calibration",
            "mistakes", "baselines", "metrics"]


def synthetic_run(n_test: int = 150, seed: int = 0) -> dict[str, Any]:
    """write_report's arguments for a run that looks real: imbalanced classes, noisy softmax rows, curves."""
    rng = np.random.default_rng(seed)
    k = len(LABELS)
    y_true = rng.choice(k, size=n_test, p=[0.6, 0.25, 0.15]).tolist()
    logits = rng.normal(size=(n_test, k)) + 2.2 * np.eye(k)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    texts = [f"test text {i} about the {rng.choice(['movie', 'phone', 'team'])}" for i in range(n_test)]
    # three very confident mistakes carry hostile texts (the most confident mistakes, so the table shows them)
    for j, text in enumerate(HOSTILE):
        wrong = (y_true[j] + 1) % k
        probs[j] = 0.01
        probs[j, wrong] = 0.98 - 0.01 * j
        probs[j] /= probs[j].sum()
        texts[j] = text
    probabilities = probs.tolist()
    predicted = probs.argmax(axis=1)
    matrix = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, predicted):
        matrix[t, p] += 1
    per_class = {}
    for c, name in enumerate(LABELS):
        tp, support, pred = matrix[c, c], matrix[c].sum(), matrix[:, c].sum()
        precision, recall = tp / pred if pred else 0.0, tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(support)}
    accuracy = float(np.trace(matrix) / n_test)
    macro_f1 = float(np.mean([s["f1"] for s in per_class.values()]))
    scalars = []
    for step in range(1, 61):
        logged = {"train/loss": 1.1 * math.exp(-step / 25) + 0.05 * rng.random(),
                  "train/learning_rate": 1e-3 * min(step / 6, (60 - step) / 54),  # warm-up, linear decay
                  "train/grad_norm": 2.0 * math.exp(-step / 40) + 0.2 * rng.random(),
                  "train/samples_per_second": 300 + 20 * rng.random()}
        scalars += [{"step": step, "name": name, "value": value} for name, value in logged.items()]
    for epoch, step in enumerate((20, 40, 60), start=1):
        scalars.append({"step": step, "name": "eval/loss", "value": 0.9 - 0.15 * epoch})
        scalars.append({"step": step, "name": "eval/macro_f1", "value": 0.4 + 0.1 * epoch})
        scalars.append({"step": step, "name": "eval/accuracy", "value": 0.5 + 0.08 * epoch})
        for c, name in enumerate(LABELS):
            scalars.append({"step": step, "name": f"eval/f1_{name}", "value": 0.3 + 0.1 * epoch + 0.05 * c})
    counts = lambda *v: dict(zip(LABELS, v))  # noqa: E731
    return dict(
        title="minilm · lora · tweets & <friends>",
        settings={"backbone": "minilm", "adapter": "lora", "learning_rate": 0.001, "weight_decay": 2e-5,
                  "epochs": 3, "sampler": "oversample", "lora_layers": [0, 1], "note": "<b>not bold</b>"},
        class_counts={"train (before resampling)": counts(600, 250, 150),
                      "train (after resampling)": counts(600, 600, 600),
                      "validation": counts(120, 50, 30),
                      "test": counts(*np.bincount(y_true, minlength=k).tolist())},
        scalars=scalars, labels=LABELS, confusion_matrix=matrix.tolist(), per_class=per_class,
        probabilities=probabilities, y_true=y_true, texts=texts,
        baselines={"majority": {"macro_f1": 0.25, "accuracy": 0.6},
                   "tfidf + logistic regression": {"macro_f1": 0.55}},
        metrics={"eval_macro_f1": macro_f1, "eval_accuracy": accuracy, "eval_weighted_f1": 0.71,
                 "validation_macro_f1": 0.7, "train_size": 1000, "backbone": "minilm",
                 "eval_per_class_f1": {n: s["f1"] for n, s in per_class.items()}},
    )


class PageParser(HTMLParser):
    """The elements and text of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.ids: list[str] = []
        self._table: list[list[list[str]]] | None = None
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if dict(attrs).get("id"):
            self.ids.append(str(dict(attrs)["id"]))
        if tag == "table":
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


def table_after(page: str, anchor: str, index: int = 0) -> list[list[str]]:
    return parse(section(page, anchor)).tables[index]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return synthetic_run()


@pytest.fixture(scope="module")
def report(run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(tmp_path_factory.mktemp("run") / "report.html", **run)


# -------------------------------------------------------------------------------------- the page in Python


def test_every_section_is_present_self_contained_and_small(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    parsed = parse(page)
    assert [i for i in parsed.ids if i in SECTIONS] == SECTIONS
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    # class counts, 6 curve families (loss, lr, grad norm, throughput, eval metrics, per-class F1), confusion
    # matrix, reliability diagram
    assert len(images) == 9
    assert all(str(a["src"]).startswith("data:image/png;base64,") for a in images)
    assert all(a.get("alt") for a in images)
    # nothing to fetch or run: no script, no stylesheet link, no external URL anywhere
    assert not [t for t, _ in parsed.tags if t in ("script", "link", "iframe", "object", "embed")]
    fetching = {"src", "href", "srcset", "action", "formaction", "data", "poster", "background"}
    links = [(t, k, v) for t, attrs in parsed.tags for k, v in attrs.items() if k in fetching]
    assert all(t == "img" and k == "src" for t, k, _ in links)
    assert not [k for _, attrs in parsed.tags for k in attrs if k.startswith("on")]  # no event handler
    style = page[page.index("<style>"):page.index("</style>")]
    assert not re.search(r"url\(|@import|https?:", style)
    assert "default-src 'none'" in page
    assert report.stat().st_size < 600_000  # modest dpi: well under a megabyte
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]  # atomic: no leftover temporary file


def test_headline_tables_and_numbers_are_the_runs(run: dict[str, Any], report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    headline = " ".join(parse(section(page, "headline")).text)
    ece = expected_calibration_error(run["probabilities"], run["y_true"])
    assert f"{run['metrics']['eval_macro_f1']:.3f} macro-F1 (test)" in headline
    assert f"{run['metrics']['eval_accuracy']:.3f} accuracy (test)" in headline
    assert f"{ece:.3f} ECE (10 bins, test)" in headline
    delta = run["metrics"]["eval_macro_f1"] - 0.55
    assert f"{delta:.3f} macro-F1 − best baseline (tfidf + logistic regression)" in headline

    settings = table_after(page, "settings")
    assert ["learning_rate", "0.001"] in settings and ["weight_decay", "2e-05"] in settings
    assert ["lora_layers", "[0, 1]"] in settings
    assert ["note", "<b>not bold</b>"] in settings  # user text shown as text

    counts = table_after(page, "class-counts")
    assert counts[0] == ["class", *run["class_counts"]]
    assert counts[1][:4] == ["negative", "600 (60.0%)", "600 (33.3%)", "120 (60.0%)"]
    assert counts[-1][:3] == ["total", "1,000", "1,800"]

    matrix = run["confusion_matrix"]
    confusion_counts, confusion_shares = table_after(page, "confusion", 0), table_after(page, "confusion", 1)
    assert confusion_counts[0] == ["gold \\ predicted", *LABELS]
    for i, label in enumerate(LABELS):
        assert confusion_counts[i + 1] == [label] + [f"{v:,}" for v in matrix[i]]
        assert confusion_shares[i + 1] == [label] + [f"{v / sum(matrix[i]):.3f}" for v in matrix[i]]

    per_class = table_after(page, "per-class")
    for i, label in enumerate(LABELS):
        s = run["per_class"][label]
        assert per_class[i + 1] == [label, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}",
                                    str(s["support"])]

    calibration = table_after(page, "calibration")
    bins = calibration_bins(run["probabilities"], run["y_true"])
    assert sum(int(r[1].replace(",", "")) for r in calibration[1:]) == len(run["y_true"])
    assert [int(r[1]) for r in calibration[1:]] == [b["count"] for b in bins]
    assert f"ECE = {ece:.4f}" in " ".join(parse(section(page, "calibration")).text)

    baselines = table_after(page, "baselines")
    own = run["metrics"]
    assert baselines == [["model", "macro-F1", "accuracy"],
                         ["this run", f"{own['eval_macro_f1']:.4f}", f"{own['eval_accuracy']:.4f}"],
                         ["majority", "0.2500", "0.6000"], ["tfidf + logistic regression", "0.5500", "—"]]
    assert ["train_size", "1,000"] in table_after(page, "metrics")


def test_most_confident_mistakes_are_listed_escaped_and_in_order(run: dict[str, Any], report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    rows = table_after(page, "mistakes")[1:]
    expected = confident_mistakes(run["probabilities"], run["y_true"], 20)
    assert len(rows) == 20 == len(expected)
    assert [float(r[3]) for r in rows] == sorted((float(r[3]) for r in rows), reverse=True)
    for row, (i, gold, pred, conf) in zip(rows, expected):
        assert row == [run["texts"][i], LABELS[gold], LABELS[pred], f"{conf:.3f}"]
        assert gold != pred
    assert [r[0] for r in rows[:3]] == HOSTILE  # the hostile texts, shown verbatim as text
    for text in HOSTILE:
        assert text not in page
        assert html.escape(text, quote=True) in page
    assert "<h1>owned" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")
    assert "&lt;friends&gt;" in page and "<friends>" not in page  # the title too


def test_max_mistakes_long_texts_and_no_curves(run: dict[str, Any], tmp_path: Path) -> None:
    args = dict(run, scalars=[], max_mistakes=2)
    args["texts"] = ["x" * 5000] + run["texts"][1:]
    page = write_report(tmp_path / "report.html", **args).read_text(encoding="utf-8")
    assert "No training curves were logged." in section(page, "curves")
    assert "<img" not in section(page, "curves")
    rows = table_after(page, "mistakes")[1:]
    assert len(rows) == 2
    assert rows[0][0] == "x" * 1000 + " … (5,000 characters, cut)"


def test_perfect_predictions_leave_no_mistakes(tmp_path: Path) -> None:
    args = synthetic_run(n_test=30, seed=1)
    k = len(LABELS)
    args["probabilities"] = np.eye(k)[args["y_true"]].tolist()
    page = write_report(tmp_path / "report.html", **args).read_text(encoding="utf-8")
    assert "No mistakes on the test texts." in page
    assert "ECE = 0.0000" in page


@pytest.mark.parametrize("change, message", [
    ({"confusion_matrix": [[1, 0], [0, 1]]}, "confusion_matrix must be 3×3"),
    ({"y_true": [0]}, "one entry per test text"),
    ({"probabilities": [[0.5, 0.5]] * 150}, "needs 3 values"),
    ({"y_true": [3] * 150}, "label indices 0…2"),
])
def test_inconsistent_inputs_are_refused_before_writing(run: dict[str, Any], tmp_path: Path,
                                                        change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_report(tmp_path / "report.html", **dict(run, **change))
    assert not list(tmp_path.iterdir())


def test_no_pyplot_figure_is_left_open(run: dict[str, Any], tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    write_report(tmp_path / "report.html", **dict(run, scalars=run["scalars"][:40]))
    assert plt.get_fignums() == before


# ---------------------------------------------------------------------------------------------- ECE


def test_ece_matches_a_hand_computed_example() -> None:
    probabilities = [[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.35, 0.65], [0.72, 0.28]]
    y_true = [0, 1, 1, 0, 0]
    # bins (0.9,1]: 1 text, right, conf .95  → 1/5·|1 − .95|  = .010
    #      (0.8,.9]: 1 text, wrong, conf .85  → 1/5·|0 − .85|  = .170
    #      (0.7,.8]: 2 texts, both right, conf .735 → 2/5·|1 − .735| = .106
    #      (0.6,.7]: 1 text, wrong, conf .65  → 1/5·|0 − .65|  = .130
    assert expected_calibration_error(probabilities, y_true) == pytest.approx(0.416)
    bins = calibration_bins(probabilities, y_true)
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 0, 1, 2, 1, 1]
    assert bins[7]["confidence"] == pytest.approx(0.735) and bins[7]["accuracy"] == 1.0
    # upper edges belong to their bin; 1.0 to the last one
    edges = calibration_bins([[0.5, 0.5], [1.0, 0.0]], [0, 0])
    assert [b["count"] for b in edges] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert expected_calibration_error([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == 0.0
    assert math.isnan(expected_calibration_error([], []))


def test_curve_families() -> None:
    assert [curve_family(n) for n in ("train/loss", "eval/loss", "train/learning_rate", "train/grad_norm",
                                      "train/samples_per_second", "eval/macro_f1", "eval/accuracy",
                                      "eval/f1_positive", "train/epoch")] == [
        "loss", "loss", "learning rate", "grad norm", "throughput", "eval metrics", "eval metrics",
        "per-class F1 (eval)", "other"]


# ------------------------------------------------------------------------------------------ a real browser


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("no chromium or chromium-browser on PATH: the report's browser test needs one "
                "(Debian: apt-get install -y --no-install-recommends chromium)")


def chromium(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [binary, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
               "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


# the check page loads the report, unchanged, in an iframe (the report itself runs no script) and writes
# what the browser made of it into its own DOM, which --dump-dom prints
CHECK_PAGE = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="report" src="report.html" width="1200" height="2000"></iframe>
<script>
document.getElementById("report").addEventListener("load", function () {
  var out = {};
  try {
    var doc = this.contentDocument;
    var images = Array.prototype.slice.call(doc.images);
    out.images = images.map(function (img) {
      return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight, alt: img.alt};
    });
    out.sections = Array.prototype.map.call(doc.querySelectorAll("section"), function (s) { return s.id; });
    out.scripts = doc.querySelectorAll("script").length;
    out.h1 = doc.querySelectorAll("h1").length;
    out.mistakes = Array.prototype.map.call(doc.querySelectorAll("#mistakes td:first-child"),
                                            function (td) { return td.textContent; });
    out.title = doc.title;
  } catch (e) { out.error = String(e); }
  document.getElementById("result").textContent = JSON.stringify(out);
});
</script></body></html>
"""


def browser_view(report: Path, folder: Path) -> dict[str, Any]:
    """What headless Chromium made of ``report`` (loaded unchanged by CHECK_PAGE, beside it in ``folder``)."""
    binary = chromium_binary()
    folder.mkdir(exist_ok=True)
    shutil.copy(report, folder / "report.html")
    (folder / "check.html").write_text(CHECK_PAGE, encoding="utf-8")
    proc = chromium(binary, folder, "--allow-file-access-from-files", "--virtual-time-budget=10000",
                    "--dump-dom", (folder / "check.html").as_uri())
    match = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert proc.returncode == 0 and match, proc.stderr[-3000:]
    result = json.loads(html.unescape(match.group(1)))
    assert "error" not in result, result
    return result


def test_chromium_renders_the_page_and_every_image(report: Path, run: dict[str, Any], tmp_path: Path) -> None:
    result = browser_view(report, tmp_path)
    assert result["sections"] == SECTIONS
    assert len(result["images"]) == 9  # hostile texts added no <img>
    for image in result["images"]:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
    assert result["scripts"] == 0 and result["h1"] == 1  # neither <script> nor "<h1>owned" became an element
    assert result["mistakes"][:3] == HOSTILE
    assert result["title"] == run["title"]


def test_chromium_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    binary = chromium_binary()
    from PIL import Image

    shot = tmp_path / "report.png"
    proc = chromium(binary, tmp_path, "--screenshot=" + str(shot), "--window-size=1200,2000",
                    "--virtual-time-budget=5000", report.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-3000:]
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours = np.unique(pixels, axis=0)
    non_white = (pixels < 245).any(axis=1).mean()
    # text, tables and the first figures: hundreds of colours, a real share of inked pixels
    assert len(colours) > 200, len(colours)
    assert 0.03 < non_white < 0.9, non_white
    # the figures were drawn, not their alt text: matplotlib's first colour (C0, #1f77b4) fills the
    # class-count bars
    c0 = (np.abs(pixels.astype(int) - [0x1F, 0x77, 0xB4]).sum(axis=1) < 12).sum()
    assert c0 > 4000, c0


def test_a_real_run_writes_a_report_that_chromium_renders(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """`skewtune train` on the tiny backbone with the defaults' report on: report.html next to metrics.json, its
    curves from the run's log, every image loaded in a real headless Chromium."""
    from skewtune.cli.main import main
    from tests.conftest import tiny_args

    out = tmp_path / "run"
    argv = tiny_args(tiny_bert, toy_csv, out, "--report_plots", "true", "--sampler", "random_over",
                     "--logging_steps", "2", "--eval_steps", "4", "--report_to", "none")
    assert main(["train", *argv]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text())
    assert "train (after resampling)" in page and "TF-IDF" not in page  # tiny runs skip the baselines
    assert f"{metrics['eval_macro_f1']:.4f}" in page
    result = browser_view(out / "report.html", tmp_path / "check")
    assert result["scripts"] == 0, result
    assert len(result["images"]) >= 6  # class counts, curves (loss, lr, grad norm, throughput, eval), matrix, calibration
    for image in result["images"]:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
