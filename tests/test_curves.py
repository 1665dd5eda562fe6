"""Learning curves: they record what they claim, and they never change the training trajectory."""

from __future__ import annotations

import base64
import re

import pytest
import torch

from bench.checkpoint import load_checkpoint
from bench.cli import main
from bench.curves import CURVE_METRICS, LearningCurve, curve_indices
from bench.leaderboard import write_leaderboards
from bench.leaderboard.curve_plots import learning_curves_html, method_lines
from bench.runner import Cell
from bench.training import Trainer
from cli_runs import bench_args, records
from gfla_tiny import DriftingClips, ShiftedTextures, collect, roundtrip, tiny_config


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return [*trainer.generator.state_dict().values(), *trainer.discriminator.state_dict().values()]


def pair_config(every: int):
    cfg = tiny_config()
    cfg.train.stage1_steps, cfg.train.stage2_steps = 3, 5
    cfg.train.eval_every, cfg.train.curve_images = every, 3
    return cfg


def test_curve_indices_are_fixed_per_seed_distinct_and_in_range():
    assert curve_indices(50, 8, seed=0) == curve_indices(50, 8, seed=0)
    assert curve_indices(50, 8, seed=0) != curve_indices(50, 8, seed=1)
    indices = curve_indices(50, 8, seed=3)
    assert len(set(indices)) == 8 and all(0 <= i < 50 for i in indices) and indices == sorted(indices)
    assert curve_indices(5, 32, seed=0) == [0, 1, 2, 3, 4]  # a small split: all of it
    state = torch.get_rng_state()
    curve_indices(50, 8, seed=0)
    assert torch.equal(state, torch.get_rng_state())  # a private generator


def test_curves_on_and_off_train_bit_identical_weights():
    data, held_out = ShiftedTextures(count=5), ShiftedTextures(count=4, seed=1)
    # each trainer is built right before its run: the constructor seeds the global RNG the run draws from
    plain = Trainer(pair_config(0), "gfla", data, "cpu", seed=2, curve_set=held_out)
    assert plain.curve is None  # eval_every 0: no curve
    plain_log = collect(plain)
    plain_rng = torch.get_rng_state()
    curved = Trainer(pair_config(1), "gfla", data, "cpu", seed=2, curve_set=held_out)
    curved_log = collect(curved)
    assert torch.equal(plain_rng, torch.get_rng_state())  # the points drew nothing from the global RNG
    assert plain_log == curved_log
    assert all(torch.equal(a, b) for a, b in zip(weights(plain), weights(curved), strict=True))
    assert len(curved.curve.points[1]) == 3 and len(curved.curve.points[2]) == 5
    assert curved.generator.training


def test_curve_points_hold_the_metrics_of_the_subset_and_the_losses_since_the_last_point():
    cfg = pair_config(2)  # stage 1: points at 2 and 3 (its last step); stage 2: 2, 4, 5
    held_out = ShiftedTextures(count=6, seed=1)
    seen: list[dict] = []

    def mean_output(generated, batch, plan):  # the extension point: (generated, batch, plan) -> per image
        seen.append({"names": list(batch["name"]), "plan": sorted(plan)})
        return generated.mean(dim=(1, 2, 3))

    trainer = Trainer(cfg, "gfla", ShiftedTextures(count=5), "cpu", seed=0, curve_set=held_out)
    trainer.curve = LearningCurve(held_out, False, 2, 3, seed=0, metrics={**CURVE_METRICS, "mean": mean_output})
    log = collect(trainer)
    curves = trainer.curve.to_record()
    assert curves["subset"] == {"split": "test", "unit": "test pairs", "indices": curve_indices(6, 3, 0)}
    assert curves["stages"]["1"]["step"] == [2, 3] and curves["stages"]["2"]["step"] == [2, 4, 5]
    assert seen[0]["names"] == [held_out[i]["name"] for i in curves["subset"]["indices"]]
    assert "flows" in seen[0]["plan"]

    stage2 = [values for stage, _, values in log if stage == 2]
    assert curves["stages"]["2"]["losses"]["l1"] == pytest.approx(
        [(stage2[0]["l1"] + stage2[1]["l1"]) / 2, (stage2[2]["l1"] + stage2[3]["l1"]) / 2, stage2[4]["l1"]])
    assert "l1" not in curves["stages"]["1"]["losses"]  # stage 1 trains the flow alone

    batch = torch.utils.data.default_collate([held_out[i] for i in curves["subset"]["indices"]])
    generated, _ = trainer.generate_with_plan(batch)  # the trained model: the last point's images
    assert curves["stages"]["2"]["metrics"]["mean"][-1] == pytest.approx(float(generated.double().mean()))
    assert 0 < curves["stages"]["2"]["metrics"]["ssim"][-1] < 1
    assert 0 < curves["stages"]["2"]["metrics"]["l1"][-1] < 1


