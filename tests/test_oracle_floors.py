"""The oracle_flow warper, the floor rows and the transport metrics end to end, on data whose ground
truth is an exact whole-pixel shift (tests/shifted_data.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.cell import to_uint8
from bench.cli import main
from bench.floors import floor_outputs
from bench.metrics.transport import NO_FLOW, NO_GROUND_TRUTH, TransportStats
from bench.records import RecordStore
from bench.registry import DATASETS, WARPERS
from bench.taskspec import load_task
from bench.training import Trainer
from bench.warp import TransportTruth
from shifted_data import ShiftedPairs


def pair_config(dataset: str = "shifted_pairs"):
    return load_task("pose_synthetic", "smoke", [f"dataset.name={dataset}"])


def test_oracle_is_registered_as_an_oracle():
    assert WARPERS.get("oracle_flow").role == "oracle"
    assert WARPERS.get("gfla").role == "method"


def test_oracle_fails_clearly_without_ground_truth():
    cfg = pair_config("unmatched_pairs")
    trainer = Trainer(cfg, "oracle_flow", DATASETS.get("unmatched_pairs").train_set(None, cfg, 0), "cpu", 0)
    with pytest.raises(ValueError, match="oracle_flow warps by the ground-truth flow.*lack 'flow_gt'"):
        trainer.run(max_steps=1)


def test_oracle_on_video_plans_the_ground_truth_of_both_sources():
    cfg = load_task("face_synthetic", "smoke", ["dataset.name=shifted_faces"])
    spec = DATASETS.get("shifted_faces")
    trainer = Trainer(cfg, "oracle_flow", spec.train_set(None, cfg, 0), "cpu", 0)
    trainer.run(max_steps=1)  # one chunk of the recurrent video training, with the clip's ground truth
    video = spec.test_set(None, cfg)[0]
    stats = TransportStats()
    truth = {key: video[key] for key in ("flows_gt", "visibility_gt")}
    trainer.generate_video(video["frames"], video["structures"], truth,
                           on_plan=lambda t, plan: stats.add(plan, TransportTruth.of_frame(video, t), 1))
    assert len(stats.images) == len(video["frames"]) and stats.num_sources == 2
    assert all(image.epe_per_source == pytest.approx([0.0, 0.0], abs=1e-5) for image in stats.images)


def joined(parts):
    """A cell's (fake, real, names) parts as one batch."""
    return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), [n for p in parts for n in p[2]])


def test_image_space_oracle_reproduces_the_target_on_visible_pixels():
    cfg = pair_config()
    test_set = ShiftedPairs(6, tuple(cfg.dataset.resolution), 100)
    warped, target, names = joined(floor_outputs(cfg, "floor:gt_warp", test_set))
    visible = torch.stack([test_set[i]["visibility_gt"] for i in range(len(test_set))]).bool().expand_as(target)
    assert torch.equal(warped[visible], target[visible]) and names == [f"pair{100 + i}" for i in range(6)]
    sources = torch.stack([test_set[i]["source_image"] for i in range(len(test_set))])
    mean = to_uint8(sources.mean(dim=(2, 3), keepdim=True).expand_as(sources))
    assert (~visible).any() and torch.equal(warped[~visible], mean[~visible])
    flat, _, _ = joined(floor_outputs(cfg, "floor:mean_colour", test_set))
    assert torch.equal(flat, mean)


