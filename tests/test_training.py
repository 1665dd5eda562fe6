"""Trainer: both stages run and learn, resume is bit-identical, bad losses and weights fail clearly."""

from __future__ import annotations

import pytest
import torch

from bench import losses
from bench.training import NonFiniteLossError, Trainer, frame_differences, lr_factor
from gfla_tiny import SIZE, DriftingClips, ShiftedTextures, collect, roundtrip, tiny_config


def test_both_stages_run_and_the_losses_decrease():
    cfg = tiny_config()
    cfg.train.stage1_steps, cfg.train.stage2_steps = 8, 16
    cfg.train.stage2_weights = {"l1": 5.0, "content": 0.5, "correctness": 5.0, "regularization": 0.0025}
    trainer = Trainer(cfg, "gfla", ShiftedTextures(count=2), "cpu", seed=0)  # one batch: full-batch descent
    log = collect(trainer)
    assert [(stage, step) for stage, step, _ in log] == [(1, i) for i in range(1, 9)] + [(2, i) for i in range(1, 17)]
    assert set(log[0][2]) == {"correctness", "regularization", "total"}
    stage1 = [values["correctness"] for stage, _, values in log if stage == 1]
    stage2 = [values["l1"] for stage, _, values in log if stage == 2]
    assert stage1[-1] < stage1[0]
    # Adam with beta1 = 0 (GFLA's) does not descend monotonically: compare the first and last 4 steps
    assert sum(stage2[-4:]) < sum(stage2[:4])
    assert trainer.finished
    assert collect(trainer) == []  # nothing left to do


def test_stage_one_trains_only_the_flow_estimator():
    cfg = tiny_config()
    cfg.train.stage1_steps, cfg.train.stage2_steps = 2, 0
    trainer = Trainer(cfg, "gfla", ShiftedTextures(), "cpu", seed=0)
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    trainer.run()
    after = trainer.generator.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("warper.flow_estimator.") for k in changed)


def assert_same_training(a: Trainer, b: Trainer) -> None:
    for x, y in zip(a.generator.state_dict().values(), b.generator.state_dict().values()):
        assert torch.equal(x, y)
    for x, y in zip(a.discriminator.state_dict().values(), b.discriminator.state_dict().values()):
        assert torch.equal(x, y)
    assert (a.video_discriminator is None) == (b.video_discriminator is None)
    if a.video_discriminator is not None:
        for x, y in zip(a.video_discriminator.state_dict().values(), b.video_discriminator.state_dict().values()):
            assert torch.equal(x, y)


@pytest.mark.parametrize("lr_decay", [0.0, 0.5])
@pytest.mark.parametrize("stop_after", [2, 5])  # mid stage 1, mid stage 2
def test_resume_from_state_dict_is_bit_identical(stop_after, lr_decay):
    cfg = tiny_config()
    cfg.train.stage1_steps, cfg.train.stage2_steps = 3, 4
    cfg.train.lr_decay = lr_decay
    data = ShiftedTextures(count=5)  # batch 2 of 5: epochs roll over inside the run
    uninterrupted = Trainer(cfg, "gfla", data, "cpu", seed=3)
    full_log = collect(uninterrupted)

    first = Trainer(cfg, "gfla", data, "cpu", seed=3)
    head = collect(first, max_steps=stop_after)
    state = roundtrip(first.state_dict())
    torch.manual_seed(12345)  # whatever happened to the global RNG in between must not matter
    resumed = Trainer(cfg, "gfla", data, "cpu", seed=3)
    resumed.load_state_dict(state)
    tail = collect(resumed)
    assert head + tail == full_log
    assert_same_training(uninterrupted, resumed)


def test_lr_decays_linearly_over_the_last_fraction_of_each_stage():
    assert [lr_factor(i, 4, 0.0) for i in range(4)] == [1.0] * 4
    assert [lr_factor(i, 4, 0.5) for i in range(4)] == pytest.approx([1, 1, 2 / 3, 1 / 3])
    assert [lr_factor(i, 3, 1.0) for i in range(3)] == pytest.approx([3 / 4, 2 / 4, 1 / 4])
    cfg = tiny_config()
    cfg.train.stage1_steps, cfg.train.stage2_steps, cfg.train.lr_decay = 4, 4, 0.5
    trainer = Trainer(cfg, "gfla", ShiftedTextures(), "cpu", seed=0)
    seen: list[tuple[int, float, float]] = []

    def record(stage: int, step: int, values: dict) -> None:
        names = ("stage1", "stage1") if stage == 1 else ("g", "d")
        seen.append(tuple(trainer.optimizers[name].param_groups[0]["lr"] for name in names))

    trainer.run(record)
    lr, d_lr = cfg.train.lr, cfg.train.lr * cfg.train.d_lr_ratio
    ramp = [1, 1, 2 / 3, 1 / 3]
    assert [pair[0] for pair in seen] == pytest.approx([lr * f for f in ramp] * 2)
    assert [pair[1] for pair in seen[4:]] == pytest.approx([d_lr * f for f in ramp])


