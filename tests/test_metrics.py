"""Paired metrics (SSIM, PSNR, L1, LPIPS) against direct calls of their libraries, and evaluate()."""

from __future__ import annotations

import lpips
import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import bench.metrics  # noqa: F401  (registers the metrics)
from bench.metrics.base import EvalContext
from bench.metrics.evaluate import evaluate
from bench.metrics.lpips_metric import TRUNK_FILES
from bench.registry import METRICS, UnknownNameError


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