def _run(tmp_path, dataset: str, methods: str, *extra: str) -> list[dict]:
    assert main(["run", "--profile", "smoke", "--tasks", "pose_synthetic", "--methods", methods,
                 "--set", f"dataset.name={dataset}", "--results-dir", str(tmp_path / "results"),
                 "--work-dir", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data"), *extra]) == 0
    return RecordStore(tmp_path / "results").read()


@pytest.mark.slow
def test_run_scores_transport_records_the_oracle_and_caches_the_floors(tmp_path):
    records = _run(tmp_path, "shifted_pairs", "oracle_flow,plain_flow")
    by_method = {record["cell"]["method"]: record for record in records}
    assert set(by_method) == {"oracle_flow", "plain_flow", "floor:source", "floor:mean_colour", "floor:gt_warp"}
    assert all(record["status"] == "ok" for record in records), [r["error"] for r in records]

    oracle, learned = by_method["oracle_flow"], by_method["plain_flow"]
    assert oracle["role"] == "oracle" and "role" not in learned
    assert oracle["metrics"]["epe"]["value"] == pytest.approx(0.0, abs=1e-5)  # its flows are the ground truth
    assert oracle["metrics"]["epe"]["breakdown"]["per_scale"] == pytest.approx([0.0, 0.0], abs=1e-5)
    assert oracle["metrics"]["occlusion"]["value"] > 0.9
    assert learned["metrics"]["epe"]["value"] > 0.1 and learned["metrics"]["epe"]["count"] == 4
    assert 0 <= learned["metrics"]["occlusion"]["value"] <= 1
    sample = learned["artifacts"]["samples"][0]
    assert all((tmp_path / "results" / sample[key]).is_file() for key in ("flow_gt", "visibility_gt"))
    assert "flow gt" in (tmp_path / "results" / "report.html").read_text()

    floors = [record for record in records if record.get("role") == "floor"]
    assert len(floors) == 3
    for floor in floors:
        assert floor["protocol"] == learned["protocol"]  # the same table
        assert floor["metrics"]["epe"]["unavailable"] == NO_FLOW
        assert floor["metrics"]["ssim"]["count"] == learned["metrics"]["ssim"]["count"]
    # the image-space oracle beats the untransported source
    assert by_method["floor:gt_warp"]["metrics"]["l1"]["value"] < by_method["floor:source"]["metrics"]["l1"]["value"]

    # cached: a rerun (another training setup too) records nothing new; --force recomputes them
    assert len(_run(tmp_path, "shifted_pairs", "oracle_flow,plain_flow")) == len(records)
    again = _run(tmp_path, "shifted_pairs", "none", "--set", "train.stage2_steps=1")
    assert [r["cell"]["method"] for r in again[len(records):]] == ["none"]
    forced = _run(tmp_path, "shifted_pairs", "none", "--set", "train.stage2_steps=1", "--force")
    assert sorted(r["cell"]["method"] for r in forced[len(again):]) == sorted(
        ["none", "floor:source", "floor:mean_colour", "floor:gt_warp"])


@pytest.mark.slow
def test_run_without_ground_truth(tmp_path):
    records = _run(tmp_path, "unmatched_pairs", "oracle_flow,none")
    by_method = {record["cell"]["method"]: record for record in records}
    assert set(by_method) == {"oracle_flow", "none", "floor:source", "floor:mean_colour"}  # no image-space oracle
    oracle = by_method["oracle_flow"]
    assert oracle["status"] == "failed" and oracle["error"]["phase"] == "train" and oracle["role"] == "oracle"
    assert "lack 'flow_gt'" in oracle["error"]["message"]
    for method in ("none", "floor:source"):
        metrics = by_method[method]["metrics"]
        assert metrics["epe"]["unavailable"] == metrics["occlusion"]["unavailable"] == NO_GROUND_TRUTH
        assert metrics["ssim"]["value"] is not None


def test_samples_show_the_ground_truth_on_the_flows_colour_scale(tmp_path):
    from PIL import Image

    from bench.ops import downsample_truth
    from bench.samples import write_pair_samples

    cfg = pair_config()
    batch = next(iter(torch.utils.data.DataLoader(ShiftedPairs(2, tuple(cfg.dataset.resolution), 100), batch_size=2)))
    flows = [[downsample_truth(batch["flow_gt"], batch["visibility_gt"], (h, h))[0]] for h in (4, 8)]
    plan = {"flows": flows, "masks": [[torch.ones(2, 1, h, h)] for h in (4, 8)]}
    samples = write_pair_samples([(batch, batch["target_image"], plan)], 2, tmp_path / "samples", tmp_path)["samples"]

    def png(path):
        return np.asarray(Image.open(tmp_path / path))

    for sample in samples:
        truth = png(sample["flow_gt"])
        assert truth.shape[:2] == tuple(cfg.dataset.resolution) and (truth != 255).any()  # coloured: it moves
        for path in sample["flows"]:  # the exact flow at a coarser scale: the same picture, same colours
            assert np.array_equal(png(path), truth)
        assert png(sample["visibility_gt"]).min() == 0 and png(sample["visibility_gt"]).max() == 255


def test_image_space_oracle_of_a_video_warps_the_reference_frame():
    from shifted_data import ShiftedVideos

    cfg = load_task("face_synthetic", "smoke", ["dataset.name=shifted_faces"])
    videos = ShiftedVideos(2, 5, tuple(cfg.dataset.resolution), 0)
    warped, frames, names = joined(floor_outputs(cfg, "floor:gt_warp", videos))
    visible = torch.cat([videos[i]["visibility_gt"][:, 1] for i in range(2)]).bool().expand_as(frames)
    assert torch.equal(warped[visible], frames[visible]) and (~visible).any()
    assert names[:2] == ["video0_0000", "video0_0001"] and len(names) == 10
    reference, _, _ = joined(floor_outputs(cfg, "floor:reference", videos))
    assert torch.equal(reference[4], frames[0]) and torch.equal(reference[5], frames[5])


@pytest.mark.slow
def test_face_run_scores_both_sources(tmp_path):
    assert main(["run", "--profile", "smoke", "--tasks", "face_synthetic", "--methods", "plain_flow",
                 "--set", "dataset.name=shifted_faces", "--results-dir", str(tmp_path / "results"),
                 "--work-dir", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data")]) == 0
    by_method = {record["cell"]["method"]: record for record in RecordStore(tmp_path / "results").read()}
    assert set(by_method) == {"plain_flow", "floor:reference", "floor:mean_colour", "floor:gt_warp"}
    assert all(record["status"] == "ok" for record in by_method.values())
    epe = by_method["plain_flow"]["metrics"]["epe"]
    assert epe["count"] == 4 and set(epe["breakdown"]["per_source"]) == {"previous", "reference"}
    assert by_method["plain_flow"]["artifacts"]["samples"][0]["flow_gt"]
    l1 = {method: record["metrics"]["l1"]["value"] for method, record in by_method.items()}
    assert l1["floor:gt_warp"] < l1["floor:reference"]


@pytest.mark.slow
def test_torchrun_gathers_the_transport_statistics_of_both_ranks(tmp_path):
    from pathlib import Path

    from cli_runs import bench_args, records, run_bench
    from test_distributed import TORCHRUN

    extra = ("--methods", "plain_flow", "--set", "dataset.name=shifted_pairs",
             "--plugin", str(Path(__file__).with_name("shifted_data.py")))
    code, output = run_bench(bench_args(tmp_path / "ddp", *extra), launcher=TORCHRUN)
    assert code == 0, output
    [record] = records(tmp_path / "ddp")
    assert main(bench_args(tmp_path / "single", *extra)) == 0
    [reference] = records(tmp_path / "single")
    for name in ("epe", "occlusion"):
        assert record["metrics"][name]["count"] == reference["metrics"][name]["count"] == 4
    # the same training up to float rounding; not so the AUROC, whose barely trained, almost constant
    # masks are ranked by that rounding
    assert record["metrics"]["epe"]["value"] == pytest.approx(reference["metrics"]["epe"]["value"], rel=1e-4)


def test_only_an_oracle_is_handed_the_ground_truth():
    from bench.warp import Warper

    seen = []

    class TruthSpy(Warper):
        def plan(self, inputs):
            seen.append(inputs.ground_truth)
            return {}

        def warp(self, scale, source_features, target_feature, plan):
            return None

    WARPERS.add("truth_spy", TruthSpy)
    cfg = pair_config()
    train_set = DATASETS.get("shifted_pairs").train_set(None, cfg, 0)
    Trainer(cfg, "truth_spy", train_set, "cpu", 0).run(max_steps=1)
    assert seen == [None] and "flow_gt" in train_set[0]
