"""The HTML report: self-contained (every image embedded), tables, failures, samples, flows, videos."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from bench.leaderboard import write_leaderboards
from fake_results import failure, metric, record, trained_record, write_records, write_samples


class _Collector(HTMLParser):
    """Every tag's attributes, and the text of <td> cells with their classes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.cells: list[tuple[str, str]] = []
        self._cell: list | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "td":
            self._cell = [dict(attrs).get("class") or "", ""]

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell[0], self._cell[1]))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    gfla = record("gfla", 0, {"ssim": metric(0.8), "fid": metric(None, unavailable="weights missing: x.pth")})
    gfla["artifacts"] = write_samples(root, gfla["cell"]["key"], count=2, scales=2)
    gfla["metrics"]["ssim"]["protocol"] = {"implementation": "skimage", "reference_cache": "/tmp/x.npz"}
    none = record("none", 0, {"ssim": metric(0.6), "fid": metric(None, unavailable="weights missing: x.pth")})
    none["artifacts"] = write_samples(root, none["cell"]["key"], count=2, scales=0)
    none["artifacts"]["samples"][1]["output"] = "../outside.png"  # must not be read
    (root.parent / "outside.png").write_bytes((root / gfla["artifacts"]["samples"][0]["output"]).read_bytes())
    broken = failure("<script>alert(1)</script>", 0)
    face = record("gfla", 0, {"l1": metric(0.1)}, task="face_synthetic", dataset="synthetic_faces")
    face["artifacts"] = write_samples(root, face["cell"]["key"], count=1, scales=1, video=True)
    fashion = record("gfla", 0, {"fid": metric(70.0)}, task="pose_deepfashion", dataset="deepfashion")
    write_records(root, [gfla, none, broken, face, fashion])
    write_leaderboards(root)
    return root


@pytest.fixture(scope="module")
def page(results) -> _Collector:
    collector = _Collector()
    collector.feed((results / "report.html").read_text(encoding="utf-8"))
    return collector


def test_every_image_is_embedded_or_next_to_the_report(results, page):
    sources = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    # pose_synthetic: 2 samples x (source, structure, 2 outputs, target) - 1 refused path; 2 x 4 flow/mask
    # face_synthetic: 1 x 4 + 1 x 2 flow/mask + 1 video; one flow colour key per flow section
    assert len(sources) == (2 * 5 - 1) + 2 * 4 + 4 + 2 + 1 + 2
    for src in sources:
        if src.startswith("data:"):
            header, payload = src.split(",", 1)
            assert header in ("data:image/png;base64", "data:image/gif;base64")
            Image.open(io.BytesIO(base64.b64decode(payload))).verify()
        else:
            assert (results / src).is_file(), src
    assert sum(src.startswith("data:image/gif") for src in sources) == 1  # the face video


def test_no_external_requests(page):
    for _, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not value.startswith(("http:", "https:", "//")), value
    assert not any(tag in ("script", "link") for tag, _ in page.tags)


def test_environment_summary(results):
    text = (results / "report.html").read_text(encoding="utf-8")
    assert "<tr><th>libraries</th><td>lpips 0.1.4 · torch 2.14.1</td></tr>" in text
    assert "<tr><th>host</th><td>node0</td></tr>" in text and "slurm_job_id" not in text  # unset: left out


def test_paths_outside_the_results_dir_are_not_embedded(results):
    text = (results / "report.html").read_text(encoding="utf-8")
    assert "missing: ../outside.png" in text


def test_tables_failures_and_reported_block(results, page):
    text = (results / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; seed 0 failed" in text  # escaped, listed with its error
    assert "RuntimeError" in text and "CUDA out of memory | tried 2 GiB" in text and "<summary>traceback" in text
    best = [cell for cls, cell in page.cells if "best" in cls.split()]
    assert "0.8000" in best and "0.6000" not in best
    assert ("num na", "n/a1") in page.cells or ("num na", "n/a2") in page.cells
    assert "weights missing: x.pth" in text
    assert "how each metric was computed" in text and "implementation=skimage" in text and "/tmp/x.npz" not in text
    assert text.count('class="board reported"') == 1  # only the deepfashion table gets published rows
    assert "10.573" in text and "Reported" in text
    assert "<th>Method</th><th>n</th><th>SSIM ↑</th><th>FID ↓</th>" in text  # no count: FID never computed


def test_samples_grid_columns_and_flow_labels(results):
    text = (results / "report.html").read_text(encoding="utf-8")
    header = "<th></th><th>source</th><th>target structure</th><th>gfla</th><th>none</th><th>ground truth</th>"
    assert header in text
    assert "flow s0" in text and "mask s1" in text
    assert "gfla: flow" in text and "none: flow" not in text  # the none baseline has no flows


def test_tables_of_different_training_setups_are_labelled(tmp_path):
    short = trained_record("gfla", 0, {"ssim": metric(0.6)}, steps=140)
    long = trained_record("gfla", 0, {"ssim": metric(0.75)}, steps=1400)
    write_records(tmp_path, [short, long])
    write_leaderboards(tmp_path)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count("<span class='tag'>training ") == 2
    assert "Trained differently from the other quick tables of this task and protocol: train.stage2_steps=140" in html
    assert "Profile overrides: train.stage2_steps=1400</p>" in html