def test_curve_metrics_of_a_perfect_output_are_ssim_one_and_l1_zero():
    target = torch.rand(2, 3, 16, 16) * 2 - 1
    batch = {"target_image": target}
    assert CURVE_METRICS["ssim"](target, batch, {}).tolist() == pytest.approx([1.0, 1.0])
    assert CURVE_METRICS["l1"](target, batch, {}).tolist() == [0.0, 0.0]
    assert CURVE_METRICS["l1"](-torch.ones(1, 3, 4, 4), {"target_image": torch.ones(1, 3, 4, 4)}, {}).item() == 1.0


@pytest.mark.parametrize("stop_after", [2, 6])  # inside stage 1 between points, inside stage 2
def test_resume_reproduces_the_curve_of_an_uninterrupted_run(stop_after):
    cfg = pair_config(2)
    data, held_out = ShiftedTextures(count=5), ShiftedTextures(count=4, seed=1)
    uninterrupted = Trainer(cfg, "gfla", data, "cpu", seed=3, curve_set=held_out)
    collect(uninterrupted)
    first = Trainer(cfg, "gfla", data, "cpu", seed=3, curve_set=held_out)
    collect(first, max_steps=stop_after)
    state = roundtrip(first.state_dict())
    resumed = Trainer(cfg, "gfla", data, "cpu", seed=3, curve_set=held_out)
    resumed.load_state_dict(state)
    collect(resumed)
    assert resumed.curve.to_record() == uninterrupted.curve.to_record()
    assert all(torch.equal(a, b) for a, b in zip(weights(uninterrupted), weights(resumed), strict=True))


def test_face_animation_curve_animates_short_clips_without_changing_training():
    cfg = tiny_config("face_animation")
    cfg.train.stage1_steps, cfg.train.stage2_steps, cfg.train.batch_size = 1, 2, 1
    cfg.train.eval_every, cfg.train.curve_images = 1, 10  # 8-frame clips: 2 of the 3 test videos
    data, held_out = DriftingClips(count=2, frames=4), DriftingClips(count=3, frames=9, seed=1)
    curved = Trainer(cfg, "gfla", data, "cpu", seed=1, curve_set=held_out)
    curved_log = collect(curved)  # draws the GAN frame and the video-D window from the global RNG
    cfg.train.eval_every = 0
    plain = Trainer(cfg, "gfla", data, "cpu", seed=1, curve_set=held_out)
    assert curved_log == collect(plain)
    assert all(torch.equal(a, b) for a, b in zip(weights(plain), weights(curved), strict=True))
    curves = curved.curve.to_record()
    assert len(curves["subset"]["indices"]) == 2 and curves["subset"]["unit"] == "test videos (their first 8 frames)"
    assert curves["stages"]["2"]["step"] == [1, 2]
    clip = next(curved.curve.batches())
    assert clip["frames"].shape[0] == clip["structures"].shape[0] == 8 and clip["target_image"] is clip["frames"]


def test_a_curve_clip_cuts_every_per_frame_key_of_a_test_video():
    video = {"frames": torch.zeros(9, 3, 4, 4), "structures": torch.zeros(9, 2, 4, 4), "name": "v",
             "frame_names": [f"{t:03d}" for t in range(9)], "flows_gt": torch.zeros(9, 2, 2, 4, 4)}
    held_out = [video]
    curve = LearningCurve(held_out, True, every=1, images=8, seed=0)
    [clip] = list(curve.batches())
    assert clip["frame_names"] == video["frame_names"][:8] and clip["name"] == "v"
    assert clip["flows_gt"].shape[0] == clip["frames"].shape[0] == 8


def test_negative_eval_every_is_named():
    cfg = pair_config(-1)
    with pytest.raises(ValueError, match=r"train\.eval_every: expected an integer >= 0"):
        Trainer(cfg, "gfla", ShiftedTextures(), "cpu", seed=0)
    cfg = pair_config(5)
    cfg.train.curve_images = 0
    with pytest.raises(ValueError, match=r"train\.curve_images: expected at least 1"):
        Trainer(cfg, "gfla", ShiftedTextures(), "cpu", seed=0)


def test_a_smoke_cell_with_and_without_curves_ends_with_bit_identical_weights(tmp_path):
    """The whole cell (data, checkpoints, the test split as curve subset) with curves every step and none."""
    bases = {}
    for every in (0, 1):
        base = tmp_path / f"every{every}"
        overrides = ("--set", f"train.eval_every={every}")
        assert main(bench_args(base, "--methods", "gfla", *overrides, data_root=tmp_path / "data")) == 0
        bases[every] = base
    [off], [on] = records(bases[0]), records(bases[1])
    assert off["status"] == on["status"] == "ok"
    assert off["curves"] is None
    stage_steps = {"1": on["config"]["train"]["stage1_steps"], "2": on["config"]["train"]["stage2_steps"]}
    assert {stage: curve["step"] for stage, curve in on["curves"]["stages"].items()} == {
        stage: list(range(1, steps + 1)) for stage, steps in stage_steps.items()}
    assert {name: m["value"] for name, m in off["metrics"].items()} == {
        name: m["value"] for name, m in on["metrics"].items()}

    def final_state(base, every):
        key = Cell("pose_synthetic", "gfla", 0, "smoke", (f"train.eval_every={every}",)).key()
        return load_checkpoint(base / "work" / "cells" / key / "checkpoint.pt")

    state_off, state_on = final_state(bases[0], 0), final_state(bases[1], 1)
    for part in ("generator", "discriminator"):
        assert state_off[part].keys() == state_on[part].keys()
        assert all(torch.equal(state_off[part][k], state_on[part][k]) for k in state_off[part])
    write_leaderboards(bases[1] / "results")
    report = (bases[1] / "results" / "report.html").read_text()
    assert "Learning curves" in report and "alt='learning curves, profile smoke'" in report


