"""GFLA losses against references and their defining invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench import losses
from bench.models.vgg import VGGFeatures
from bench.ops.flow_warp import flow_warp


def test_correctness_layer_follows_the_original_table():
    assert losses.correctness_layer(2) == "relu3_1"
    assert losses.correctness_layer(3) == "relu4_1"
    with pytest.raises(ValueError, match="attention layer 7"):
        losses.correctness_layer(7)


def test_correctness_is_zero_at_its_minimum():
    # target == source and zero flow: every target position is matched exactly by its own sample
    # (spatially constant features, so the Gaussian resampling leaves them unchanged) -> mu = mu_max.
    feature = torch.rand(2, 16, 1, 1).expand(2, 16, 8, 8).contiguous() + 0.1
    value = losses.sampling_correctness(feature, feature, torch.zeros(2, 2, 8, 8))
    assert abs(float(value)) < 1e-6


def test_correctness_prefers_the_true_flow():
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(1, 8, 12, 12, generator=generator)
    target = torch.roll(source, shifts=2, dims=3)  # target(x) = source(x - 2): true backward flow fx = -2
    true_flow = torch.zeros(1, 2, 12, 12)
    true_flow[:, 0] = -2
    right = losses.sampling_correctness(source, target, true_flow)
    wrong = losses.sampling_correctness(source, target, torch.zeros(1, 2, 12, 12))
    assert 0 < right < wrong


def _backdrop_scene() -> torch.Tensor:
    """A 64x64 image in [-1, 1]: a light vertical-gradient backdrop with a smooth textured figure."""
    generator = torch.Generator().manual_seed(0)
    image = torch.linspace(0.75, 0.55, 64).view(1, 1, 64, 1).expand(1, 3, 64, 64).clone()
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 5, generator=generator) * 2 - 1, size=(32, 20),
                                              mode="bilinear", align_corners=False)
    image[:, :, 16:48, 22:42] = texture
    return image


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
def test_random_vgg_correctness_is_lowest_at_the_true_shift_only_without_zero_padding(padding):
    """Shift a figure on a plain backdrop by (8, 4) px: the relu3_1 correctness loss over constant
    flows must be lowest at the true flow (2, 1) in relu3_1 pixels.  The random trunk's replicate
    padding gets it there; zero padding (the ImageNet trunk's) gives the untrained features a border
    signature that pulls the minimum towards zero flow."""
    vgg = VGGFeatures("random")
    for layer in vgg.features:
        if isinstance(layer, torch.nn.Conv2d):
            assert layer.padding_mode == "replicate"
            layer.padding_mode = padding
    source = _backdrop_scene()
    shift = torch.tensor([8.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 64, 64)
    target = flow_warp(source, shift)  # target(p) = source(p + (8, 4))
    with torch.no_grad():
        source_feature, target_feature = vgg(source, ["relu3_1"])["relu3_1"], vgg(target, ["relu3_1"])["relu3_1"]
        loss = {
            (fx, fy): float(losses.sampling_correctness(
                source_feature, target_feature, torch.tensor([fx, fy]).view(1, 2, 1, 1).expand(1, 2, 16, 16)))
            for fx in np.arange(-1.0, 3.01, 0.5) for fy in np.arange(-1.0, 3.01, 0.5)
        }
    best = min(loss, key=loss.get)
    if padding == "replicate":
        assert best == (2.0, 1.0)
    else:
        assert loss[(2.0, 1.0)] > loss[(0.0, 0.0)]


def test_correctness_matches_its_formula():
    generator = torch.Generator().manual_seed(1)
    source, target = torch.rand(2, 4, 5, 6, generator=generator), torch.rand(2, 4, 5, 6, generator=generator)
    flow = torch.randn(2, 2, 5, 6, generator=generator)
    warped = losses.gaussian_resample(source, flow, 4, 2.0)
    mu = torch.nn.functional.cosine_similarity(warped, target, dim=1).flatten(1)
    s = source.flatten(2) / source.flatten(2).norm(dim=1, keepdim=True)
    t = target.flatten(2) / target.flatten(2).norm(dim=1, keepdim=True)
    mu_max = torch.einsum("bcn,bcm->bnm", t, s).amax(dim=2)
    expected = torch.exp(-mu / mu_max).mean() - math.exp(-1)
    assert torch.allclose(losses.sampling_correctness(source, target, flow), expected, atol=1e-6)


def test_chunked_max_cosine_equals_unchunked():
    generator = torch.Generator().manual_seed(2)
    source, target = torch.randn(2, 5, 9, 7, generator=generator), torch.randn(2, 5, 9, 7, generator=generator)
    full = losses.max_cosine(source, target, chunk_size=63)
    for chunk in (1, 7, 10, 1000):
        assert torch.allclose(losses.max_cosine(source, target, chunk_size=chunk), full, atol=1e-6, rtol=0)
    s = torch.nn.functional.normalize(source.flatten(2), dim=1)
    t = torch.nn.functional.normalize(target.flatten(2), dim=1)
    reference = torch.einsum("bcn,bcm->bnm", t, s).amax(dim=2)  # all N x N cosines at once
    assert torch.allclose(full, reference, atol=1e-6)
    assert full.shape == (2, 63)


def naive_affine_residual(flow: np.ndarray, k: int) -> float:
    """Per window least-squares affine fit of the absolute coordinates; mean squared residual, x + y."""
    _, _, height, width = flow.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    total = 0.0
    for channel, grid in ((0, xs), (1, ys)):
        coords = flow[:, channel].astype(np.float64) + grid
        values = []
        for b in range(flow.shape[0]):
            for y in range(height - k + 1):
                for x in range(width - k + 1):
                    v, u = np.mgrid[0:k, 0:k]
                    design = np.stack([u.ravel(), v.ravel(), np.ones(k * k)], axis=1)
                    g = coords[b, y : y + k, x : x + k].ravel()
                    fit, *_ = np.linalg.lstsq(design, g, rcond=None)
                    values.append(np.sum((design @ fit - g) ** 2))
        total += float(np.mean(values))
    return total


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_affine_regularizer_matches_a_naive_least_squares_reference(kernel_size):
    flow = torch.randn(2, 2, 7, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    value = losses.affine_regularization(flow, kernel_size)
    assert value.item() == pytest.approx(naive_affine_residual(flow.numpy(), kernel_size), rel=1e-9)


def test_affine_regularizer_is_zero_exactly_for_affine_flows():
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(10.0), indexing="ij")
    affine = torch.stack([0.3 * xs - 0.7 * ys + 2.0, 1.1 * xs + 0.2 * ys - 4.0]).unsqueeze(0)
    assert losses.affine_regularization(affine, 3).item() < 1e-8
    assert losses.affine_regularization(affine, 5).item() < 1e-8
    bent = affine.clone()
    bent[:, 0] += 0.05 * xs**2
    assert losses.affine_regularization(bent, 3).item() > 1e-4


def test_regularization_sums_scales_and_sources():
    a, b = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 8, 8)
    total = losses.regularization_loss([[a, a], [b]], [3, 5])
    expected = 2 * losses.affine_regularization(a, 3) + losses.affine_regularization(b, 5)
    assert torch.allclose(total, expected)


def test_resize_flow_rescales_offsets():
    flow = torch.ones(1, 2, 4, 4)
    assert torch.equal(losses.resize_flow(flow, (4, 4)), flow)
    assert torch.equal(losses.resize_flow(flow, (8, 16)), torch.stack([torch.full((8, 16), 4.0),
                                                                       torch.full((8, 16), 2.0)]).unsqueeze(0))


def test_content_and_style_vanish_for_identical_images_only():
    vgg = VGGFeatures("random")
    generator = torch.Generator().manual_seed(4)
    image = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
    other = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
    layers = set(losses.CONTENT_LAYERS) | set(losses.STYLE_LAYERS)
    a, b, c = vgg(image, layers), vgg(image.clone(), layers), vgg(other, layers)
    assert losses.content_loss(a, b).item() == 0
    assert losses.style_loss(a, b).item() == 0
    assert losses.content_loss(a, c).item() > 0
    assert losses.style_loss(a, c).item() > 0


def test_gram_is_normalised_by_chw():
    feature = torch.ones(1, 2, 3, 4)
    assert torch.allclose(losses.gram(feature), torch.full((1, 2, 2), 12 / 24))


def test_lsgan_values():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert losses.lsgan_discriminator_loss(ones, zeros).item() == 0
    assert losses.lsgan_discriminator_loss(zeros, ones).item() == 1  # 0.5 * (1 + 1)
    assert losses.lsgan_generator_loss(ones).item() == 0
    assert losses.lsgan_generator_loss(torch.full((1, 1, 2, 2), 3.0)).item() == 4


# -- perceptual trunks -------------------------------------------------------------------------------
def test_vgg16_layer_table_is_the_facts_files() -> None:
    from bench.models.vgg import LAYER_INDEX

    names = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 18, "relu5_1": 25}
    assert {name: LAYER_INDEX["vgg16"][name] for name in names} == names
    assert LAYER_INDEX["vgg19"]["relu4_1"] == 20 and LAYER_INDEX["vgg19"]["relu3_4"] == 17
    for network in ("vgg16", "vgg19"):  # every layer the losses ask for exists in each trunk
        assert set(losses.CONTENT_LAYERS) <= set(LAYER_INDEX[network])
        assert set(losses.CORRECTNESS_LAYERS.values()) <= set(LAYER_INDEX[network])
        assert set(losses.style_layers(network)) <= set(LAYER_INDEX[network])
    assert losses.style_layers("vgg19") == ("relu2_2", "relu3_4", "relu4_4", "relu5_2")
    with pytest.raises(ValueError, match="no style layers for network 'vgg11'"):
        losses.style_layers("vgg11")


def test_imagenet_vgg16_trunk_is_torchvisions_vgg16_features(tmp_path, monkeypatch) -> None:
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    reference = torchvision.models.vgg16(weights=None).features.eval()
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in reference.state_dict().items()}, folder / "vgg16-397923af.pth")
    trunk = VGGFeatures("imagenet-vgg16")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = trunk(x, ["relu1_1", "relu3_1", "relu4_1", "relu5_1"])
    with torch.no_grad():
        for name, index in (("relu1_1", 1), ("relu3_1", 11), ("relu4_1", 18), ("relu5_1", 25)):
            assert torch.allclose(out[name], reference[: index + 1](x), atol=1e-6)
        normalised = VGGFeatures("imagenet-vgg16", input_convention="imagenet")(x, ["relu3_1"])["relu3_1"]
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        manual = reference[:12](((x + 1) / 2 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
        assert torch.allclose(normalised, manual, atol=1e-5)
    described = trunk.describe()
    assert described["network"] == "vgg16" and described["weights"] == "imagenet-vgg16"
    assert "vgg16-397923af.pth" in described["source"] and described["input"] == "[-1, 1], no mean/std"
    with pytest.raises(ValueError, match="unknown VGG16 layer"):
        trunk(x, ["relu3_4"])


def test_imagenet_vgg16_without_weights_names_the_fetch_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"model.vgg=imagenet-vgg16: .*run_bench.py weights --fetch"):
        VGGFeatures("imagenet-vgg16")


def test_model_vgg_accepts_only_the_known_trunks() -> None:
    from bench.config import ConfigError
    from bench.taskspec import load_task

    assert load_task("pose_synthetic", "smoke", ["model.vgg=imagenet-vgg16"]).model.vgg == "imagenet-vgg16"
    with pytest.raises(ConfigError, match=r"'model.vgg': expected one of imagenet, imagenet-vgg16, random, "
                                          r"got 'vgg16' \(from --set model.vgg=vgg16\)"):
        load_task("pose_synthetic", "smoke", ["model.vgg=vgg16"])