def test_lr_decay_outside_zero_one_is_named():
    cfg = tiny_config()
    cfg.train.lr_decay = 1.5
    with pytest.raises(ValueError, match=r"train.lr_decay: expected a fraction in \[0, 1\], got 1.5"):
        Trainer(cfg, "gfla", ShiftedTextures(), "cpu", seed=0)


def test_non_finite_loss_names_stage_step_and_term(monkeypatch):
    cfg = tiny_config()
    trainer = Trainer(cfg, "gfla", ShiftedTextures(), "cpu", seed=0)
    monkeypatch.setattr(losses, "affine_regularization", lambda flow, k: flow.sum() * float("nan"))
    with pytest.raises(NonFiniteLossError, match="stage 1, step 1: loss term 'regularization'") as info:
        trainer.run()
    assert (info.value.stage, info.value.step, info.value.term) == (1, 1, "regularization")


def test_unknown_loss_weight_is_named():
    cfg = tiny_config()
    cfg.train.stage2_weights = {"l1": 1.0, "perceptual": 1.0}
    with pytest.raises(ValueError, match="train.stage2_weights.perceptual"):
        Trainer(cfg, "gfla", ShiftedTextures(), "cpu", seed=0)


def test_generate_returns_images_in_range_without_touching_training_mode():
    cfg = tiny_config()
    data = ShiftedTextures()
    trainer = Trainer(cfg, "gfla", data, "cpu", seed=0)
    batch = torch.utils.data.default_collate([data[0], data[1]])
    images = trainer.generate(batch)
    assert images.shape == (2, 3, SIZE, SIZE)
    assert images.abs().max() <= 1
    assert not images.requires_grad
    assert trainer.generator.training


def test_face_animation_trains_in_chunks_and_resumes_mid_clip():
    cfg = tiny_config("face_animation")
    cfg.train.stage1_steps, cfg.train.stage2_steps = 1, 2  # 4-frame clips, chunks of 2: 2 steps per clip
    cfg.train.batch_size = 1
    data = DriftingClips(count=2, frames=4)
    uninterrupted = Trainer(cfg, "gfla", data, "cpu", seed=1)
    assert uninterrupted.num_sources == 2
    full_log = collect(uninterrupted)
    assert [(stage, step) for stage, step, _ in full_log] == [(1, 1), (2, 1), (2, 2)]

    first = Trainer(cfg, "gfla", data, "cpu", seed=1)
    head = collect(first, max_steps=2)  # stage 2, after the first chunk of a clip
    state = roundtrip(first.state_dict())
    assert state["data"]["clip"]["chunk_start"] == 2
    torch.manual_seed(6)  # would draw the other GAN frame: the pick must come from the restored RNG state
    resumed = Trainer(cfg, "gfla", data, "cpu", seed=1)
    resumed.load_state_dict(state)
    assert head + collect(resumed) == full_log
    assert_same_training(uninterrupted, resumed)

    video, _ = resumed.generate_video(data[0]["frames"], data[0]["structures"])
    assert video.shape == (4, 3, SIZE, SIZE)
    assert video.abs().max() <= 1


def test_frame_differences_stack_consecutive_differences_as_channels():
    clip = torch.arange(2 * 3 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 3, 2, 2) ** 2
    motion = frame_differences(clip)
    assert motion.shape == (2, 6, 2, 2)
    torch.testing.assert_close(motion[:, :3], clip[:, 1] - clip[:, 0])
    torch.testing.assert_close(motion[:, 3:], clip[:, 2] - clip[:, 1])


def test_face_animation_trains_a_video_discriminator_on_frame_differences():
    cfg = tiny_config("face_animation")
    cfg.train.stage1_steps, cfg.train.stage2_steps, cfg.train.batch_size = 0, 2, 1
    trainer = Trainer(cfg, "none", DriftingClips(count=2, frames=4), "cpu", seed=0)
    first_conv = next(m for m in trainer.video_discriminator.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 3 * (cfg.train.video_gan_frames - 1)
    before = [p.detach().clone() for p in trainer.video_discriminator.parameters()]
    log = collect(trainer)
    assert all({"video_gan", "video_discriminator"} <= set(values) for _, _, values in log)
    after = list(trainer.video_discriminator.parameters())
    assert any(not torch.equal(x, y) for x, y in zip(before, after))

    pose = Trainer(tiny_config(), "none", ShiftedTextures(count=2), "cpu", seed=0)
    assert pose.video_discriminator is None and "dv" not in pose.optimizers  # images only

    cfg.train.video_gan_frames = 3  # longer than the 2-frame chunks
    with pytest.raises(ValueError, match=r"train.video_gan_frames \(3\) must not exceed train.chunk_length \(2\)"):
        Trainer(cfg, "none", DriftingClips(count=2, frames=4), "cpu", seed=0)
    cfg.train.stage2_weights = {**cfg.train.stage2_weights, "video_gan": 0}
    assert Trainer(cfg, "none", DriftingClips(count=2, frames=4), "cpu", seed=0).video_discriminator is None
