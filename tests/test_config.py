"""Layered configuration: YAML -> profile -> --set, and every validation error."""

import pytest

from bench.config import ConfigError, TaskConfig, load_task_config, parse_set
from bench.taskspec import load_task

TASK_YAML = """
kind: pose_transfer
dataset:
  name: synthetic_persons
  resolution: [64, 64]
train:
  batch_size: 8
  lr: 0.0001
profiles:
  smoke:
    train: {batch_size: 2, stage2_steps: 3}
  quick:
    dataset: {resolution: [32, 32]}
"""


@pytest.fixture()
def task_file(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(TASK_YAML)
    return path


def test_merge_order_yaml_then_profile_then_set(task_file):
    cfg = load_task_config(task_file, "smoke", ["train.batch_size=5", "model.attn_layers=[2]"])
    assert isinstance(cfg, TaskConfig)
    assert cfg.train.batch_size == 5  # --set beats the profile
    assert cfg.train.stage2_steps == 3  # from the profile
    assert cfg.train.lr == pytest.approx(1e-4)  # from the YAML
    assert cfg.dataset.resolution == [64, 64]  # untouched by the smoke profile
    assert cfg.model.attn_layers == [2]
    assert cfg.profile == "smoke"
    assert cfg.model.kernel_sizes == {2: 5, 3: 3}  # schema default


def test_profile_without_overrides_keeps_yaml(task_file):
    assert load_task_config(task_file, "quick").dataset.resolution == [32, 32]
    assert load_task_config(task_file, None).train.batch_size == 8


def test_unknown_key_names_key_file_and_suggestion(task_file):
    with pytest.raises(ConfigError) as info:
        load_task_config(task_file, "smoke", ["train.batch_sise=3"])
    message = str(info.value)
    assert "'train.batch_sise'" in message and "--set train.batch_sise=3" in message
    assert "did you mean 'train.batch_size'" in message


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: pose_transfer\nmodel:\n  ngff: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model.ngff' \(from .*bad.yaml\)"):
        load_task_config(path)


def test_wrong_type_names_key_expected_type_and_origin(task_file):
    with pytest.raises(ConfigError) as info:
        load_task_config(task_file, "smoke", ["train.batch_size=two"])
    message = str(info.value)
    assert "'train.batch_size'" in message and "expected int" in message and "--set" in message


def test_wrong_type_in_profile_names_the_profile(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("profiles:\n  smoke:\n    train: {lr: fast}\n")
    with pytest.raises(ConfigError, match=r"'train.lr': expected float.*profile 'smoke'"):
        load_task_config(path, "smoke")


@pytest.mark.parametrize(
    ("assignment", "pattern"),
    [
        ("dataset.resolution=64", r"'dataset.resolution': expected list\[int\]"),
        ("dataset.resolution=[64, x]", r"'dataset.resolution\[1\]': expected int"),
        ("model.kernel_sizes={a: 3}", r"expected int"),
        ("train.augment=3", r"'train.augment': expected bool"),
        ("train.batch_size=true", r"'train.batch_size': expected int"),
        ("dataset.root=[1]", r"'dataset.root': expected str or null"),
        ("dataset=3", r"'dataset': expected DatasetConfig"),
    ],
)
def test_type_errors(task_file, assignment, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_task_config(task_file, None, [assignment])


def test_ints_accepted_for_floats_and_null_for_optional(task_file):
    cfg = load_task_config(task_file, None, ["train.lr=1", "dataset.max_test=null"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.dataset.max_test is None


def test_unknown_profile_and_bad_set_syntax(task_file):
    with pytest.raises(ConfigError, match="profile 'paper' is not defined"):
        load_task_config(task_file, "paper")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set("train.batch_size")


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("kind: pose_transfer\ntrain: {batch_size: 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml line \d+: invalid YAML"):
        load_task_config(path)


@pytest.mark.parametrize(
    "task",
    ["pose_synthetic", "pose_deepfashion", "pose_deepfashion_256x176", "pose_market", "face_synthetic",
     "face_faceforensics", "view_synthetic_car", "view_synthetic_chair", "view_shapenet_car",
     "view_shapenet_chair"],
)
@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_shipped_task_resolves_under_every_profile(task, profile):
    cfg = load_task(task, profile)
    assert cfg.name == task and cfg.profile == profile
    for layer in cfg.model.attn_layers:
        assert layer in cfg.model.kernel_sizes


def test_partial_mapping_override_keeps_the_other_default_entries(task_file):
    cfg = load_task_config(task_file, None, ["train.stage2_weights.style=0"])
    assert cfg.train.stage2_weights["style"] == 0.0
    assert cfg.train.stage2_weights["l1"] == 5.0 and cfg.train.stage2_weights["gan"] == 2.0


def test_exponent_floats_without_a_dot_read_as_floats(task_file):
    # PyYAML (YAML 1.1) reads "1e-3" as a string; researchers type it on the command line and in YAML
    cfg = load_task_config(task_file, None, ["train.lr=1e-3", "train.d_lr_ratio=2E-1"])
    assert (cfg.train.lr, cfg.train.d_lr_ratio) == (0.001, 0.2)
    with pytest.raises(ConfigError, match="train.batch_size"):  # an int field still refuses a float
        load_task_config(task_file, None, ["train.batch_size=8e0"])
    assert parse_set("name=1e") == ("name", "1e")
