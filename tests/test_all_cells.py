"""Every registered warper runs on every embedded task (smoke profile) through the same interface."""

import json

import pytest
import torch

from bench.cli import main

METHODS = ("gfla", "plain_flow", "affine_stn", "nonlocal_attn", "none")
TASKS = ("pose_synthetic", "face_synthetic", "view_synthetic_chair")


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_every_method_on_every_task(tmp_path, device):
    """On CUDA too: every tensor a loss, warper or metric makes must follow its inputs' device."""
    results = tmp_path / "results"
    code = main(["run", "--profile", "smoke", "--tasks", ",".join(TASKS), "--methods", ",".join(METHODS),
                 "--results-dir", str(results), "--work-dir", str(tmp_path / "runs"),
                 "--data-root", str(tmp_path / "data"), "--device", device])
    assert code == 0
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    cells = {(r["cell"]["task"], r["cell"]["method"]): r for r in records if r.get("role") != "floor"}
    assert set(cells) == {(t, m) for t in TASKS for m in METHODS}
    floors = [r for r in records if r.get("role") == "floor"]
    assert {(r["cell"]["task"], r["cell"]["method"]) for r in floors} >= {
        ("face_synthetic", "floor:reference"), ("pose_synthetic", "floor:source"),
        ("view_synthetic_chair", "floor:mean_colour")}
    assert all(r["status"] == "ok" for r in floors), [r["error"] for r in floors]
    for (task, method), record in cells.items():
        assert record["status"] == "ok", (task, method, record["error"])
        assert record["metrics"]["ssim"]["count"] == record["protocol"]["num_generated"] > 0
        samples = record["artifacts"]["samples"]
        assert samples and all((results / s["output"]).is_file() for s in samples)
        if method in ("gfla", "plain_flow"):  # face samples show the reference frame's flows
            assert samples[0]["flows"] and samples[0]["masks"]
            assert all((results / path).is_file() for path in samples[0]["flows"] + samples[0]["masks"])
        elif method == "none":
            assert samples[0]["flows"] == samples[0]["masks"] == []
    face_gfla = cells[("face_synthetic", "gfla")]
    assert (results / face_gfla["artifacts"]["video"]).is_file()
    # the recurrent task really has two sources (previous frame and reference)
    assert face_gfla["config"]["kind"] == "face_animation"
    html = (results / "report.html").read_text()
    assert all(method in html for method in METHODS)