def curve_record(method: str, seed: int, stage2: list[float], stage1: list[float] | None = None) -> dict:
    stages = {"2": {"step": [2, 4][: len(stage2)], "metrics": {"ssim": stage2}, "losses": {}}}
    if stage1 is not None:
        stages["1"] = {"step": [3], "metrics": {"ssim": stage1}, "losses": {}}
    return {"status": "ok", "cell": {"task": "t", "method": method, "seed": seed, "profile": "quick"},
            "config": {"train": {"stage1_steps": 3}},
            "curves": {"every": 2, "subset": {"split": "test", "unit": "test pairs", "indices": [0, 1]},
                       "stages": stages}}


def test_a_method_line_is_the_mean_over_seeds_with_stage_two_after_the_stage_one_steps():
    records = [curve_record("gfla", 0, [0.2, 0.4], stage1=[0.1]), curve_record("gfla", 1, [0.4, 0.6], stage1=[0.3]),
               curve_record("none", 0, [0.5, 0.5])]
    lines = method_lines(records, "ssim")
    assert lines["gfla"] == ([3, 5, 7], [pytest.approx(0.2), pytest.approx(0.3), pytest.approx(0.5)], 2)
    assert lines["none"] == ([5, 7], [0.5, 0.5], 1)
    # a metric some methods have no curve of (EPE without flow) gets no line, not an empty "mean of 0 seeds"
    records[0]["curves"]["stages"]["2"]["metrics"]["epe"] = [1.5, 1.0]
    assert set(method_lines(records, "epe")) == {"gfla"}


def test_curve_fragment_embeds_a_png_byte_identically_and_skips_records_without_curves():
    records = [curve_record("gfla", 0, [0.2, 0.4], stage1=[0.1]), curve_record("none", 0, [0.5, 0.5])]
    older = {"status": "ok", "cell": {"task": "t", "method": "x", "seed": 0, "profile": "quick"}, "config": {}}
    failed = {**curve_record("y", 0, [0.1, 0.1]), "status": "failed"}
    fragment = learning_curves_html([*records, older, failed])
    assert fragment == learning_curves_html(records)  # the older and the failed record add nothing
    [payload] = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", fragment)
    assert base64.b64decode(payload).startswith(b"\x89PNG")
    assert "2 test pairs" in fragment
    assert learning_curves_html([older, failed]) == ""


@pytest.mark.parametrize("method", ["oracle_flow", "gfla", "none"])
def test_the_epe_curve_scores_the_flow_against_the_ground_truth(method):
    """oracle_flow plans the true flow (EPE 0 at every point); gfla's learned flow has an error; a warper
    without flow, or data without ground truth, records no EPE at all."""
    from shifted_data import ShiftedPairs

    cfg = pair_config(2)
    held_out, plain = ShiftedPairs(3, (32, 32), offset=100), ShiftedPairs(3, (32, 32), offset=100, truth=False)
    trainer = Trainer(cfg, method, ShiftedPairs(5, (32, 32), offset=0), "cpu", seed=0, curve_set=held_out)
    collect(trainer)
    stages = trainer.curve.to_record()["stages"]
    epe = [value for stage in stages.values() for value in stage["metrics"].get("epe", [])]
    if method == "none":
        assert epe == []
    elif method == "oracle_flow":
        assert epe and max(epe) == pytest.approx(0.0, abs=1e-5)
    else:
        assert epe and min(epe) > 0
        batch = torch.utils.data.default_collate([plain[i] for i in range(3)])
        generated, plan = trainer.generate_with_plan(batch)
        assert torch.isnan(CURVE_METRICS["epe"](generated, batch, plan)).all()


def test_a_video_oracle_curve_is_handed_the_ground_truth_and_scores_zero_epe():
    """The curve's clips carry the test videos' ground truth to an oracle (the quick face cell of
    oracle_flow failed without it), and its EPE, of each clip's last frame, is that of the true flow."""
    from bench.taskspec import load_task
    from shifted_data import ShiftedVideos

    cfg = load_task("face_synthetic", "smoke", ["dataset.name=shifted_faces"])
    cfg.train.eval_every, cfg.train.curve_images = 1, 8
    size = tuple(cfg.dataset.resolution)
    trainer = Trainer(cfg, "oracle_flow", ShiftedVideos(2, cfg.train.clip_length, size, 0), "cpu", seed=0,
                      curve_set=ShiftedVideos(2, 9, size, 100))
    collect(trainer)
    epe = [value for stage in trainer.curve.to_record()["stages"].values() for value in stage["metrics"]["epe"]]
    assert epe and max(epe) == pytest.approx(0.0, abs=1e-5)
